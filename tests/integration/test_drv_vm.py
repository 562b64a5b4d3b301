"""The vm driver (build/drivers/vm.so via tests/bin/drv_run). QEMU is not
installed here: the lifecycle runs against tests/integration/fake_qemu.py, a
test double for the QEMU binary that checks its command line, reads the
fw_cfg files, writes the pid file and answers QMP. The driver is real. The
argv itself is unit-tested in tests/unit/test_drv_vm.c."""
import hashlib
import os
import shutil
import tempfile
import time

import pytest

import drvtest

FAKE_QEMU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_qemu.py")


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="tsr-vm-", dir="/tmp")
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


def run(e, ops, extra=(), qemu=FAKE_QEMU):
    opts = dict([("qemu", qemu), ("kernel", e["kernel"]), ("stop_grace_ms", "3000"),
                 ("start_check_ms", "300")])
    opts.update(dict(extra))
    res = drvtest.run("vm", ["%s:%s" % (o, e["id"]) for o in ops], options=list(opts.items()),
                      identity=e["ident"], data_dir=e["data"], gateway="10.0.2.2:8443")
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

def test_init_refuses(env):
    k = ("kernel", env["kernel"])
    bad = [
        [],                                              # no kernel
        [("kernel", "/nonexistent/vmlinuz")],
        [("kernel", "relative/vmlinuz")],
        [("kernel", env["dir"])],                        # a directory
        [k, ("initrd", "/nonexistent/initrd.img")],
        [k, ("memory_mb", "32")], [k, ("memory_mb", "lots")], [k, ("cpus", "0")],
        [k, ("cpus", "65")], [k, ("accel", "kvm; rm")], [k, ("network", "bridge")],
        [k, ("qemu_sandbox", "maybe")], [k, ("append", "tessera.key=/run/identity/key.pem")],
        [k, ("append", "x" * 1000)], [k, ("gateway", "nohost")], [k, ("bogus", "1")],
        [k, ("stop_grace_ms", "600001")],
    ]
    for extra in bad:
        opts = [("qemu", FAKE_QEMU)] + extra
        res = drvtest.run("vm", ["status:" + env["id"]], options=opts, data_dir=env["data"])
        assert res.rc == 1 and "init: error: vm: init:" in res.out, (extra, res)


def test_qemu_not_installed(env):
    """The default binary is looked up in PATH; without QEMU, init fails clearly."""
    if shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is installed")
    res = drvtest.run("vm", ["status:" + env["id"]], options=[("kernel", env["kernel"])],
                      data_dir=env["data"])
    assert res.rc == 1
    assert "qemu-system-x86_64 not found in PATH" in res.out, res


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


def test_qemu_exits_at_once(env):
    """QEMU refusing its configuration exits at start: reported, not RUNNING."""
    res = run(env, ["create", "start", "status", "destroy"], [("append", "fake.exit_at_once")])
    assert "start %s: error: vm: start %s: QEMU exited at once (see %s)" % (
        env["id"], env["id"], sbpath(env, "qemu.log")) in res.out, res
    assert "status %s: CREATED" % env["id"] in res.out
    assert "destroy %s: ok" % env["id"] in res.out


# ---- lifecycle ----------------------------------------------------------------------------

def test_lifecycle(env):
    sid, ident = env["id"], env["ident"]
    res = run(env, ["create", "status"])
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
    # QEMU read the identity from the 0600 files, by relative path.
    for name, data in (("cert.pem", ident.cert), ("key.pem", ident.key),
                       ("bundle.pem", ident.bundle)):
        assert ("fw_cfg opt/tessera/%s file=identity/%s mode=0600 bytes=%d sha256=%s" % (
            name, name, len(data), hashlib.sha256(data).hexdigest())) in log, log
    assert "fw_cfg opt/tessera/gateway string=10.0.2.2:8443" in log
    assert "fw_cfg opt/tessera/trust_domain string=%s" % drvtest.TD in log
    assert "fw_cfg opt/tessera/sandbox_id string=%s" % sid in log
    assert "append=console=ttyS0 panic=-1\n" in log
    assert "cwd=%s\n" % sbpath(env) in log
    assert "env=PATH\n" in log
    assert "fake guest: booting" in open(sbpath(env, "console.log")).read()
    # No key bytes in the command line or environment of QEMU.
    pids = live_pids(sid)
    assert len(pids) == 1, pids
    frags = ident.key_fragments()
    for what in ("cmdline", "environ"):
        with open("/proc/%d/%s" % (pids[0], what), "rb") as f:
            blob = f.read()
        assert not any(fr in blob for fr in frags), what
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
    res = run(env, ["stop", "status"])
    assert res.lines == ["stop %s: ok" % sid, "status %s: STOPPED" % sid], res
    assert time.time() - t0 < 2.5
    log = open(sbpath(env, "qemu.log")).read()
    assert "qmp qmp_capabilities" in log and "qmp system_powerdown" in log
    assert "fake guest: powered off" in log
    assert "powered down" in res.err
    assert live_pids(sid) == []

    # Start again, then destroy the running VM: everything goes.
    res = run(env, ["start", "status"])
    assert res.lines == ["start %s: ok" % sid, "status %s: RUNNING" % sid], res
    wait_for(sbpath(env, "qemu.log"), "ready", 2)
    res = run(env, ["destroy", "status", "destroy"])
    assert res.lines == ["destroy %s: ok" % sid, "status %s: UNKNOWN" % sid,
                         "destroy %s: ok" % sid], res
    assert not os.path.exists(sbpath(env))
    assert live_pids(sid) == []
    assert not any(fr.decode() in res.err for fr in frags)


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
