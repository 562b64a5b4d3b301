"""The vm driver on the real QEMU (qemu-system-x86 from Debian, TCG unless
KVM really works here) booting the guest `make vm-image` builds: Debian's
kernel and an initramfs with the real supervisor.

test_whole_loop: one VM, through the real gateway and the `tessera` CLI:
create -> running -> the supervisor inside validated its identity and
reported its policy -> rotation by CSR (--renew-before) with a new key -> logs
arrive -> a cross-sandbox call from inside is denied -> the guest reaches the
gateway and nothing else -> no key bytes in QEMU's argv or its logs -> a
gateway restart re-attaches without minting -> delete revokes, powers the VM
off and leaves nothing.

test_reboot_and_restart: through drv_run, no gateway: a guest reboot ends
QEMU (the fw_cfg identity is never booted twice), a start without a fresh
identity is refused, a start with one boots it, and stop is an ACPI
power-off.

Both use the image of this build ($O/vm, made by `make vm-image`, which
`make test` runs). A test overlay (a second cpio the kernel unpacks after the
image) adds a workload script, cl_probe and a root probe run by busybox init
next to the supervisor; the image's own init is unchanged."""
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time

import pytest

import drvtest
import gwtest
from gwtest import pb, wait_for
from test_cli import ok_json, run as cli
from test_drv_vm import kvm_expected

ROOT = drvtest.ROOT
BUILD = drvtest.BUILD
IMAGE = os.path.join(BUILD, "vm")
RELAY = os.path.join(BUILD, "bin", "tessera-vm-relay")
CL_PROBE = os.path.join(BUILD, "tests", "bin", "cl_probe")
ROTATE = 22  # seconds: each 5 min certificate is rotated this long after its issue
ROTATE_WAIT = 90  # seconds to wait for one (the guest boots first)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import vm_image  # noqa: E402


def require_host():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (make deps installs qemu-system-x86)")
    assert os.path.exists(os.path.join(IMAGE, "initrd.img")), \
        "no guest image in %s: run make vm-image (make test does)" % IMAGE


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def pids_with(text):
    """Processes whose command line holds text (QEMU and its relays name the sandbox)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(pid))
            except OSError:
                pass
    return out


PEM_KEY = re.compile(rb"-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]{40,4096}?"
                     rb"-----END PRIVATE KEY-----\n")


def keys_in_qemu(pid):
    """The PEM keys in QEMU's own memory (its heap holds the fw_cfg files it
    read at start; the guest's RAM, one large mapping, is skipped). Root on
    the host can read them: the VM's identity is safe from its host's root
    no more than any process's secrets are."""
    found = set()
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb") as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or end - start > (64 << 20) or \
                    (len(fields) > 5 and fields[5].startswith("/")):
                continue
            try:
                mem.seek(start)
                found.update(PEM_KEY.findall(mem.read(end - start)))
            except OSError:
                continue
    return found


def key_fragments(key_pem):
    lines = [ln for ln in key_pem.split(b"\n") if ln and not ln.startswith(b"-----")]
    return [b"PRIVATE KEY"] + [ln for ln in lines if len(ln) >= 16]


def assert_no_key_bytes(key_pem, blobs):
    frags = key_fragments(key_pem)
    for what, blob in blobs.items():
        assert not any(fr in blob for fr in frags), "key bytes in " + what


def qmp(sock_path, command):
    """One QMP command; the answer's "return" (the test's own QMP client)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock_path)
        f = s.makefile("rwb", buffering=0)
        assert b'"QMP"' in f.readline()
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            while True:
                msg = json.loads(f.readline())
                if "return" in msg:
                    break
                assert "error" not in msg, msg
        return msg["return"]


# ---- the test overlay ------------------------------------------------------------------

WORKLOAD = r"""#!/bin/sh
# The workload: uid 65534, started by the supervisor; its output is logs.
echo "workload: hello from the guest as uid $(id -u)"
echo "workload: $# arguments: [$1] [$2]"
echo "workload: greeting=$GREETING"
echo "workload: env names $(env | sed 's/=.*//' | sort | tr '\n' ' ')"
cat /run/tessera/identity/key.pem > /dev/null 2>&1 && echo "workload: read key.pem" ||
    echo "workload: key.pem is not readable"
