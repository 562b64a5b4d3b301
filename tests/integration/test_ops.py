"""Running the gateway for real (docs/operations.md): --version on every
binary, one gateway per data directory and per port, stderr lines with a
time and a level (journald priorities under systemd), the audit log reopened
on SIGHUP for logrotate."""
import os
import re
import signal
import subprocess
import time

import grpc
import pytest

import gwtest
from gwtest import BIN, pb

S = grpc.StatusCode
BINARIES = ["certgen", "tessera", "tessera-gateway", "tessera-supervisor", "tessera-vm-relay"]


def openssl_version():
    out = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split()[:2])   # "OpenSSL 3.0.x"


@pytest.mark.parametrize("name", BINARIES)
def test_version(name):
    r = subprocess.run([os.path.join(BIN, name), "--version"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    if name == "tessera-vm-relay":   # libc only: no OpenSSL to name
        m = re.fullmatch(r"(\S+) (\d+\.\d+\.\d+) \(git (\S+); links no OpenSSL\)\n", r.stdout)
        assert m, r.stdout
        assert m.group(1) == name and m.group(3) not in ("", "unknown")
        return
    m = re.fullmatch(r"(\S+) (\d+\.\d+\.\d+) \(git (\S+); built with (OpenSSL [^;]+), "
                     r"running (OpenSSL [^)]+)\)\n", r.stdout)
    assert m, r.stdout
    assert m.group(1) == name
    assert m.group(3) not in ("", "unknown")
    assert m.group(5).startswith(openssl_version() + " "), (m.group(5), openssl_version())


def run_second(g, extra_args=(), env=None, stderr_path=None):
    """A second tessera-gateway on g's config; returns (exit code, stderr)."""
    args = [os.path.join(BIN, "tessera-gateway"), "--config", g.config] + list(extra_args)
    if stderr_path is not None:
        with open(stderr_path, "w") as err:
            rc = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, env=env,
                                timeout=30).returncode
        return rc, open(stderr_path).read()
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)
    return r.returncode, r.stderr


TS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (info|warning|error) "
                     r"tessera-gateway: ")


def test_second_gateway_same_data_dir_refused():
    g = gwtest.Gateway()
    try:
        lock = os.path.join(g.data_dir, "gateway.lock")
        assert open(lock).read() == f"{g.pid}\n"
        # Another port, the same data_dir: refused before anything is opened.
        rc, err = run_second(g, ["--listen", "127.0.0.1:0"])
        assert rc == 1, err
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert TS_LINE.match(lines[0]) and " error " in lines[0], lines[0]
        assert lines[0].endswith(
            f"tessera-gateway: data_dir {g.data_dir} is in use by another tessera-gateway "
            f"(pid {g.pid}) (it holds {lock}): stop that one first, or give this one its own "
            "data_dir"), lines[0]
        g.assert_serving(g.user("admin"))
    finally:
        g.stop()
    # Once it is gone (even killed: the kernel drops the flock), a new one starts.
    g.start()
    g.kill9()
    g.start()
    g.assert_serving()
    g.stop()


def test_second_gateway_same_port_refused(tmp_path):
    a = gwtest.Gateway()
    try:
        # b: its own PKI and data dir, a's port. SO_REUSEPORT would let it
        # join a's listeners; the probe refuses it.
        b = gwtest.Gateway()
        b.stop()
        rc, err = run_second(b, ["--listen", f"127.0.0.1:{a.port}"])
        assert rc == 1, err
        assert err.splitlines()[-1].endswith(
            f"tessera-gateway: listen 127.0.0.1:{a.port}: the port is already in use by another "
            "process (another tessera-gateway?); a gateway never shares its port"), err
        a.assert_serving(a.user("admin"))
    finally:
        a.stop()


def test_journald_priorities(tmp_path):
    """Under systemd (JOURNAL_STREAM names our stderr) lines carry "<N>"
    priorities and no time of their own; redirected elsewhere they do not."""
    g = gwtest.Gateway()
    try:
        path = str(tmp_path / "stderr")
        open(path, "w").close()
        st = os.stat(path)
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        rc, err = run_second(g, ["--listen", "127.0.0.1:0"], env=env, stderr_path=path)
        assert rc == 1
        assert err.startswith("<3>tessera-gateway: data_dir "), err
        assert len(err.splitlines()) == 1, err
        # JOURNAL_STREAM of another file: not the journal, timestamps.
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino + 1}"
        rc, err = run_second(g, ["--listen", "127.0.0.1:0"], env=env, stderr_path=path)
        assert rc == 1 and TS_LINE.match(err), err
    finally:
        g.stop()


def test_gateway_stderr_has_time_and_level():
    # A real warning: an open-file limit below max_connections (10000 by default).
    g = gwtest.Gateway(nofile=1024)
    try:
        gwtest.wait_for("the open-file limit warning",
                        lambda: any("open-file limit" in l for l in g.stderr_lines), timeout=10)
        warn = [l for l in g.stderr_lines if "open-file limit" in l][0]
        assert TS_LINE.match(warn), warn
        assert warn.rstrip("\n").endswith(
            " warning tessera-gateway: warning: open-file limit 1024 is below max_connections "
            "10000 (raise it with ulimit -n or LimitNOFILE=)"), warn
    finally:
        g.stop()
    assert g.stderr_lines, "no stderr at all"
    for line in g.stderr_lines:
        assert TS_LINE.match(line), line


def deny_once(g):
    """One audited denial: a viewer may not create sandboxes."""
    with pytest.raises(grpc.RpcError) as e:
        g.stub(g.user("bob")).CreateSandbox(pb.CreateSandboxRequest(name="x", policy=gwtest.POLICY),
                                            timeout=10)
    assert e.value.code() == S.PERMISSION_DENIED


def test_audit_log_reopened_on_sighup():
    g = gwtest.Gateway()
    try:
        deny_once(g)
        gwtest.wait_for("first audit line", lambda: len(g.audit_lines()) == 1, timeout=10)
        # logrotate without copytruncate: rename, then SIGHUP.
        os.rename(g.audit, g.audit + ".1")
        start = len(g.stderr_lines)
        os.kill(g.pid, signal.SIGHUP)
        gwtest.wait_for("reload", lambda: any("reloaded:" in l for l in g.stderr_lines[start:]),
                        timeout=20)
        assert os.path.exists(g.audit)
        assert os.stat(g.audit).st_mode & 0o777 == 0o600
        deny_once(g)
        gwtest.wait_for("second audit line", lambda: len(g.audit_lines()) == 1, timeout=10)
        old = open(g.audit + ".1").read().splitlines()
        assert len(old) == 1 and '"event":"deny"' in old[0], old
        new = g.audit_lines()
        assert '"event":"deny"' in new[0] and '"peer":"spiffe://tessera.local/user/bob"' in new[0]
        # A directory where the file was: the reopen fails, the old file goes on.
        os.rename(g.audit, g.audit + ".2")
        os.mkdir(g.audit)
        start = len(g.stderr_lines)
        os.kill(g.pid, signal.SIGHUP)
        gwtest.wait_for("reopen failure",
                        lambda: any("reopen audit log" in l for l in g.stderr_lines[start:]),
                        timeout=20)
        line = [l for l in g.stderr_lines[start:] if "reopen audit log" in l][0]
        assert " error tessera-gateway: reopen audit log " + g.audit in line, line
        assert "(still writing to the previous file)" in line
        deny_once(g)
        gwtest.wait_for("kept writing", lambda: len(open(g.audit + ".2").read().splitlines()) == 2,
                        timeout=10)
        os.rmdir(g.audit)
    finally:
        g.stop()
