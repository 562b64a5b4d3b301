"""The vm driver (build/drivers/vm.so via tests/bin/drv_run) against
tests/integration/fake_qemu.py, a test double for the QEMU binary that checks
its command line, reads the fw_cfg files, writes the pid file and answers
QMP: the fast lifecycle tests. The driver is real. The argv itself is
unit-tested in tests/unit/test_drv_vm.c; a real QEMU boots a real guest in
test_vm_e2e.py."""
import datetime
import hashlib
import os
import shutil
import tempfile
import time

import pytest

import drvtest
import gwtest

FAKE_QEMU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_qemu.py")
RELAY = os.path.join(drvtest.BUILD, "bin", "tessera-vm-relay")


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="tsr-vm-")
    sid = drvtest.new_id()
    kernel = os.path.join(d, "vmlinuz")
    with open(kernel, "wb") as f:
        f.write(b"not really a kernel\n")
    e = {"dir": d, "data": os.path.join(d, "data"), "id": sid, "kernel": kernel,
         "ident": drvtest.SandboxIdentity(sid, os.path.join(d, "identity"))}
    yield e
    # Whatever a failed test left running.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if sid.encode() in f.read():
                        os.kill(int(pid), 9)
            except OSError:
                pass
    shutil.rmtree(d, ignore_errors=True)


def run(e, ops, extra=(), qemu=FAKE_QEMU, mint=None, command=()):
    opts = dict([("qemu", qemu), ("kernel", e["kernel"]), ("relay", RELAY), ("accel", "tcg"),
                 ("stop_grace_ms", "3000"), ("start_check_ms", "300")])
    opts.update(dict(extra))
    res = drvtest.run("vm", ["%s:%s" % (o, e["id"]) for o in ops], options=list(opts.items()),
                      identity=e["ident"], data_dir=e["data"], gateway="127.0.0.1:8443",
                      mint=mint, command=command)
    assert drvtest.sanitizer_clean(res), repr(res)
    return res


def sbpath(e, *parts):
    return os.path.join(e["data"], "sandboxes", e["id"], *parts)


def wait_for(path, text, n=1, timeout=10):
    deadline = time.time() + timeout
    while True:
        try:
            with open(path) as f:
                content = f.read()
        except FileNotFoundError:
            content = ""
        if content.count(text) >= n:
            return content
        assert time.time() < deadline, "no %r (x%d) in %s:\n%s" % (text, n, path, content)
        time.sleep(0.02)


def live_pids(sid):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if sid.encode() in cmd:
            out.append(int(pid))
    return out


# ---- failures first --------------------------------------------------------------------

def identity_files(e):
    try:
        return sorted(os.listdir(sbpath(e, "identity")))
    except FileNotFoundError:
        return None


def fw_cfg_lines(ident):
    """What fake_qemu logs for the three identity files it read."""
    return ["fw_cfg opt/tessera/%s file=identity/%s mode=0600 bytes=%d sha256=%s" % (
        name, name, len(data), hashlib.sha256(data).hexdigest())
        for name, data in (("cert.pem", ident.cert), ("key.pem", ident.key),
                           ("bundle.pem", ident.bundle))]


def mint_dir(e, *idents):
    """drv_run --mint: the n-th mint hands out <dir>/<n>/."""
    d = os.path.join(e["dir"], "mint-%s" % drvtest.new_id())
    os.makedirs(d)
    for n, ident in enumerate(idents, start=1):
        os.rename(ident.dir, os.path.join(d, str(n)))
        ident.dir = os.path.join(d, str(n))
    return d