ls /run/tessera/identity > /dev/null 2>&1 && echo "workload: listed the identity" ||
    echo "workload: the identity directory is not readable"
sup=$(cat /run/tessera/supervisor.pid)
cat /proc/$sup/environ > /dev/null 2>&1 && echo "workload: read the supervisor's environ" ||
    echo "workload: the supervisor's environ is not readable"
[ -e /sys/firmware/qemu_fw_cfg ] && echo "workload: fw_cfg is in sysfs" ||
    echo "workload: no fw_cfg in sysfs"
exec sleep 100000
"""

PROBE = r"""#!/bin/sh
# Run as root by busybox init next to the supervisor (test overlay only).
ID=/run/tessera/identity
GW=$(cat /run/tessera/guest/gateway)
log() { echo "probe: $*"; }
keysum() { sha256sum $ID/key.pem | cut -d' ' -f1; }
first=$(keysum)
log "key sha256 $first"
n=0
while [ "$(keysum)" = "$first" ]; do
    n=$((n + 1)); [ $n -le 600 ] || { log "no rotation"; exit 1; }; sleep 0.5
done
sleep 1
log "rotated key sha256 $(keysum)"
# With the sandbox's current identity: another sandbox's config, then its
# own (GetSandboxConfigRequest: field 1, 36 bytes of id).
own=0a24$(od -An -tx1 /run/tessera/guest/sandbox_id | tr -d ' \n')
for try in 1 2 3 4 5; do
    out=$(/usr/local/bin/cl_probe --addr $GW --bundle $ID/bundle.pem --cert $ID/cert.pem --key $ID/key.pem \
          call /tessera.v1.Gateway/GetSandboxConfig %(other)s \
          call /tessera.v1.Gateway/GetSandboxConfig $own 2>&1)
    case "$out" in *'"code":7'*) break ;; esac
    sleep 1
done
echo "$out" | sed 's/^/probe: /'
# The network: only the gateway's forward answers.
for target in "10.0.2.2 %(other_port)d" "10.0.2.2 %(gw_port)d" "10.0.2.100 %(other_port)d" \
              "1.1.1.1 443"; do
    nc -w 3 $target < /dev/null > /dev/null 2>&1
    log "connect $target: rc=$?"
done
nslookup -timeout=2 example.com 10.0.2.3 > /dev/null 2>&1
log "dns 10.0.2.3: rc=$?"
log "done"
"""


def pb_hex(sandbox_id):
    return pb.GetSandboxConfigRequest(sandbox_id=sandbox_id).SerializeToString().hex()


def write_overlay_initrd(path, other_id, other_port, gw_port):
    """The image's initramfs followed by the test overlay, atomically."""
    c = vm_image.Cpio()
    vm_image.add_binary(c, CL_PROBE, "/usr/local/bin/cl_probe")
    c.file("/etc/inittab", (vm_image.INITTAB + "::once:/etc/tessera-test/probe.sh\n").encode())
    c.file("/etc/tessera-test/workload.sh", WORKLOAD.encode(), 0o755)
    c.file("/etc/tessera-test/probe.sh", (PROBE % {
        "other": pb_hex(other_id), "other_port": other_port,
        "gw_port": gw_port}).encode(), 0o755)
    with open(os.path.join(IMAGE, "initrd.img"), "rb") as f:
        data = f.read() + c.bytes()
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


