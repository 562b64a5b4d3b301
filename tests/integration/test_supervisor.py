"""tessera-supervisor against the real gateway: refusals at start, rotation
(half-life, files replaced atomically, the next rotation on the new
certificate), the workload's view (other uid, nothing of the supervisor's
environment but PATH, no key, no inherited descriptors), its logs in
GetSandboxLogs, exit codes, a deleted sandbox (exit 4), and a gateway that
goes away and comes back."""
import datetime
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest
from cryptography import x509

import gwtest
from tessera.v1 import gateway_pb2 as pb

SUP = os.path.join(gwtest.BIN, "tessera-supervisor")
ROOT = os.geteuid() == 0

pytestmark = pytest.mark.skipif(not ROOT, reason="the supervisor tests drop to another uid")

_scratch = []


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch_dirs():
    yield
    for d in _scratch:
        shutil.rmtree(d, ignore_errors=True)


def scratch_dir(prefix, mode=0o700):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, mode)
    _scratch.append(d)
    return d


def write_identity(gw, sandbox_id, seconds=3600, ident=None):
    """A 0700 identity directory with cert.pem, key.pem, bundle.pem (0600)."""
    ident = ident or gw.sandbox_identity(
        sandbox_id, not_after=gwtest.now() + datetime.timedelta(seconds=seconds))
    d = scratch_dir("tsr-sup-id-")
    for name, data in (("cert.pem", ident.chain_pem), ("key.pem", ident.key_pem),
                       ("bundle.pem", gw.bundle)):
        fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
    return d, ident


class Supervisor:
    def __init__(self, gw, ident_dir, command=None, extra=(), env=None, uid=None):
        args = [SUP, "--identity-dir", ident_dir, "--gateway", f"127.0.0.1:{gw.port}",
                "--trust-domain", gwtest.TD, "--min-rotate-seconds", "1",
                "--poll-seconds", "1", *extra]
        if command:
            args += ["--", *command]
        self.lines = []
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env,
                                     # Popen drops privileges itself: a preexec_fn
                                     # can deadlock the fork under grpc's threads.
                                     **({} if uid is None else
                                        {"user": uid, "group": uid, "extra_groups": []}))
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def wait_line(self, pattern, timeout=20, after=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.lines[after:]:
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError("no line matching %r in:\n%s" % (pattern, self.text()))

    def wait(self, timeout=30):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("supervisor did not exit:\n" + self.text())
        self.thread.join(timeout=5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_to_exit(gw, ident_dir, command=None, extra=(), timeout=20, **kw):
    s = Supervisor(gw, ident_dir, command, extra, **kw)
    return s.wait(timeout), s.text()


def serials(gw, sandbox_id):
    resp = gw.stub(gw.user("admin")).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sandbox_id), timeout=10)
    return {c.serial: c for c in resp.certificates}


def logs(gw, sandbox_id):
    resp = gw.stub(gw.user("admin")).GetSandboxLogs(
        pb.GetSandboxLogsRequest(sandbox_id=sandbox_id, limit=10000), timeout=10)
    return list(resp.lines)


