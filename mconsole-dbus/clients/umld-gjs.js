#!/usr/bin/gjs
// A GJS client of umld (org.umlkit.uml1): the calls a GNOME program makes.
//
//   umld-gjs.js [--address ADDR] list
//       the machines, from the ObjectManager: one JSON object a line
//   umld-gjs.js [--address ADDR] watch [--until SIGNAL:UMID|SIGNAL:PATH] [--timeout S]
//       machines appearing and going (with the ObjectManager's InterfacesAdded and
//       InterfacesRemoved), State and MemoryBytes changes, and the machines' signals, live,
//       as JSON lines
//   umld-gjs.js [--address ADDR] launch [--umid U] [--mem M] [--disk D]... [--net N]...
//               [--rw DIR]... [--kernel K] [-- COMMAND...]
//       Launch with typed options (a{sv}, uml run's vocabulary); without COMMAND a shell guest
//   umld-gjs.js [--address ADDR] shutdown UMID [--grace S] [--timeout S]
//       Shutdown(S): how long the call took, each State until exited, then ExitStatus
//   umld-gjs.js [--address ADDR] pause|resume UMID
//   umld-gjs.js [--address ADDR] console UMID LINE [--send TEXT] [--expect TEXT]... [--timeout S]
//       OpenConsole(LINE): reads the guest's console through the descriptor umld hands over
//
// Without --address it uses the session bus. Exit status: 0 done, 1 failed, 2 timed out.

const { Gio, GLib } = imports.gi;
const ByteArray = imports.byteArray;

const NAME = 'org.umlkit.uml1';
const MANAGER = '/org/umlkit/uml1';
const MACHINE = 'org.umlkit.uml1.Machine';
const MANAGER_IFACE = 'org.umlkit.uml1.Manager';
const OBJECT_MANAGER = 'org.freedesktop.DBus.ObjectManager';

function parseArgs(argv) {
    const opts = { expect: [], timeout: null, positional: [], disk: [], net: [], rw: [],
        command: [], grace: 10 };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '--') {
            opts.command = argv.slice(i + 1);
            break;
        } else if (a === '--address') opts.address = argv[++i];
        else if (['--umid', '--mem', '--kernel'].includes(a)) opts[a.slice(2)] = argv[++i];
        else if (['--disk', '--net', '--rw'].includes(a)) opts[a.slice(2)].push(argv[++i]);
        else if (a === '--grace') opts.grace = parseInt(argv[++i], 10);
        else if (a === '--until') opts.until = argv[++i];
        else if (a === '--timeout') opts.timeout = parseFloat(argv[++i]);
        else if (a === '--send') opts.send = argv[++i];
        else if (a === '--expect') opts.expect.push(argv[++i]);
        else opts.positional.push(a);
    }
    return opts;
}

function connect(address) {
    if (address) {
        return Gio.DBusConnection.new_for_address_sync(address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, null, null);
    }
    return Gio.bus_get_sync(Gio.BusType.SESSION, null);
}

function managerClient(conn) {
    return Gio.DBusObjectManagerClient.new_sync(conn,
        Gio.DBusObjectManagerClientFlags.NONE, NAME, MANAGER, null, null);
}

function prop(iface, name) {
    const v = iface.get_cached_property(name);
    return v === null ? null : v.deepUnpack();
}

function describe(iface) {
    const out = { path: iface.get_object_path() };
    for (const p of ['Umid', 'State', 'MemoryBytes', 'KernelVersion', 'UserspaceUp'])
        out[p] = prop(iface, p);
    return out;
}

function emit(event) {
    event.t = GLib.get_monotonic_time() / 1e6;
    print(JSON.stringify(event));
}

function machine(manager, umid) {
    for (const obj of manager.get_objects()) {
        const iface = obj.get_interface(MACHINE);
        if (iface && prop(iface, 'Umid') === umid)
            return iface;
    }
    throw new Error(`no machine ${umid}`);
}