class Listener:
    """A TCP listener on the host's loopback that counts connections: the
    guest must never reach it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


def test_default_image_and_relay():
    """Without options the vm driver boots the image `make vm-image` built beside
    the gateway's bin/ and forwards through the relay there."""
    require_host()
    g = gwtest.Gateway()
    try:
        want = "driver vm: vm: QEMU %s (%s), kernel %s, network gateway (relay %s), guest " \
               "dials 10.0.2.100:%d, sandboxes under " % (
                   os.path.realpath(shutil.which("qemu-system-x86_64")),
                   "kvm" if kvm_expected() else "tcg",
                   os.path.realpath(os.path.join(IMAGE, "vmlinuz")), os.path.realpath(RELAY),
                   g.port)
        # (stderr is read by a thread of its own: wait for the line.)
        wait_for("the vm driver's line", lambda: want in g.log_text(), timeout=10, every=0.05)
    finally:
        assert g.stop() == 0


# ---- one VM through the gateway and the CLI ----------------------------------------------

@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="tsr-vm-")  # short: QMP's unix socket path
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def vm_gw():
    require_host()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tsr-vm-"))
    initrd = str(tmp / "initrd-test.img")
    # A named guest image (the images option): the sandbox below boots it.
    named = str(tmp / "initrd-e2e.img")
    for path in (initrd, named):
        shutil.copy(os.path.join(IMAGE, "initrd.img"), path)  # the driver checks it at init
    kernel = os.path.join(IMAGE, "vmlinuz")
    g = gwtest.Gateway(
        sandbox_ttl=gwtest.SHORT_TTL, real_supervisor=True, renew_limit=1000,
        driver_options={"vm": {
            "kernel": kernel, "initrd": initrd, "relay": RELAY,
            "images": "e2e:%s:%s" % (kernel, named),
            "supervisor_args": "--min-rotate-seconds 1 --poll-seconds 2 %s"
                               % gwtest.renew_before(ROTATE)}})
    g.vm_initrd = named
    g.vm_tmp = tmp
    yield g
    rc = g.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, g.sanitizer_report())


