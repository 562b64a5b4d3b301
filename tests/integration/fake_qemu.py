#!/usr/bin/python3
"""A TEST DOUBLE for qemu-system-x86_64, used only by test_drv_vm.py as the
vm driver's `qemu` option: the fast stand-in for the driver's lifecycle (the
real QEMU boots a real guest in test_vm_e2e.py). The driver under test is
real; this program checks the command line it is given and plays
QEMU's part of the protocol: the pid file, the serial console file, and a
QMP server that answers qmp_capabilities, query-status and system_powerdown.

It prints what it saw to stdout (the driver sends it to qemu.log), never
file contents: for each fw_cfg file its mode, size and SHA-256. With
"fake.ignore_powerdown" on the kernel command line it ignores
system_powerdown (a guest without ACPI), so the driver must SIGTERM it; with
"fake.exit_at_once" it fails at start as QEMU does on a bad option."""
import hashlib
import json
import os
import signal
import socket
import stat
import sys
import threading
import time


def main(argv):
    opts = {"fw_cfg": [], "-device": []}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-nodefaults", "-no-user-config", "-nographic", "-no-reboot"):
            opts[a] = True
            i += 1
            continue
        if i + 1 >= len(argv):
            print("fake qemu: %s needs a value" % a)
            return 1
        v = argv[i + 1]
        if a == "-fw_cfg":
            opts["fw_cfg"].append(v)
        elif a == "-device":
            opts["-device"].append(v)
        else:
            opts[a] = v
        i += 2
    print("argc=%d" % len(argv))
    print("cwd=%s" % os.getcwd())
    # The environment as exec'd (os.environ may gain LC_CTYPE from Python).
    with open("/proc/self/environ", "rb") as f:
        names = [kv.split(b"=", 1)[0].decode() for kv in f.read().split(b"\0") if kv]
    print("env=%s" % ",".join(sorted(names)))
    print("append=%s" % opts.get("-append", ""))
    print("accel=%s sandbox=%s" % (opts.get("-accel"), opts.get("-sandbox")))
    print("netdev=%s" % opts.get("-netdev", "") + ("" if "-nic" not in opts else
                                                  " nic=%s" % opts["-nic"]))
    print("devices=%s" % " ".join(opts["-device"]))
    if "fake.exit_at_once" in opts.get("-append", ""):
        print("qemu-system-x86_64: -accel kvm: failed to initialize kvm: No such file or directory")
        return 1
    if not os.path.isfile(opts.get("-kernel", "")):
        print("fake qemu: could not open kernel file '%s'" % opts.get("-kernel"))
        return 1
    # QEMU reads every fw_cfg file during its start-up, before its main loop
    # answers on QMP (the driver deletes them once it does).
    for entry in opts["fw_cfg"]:
        fields = dict(kv.split("=", 1) for kv in entry.replace(",,", "\0").split(","))
        fields = {k: v.replace("\0", ",") for k, v in fields.items()}
        if "file" in fields:
            st = os.stat(fields["file"])
            with open(fields["file"], "rb") as f:
                data = f.read()
            print("fw_cfg %s file=%s mode=%04o bytes=%d sha256=%s" % (
                fields["name"], fields["file"], stat.S_IMODE(st.st_mode), len(data),
                hashlib.sha256(data).hexdigest()))
        else:
            print("fw_cfg %s string=%s" % (fields["name"], fields["string"]))
    open(opts["-pidfile"], "w").write("%d\n" % os.getpid())
    assert opts["-serial"] == "chardev:console", opts["-serial"]
    assert opts["-chardev"] == "file,id=console,path=console.log,append=on", opts["-chardev"]
    with open("console.log", "a") as f:
        f.write("fake guest: booting\n")
    qmp = opts["-qmp"]
    assert qmp.startswith("unix:") and qmp.endswith(",server=on,wait=off"), qmp
    path = qmp[5:].split(",")[0]
    ignore_powerdown = "fake.ignore_powerdown" in opts.get("-append", "")

    def on_term(sig, frame):
        print("fake qemu: terminating on signal %d" % sig, flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    print("ready", flush=True)

    def serve(conn):
        f = conn.makefile("rwb", buffering=0)
        f.write(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                b'"package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}\r\n')
        caps = False
        for line in f:
            cmd = json.loads(line).get("execute")
            print("qmp %s" % cmd, flush=True)
            if cmd == "qmp_capabilities":
                caps = True
                f.write(b'{"return": {}}\r\n')
            elif cmd == "query-status" and caps:
                f.write(b'{"return": {"status": "running", "singlestep": false, '
                        b'"running": true}}\r\n')
            elif cmd == "system_powerdown" and caps:
                f.write(b'{"timestamp": {"seconds": 1700000000, "microseconds": 1}, '
                        b'"event": "POWERDOWN"}\r\n')
                f.write(b'{"return": {}}\r\n')
                if not ignore_powerdown:
                    time.sleep(0.1)
                    # What the guest's console shows at a power-off (the
                    # kernel's line is not the driver's to report).
                    with open("console.log", "a") as con:
                        con.write("tessera-init: power-off: stopping tessera-supervisor\r\n"
                                  "tessera-init: tessera-supervisor exited with status 143\r\n"
                                  "[    9.876543] reboot: Power down\r\n")
                    print("fake guest: powered off", flush=True)
                    os._exit(0)
            else:
                f.write(b'{"error": {"class": "CommandNotFound", "desc": "no"}}\r\n')
        conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