def wait_for(fn, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def gone(pid):
    """No such process, or only a zombie waiting for whoever inherited it."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def cert_serial(path):
    data = open(path, "rb").read()
    leaf = x509.load_pem_x509_certificate(data.split(b"-----END CERTIFICATE-----")[0] +
                                          b"-----END CERTIFICATE-----\n")
    return leaf.serial_number


# ---- refusals ----------------------------------------------------------------------


def test_refuses_unsafe_identity_dirs(gw):
    sid = gw.create_sandbox().sandbox.id
    d, _ = write_identity(gw, sid)
    os.chmod(d, 0o755)
    rc, err = run_to_exit(gw, d, ["true"])
    assert rc == 2 and "must be 0700" in err, err
    os.chmod(d, 0o700)
    os.chmod(os.path.join(d, "key.pem"), 0o640)
    rc, err = run_to_exit(gw, d, ["true"])
    assert rc == 2 and "key.pem has mode 0640" in err, err
    os.chmod(os.path.join(d, "key.pem"), 0o600)
    # A certificate for another sandbox than --sandbox-id says.
    rc, err = run_to_exit(gw, d, ["true"], extra=["--sandbox-id",
                                                  "11111111-2222-4333-8444-555555555555"])
    assert rc == 2 and "not 11111111" in err, err
    # The workload never runs as root.
    rc, err = run_to_exit(gw, d, ["true"], extra=["--workload-uid", "0"])
    assert rc == 2 and "never runs as root" in err, err
    # Not root and no other uid: refused unless --allow-same-uid, with the reason.
    os.chown(d, 65534, 65534)
    for name in ("cert.pem", "key.pem", "bundle.pem"):
        os.chown(os.path.join(d, name), 65534, 65534)

    rc, err = run_to_exit(gw, d, ["true"], uid=65534)
    assert rc == 2 and "could read the identity key" in err and "--allow-same-uid" in err, err
    rc, err = run_to_exit(gw, d, ["sh", "-c", "exit 9"], extra=["--allow-same-uid"],
                          uid=65534)
    assert rc == 9 and "WARNING" in err, err
    # An expired certificate: exit 3 before any call.
    d2, _ = write_identity(gw, sid, ident=gw.sandbox_identity(
        sid, not_before=gwtest.now() - datetime.timedelta(hours=2),
        not_after=gwtest.now() - datetime.timedelta(hours=1)))
    rc, err = run_to_exit(gw, d2, ["true"])
    assert rc == 3 and "expired" in err, err


def test_exit_codes_and_signal_forwarding(gw):
    sid = gw.create_sandbox().sandbox.id
    d, _ = write_identity(gw, sid)
    rc, err = run_to_exit(gw, d, ["sh", "-c", "kill -KILL $$"])
    assert rc == 128 + 9, err
    # What the workload leaves running in its process group ends with it.
    t0 = time.time()
    rc, err = run_to_exit(gw, d, ["sh", "-c", "sleep 60 & echo bg=$!; exit 5"])
    assert rc == 5, err
    assert time.time() - t0 < 10
    bg = [l.text for l in logs(gw, sid) if l.text.startswith(b"bg=")]
    assert bg
    wait_for(lambda: gone(int(bg[-1][3:])), timeout=5, what="the background process to die")
    rc, err = run_to_exit(gw, d, ["/no/such/command"])
    assert rc == 127 and "not an executable file" in err, err
    # SIGTERM reaches the workload, whose own exit status is ours.
    s = Supervisor(gw, d, ["sh", "-c", "trap 'echo got-term; exit 3' TERM; "
                           "echo ready; while :; do sleep 0.1; done"])
    s.wait_line(r"workload started")
    wait_for(lambda: any(l.text == b"ready" for l in logs(gw, sid)), what="ready line")
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 3, s.text()
    assert "forwarding Terminated" in s.text()
    texts = [l.text for l in logs(gw, sid)]
    assert b"got-term" in texts


def test_renew_before(gw):
    sid = gw.create_sandbox().sandbox.id
    d, ident = write_identity(gw, sid, seconds=3600)
    for bad in ("0s", "25h", "90", "5x"):
        rc, err = run_to_exit(gw, d, ["true"], extra=["--renew-before", bad])
        assert rc == 2, err
        assert f"tessera-supervisor: --renew-before: expected a duration 1s..24h, got '{bad}'" \
            in err, err
    # 1 h certificates (this gateway's sandbox_ttl too) with 3595 s left at
    # the latest: each is rotated about 5 s after its issue, not after 30 min.
    s = Supervisor(gw, d, extra=["--renew-before", "3595s"])
    try:
        m = s.wait_line(r"next rotation of certificate (\w+) at about .* \(in (\d+) s\)")
        assert int(m.group(1), 16) == int(ident.serial, 16)
        assert 3 <= int(m.group(2)) <= 5, s.text()
        first = s.wait_line(r"rotated certificate: serial (\w+) -> (\w+)", timeout=20)
        assert int(first.group(1), 16) == int(ident.serial, 16)
        # The renewed certificate (1 h from the gateway) is rotated as early.
        second = s.wait_line(r"rotated certificate: serial (\w+) -> (\w+)", timeout=20,
                             after=s.lines.index(first.string) + 1)
        assert second.group(1) == first.group(2)
        assert second.group(2) in serials(gw, sid)
        assert cert_serial(os.path.join(d, "cert.pem")) == int(second.group(2), 16)
        assert s.proc.poll() is None
    finally:
        s.kill()


# ---- rotation and the workload ------------------------------------------------------


def test_rotation_workload_and_logs(gw):
    created = gw.create_sandbox()
    sid = created.sandbox.id
    lifetime = 10
    d, ident = write_identity(gw, sid, seconds=lifetime)
    first_expiry = time.time() + lifetime
    old_key = open(os.path.join(d, "key.pem"), "rb").read()
    stop_dir = scratch_dir("tsr-sup-stop-", 0o755)
    stop_file = os.path.join(stop_dir, "stop")
    script = ("id -u; echo groups=$(id -G); tr '\\0' '\\n' < /proc/self/environ; "
              f"cat {os.path.join(d, 'key.pem')} || echo no-key; "
              "ls /proc/self/fd | tr '\\n' ' '; echo; "
              "grep NoNewPrivs /proc/self/status; echo done; echo to-stderr >&2; "
              f"while [ ! -e {stop_file} ]; do sleep 0.1; done; exit 7")
    env = dict(os.environ)
    env.update({"TESSERA_SECRET_THING": "tessera-value", "TESSERA_IDENTITY_DIR": d,
                "PEM_BLOB": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n",
                "KEYPATH": os.path.join(d, "key.pem"), "HARMLESS": "kept"})
    s = Supervisor(gw, d, ["sh", "-c", script], env=env)
    try:
        s.wait_line(r"workload started: pid \d+, uid 65534")
        # 1. The half-life rotation (~5 s): a new serial in the gateway's store.
        first = s.wait_line(r"rotated certificate: serial (\w+) -> (\w+)", timeout=20)
        assert int(first.group(1), 16) == int(ident.serial, 16)
        new_serial = first.group(2)
        certs = serials(gw, sid)
        assert new_serial in certs and new_serial != created.certificate_serial
        assert certs[new_serial].spiffe_id == f"spiffe://{gwtest.TD}/sandbox/{sid}"
        # key.pem and cert.pem replaced; no temp or staging file left; modes kept.
        new_key = open(os.path.join(d, "key.pem"), "rb").read()
        assert new_key != old_key and b"PRIVATE KEY" in new_key
        assert cert_serial(os.path.join(d, "cert.pem")) == int(new_serial, 16)
        assert sorted(os.listdir(d)) == ["bundle.pem", "cert.pem", "key.pem"]
        for name in os.listdir(d):
            assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600, name
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        assert s.proc.poll() is None
        # 2. The next rotation runs on the new certificate: wait until the
        # first one has expired (the gateway would refuse it), then ask.
        time.sleep(max(0, first_expiry + 1.5 - time.time()))
        s.proc.send_signal(signal.SIGUSR1)
        second = s.wait_line(r"rotated certificate: serial (\w+) -> (\w+)", timeout=20,
                             after=s.lines.index(first.string) + 1)
        assert second.group(1) == new_serial
        assert second.group(2) in serials(gw, sid)
        assert cert_serial(os.path.join(d, "cert.pem")) == int(second.group(2), 16)
        assert s.proc.poll() is None
        # 3. The workload's view, from its own log lines.
        wait_for(lambda: any(l.text == b"done" for l in logs(gw, sid)), what="done line")
        open(stop_file, "w").close()
        assert s.wait() == 7, s.text()
    finally:
        s.kill()
    lines = logs(gw, sid)
    out = [l.text.decode() for l in lines if l.stream == "stdout"]
    err = [l.text.decode() for l in lines if l.stream == "stderr"]
    sup = [l.text.decode() for l in lines if l.stream == "supervisor"]
    assert out[0] == "65534"
    assert "groups=65534" in out
    assert not [o for o in out if o.upper().startswith("TESSERA_")], out
    assert not [o for o in out if "BEGIN" in o or "PRIVATE KEY" in o], out
    # Nothing of the supervisor's environment but PATH: not even a harmless
    # variable, not a path to the key.
    assert not [o for o in out if o.startswith(("HARMLESS=", "KEYPATH=", "PEM_BLOB="))], out
    assert "EXAMPLE_API_KEY=secret-" + created.sandbox.name in out  # provider env
    assert "no-key" in out and any("Permission denied" in e for e in err), (out, err)
    assert "0 1 2 3 " in out  # nothing inherited but stdin/stdout/stderr
    assert "NoNewPrivs:\t1" in out
    assert "to-stderr" in err and "done" in out
    assert any("rotated certificate" in x for x in sup)
    assert any("workload exited with status 7" in x for x in sup)
    seqs = [l.seq for l in lines]
    assert seqs == sorted(seqs)
    # The supervisor never logs key material.
    assert "PRIVATE KEY" not in s.text() and "PRIVATE KEY" not in "".join(sup)


def test_deleted_sandbox_exits_4(gw):
    created = gw.create_sandbox()
    sid = created.sandbox.id
    d, _ = write_identity(gw, sid)
    s = Supervisor(gw, d, ["sh", "-c", "echo up; exec sleep 60"])
    try:
        pid = int(s.wait_line(r"workload started: pid (\d+)").group(1))
        # Rotate first, so the certificate in use is one the gateway recorded
        # (and DeleteSandbox revokes).
        s.proc.send_signal(signal.SIGUSR1)
        rotated = s.wait_line(r"rotated certificate: serial \w+ -> (\w+)").group(1)
        assert rotated in serials(gw, sid)
        resp = gw.stub(gw.user("admin")).DeleteSandbox(pb.DeleteSandboxRequest(id=sid),
                                                       timeout=10)
        assert resp.revoked_certificates >= 1
        t0 = time.time()
        rc = s.wait(timeout=30)
        assert rc == 4, s.text()
        assert time.time() - t0 < 15
        assert "UNAUTHENTICATED" in s.text()
        assert "terminating the workload" in s.text()
        assert gone(pid)
    finally:
        s.kill()


def test_gateway_down_backoff_recover_and_expiry():
    g = gwtest.Gateway()
    a = b = None
    try:
        sid_a = g.create_sandbox().sandbox.id
        sid_b = g.create_sandbox().sandbox.id
        da, _ = write_identity(g, sid_a, seconds=20)  # rotates at ~10 s
        db, _ = write_identity(g, sid_b, seconds=7)   # expires while the gateway is down
        a = Supervisor(g, da)
        b = Supervisor(g, db)
        a.wait_line(r"no workload: keeping the identity fresh")
        b.wait_line(r"no workload: keeping the identity fresh")
        assert g.stop() == 0
        # B: unreachable until its certificate runs out -> exit 3.
        assert b.wait(timeout=20) == 3, b.text()
        assert re.search(r"certificate expired at \S+; gateway unreachable since \S+", b.text())
        # A: its rotation fails and backs off; the gateway returns on the same port.
        a.wait_line(r"rotation failed: UNAVAILABLE", timeout=20)
        time.sleep(1.5)
        g.start(reuse_port=True)
        m = a.wait_line(r"rotated certificate: serial \w+ -> (\w+)", timeout=20)
        assert m.group(1) in serials(g, sid_a)
        assert a.proc.poll() is None
        fails = len(re.findall(r"rotation failed", a.text()))
        assert 1 <= fails <= 4, a.text()
        a.proc.send_signal(signal.SIGTERM)
        assert a.wait() == 0, a.text()
    finally:
        for s in (a, b):
            if s is not None:
                s.kill()
        rc = g.stop()
        assert rc == 0, g.sanitizer_report()


# ---- log pipeline end to end -------------------------------------------------------


def dropped_total(gw, sandbox_id):
    """The dropped_lines the gateway recorded (not exposed by an RPC)."""
    import sqlite3
    db = sqlite3.connect(os.path.join(gw.dir, "data", "tessera.db"), timeout=10)
    try:
        return db.execute("SELECT COALESCE(SUM(dropped), 0) FROM log_drops WHERE sandbox_id = ?",
                          (sandbox_id,)).fetchone()[0]
    finally:
        db.close()


def all_logs(gw, sandbox_id):
    out, since = [], 0
    stub = gw.stub(gw.user("admin"))
    while True:
        lines = stub.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sandbox_id, since=since,
                                                             limit=10000), timeout=30).lines
        if not lines:
            return out
        out.extend(lines)
        since = lines[-1].seq


def test_log_flood_every_line_delivered_or_counted(gw):
    sid = gw.create_sandbox().sandbox.id
    d, _ = write_identity(gw, sid)
    total = 40000
    # 40000 numbered lines of ~200 bytes (8 MB) as fast as the pipe takes them:
    # more than the 4 MiB queue holds if the sender falls behind.
    script = (f"i=0; pad=$(printf '%0180d' 0); while [ $i -lt {total} ]; do "
              "echo \"$i $pad\"; i=$((i+1)); done")
    rc, err = run_to_exit(gw, d, ["sh", "-c", script], timeout=120)
    assert rc == 0, err
    stored = all_logs(gw, sid)
    got = [l.text.split(b" ")[0] for l in stored if l.stream == "stdout"]
    sup_got = [l.text for l in stored if l.stream == "supervisor"]
    dropped = dropped_total(gw, sid)
    # The supervisor's own lines share the queue with the workload's, and
    # drop-oldest drops and counts them like any other: a supervisor line
    # queued before the flood (e.g. "workload started" while the sender was
    # still connecting) is in `dropped` and not among the stdout lines. Every
    # line it queued is on its stderr too (all but the undelivered count and
    # the exit code, written after the queue is detached).
    sup_queued = [m for m in re.findall(r"^\S+Z tessera-supervisor: (.*)$", err, re.M)
                  if "could not be delivered" not in m and not m.startswith("exiting with code")]
    assert len(got) == len(set(got)), "a stdout line was stored twice"
    assert len(sup_got) <= len(sup_queued), (sup_got, sup_queued)
    # Every line either arrived exactly once or was counted as dropped.
    assert len(got) + len(sup_got) + dropped == total + len(sup_queued), (
        len(got), len(sup_got), dropped, sup_queued)
    assert str(total - 1).encode() in got  # the newest line survives a drop


def test_refusal_of_a_later_batch_never_drops_or_repeats_a_stored_one():
    """A window [b1, b2] whose b2 the gateway refuses: b1 was stored before
    the refusal ended the stream. The supervisor must neither store b1 again
    on its retries nor give b1 up as "dropped": only the refused batch is
    dropped and counted (before: b1 stored 3 times, then counted dropped)."""
    g = gwtest.Gateway(limits="log_line_bytes: 300")
    s = None
    try:
        sid = g.create_sandbox().sandbox.id
        d, _ = write_identity(g, sid)
        # 1500 short lines at once (a full batch of 1000, then the rest), then
        # a line over the limit that lands in the second batch.
        script = ("i=0; while [ $i -lt 1500 ]; do echo \"s$i\"; i=$((i+1)); done; "
                  "printf 'L%.0s' $(seq 1000); echo; sleep 6; echo short-after; sleep 60")
        s = Supervisor(g, d, ["sh", "-c", script])
        s.wait_line(r"refused a batch of \d+ lines 3 times", timeout=40)
        wait_for(lambda: any(l.text == b"short-after" for l in logs(g, sid)), timeout=40,
                 what="the line after the refused batch")
        wait_for(lambda: dropped_total(g, sid) >= 1, what="the dropped count")
        s.proc.send_signal(signal.SIGTERM)
        assert s.wait() == 128 + signal.SIGTERM, s.text()
        stored = all_logs(g, sid)
        short = [l.text for l in stored if l.stream == "stdout"]
        sup_got = [l.text for l in stored if l.stream == "supervisor"]
        assert not any(len(t) > 300 for t in short)
        assert len(short) == len(set(short)), "a stored batch was stored again"
        assert len(short) >= 1, s.text()
        sup_queued = [m for m in re.findall(r"^\S+Z tessera-supervisor: (.*)$", s.text(), re.M)
                      if "could not be delivered" not in m and
                      not m.startswith("exiting with code")]
        assert len(short) + len(sup_got) + dropped_total(g, sid) == 1502 + len(sup_queued), (
            len(short), len(sup_got), dropped_total(g, sid), sup_queued)
        assert len(re.findall(r"refused a batch", s.text())) == 1, s.text()
    finally:
        if s is not None:
            s.kill()
        assert g.stop() == 0, g.sanitizer_report()


def test_refused_batch_is_dropped_and_counted():
    # A gateway that takes log lines of at most 300 bytes.
    g = gwtest.Gateway(limits="log_line_bytes: 300")
    s = None
    try:
        sid = g.create_sandbox().sandbox.id
        d, _ = write_identity(g, sid)
        script = "printf 'L%.0s' $(seq 1000); echo; sleep 6; echo short-after; sleep 60"
        s = Supervisor(g, d, ["sh", "-c", script])
        s.wait_line(r"refused a batch of \d+ lines 3 times", timeout=20)
        wait_for(lambda: any(l.text == b"short-after" for l in logs(g, sid)), timeout=20,
                 what="the line after the refused batch")
        assert not any(len(l.text) > 300 for l in logs(g, sid))
        wait_for(lambda: dropped_total(g, sid) >= 1, what="the dropped count")
        s.proc.send_signal(signal.SIGTERM)
        assert s.wait() == 128 + signal.SIGTERM, s.text()
    finally:
        if s is not None:
            s.kill()
        assert g.stop() == 0, g.sanitizer_report()