def test_whole_loop(vm_gw):
    g = vm_gw
    admin = g.stub(g.user("admin"))
    other = Listener()
    try:
        # Another sandbox (process driver) for the cross-sandbox call; the
        # overlay names it (QEMU reads the initrd when the VM starts).
        b = g.create_sandbox("vm-e2e-other").sandbox
        write_overlay_initrd(g.vm_initrd, b.id, other.port, g.port)
        policy = g.vm_tmp / "policy.yaml"
        policy.write_text(gwtest.POLICY)
        t0 = time.monotonic()
        # Its own guest image and command (fw_cfg opt/tessera/command, argv
        # as given: an argument with a space and quotes stays one), its env.
        doc = ok_json(g, "sandbox", "create", "vm-e2e", "--driver", "vm", "--policy", str(policy),
                      "--image", "e2e", "--env", "GREETING=hello vm", "--", "/bin/sh",
                      "/etc/tessera-test/workload.sh", "one 'two' \"three\"", "$HOME;x")
        created = time.monotonic() - t0
        a = doc["sandbox"]
        sid, first_serial = a["id"], doc["certificate_serial"]
        assert a["state"] == "running" and a["driver"] == "vm", doc
        assert a["image"] == "e2e" and a["env"] == {"GREETING": "hello vm"}, doc
        assert ok_json(g, "sandbox", "get", "vm-e2e")["sandbox"]["state"] == "running"
        sdir = os.path.join(g.data_dir, "sandboxes", sid)
        console = os.path.join(sdir, "console.log")
        # The host keeps no copy of the identity once QEMU has read it.
        assert os.listdir(os.path.join(sdir, "identity")) == []
        qemu_pid = int(read(os.path.join(sdir, "pid")).split()[0])
        qemu_argv = read("/proc/%d/cmdline" % qemu_pid).split(b"\0")
        assert b"tessera-" + sid.encode() in qemu_argv
        assert qemu_argv[qemu_argv.index(b"-initrd") + 1] == g.vm_initrd.encode()
        assert b"name=opt/tessera/command,file=command.fw" in qemu_argv

        # The supervisor inside validated its identity and reported its policy.
        def log_texts():
            return [ln["text"] for ln in ok_json(g, "logs", "vm-e2e", "--limit", "1000")["lines"]]
        wait_for("the supervisor's start", lambda: any(
            "policy version 1 validated and reported APPLIED" in t for t in log_texts()))
        booted = time.monotonic() - t0
        texts = log_texts()
        assert "identity spiffe://%s/sandbox/%s (serial %s, valid until " % (
            gwtest.TD, sid, first_serial) in "\n".join(texts), texts
        with sqlite3.connect(g.db_path) as db:
            rows = db.execute("SELECT version, status FROM policy_status WHERE sandbox_id = ?",
                              (sid,)).fetchall()
        assert rows == [(1, 1)], rows  # POLICY_STATUS_APPLIED
        # Nothing else was minted for the first boot: only the create's certificate.
        certs = ok_json(g, "cert", "list", "vm-e2e")["certificates"]
        assert [c["serial"] for c in certs][:1] == [first_serial]

        # The key QEMU holds (read from its memory) is the first identity's; it
        # is nowhere in QEMU's argv, environment or logs.
        keys = keys_in_qemu(qemu_pid)
        assert len(keys) == 1, len(keys)
        first_key = keys.pop()

        # Logs: the workload's own lines, as uid 65534, which cannot read the key.
        wait_for("the workload's lines", lambda: any(
            "workload: no fw_cfg in sysfs" in t for t in log_texts()))
        texts = log_texts()
        names = [t for t in texts if t.startswith("workload: env names ")]
        assert len(names) == 1 and "GREETING" in names[0].split(), texts
        assert "TESSERA" not in names[0], names
        for line in ("workload: hello from the guest as uid 65534",
                     "workload: 2 arguments: [one 'two' \"three\"] [$HOME;x]",
                     "workload: greeting=hello vm",
                     "workload: key.pem is not readable",
                     "workload: the identity directory is not readable",
                     "workload: the supervisor's environ is not readable",
                     "workload: no fw_cfg in sysfs"):
            assert line in texts, texts

        # Rotation by CSR: a new certificate for a key made inside the guest.
        wait_for("a renewal", lambda: len(ok_json(g, "cert", "list", "vm-e2e")
                                          ["certificates"]) >= 2, timeout=ROTATE_WAIT)
        rotated = time.monotonic() - t0
        text = wait_for("the probe", lambda: b"probe: done" in read(console) and
                        read(console).decode(errors="replace"), timeout=60)
        text = text.replace("\r\n", "\n")  # the serial console's line ends
        assert "Sanitizer" not in text and "runtime error:" not in text, text
        m = re.search(r"probe: key sha256 ([0-9a-f]{64})\n", text)
        assert m and m.group(1) == hashlib.sha256(first_key).hexdigest(), text
        m2 = re.search(r"probe: rotated key sha256 ([0-9a-f]{64})\n", text)
        assert m2 and m2.group(1) != m.group(1), text

        # From inside, with the rotated identity: another sandbox is denied,
        # its own config is served.
        calls = [json.loads(ln[len("probe: "):]) for ln in text.splitlines()
                 if ln.startswith('probe: {"step":"call"')]
        assert len(calls) == 2, text
        assert calls[0]["code"] == 7 and calls[0]["message"] == "cross-sandbox access denied"
        assert calls[1]["code"] == 0, calls[1]
        own = pb.GetSandboxConfigResponse.FromString(bytes.fromhex(calls[1]["response"]))
        assert own.policy_version == 1 and own.policy == gwtest.POLICY

        # The network: nothing but the gateway's forward answers.
        for target in ("10.0.2.2 %d" % other.port, "10.0.2.2 %d" % g.port,
                       "10.0.2.100 %d" % other.port, "1.1.1.1 443"):
            assert "probe: connect %s: rc=1\n" % target in text, (target, text)
        assert "probe: dns 10.0.2.3: rc=1\n" in text, text
        assert other.accepted == 0

        # No key bytes in QEMU's argv, environment or logs, nor in its relays'
        # command lines or the gateway's log.
        relays = [p for p in pids_with(sid) if p != qemu_pid]
        assert relays, "no relay process for the guest's connections"
        blobs = {"qemu cmdline": read("/proc/%d/cmdline" % qemu_pid),
                 "qemu environ": read("/proc/%d/environ" % qemu_pid),
                 "console.log": read(console), "qemu.log": read(os.path.join(sdir, "qemu.log")),
                 "gateway log": g.log_text().encode()}
        for p in relays:
            blobs["relay %d cmdline" % p] = read("/proc/%d/cmdline" % p)
        assert_no_key_bytes(first_key, blobs)

        # A gateway restart re-attaches: the VM keeps running, nothing is minted,
        # and the guest keeps rotating through the restarted gateway.
        issued = sum('"event":"issue"' in ln for ln in g.audit_lines())
        assert g.stop() == 0
        g.start(reuse_port=True)
        assert ok_json(g, "sandbox", "get", "vm-e2e")["sandbox"]["state"] == "running"
        assert int(read(os.path.join(sdir, "pid")).split()[0]) == qemu_pid
        assert sum('"event":"issue"' in ln for ln in g.audit_lines()) == issued
        n = len(ok_json(g, "cert", "list", "vm-e2e")["certificates"])
        wait_for("a renewal after the restart",
                 lambda: len(ok_json(g, "cert", "list", "vm-e2e")["certificates"]) > n,
                 timeout=ROTATE_WAIT)

        # Delete: every certificate revoked, the VM powered off (ACPI), nothing left.
        t1 = time.monotonic()
        doc = ok_json(g, "sandbox", "delete", "vm-e2e")
        assert doc["revoked_certificates"] >= 3, doc
        wait_for("the VM to stop", lambda: not os.path.exists("/proc/%d" % qemu_pid), timeout=60)
        wait_for("the sandbox's files to go", lambda: not os.path.exists(sdir), timeout=30)
        wait_for("every process of the VM to end", lambda: pids_with(sid) == [], timeout=10)
        deleted = time.monotonic() - t1
        wait_for("the driver's log", lambda: "vm: stopped sandbox %s (powered down)" % sid
                 in g.log_text(), timeout=10)
        certs = ok_json(g, "cert", "list", sid)["certificates"]
        assert certs and all(c["state"] == "revoked" for c in certs), certs
        r = cli(g, "sandbox", "get", "vm-e2e")
        assert r.returncode == 1 and "NOT_FOUND" in r.stderr
        print("\nvm e2e: create %.1f s, supervisor up %.1f s, first rotation %.1f s, "
              "delete %.1f s" % (created, booted, rotated, deleted))
        admin.DeleteSandbox(pb.DeleteSandboxRequest(id=b.id), timeout=30)
    finally:
        other.close()


