#!/usr/bin/python3
"""A small GIO (python3-gi) client of umld, org.umlkit.uml1: what a desktop program does.

  umld-gio.py [--address ADDR] list
      the machines, from the ObjectManager: one JSON object a line (umid, state, memory...)
  umld-gio.py [--address ADDR] watch [--until SIGNAL:UMID|SIGNAL:PATH] [--timeout S]
      the machines' signals, State changes, and the ObjectManager's InterfacesAdded and
      InterfacesRemoved, as JSON lines with a monotonic time "t"
  umld-gio.py [--address ADDR] launch [--umid U] [--mem M] [--disk D]... [--net N]...
              [--rw DIR]... [--kernel K] [--] [COMMAND...]
      Launch with typed options (a{sv}, uml run's vocabulary); without COMMAND a shell guest.
      Prints the machine's path and how long the call took
  umld-gio.py [--address ADDR] shutdown UMID [--grace S] [--timeout S]
      Shutdown(S): prints how long the call took, each State until exited or crashed, then
      ExitStatus as the exited machine's object still reports it
  umld-gio.py [--address ADDR] pause|resume UMID
  umld-gio.py [--address ADDR] console UMID LINE [--send TEXT] [--expect TEXT] [--timeout S]
      OpenConsole(LINE): reads the guest's console through the descriptor umld hands over,
      writes TEXT, exits 0 once every --expect text was read

Without --address it uses the session bus. Exit status: 0 done, 1 failed, 2 timed out.
"""

import argparse
import json
import os
import select
import sys
import time

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

NAME = "org.umlkit.uml1"
MANAGER = "/org/umlkit/uml1"
MACHINE = "org.umlkit.uml1.Machine"
MANAGER_IFACE = "org.umlkit.uml1.Manager"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"


def connect(address):
    if address:
        flags = (
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
            | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
        )
        return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
    return Gio.bus_get_sync(Gio.BusType.SESSION, None)


def manager_client(conn):
    return Gio.DBusObjectManagerClient.new_sync(
        conn, Gio.DBusObjectManagerClientFlags.NONE, NAME, MANAGER, None, None, None
    )


def machine_proxy(manager, umid):
    for obj in manager.get_objects():
        iface = obj.get_interface(MACHINE)
        if iface is not None and iface.get_cached_property("Umid").unpack() == umid:
            return iface
    raise SystemExit(f"no machine {umid!r}")


def describe(iface):
    out = {"path": iface.get_object_path()}
    for prop in ("Umid", "State", "MemoryBytes", "KernelVersion", "UserspaceUp", "Consoles"):
        v = iface.get_cached_property(prop)
        out[prop] = v.unpack() if v is not None else None
    return out


def emit(event):
    event["t"] = time.monotonic()
    print(json.dumps(event), flush=True)


def cmd_list(conn, _args):
    manager = manager_client(conn)
    for obj in sorted(manager.get_objects(), key=lambda o: o.get_object_path()):
        iface = obj.get_interface(MACHINE)
        if iface is None:
            print(json.dumps({"path": obj.get_object_path(), "error": "no Machine interface"}))
            return 1
        print(json.dumps(describe(iface)), flush=True)
    return 0


def cmd_watch(conn, args):
    loop = GLib.MainLoop()
    result = {"status": 2}
    until = args.until.split(":", 1) if args.until else None
    manager = manager_client(conn)

    def umid_of(path):
        obj = manager.get_object(path)
        iface = obj.get_interface(MACHINE) if obj else None
        prop = iface.get_cached_property("Umid") if iface else None
        return prop.unpack() if prop else path

    def done(member, path, umid):
        if until and member == until[0] and until[1] in (umid, path):
            result["status"] = 0
            loop.quit()

    def on_signal(_c, _sender, path, _iface, member, params):
        umid = umid_of(path)
        emit({"signal": member, "umid": umid, "args": params.unpack()})
        done(member, path, umid)

    def on_objects(_c, _sender, _path, _iface, member, params):
        # The ObjectManager's own signals, as any client sees them: which object, which
        # interfaces (a bare node would come with none).
        args = params.unpack()
        names = sorted(args[1].keys()) if member == "InterfacesAdded" else sorted(args[1])
        emit({"signal": member, "path": args[0], "interfaces": names})
        done(member, args[0], None)

    def on_props(_m, _obj, iface, changed, _inv):
        changed = changed.unpack()
        if "State" in changed:
            emit({"signal": "State", "umid": umid_of(iface.get_object_path()),
                  "args": [changed["State"]]})

    def on_added(_m, obj):
        iface = obj.get_interface(MACHINE)
        if iface is not None:
            emit({"signal": "Added", **describe(iface)})

    def on_removed(_m, obj):
        emit({"signal": "Removed", "path": obj.get_object_path()})

    conn.signal_subscribe(NAME, MACHINE, None, None, None, Gio.DBusSignalFlags.NONE, on_signal)
    conn.signal_subscribe(NAME, OBJECT_MANAGER, None, MANAGER, None, Gio.DBusSignalFlags.NONE,
                          on_objects)
    manager.connect("interface-proxy-properties-changed", on_props)
    manager.connect("object-added", on_added)
    manager.connect("object-removed", on_removed)
    emit({"signal": "Watching"})
    GLib.timeout_add(int(args.timeout * 1000), loop.quit)
    loop.run()
    return result["status"] if until else 0