def test_init_refuses(env):
    """Each bad option stops init with its own reason."""
    spaced = os.path.join(env["dir"], "my relay")
    shutil.copy(RELAY, spaced)
    k, r = ("kernel", env["kernel"]), ("relay", RELAY)
    bad = [
        ([], "option kernel is required"),
        ([("kernel", "/nonexistent/vmlinuz")], "kernel /nonexistent/vmlinuz: No such file"),
        ([("kernel", "relative/vmlinuz")], "kernel must be an absolute path"),
        ([("kernel", env["dir"])], "is not a readable file"),
        ([k, ("initrd", "/nonexistent/initrd.img")], "initrd /nonexistent/initrd.img: No such"),
        ([k, r, ("memory_mb", "32")], "option memory_mb: 32 is outside [64, 262144]"),
        ([k, r, ("memory_mb", "lots")], "option memory_mb: \"lots\" is not a number"),
        ([k, r, ("cpus", "0")], "option cpus: 0 is outside [1, 64]"),
        ([k, r, ("cpus", "65")], "option cpus: 65 is outside [1, 64]"),
        ([k, r, ("accel", "kvm; rm")], "option accel: auto, kvm or tcg"),
        ([k, r, ("accel", "hvf")], "option accel: auto, kvm or tcg"),
        ([k, ("network", "bridge")], "option network: gateway, user or none"),
        ([k, r, ("qemu_sandbox", "maybe")], "option qemu_sandbox: on or off"),
        ([k, ("append", "tessera.key=/run/identity/key.pem")], "must not name identity files"),
        ([k, ("append", "x" * 1000)], "option append is too long"),
        ([k, r, ("gateway", "nohost")], "gateway address must be HOST:PORT"),
        ([k, r, ("gateway", "gw\"x:8443")], "gateway address must be HOST:PORT"),
        ([k, ("bogus", "1")], "unknown option \"bogus\""),
        ([k, r, ("stop_grace_ms", "600001")], "option stop_grace_ms: 600001 is outside"),
        ([k, ("relay", "/nonexistent/tessera-vm-relay")], "relay /nonexistent/tessera-vm-relay"),
        ([k, ("relay", "bin/tessera-vm-relay")], "relay must be an absolute path"),
        ([k, ("relay", spaced)], "only letters, digits and / . _ + -"),
        # Next to the running program (drv_run) there is no relay.
        ([k], "relay %s/tessera-vm-relay: No such file" % os.path.dirname(drvtest.DRV_RUN)),
        ([k, r, ("supervisor_args", " ".join(["-x"] * 33))], "more than 32 arguments"),
    ]
    for extra, why in bad:
        opts = [("qemu", FAKE_QEMU)] + extra
        if not any(o == "accel" for o, _ in extra):
            opts.append(("accel", "tcg"))
        res = drvtest.run("vm", ["status:" + env["id"]], options=opts, data_dir=env["data"])
        assert res.rc == 1 and "init: error: vm: init: " in res.out, (extra, res)
        assert why in res.out, (extra, why, res.out)


def test_qemu_not_installed(env):
    """The default binary is looked up in PATH; without QEMU, init fails clearly."""
    res = drvtest.run("vm", ["status:" + env["id"]],
                      options=[("kernel", env["kernel"]), ("relay", RELAY)],
                      data_dir=env["data"], env={"PATH": env["dir"]})
    assert res.rc == 1
    assert "init: error: vm: init: qemu: qemu-system-x86_64 not found in PATH" in res.out, res