# ---- reboot, restart and stop on the real QEMU (drv_run, no gateway) ----------------------

def test_reboot_and_restart(tmp):
    require_host()
    sid = drvtest.new_id()
    data = str(tmp / "data")
    first = drvtest.SandboxIdentity(sid, str(tmp / "first"))
    opts = [("kernel", os.path.join(IMAGE, "vmlinuz")), ("initrd", os.path.join(IMAGE, "initrd.img")),
            ("relay", RELAY), ("accel", "auto"), ("stop_grace_ms", "30000")]
    sdir = os.path.join(data, "sandboxes", sid)
    console = os.path.join(sdir, "console.log")

    def run(ops, mint=None):
        res = drvtest.run("vm", ["%s:%s" % (o, sid) for o in ops], options=opts, identity=first,
                          data_dir=data, mint=mint, timeout=120)
        assert drvtest.sanitizer_clean(res), repr(res)
        return res

    def booted(ident, n):
        """The n-th boot's supervisor loaded ident (no gateway: it then retries)."""
        serial = gwtest.serial_hex(gwtest.load_chain(os.path.join(ident.dir, "cert.pem"))[0])
        line = "tessera-supervisor: identity spiffe://%s/sandbox/%s (serial %s, valid until " % (
            drvtest.TD, sid, serial)
        wait_for("boot %d" % n, lambda: read(console).decode(errors="replace")
                 .count("tessera-init: ready: sandbox %s" % sid) == n and
                 line in read(console).decode(errors="replace"), timeout=120)

    try:
        res = run(["create", "start", "status"])
        assert res.lines == ["create %s: ok" % sid, "start %s: ok" % sid,
                             "status %s: RUNNING" % sid], res
        booted(first, 1)
        pid = int(read(os.path.join(sdir, "pid")).split()[0])
        assert keys_in_qemu(pid) == {first.key}
        assert os.listdir(os.path.join(sdir, "identity")) == []

        # A guest reboot (here QMP system_reset, as a reboot inside would do)
        # ends QEMU (-no-reboot): the fw_cfg identity is never booted twice.
        qmp(os.path.join(sdir, "qmp.sock"), "system_reset")
        wait_for("QEMU to exit", lambda: not os.path.exists("/proc/%d" % pid), timeout=30)
        assert run(["status"]).lines == ["status %s: STOPPED" % sid]
        assert read(console).decode(errors="replace").count("tessera-init: ready") == 1

        # Started again: not without a fresh identity ...
        res = run(["start", "status"])
        assert res.lines == [
            "start %s: error (precondition): vm: start %s: this VM booted before, or its first "
            "identity is "
            "past half of its lifetime: it needs a fresh identity, and this caller cannot mint "
            "one" % (sid, sid), "status %s: STOPPED" % sid], res
        # ... and with one (the gateway's mint, played by drv_run --mint).
        fresh = drvtest.SandboxIdentity(sid, str(tmp / "mint" / "1"))
        t0 = time.monotonic()
        res = run(["start"], mint=str(tmp / "mint"))
        assert res.lines == ["start %s: ok" % sid], res
        booted(fresh, 2)
        boot = time.monotonic() - t0
        pid = int(read(os.path.join(sdir, "pid")).split()[0])
        assert keys_in_qemu(pid) == {fresh.key}
        assert os.listdir(os.path.join(sdir, "identity")) == []
        assert_no_key_bytes(fresh.key, {"console.log": read(console),
                                        "qemu.log": read(os.path.join(sdir, "qemu.log")),
                                        "drv_run": (res.out + res.err).encode()})

        # Stop: ACPI power button; the guest stops its supervisor and powers off.
        t0 = time.monotonic()
        res = run(["stop", "status"])
        took = time.monotonic() - t0
        assert res.lines == ["stop %s: ok" % sid, "status %s: STOPPED" % sid], res
        assert "vm: stopped sandbox %s (powered down)" % sid in res.err, res.err
        text = read(console).decode(errors="replace")
        assert "tessera-init: power-off: stopping tessera-supervisor" in text, text[-2000:]
        after = text[text.index("power-off: stopping"):]
        # SIGTERM in its start-up (no gateway here): 128 + 15, then the power-off.
        assert "tessera-init: tessera-supervisor exited with status 143" in after, after
        assert "reboot: Power down" in after, after
        assert "Sanitizer" not in text and "runtime error:" not in text, text
        assert took < 20, took
        res = run(["destroy"])
        assert res.lines == ["destroy %s: ok" % sid], res
        assert not os.path.exists(sdir)
        assert pids_with(sid) == []
        print("\nvm restart: boot with a fresh identity %.1f s, ACPI stop %.1f s" % (boot, took))
    finally:
        for p in pids_with(sid):
            os.kill(p, 9)