def cmd_pause_resume(conn, args):
    iface = machine_proxy(manager_client(conn), args.umid)
    iface.call_sync(args.command.capitalize(), None, Gio.DBusCallFlags.NONE, 5000, None)
    return 0


def cmd_launch(conn, args):
    options = {}
    for key in ("umid", "mem", "kernel"):
        if getattr(args, key):
            options[key] = GLib.Variant("s", getattr(args, key))
    for key, values in (("disks", args.disk), ("net", args.net), ("rw", args.rw)):
        if values:
            options[key] = GLib.Variant("as", values)
    if args.argv:
        options["command"] = GLib.Variant("as", args.argv)
    else:
        options["shell"] = GLib.Variant("b", True)
    manager = Gio.DBusProxy.new_sync(conn, Gio.DBusProxyFlags.DO_NOT_LOAD_PROPERTIES, None,
                                     NAME, MANAGER, MANAGER_IFACE, None)
    started = time.monotonic()
    reply = manager.call_sync("Launch", GLib.Variant("(a{sv})", (options,)),
                              Gio.DBusCallFlags.NONE, 5000, None)
    emit({"call": "Launch", "path": reply.unpack()[0], "seconds": time.monotonic() - started})
    return 0


def cmd_shutdown(conn, args):
    manager = manager_client(conn)
    iface = machine_proxy(manager, args.umid)
    loop = GLib.MainLoop()
    result = {"status": 2}

    def on_props(_m, _obj, changed_iface, changed, _inv):
        changed = changed.unpack()
        if changed_iface.get_object_path() != iface.get_object_path() or "State" not in changed:
            return
        state = changed["State"]
        emit({"signal": "State", "umid": args.umid, "args": [state]})
        if state in ("exited", "crashed"):
            # Read again from the service, not from the cache: the object stays for a while.
            reply = conn.call_sync(NAME, iface.get_object_path(),
                                   "org.freedesktop.DBus.Properties", "Get",
                                   GLib.Variant("(ss)", (MACHINE, "ExitStatus")),
                                   GLib.VariantType("(v)"), Gio.DBusCallFlags.NONE, 5000, None)
            emit({"signal": "ExitStatus", "umid": args.umid, "args": [reply.unpack()[0]]})
            result["status"] = 0
            loop.quit()

    manager.connect("interface-proxy-properties-changed", on_props)
    started = time.monotonic()
    iface.call_sync("Shutdown", GLib.Variant("(u)", (args.grace,)), Gio.DBusCallFlags.NONE,
                    5000, None)
    emit({"call": "Shutdown", "umid": args.umid, "seconds": time.monotonic() - started})
    GLib.timeout_add(int(args.timeout * 1000), loop.quit)
    loop.run()
    return result["status"]


def cmd_console(conn, args):
    iface = machine_proxy(manager_client(conn), args.umid)
    reply, fds = conn.call_with_unix_fd_list_sync(
        NAME, iface.get_object_path(), MACHINE, "OpenConsole",
        GLib.Variant("(s)", (args.line,)), GLib.VariantType("(h)"),
        Gio.DBusCallFlags.NONE, 5000, None, None)
    fd = fds.get(reply.unpack()[0])
    if args.send:
        os.write(fd, (args.send + "\n").encode())
    seen = b""
    deadline = time.monotonic() + args.timeout
    want = [e.encode() for e in args.expect]
    while not all(w in seen for w in want):
        left = deadline - time.monotonic()
        if left <= 0:
            sys.stderr.write(f"read {seen!r}, not all of {args.expect}\n")
            return 2
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 4096)
    print(seen.decode(errors="replace"), flush=True)
    os.close(fd)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    w = sub.add_parser("watch")
    w.add_argument("--until")
    w.add_argument("--timeout", type=float, default=30)
    for c in ("pause", "resume"):
        sub.add_parser(c).add_argument("umid")
    c = sub.add_parser("console")
    c.add_argument("umid")
    c.add_argument("line")
    c.add_argument("--send")
    c.add_argument("--expect", action="append", default=[])
    c.add_argument("--timeout", type=float, default=10)
    la = sub.add_parser("launch")
    for opt in ("--umid", "--mem", "--kernel"):
        la.add_argument(opt)
    for opt in ("--disk", "--net", "--rw"):
        la.add_argument(opt, action="append", default=[])
    la.add_argument("argv", nargs="*", metavar="COMMAND")
    sd = sub.add_parser("shutdown")
    sd.add_argument("umid")
    sd.add_argument("--grace", type=int, default=10)
    sd.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    conn = connect(args.address)
    run = {"list": cmd_list, "watch": cmd_watch, "pause": cmd_pause_resume,
           "resume": cmd_pause_resume, "console": cmd_console, "launch": cmd_launch,
           "shutdown": cmd_shutdown}[args.command]
    try:
        return run(conn, args)
    except GLib.Error as e:
        sys.stderr.write(f"{Gio.DBusError.get_remote_error(e) or ''}: {e.message}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