function list(conn) {
    const manager = managerClient(conn);
    const objects = manager.get_objects()
        .sort((a, b) => a.get_object_path().localeCompare(b.get_object_path()));
    for (const obj of objects) {
        const iface = obj.get_interface(MACHINE);
        if (!iface) {
            print(JSON.stringify({ path: obj.get_object_path(), error: 'no Machine interface' }));
            return 1;
        }
        print(JSON.stringify(describe(iface)));
    }
    return 0;
}

function watch(conn, opts) {
    const loop = GLib.MainLoop.new(null, false);
    const manager = managerClient(conn);
    const until = opts.until ? opts.until.split(':') : null;
    let status = until ? 2 : 0;
    const umidOf = path => {
        const obj = manager.get_object(path);
        const iface = obj ? obj.get_interface(MACHINE) : null;
        return iface ? prop(iface, 'Umid') : path;
    };
    const done = (member, path, umid) => {
        if (until && member === until[0] && (umid === until[1] || path === until[1])) {
            status = 0;
            loop.quit();
        }
    };
    conn.signal_subscribe(NAME, MACHINE, null, null, null, Gio.DBusSignalFlags.NONE,
        (_c, _sender, path, _iface, member, params) => {
            const umid = umidOf(path);
            emit({ signal: member, umid, args: params.deepUnpack() });
            done(member, path, umid);
        });
    // The ObjectManager's own signals: which object, which interfaces (a bare node would
    // come with none).
    conn.signal_subscribe(NAME, OBJECT_MANAGER, null, MANAGER, null, Gio.DBusSignalFlags.NONE,
        (_c, _sender, _path, _iface, member, params) => {
            const [path, what] = params.deepUnpack();
            const interfaces = (member === 'InterfacesAdded' ? Object.keys(what) : what).sort();
            emit({ signal: member, path, interfaces });
            done(member, path, null);
        });
    manager.connect('object-added', (_m, obj) => {
        const iface = obj.get_interface(MACHINE);
        if (iface)
            emit({ signal: 'Added', ...describe(iface) });
    });
    manager.connect('object-removed', (_m, obj) => {
        emit({ signal: 'Removed', path: obj.get_object_path() });
    });
    manager.connect('interface-proxy-properties-changed', (_m, _obj, iface, changed) => {
        const c = changed.deepUnpack();
        for (const p of ['State', 'MemoryBytes']) {
            if (p in c)
                emit({ signal: p, umid: umidOf(iface.get_object_path()), args: [c[p].deepUnpack()] });
        }
    });
    for (const obj of manager.get_objects()) {
        const iface = obj.get_interface(MACHINE);
        if (iface)
            emit({ signal: 'Present', ...describe(iface) });
    }
    emit({ signal: 'Watching' });
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, (opts.timeout ?? 30) * 1000, () => {
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    loop.run();
    return status;
}

function pauseResume(conn, method, umid) {
    const iface = machine(managerClient(conn), umid);
    iface.call_sync(method, null, Gio.DBusCallFlags.NONE, 5000, null);
    return 0;
}

function launch(conn, opts) {
    const options = {};
    for (const key of ['umid', 'mem', 'kernel']) {
        if (opts[key])
            options[key] = new GLib.Variant('s', opts[key]);
    }
    for (const [key, values] of [['disks', opts.disk], ['net', opts.net], ['rw', opts.rw]]) {
        if (values.length)
            options[key] = new GLib.Variant('as', values);
    }
    if (opts.command.length)
        options.command = new GLib.Variant('as', opts.command);
    else
        options.shell = new GLib.Variant('b', true);
    const started = GLib.get_monotonic_time();
    const reply = conn.call_sync(NAME, MANAGER, MANAGER_IFACE, 'Launch',
        new GLib.Variant('(a{sv})', [options]), new GLib.VariantType('(o)'),
        Gio.DBusCallFlags.NONE, 5000, null);
    emit({ call: 'Launch', path: reply.deepUnpack()[0],
        seconds: (GLib.get_monotonic_time() - started) / 1e6 });
    return 0;
}

function shutdown(conn, umid, opts) {
    const manager = managerClient(conn);
    const iface = machine(manager, umid);
    const loop = GLib.MainLoop.new(null, false);
    let status = 2;
    manager.connect('interface-proxy-properties-changed', (_m, _obj, changedIface, changed) => {
        const c = changed.deepUnpack();
        if (changedIface.get_object_path() !== iface.get_object_path() || !('State' in c))
            return;
        const state = c.State.deepUnpack();
        emit({ signal: 'State', umid, args: [state] });
        if (state === 'exited' || state === 'crashed') {
            // Read again from the service, not from the cache: the object stays for a while.
            const reply = conn.call_sync(NAME, iface.get_object_path(),
                'org.freedesktop.DBus.Properties', 'Get',
                new GLib.Variant('(ss)', [MACHINE, 'ExitStatus']), new GLib.VariantType('(v)'),
                Gio.DBusCallFlags.NONE, 5000, null);
            emit({ signal: 'ExitStatus', umid, args: [reply.deepUnpack()[0].deepUnpack()] });
            status = 0;
            loop.quit();
        }
    });
    const started = GLib.get_monotonic_time();
    iface.call_sync('Shutdown', new GLib.Variant('(u)', [opts.grace]), Gio.DBusCallFlags.NONE,
        5000, null);
    emit({ call: 'Shutdown', umid, seconds: (GLib.get_monotonic_time() - started) / 1e6 });
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, (opts.timeout ?? 60) * 1000, () => {
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    loop.run();
    return status;
}

function console_(conn, umid, line, opts) {
    const iface = machine(managerClient(conn), umid);
    const [reply, fds] = conn.call_with_unix_fd_list_sync(NAME, iface.get_object_path(),
        MACHINE, 'OpenConsole', new GLib.Variant('(s)', [line]), new GLib.VariantType('(h)'),
        Gio.DBusCallFlags.NONE, 5000, null, null);
    const fd = fds.get(reply.deepUnpack()[0]);
    const input = new Gio.UnixInputStream({ fd, close_fd: false });
    const output = new Gio.UnixOutputStream({ fd, close_fd: false });
    if (opts.send)
        output.write_all(ByteArray.fromString(`${opts.send}\n`), null);
    const loop = GLib.MainLoop.new(null, false);
    let seen = '';
    let status = 2;
    const done = () => opts.expect.every(e => seen.includes(e));
    const readMore = () => {
        input.read_bytes_async(4096, GLib.PRIORITY_DEFAULT, null, (stream, res) => {
            const bytes = stream.read_bytes_finish(res);
            if (bytes.get_size() === 0) {
                loop.quit();
                return;
            }
            seen += ByteArray.toString(ByteArray.fromGBytes(bytes));
            if (done()) {
                status = 0;
                loop.quit();
            } else {
                readMore();
            }
        });
    };
    readMore();
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, (opts.timeout ?? 10) * 1000, () => {
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    loop.run();
    print(seen);
    if (status !== 0)
        printerr(`read ${JSON.stringify(seen)}, not all of ${JSON.stringify(opts.expect)}`);
    GLib.close(fd);
    return status;
}

function main(argv) {
    const opts = parseArgs(argv);
    const [command, ...rest] = opts.positional;
    const conn = connect(opts.address);
    try {
        switch (command) {
        case 'list': return list(conn);
        case 'watch': return watch(conn, opts);
        case 'pause': return pauseResume(conn, 'Pause', rest[0]);
        case 'resume': return pauseResume(conn, 'Resume', rest[0]);
        case 'console': return console_(conn, rest[0], rest[1], opts);
        case 'launch': return launch(conn, opts);
        case 'shutdown': return shutdown(conn, rest[0], opts);
        default:
            printerr('usage: umld-gjs.js [--address ADDR] list|watch|launch|shutdown UMID|pause UMID|resume UMID|console UMID LINE');
            return 1;
        }
    } catch (e) {
        const remote = e instanceof GLib.Error ? Gio.DBusError.get_remote_error(e) : null;
        printerr(`${remote ?? ''}: ${e.message}`);
        return 1;
    }
}

imports.system.exit(main(ARGV));