def kvm_expected():
    """What accel auto must choose here: kvm only when /dev/kvm opens, creates a
    VM and the CPU shows vmx or svm (the driver's rule, docs/drivers.md)."""
    import fcntl
    try:
        flags = [ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")][0].split()
    except (OSError, IndexError):
        return False
    if "vmx" not in flags and "svm" not in flags:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    try:
        vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
        os.close(vm)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def test_accel_auto(env):
    res = run(env, ["create", "start", "destroy"], [("accel", "auto")])
    assert res.rc == 0, res
    want = "kvm" if kvm_expected() else "tcg"
    assert "QEMU %s (%s)" % (os.path.realpath(FAKE_QEMU), want) in res.err, res.err
    if want == "tcg":
        assert "KVM is not usable (" in res.err and "): using TCG" in res.err, res.err
    assert "started sandbox %s (QEMU pid " % env["id"] in res.err
    assert ", %s)" % want in res.err


def test_qemu_that_cannot_run(env):
    bogus = os.path.join(env["dir"], "qemu-bogus")
    with open(bogus, "wb") as f:
        f.write(b"\x7fELF but not really\n")
    os.chmod(bogus, 0o755)
    res = run(env, ["create", "start", "status", "destroy"], qemu=bogus)
    assert res.rc == 1
    assert "start %s: error: vm: start %s: exec %s: " % (env["id"], env["id"], bogus) in res.out
    assert "status %s: CREATED" % env["id"] in res.out
    assert "destroy %s: ok" % env["id"] in res.out


# What fake_qemu.py prints when it exits at start (a QEMU refusing an option).
FAKE_EXIT_AT_ONCE = ("qemu-system-x86_64: -accel kvm: failed to initialize kvm: No such file or "
                     "directory")


def test_qemu_exits_at_once(env):
    """QEMU refusing its configuration exits at start: reported, not RUNNING,
    and the identity it may have read is gone from the host."""
    res = run(env, ["create", "start", "status"], [("append", "fake.exit_at_once")])
    assert "start %s: error (precondition): vm: start %s: QEMU exited at once (%s: %s)\n" % (
        env["id"], env["id"], sbpath(env, "qemu.log"), FAKE_EXIT_AT_ONCE) in res.out, res
    assert "status %s: CREATED" % env["id"] in res.out
    assert identity_files(env) == []
    res = run(env, ["destroy"])
    assert res.lines == ["destroy %s: ok" % env["id"]], res


# ---- lifecycle ----------------------------------------------------------------------------

def test_lifecycle(env):
    sid, ident = env["id"], env["ident"]
    res = run(env, ["create", "status"], command=["/bin/sh", "-c", "echo 'a b'"])
    assert res.rc == 0, res
    assert res.lines == ["create %s: ok" % sid, "status %s: CREATED" % sid]
    assert os.stat(sbpath(env)).st_mode & 0o7777 == 0o700
    assert os.stat(sbpath(env, "identity")).st_mode & 0o7777 == 0o700
    for name, data in (("cert.pem", ident.cert), ("key.pem", ident.key),
                       ("bundle.pem", ident.bundle)):
        st = os.stat(sbpath(env, "identity", name))
        assert st.st_mode & 0o7777 == 0o600, name
        with open(sbpath(env, "identity", name), "rb") as f:
            assert f.read() == data, name

    res = run(env, ["start", "status"])
    assert res.rc == 0, res
    assert res.lines == ["start %s: ok" % sid, "status %s: RUNNING" % sid]
    log = wait_for(sbpath(env, "qemu.log"), "ready")
    # QEMU read the identity from the 0600 files, by relative path ...
    for line in fw_cfg_lines(ident):
        assert line + "\n" in log, log
    # ... and the host keeps no copy once QEMU answered on QMP.
    assert identity_files(env) == []
    assert "qmp query-status" in log
    assert "fw_cfg opt/tessera/gateway string=10.0.2.100:8443" in log
    assert "fw_cfg opt/tessera/trust_domain string=%s" % drvtest.TD in log
    assert "fw_cfg opt/tessera/sandbox_id string=%s" % sid in log
    # The workload, encoded for the guest's init (one line per argument).
    workload = b"/bin/sh\n\\055c\necho\\040\\047a\\040b\\047\n"
    assert ("fw_cfg opt/tessera/command file=command.fw mode=0600 bytes=%d sha256=%s\n" % (
        len(workload), hashlib.sha256(workload).hexdigest())) in log, log
    assert "append=console=ttyS0 panic=-1\n" in log
    assert "accel=tcg sandbox=on,obsolete=deny,elevateprivileges=allow,spawn=allow," \
        "resourcecontrol=deny\n" in log
    assert ("netdev=user,id=net0,ipv6=off,restrict=on,guestfwd=tcp:10.0.2.100:8443-cmd:"
            "%s 127.0.0.1:8443 %s\n" % (os.path.realpath(RELAY), sid)) in log
    assert "devices=virtio-net-pci,netdev=net0,romfile= virtio-rng-pci\n" in log
    assert "cwd=%s\n" % sbpath(env) in log
    assert "env=PATH\n" in log
    assert "fake guest: booting" in open(sbpath(env, "console.log")).read()
    # No key bytes in the command line or environment of QEMU; no new privileges.
    pids = live_pids(sid)
    assert len(pids) == 1, pids
    frags = ident.key_fragments()
    for what in ("cmdline", "environ"):
        with open("/proc/%d/%s" % (pids[0], what), "rb") as f:
            blob = f.read()
        assert not any(fr in blob for fr in frags), what
    with open("/proc/%d/status" % pids[0]) as f:
        assert "NoNewPrivs:\t1\n" in f.read()
    # The kernel command line names no identity file either.
    with open("/proc/%d/cmdline" % pids[0], "rb") as f:
        argv = f.read().split(b"\0")
    append = argv[argv.index(b"-append") + 1]
    assert b"pem" not in append and b"identity" not in append and b"key" not in append

    # A second gateway (a new drv_run process) sees it running, starts nothing.
    with open(sbpath(env, "pid")) as f:
        pid_before = f.read()
    res = run(env, ["status", "start", "status"])
    assert res.lines == ["status %s: RUNNING" % sid, "start %s: ok" % sid,
                         "status %s: RUNNING" % sid], res
    with open(sbpath(env, "pid")) as f:
        assert f.read() == pid_before
    assert live_pids(sid) == pids

    # stop: ACPI power-down through QMP; the guest halts well within the grace.
    t0 = time.time()
    res = run(env, ["stop", "status", "detail"])
    assert res.lines == ["stop %s: ok" % sid, "status %s: STOPPED" % sid,
                         # How it ended, from this boot's console: tessera-init's
                         # lines only, the supervisor's status from its last.
                         "detail %s: STOPPED exit 143" % sid,
                         "detail | tessera-init: power-off: stopping tessera-supervisor",
                         "detail | tessera-init: tessera-supervisor exited with status 143"], res
    assert time.time() - t0 < 2.5
    log = open(sbpath(env, "qemu.log")).read()
    assert "qmp qmp_capabilities" in log and "qmp system_powerdown" in log
    assert "fake guest: powered off" in log
    assert "powered down" in res.err
    assert live_pids(sid) == []

    # Started again, the VM never gets its first identity back: without a
    # mint it does not start; the gateway's mint hands out a fresh one.
    res = run(env, ["start", "status"])
    assert res.lines == [
        "start %s: error (precondition): vm: start %s: this VM booted before, or its first "
        "identity is "
        "past half of its lifetime: it needs a fresh identity, and this caller cannot mint "
        "one" % (sid, sid),
        "status %s: STOPPED" % sid], res
    wrong = drvtest.SandboxIdentity(drvtest.new_id(), os.path.join(env["dir"], "wrong"))
    fresh = drvtest.SandboxIdentity(sid, os.path.join(env["dir"], "fresh"))
    # A minted identity for another sandbox is refused and nothing of it stays.
    mint = mint_dir(env, wrong)
    res = run(env, ["start", "status"], mint=mint)
    assert res.lines[0].startswith("start %s: error: vm: start %s: certificate's URI SAN is "
                                   "not exactly spiffe://" % (sid, sid)), res
    assert res.lines[1] == "status %s: STOPPED" % sid
    assert identity_files(env) == []
    assert "log: mint %s: %s/1" % (sid, mint) in res.err
    mint = mint_dir(env, fresh)
    res = run(env, ["start", "status"], mint=mint)
    assert res.lines == ["start %s: ok" % sid, "status %s: RUNNING" % sid], res
    assert "log: mint %s: %s/1" % (sid, mint) in res.err
    assert "a fresh identity from the gateway for this boot" in res.err
    log = wait_for(sbpath(env, "qemu.log"), "ready", 2)
    second_boot = log[log.rindex("argc="):]
    for line in fw_cfg_lines(fresh):
        assert line + "\n" in second_boot, second_boot
    assert identity_files(env) == []
    # The gateway refusing to mint (here: none left) stops the start.
    mint = mint_dir(env)
    res = run(env, ["stop", "start", "status"], mint=mint)
    assert res.lines == ["stop %s: ok" % sid,
                         "start %s: error (precondition): vm: start %s: the gateway minted "
                         "no identity: no "
                         "identity left in %s" % (sid, sid, mint),
                         "status %s: STOPPED" % sid], res

    # Start again, then destroy the running VM: everything goes.
    fresh2 = drvtest.SandboxIdentity(sid, os.path.join(env["dir"], "fresh2"))
    res = run(env, ["start", "status"], mint=mint_dir(env, fresh2))
    assert res.lines == ["start %s: ok" % sid, "status %s: RUNNING" % sid], res
    wait_for(sbpath(env, "qemu.log"), "ready", 3)
    res = run(env, ["destroy", "status", "destroy"])
    assert res.lines == ["destroy %s: ok" % sid, "status %s: UNKNOWN" % sid,
                         "destroy %s: ok" % sid], res
    assert not os.path.exists(sbpath(env))
    assert live_pids(sid) == []
    assert not any(fr.decode() in res.err for fr in frags)


def test_old_first_identity_is_not_booted(env):
    """An identity placed at create past half of its lifetime (issued 9 min
    ago, 1 min left) is replaced by a fresh one before the first boot, or the
    VM does not start."""
    sid = env["id"]
    now = gwtest.now()
    env["ident"] = drvtest.SandboxIdentity(
        sid, os.path.join(env["dir"], "old"), not_before=now - datetime.timedelta(minutes=10),
        not_after=now + datetime.timedelta(minutes=1))
    res = run(env, ["create", "start", "status"])
    assert res.lines == ["create %s: ok" % sid,
                         "start %s: error (precondition): vm: start %s: this VM booted before, or its first "
                         "identity is past half of its lifetime: it needs a fresh identity, and "
                         "this caller cannot mint one" % (sid, sid),
                         "status %s: CREATED" % sid], res
    assert identity_files(env) == []
    fresh = drvtest.SandboxIdentity(sid, os.path.join(env["dir"], "fresh"))
    res = run(env, ["start", "destroy"], mint=mint_dir(env, fresh))
    assert res.lines == ["start %s: ok" % sid, "destroy %s: ok" % sid], res
    log = res.err
    assert "a fresh identity from the gateway for this boot" in log


def test_stop_without_acpi_falls_back_to_sigterm(env):
    sid = env["id"]
    extra = [("append", "fake.ignore_powerdown"), ("stop_grace_ms", "300")]
    res = run(env, ["create", "start"], extra)
    assert res.rc == 0, res
    wait_for(sbpath(env, "qemu.log"), "ready")
    t0 = time.time()
    res = run(env, ["stop", "status", "destroy"], extra)
    took = time.time() - t0
    assert res.lines == ["stop %s: ok" % sid, "status %s: STOPPED" % sid,
                         "destroy %s: ok" % sid], res
    assert 0.3 <= took < 5, took
    assert "terminated after the grace period" in res.err


def test_stop_without_qmp_terminates(env):
    """QMP socket gone (or QEMU wedged): stop still ends QEMU."""
    sid = env["id"]
    res = run(env, ["create", "start"])
    assert res.rc == 0, res
    wait_for(sbpath(env, "qemu.log"), "ready")
    os.unlink(sbpath(env, "qmp.sock"))
    res = run(env, ["stop", "status", "destroy"])
    assert res.lines == ["stop %s: ok" % sid, "status %s: STOPPED" % sid,
                         "destroy %s: ok" % sid], res
    assert "QMP: connect" in res.err
