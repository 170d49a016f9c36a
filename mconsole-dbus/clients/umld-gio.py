#!/usr/bin/python3
"""A small GIO (python3-gi) client of umld, org.umlkit.uml1: what a desktop program does.

  umld-gio.py [--address ADDR] list
      the machines, from the ObjectManager: one JSON object a line (umid, state, memory...)
  umld-gio.py [--address ADDR] watch [--until SIGNAL:UMID] [--timeout S]
      the machines' signals and State changes as JSON lines with a monotonic time "t"
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

    def on_signal(_c, _sender, path, _iface, member, params):
        emit({"signal": member, "umid": umid_of(path), "args": params.unpack()})
        if until and member == until[0] and umid_of(path) == until[1]:
            result["status"] = 0
            loop.quit()

    def on_props(_m, _obj, iface, changed, _inv):
        changed = changed.unpack()
        if "State" in changed:
            emit({"signal": "State", "umid": umid_of(iface.get_object_path()),
                  "args": [changed["State"]]})

    def on_added(_m, obj):
        iface = obj.get_interface(MACHINE)
        if iface is not None:
            emit({"signal": "Added", **describe(iface)})

    conn.signal_subscribe(NAME, MACHINE, None, None, None, Gio.DBusSignalFlags.NONE, on_signal)
    manager.connect("interface-proxy-properties-changed", on_props)
    manager.connect("object-added", on_added)
    emit({"signal": "Watching"})
    GLib.timeout_add(int(args.timeout * 1000), loop.quit)
    loop.run()
    return result["status"] if until else 0


def cmd_pause_resume(conn, args):
    iface = machine_proxy(manager_client(conn), args.umid)
    iface.call_sync(args.command.capitalize(), None, Gio.DBusCallFlags.NONE, 5000, None)
    return 0


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
    args = p.parse_args()
    conn = connect(args.address)
    run = {"list": cmd_list, "watch": cmd_watch, "pause": cmd_pause_resume,
           "resume": cmd_pause_resume, "console": cmd_console}[args.command]
    try:
        return run(conn, args)
    except GLib.Error as e:
        sys.stderr.write(f"{Gio.DBusError.get_remote_error(e) or ''}: {e.message}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
