"""Several gateways, one PostgreSQL (docs/operations.md, "Replicas on
PostgreSQL"): the test starts its own cluster (tests/pg/cluster.sh: initdb +
pg_ctl under TMPDIR, a unix socket) and two gateways A and B on it, with
one PKI and one keyring.

- what A writes, B reads;
- a revocation on A is refused at B's next handshake, and B closes its open
  connection of that certificate within 1 s (LISTEN/NOTIFY + catch-up);
- live sandbox names are unique across A and B under concurrent creates;
- a log batch resent to the other replica is acknowledged, not stored twice;
- while the database is away every call answers UNAVAILABLE (no revoked
  certificate can be accepted meanwhile), and both recover by themselves."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

import gwtest
from gwtest import code_of, pb
from h2client import H2, grpc_frame

S = grpc.StatusCode
STALE = "revocation status unknown: the database is unreachable"
CLUSTER = os.path.join(os.environ.get("TSR_ROOT", os.path.join(os.path.dirname(__file__),
                                                              "..", "..")),
                       "tests", "pg", "cluster.sh")


@pytest.fixture(scope="module")
def pg():
    d = tempfile.mkdtemp(prefix="tsr-pg-")
    try:
        dsn = subprocess.run([CLUSTER, "start", d], check=True, capture_output=True,
                             text=True).stdout.strip()
        yield d, dsn
    finally:
        subprocess.run([CLUSTER, "stop", d], check=True)


@pytest.fixture(scope="module")
def pair(pg):
    a = gwtest.Gateway(renew_limit=1000, store_dsn=pg[1])
    b = gwtest.Gateway(renew_limit=1000, store_dsn=pg[1], replica_of=a)
    yield a, b
    rcs = (a.stop(), b.stop())
    assert rcs == (0, 0), a.sanitizer_report() + b.sanitizer_report()


def admin(g):
    return g.stub(g.user("admin"))


def test_create_on_a_read_on_b(pair):
    a, b = pair
    sb = a.create_sandbox().sandbox
    got = admin(b).GetSandbox(pb.GetSandboxRequest(id=sb.id), timeout=10).sandbox
    assert (got.id, got.name) == (sb.id, sb.name)
    # A certificate A minted is recorded for B: B renews from it.
    ident = a.placed_identity(sb.id)
    renewed = b.renewed_identity(ident)
    certs = admin(a).ListCertificates(pb.ListCertificatesRequest(sandbox_id=sb.id),
                                      timeout=10).certificates
    assert {c.serial: c.renewed_from for c in certs}[renewed.serial] == ident.serial


def test_revocation_on_a_closes_b_connection(pair):
    """B holds an open call of a sandbox's certificate; A revokes it: B
    answers that call UNAUTHENTICATED "certificate revoked" within 1 s, and
    a new connection to B with it is refused."""
    a, b = pair
    sid = a.create_sandbox().sandbox.id
    ident = b.renewed_identity(a.placed_identity(sid))
    c = H2(b, ident)
    try:
        stream = c.call("/tessera.v1.Gateway/PushSandboxLogs", [grpc_frame(
            pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[pb.LogLine(text=b"x")])
            .SerializeToString())], end_stream=False)
        time.sleep(0.3)
        t0 = time.monotonic()
        admin(a).RevokeCertificate(pb.RevokeCertificateRequest(serial=ident.serial),
                                   timeout=10)
        got = c.wait(stream, timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert (got["headers"].get("grpc-status"), got["headers"].get("grpc-message")) == \
        ("16", "certificate revoked"), got
    assert elapsed <= 1.0, elapsed
    code = code_of(lambda: b.stub(ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))
    assert code == (S.UNAUTHENTICATED, "certificate revoked")


def crl_of(g):
    from cryptography import x509
    pem = admin(g).GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10).crl_pem
    crl = x509.load_pem_x509_crl(pem.encode())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number, {r.serial_number for r in crl}


def test_crl_numbered_in_one_sequence_and_complete_on_both(pair):
    """A revocation on one replica shows in the other's CRL, and the CRL
    numbers come from one sequence in the database, however the replicas'
    clocks read: the two CRLs that list a revocation were signed after it,
    so after every CRL read before it, and their numbers are above all of
    those; A's and B's are never the same number."""
    a, b = pair
    before = 0
    for g, other in ((a, b), (b, a), (a, b), (b, a)):
        sid = g.create_sandbox().sandbox.id
        ident = g.placed_identity(sid)
        admin(g).RevokeCertificate(pb.RevokeCertificateRequest(serial=ident.serial), timeout=10)
        listed = {}
        for x in (g, other):
            gwtest.wait_for("the revocation in both replicas' CRLs",
                            lambda x=x: int(ident.serial, 16) in crl_of(x)[1], timeout=5)
            listed[x] = crl_of(x)
            assert int(ident.serial, 16) in listed[x][1]
        numbers = [listed[g][0], listed[other][0]]
        assert numbers[0] != numbers[1], numbers
        assert min(numbers) > before, (before, numbers)
        before = max(numbers)


def test_names_unique_across_replicas(pair):
    """The same name created at once on A and on B: one sandbox, one
    ALREADY_EXISTS, every time."""
    a, b = pair
    for i in range(10):
        name = f"same-{i}-{os.getpid()}"
        results = {}

        def create(g, key):
            results[key] = code_of(lambda: g.create_sandbox(name=name))

        ts = [threading.Thread(target=create, args=(g, k)) for g, k in ((a, "a"), (b, "b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        codes = sorted(results[k][0].name for k in ("a", "b"))
        assert codes == ["ALREADY_EXISTS", "OK"], results


def test_log_batch_resent_to_other_replica_is_stored_once(pair):
    a, b = pair
    sid = a.create_sandbox().sandbox.id
    ident = a.placed_identity(sid)
    req = pb.PushSandboxLogsRequest(sandbox_id=sid, session="ab12", batch_seq=1,
                                    lines=[pb.LogLine(text=b"one"), pb.LogLine(text=b"two")])
    a.stub(ident).PushSandboxLogs(iter([req]), timeout=10)
    b.stub(ident).PushSandboxLogs(iter([req]), timeout=10)   # the resend after a failover
    lines = admin(b).GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid), timeout=10).lines
    assert [l.text for l in lines] == [b"one", b"two"]


def test_database_outage_fails_closed_then_recovers(pg, pair):
    """PostgreSQL stopped: within the feed's freshness bound every call on
    both replicas answers UNAVAILABLE with the reason; started again: both
    serve without a restart."""
    a, b = pair
    sid = a.create_sandbox().sandbox.id
    subprocess.run([CLUSTER, "restart-stop", pg[0]], check=True)
    try:
        for g in (a, b):
            gwtest.wait_for("UNAVAILABLE while the database is away",
                            lambda g=g: code_of(lambda: admin(g).GetSandbox(
                                pb.GetSandboxRequest(id=sid), timeout=5))
                            == (S.UNAVAILABLE, STALE), timeout=10)
    finally:
        subprocess.run([CLUSTER, "restart-start", pg[0]], check=True)
    for g in (a, b):
        gwtest.wait_for("serving again", lambda g=g: code_of(lambda: admin(g).GetSandbox(
            pb.GetSandboxRequest(id=sid), timeout=5))[0] == S.OK, timeout=20)
    # and writes go through again on both (a store connection whose last
    # reconnect failed waits up to 1 s before it tries again)
    for g in (a, b):
        gwtest.wait_for("writes again", lambda g=g: code_of(g.create_sandbox)[0] == S.OK,
                        timeout=10)


def test_renewal_rate_limit_counted_across_replicas(pg):
    """renew_limit 3 on both: renewals alternating A, B, A are taken, the
    4th is refused on either replica."""
    a = gwtest.Gateway(renew_limit=3, store_dsn=pg[1])
    b = gwtest.Gateway(renew_limit=3, store_dsn=pg[1], replica_of=a)
    try:
        sid = a.create_sandbox().sandbox.id
        ident = a.placed_identity(sid)
        for g in (a, b, a):
            ident = g.renewed_identity(ident)
        for g in (b, a):
            der, _ = gwtest.csr_der()
            code = code_of(lambda g=g: g.stub(ident).RenewCertificate(
                pb.RenewCertificateRequest(csr=der), timeout=10))
            assert code == (S.RESOURCE_EXHAUSTED, "renewal rate limit: at most 3 per 3600s")
    finally:
        rcs = (a.stop(), b.stop())
        assert rcs == (0, 0), a.sanitizer_report() + b.sanitizer_report()


class Renewer:
    """Sandboxes renewing in a loop through replicas in turn (each renewal
    from the certificate the last one returned); records every certificate
    a client received and every failure's status."""

    def __init__(self, gateways, sandboxes):
        self.gateways = gateways
        self.received = []          # (sandbox id, serial)
        self.failures = []          # (code, details)
        self.stop = threading.Event()
        self.threads = []
        for i, (sid, ident) in enumerate(sandboxes):
            t = threading.Thread(target=self.run, args=(i, sid, ident), daemon=True)
            self.threads.append(t)

    def run(self, i, sid, ident):
        turn = i
        while not self.stop.is_set():
            g = self.gateways[turn % len(self.gateways)]
            turn += 1
            if not g.alive():
                continue
            try:
                ident = g.renewed_identity(ident)
                self.received.append((sid, ident.serial))
            except grpc.RpcError as e:
                self.failures.append((e.code(), e.details()))
                time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def recorded(g, sids):
    """serial -> Certificate of every certificate of the sandboxes (every page)."""
    out = {}
    for sid in sids:
        token = ""
        while True:
            r = admin(g).ListCertificates(pb.ListCertificatesRequest(
                sandbox_id=sid, page_size=1000, page_token=token), timeout=10)
            for c in r.certificates:
                assert c.serial not in out, c.serial
                out[c.serial] = c
            token = r.next_page_token
            if not token:
                break
    return out


def replicas(pg, renew_limit=1000):
    a = gwtest.Gateway(renew_limit=renew_limit, store_dsn=pg[1])
    return a, gwtest.Gateway(renew_limit=renew_limit, store_dsn=pg[1], replica_of=a)


def placed(g, n):
    """n new sandboxes of g: (id, the identity g's driver placed)."""
    out = []
    for _ in range(n):
        sid = g.create_sandbox().sandbox.id
        out.append((sid, g.placed_identity(sid)))
    return out


def test_kill9_of_a_replica_during_renewals(pg):
    """Renewals through A and B; A is killed with SIGKILL mid-way: every
    certificate a client received is recorded (once: serials are keys), and
    renewals carry on through B."""
    a, b = replicas(pg)
    try:
        sbs = placed(a, 4)
        with Renewer([a, b], sbs) as r:
            time.sleep(1.5)
            a.kill9()
            n_at_kill = len(r.received)
            time.sleep(1.5)
        assert len(r.received) > n_at_kill + 4, (n_at_kill, len(r.received))
        serials = [s for _, s in r.received]
        assert len(serials) == len(set(serials))
        rec = recorded(b, [sid for sid, _ in sbs])
        missing = [s for s in serials if s not in rec]
        assert missing == [], missing
        # what failed failed because A went away, not for any other reason
        assert {c for c, _ in r.failures} <= {S.UNAVAILABLE, S.CANCELLED}, r.failures[:5]
    finally:
        b.stop()
        a.stop()


def test_database_stopped_10s_under_load(pg):
    """Renewals through A and B; PostgreSQL stopped for 10 s, then started:
    only UNAVAILABLE meanwhile; afterwards renewals succeed again on both,
    every certificate received is recorded, and a certificate revoked on A
    after the outage is refused by B."""
    a, b = replicas(pg)
    try:
        sbs = placed(a, 3)
        with Renewer([a, b], sbs) as r:
            time.sleep(1)
            subprocess.run([CLUSTER, "restart-stop", pg[0]], check=True)
            try:
                time.sleep(10)
                n_during = len(r.received)
            finally:
                subprocess.run([CLUSTER, "restart-start", pg[0]], check=True)
            gwtest.wait_for("renewals again", lambda: len(r.received) > n_during + 6,
                            timeout=30)
        codes = {c for c, _ in r.failures}
        assert codes <= {S.UNAVAILABLE}, r.failures[:5]
        assert r.failures, "no call failed while the database was away"
        serials = [s for _, s in r.received]
        assert len(serials) == len(set(serials))
        rec = recorded(a, [sid for sid, _ in sbs])
        assert [s for s in serials if s not in rec] == []
        # revocation works across replicas after the outage
        sid = a.create_sandbox().sandbox.id
        ident = b.renewed_identity(a.placed_identity(sid))
        admin(a).RevokeCertificate(pb.RevokeCertificateRequest(serial=ident.serial), timeout=10)
        gwtest.wait_for("refused on B", lambda: code_of(lambda: b.stub(ident).GetSandboxConfig(
            pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=5))
            == (S.UNAUTHENTICATED, "certificate revoked"), timeout=2)
    finally:
        rcs = (a.stop(), b.stop())
        assert rcs == (0, 0), a.sanitizer_report() + b.sanitizer_report()


def test_owner_replica_drives_its_sandboxes(pair):
    """A sandbox started by A is A's: B neither asks its own driver about it
    (its state stays A's report) nor tears it down; DeleteSandbox on B
    revokes at once, everywhere, and A's reconciler tears it down."""
    a, b = pair
    sid = a.create_sandbox().sandbox.id
    ident = a.placed_identity(sid)
    sb_dir = os.path.join(a.data_dir, "sandboxes", sid)
    assert os.path.isdir(sb_dir)
    for _ in range(3):   # B's GetSandbox refreshes only what B runs
        got = admin(b).GetSandbox(pb.GetSandboxRequest(id=sid), timeout=10).sandbox
        assert got.state == "running", got
        time.sleep(0.4)
    assert "has no such sandbox" not in b.log_text()
    d = admin(b).DeleteSandbox(pb.DeleteSandboxRequest(id=sid), timeout=10)
    assert d.revoked_certificates == 1
    gwtest.wait_for("revoked on A", lambda: code_of(lambda: a.stub(ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=5))
        == (S.UNAUTHENTICATED, "certificate revoked"), timeout=2)
    # A's reconciler (every 5 s) finds it due and its driver removes it
    gwtest.wait_for("torn down by its owner", lambda: not os.path.exists(sb_dir), timeout=20)


def test_certgen_records_a_proxy_in_postgres(pg, pair):
    """certgen issue-proxy --store postgresql://...: recorded in the replicas'
    database, listed by certgen list, revocable through any replica."""
    import re
    a, b = pair
    host = re.search(r"host=(\S+)", pg[1]).group(1)
    user = re.search(r"user=(\S+)", pg[1]).group(1)
    uri = f"postgresql://{user}@/postgres?host={host}"
    cg = os.path.join(gwtest.BIN, "certgen")
    r = subprocess.run([cg, "issue-proxy", "pgedge", "--pki", a.pki, "--store", uri],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    serial = re.search(r"serial ([0-9a-f]+), valid until \S+, recorded in", r.stdout).group(1)
    out = subprocess.run([cg, "list", "--store", uri], capture_output=True, text=True,
                         timeout=30).stdout
    assert re.search(rf"^{serial} +\S+ +valid +spiffe://{gwtest.TD}/proxy/pgedge$", out, re.M), out
    # Recorded: a replica revokes it like any certificate.
    admin(b).RevokeCertificate(pb.RevokeCertificateRequest(serial=serial), timeout=10)
    out = subprocess.run([cg, "list", "--store", uri], capture_output=True, text=True,
                         timeout=30).stdout
    assert re.search(rf"^{serial} +\S+ +revoked +spiffe://{gwtest.TD}/proxy/pgedge$", out, re.M), out


# ---- a real supervisor given both replicas ------------------------------------------

SUP = os.path.join(gwtest.BIN, "tessera-supervisor")
ROTATED = re.compile(r"rotated certificate: serial (\w+) -> (\w+)")


class Supervisor:
    """tessera-supervisor with --gateway A --gateway B, the identity A's
    driver placed (copied to a 0700 directory of its own), and a workload
    that prints n numbered lines, one every `every` s, then "finished"."""

    def __init__(self, gateways, ident, n, every):
        self.dir = tempfile.mkdtemp(prefix="tsr-sup-id-")
        os.chmod(self.dir, 0o700)
        for name, data in (("cert.pem", ident.chain_pem), ("key.pem", ident.key_pem),
                           ("bundle.pem", gateways[0].bundle)):
            fd = os.open(os.path.join(self.dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o600)
            os.write(fd, data)
            os.close(fd)
        script = (f"i=0; while [ $i -lt {n} ]; do echo line-$i; i=$((i+1)); sleep {every}; "
                  "done; echo finished; exec sleep 600")
        args = [SUP, "--identity-dir", self.dir, "--trust-domain", gwtest.TD,
                "--min-rotate-seconds", "1", "--poll-seconds", "1"]
        for g in gateways:
            args += ["--gateway", f"127.0.0.1:{g.port}"]
        self.lines = []
        self.proc = subprocess.Popen(args + ["--", "sh", "-c", script], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def wait_line(self, pattern, timeout=30):
        return gwtest.wait_for(f"{pattern!r} in the supervisor's log:\n{self.text()}",
                               lambda: next((m for m in map(re.compile(pattern).search,
                                                            list(self.lines)) if m), None),
                               timeout=timeout, every=0.05)

    def rotations(self):
        """(old serial, new serial) of every rotation so far, in order."""
        return [m.groups() for m in map(ROTATED.search, list(self.lines)) if m]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Rotator:
    """SIGUSR1 to the supervisor every `every` s: rotations, by CSR, all along."""

    def __init__(self, sup, every=0.7):
        self.sup, self.every, self.stop = sup, every, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(self.every):
            if self.sup.proc.poll() is None:
                self.sup.proc.send_signal(signal.SIGUSR1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def stdout_lines(g, sid):
    out, since = [], 0
    while True:
        lines = admin(g).GetSandboxLogs(pb.GetSandboxLogsRequest(
            sandbox_id=sid, since=since, limit=10000), timeout=10).lines
        if not lines:
            return out
        out += [l.text.decode() for l in lines if l.stream == "stdout"]
        since = lines[-1].seq


def failover_run(pg, move_off_a):
    """A supervisor on A (first of its two addresses) with numbered lines
    and rotations all along; move_off_a(a) takes A away mid-way. Then: the
    supervisor carried on through B, every line is stored exactly once, and
    every certificate of the sandbox descends from the one A's driver placed
    (no new identity minted), the rotations a chain through the failover."""
    a, b = replicas(pg)
    sup = None
    n = 500
    try:
        sid = a.create_sandbox().sandbox.id
        placed_ident = a.placed_identity(sid)
        sup = Supervisor([a, b], placed_ident, n=n, every=0.012)
        sup.wait_line(rf"gateway: using 127\.0\.0\.1:{a.port}$")
        sup.wait_line(r"workload started")
        with Rotator(sup):
            gwtest.wait_for("lines and a rotation through A",
                            lambda: len(stdout_lines(b, sid)) >= 100 and sup.rotations(),
                            timeout=30)
            serial_at_move = sup.rotations()[-1][1]
            rotations_before = len(sup.rotations())
            move_off_a(a)
            sup.wait_line(rf"gateway: using 127\.0\.0\.1:{b.port} \(failed over from "
                          rf"127\.0\.0\.1:{a.port}\)")
            gwtest.wait_for("rotations through B",
                            lambda: len(sup.rotations()) >= rotations_before + 2, timeout=30)
        want = [f"line-{i}" for i in range(n)] + ["finished"]
        gwtest.wait_for("every line stored", lambda: "finished" in stdout_lines(b, sid),
                        timeout=60)
        got = stdout_lines(b, sid)
        assert got == want, ([x for x in got if got.count(x) > 1][:5],
                             sorted(set(want) - set(got))[:5])
        assert sup.proc.poll() is None, sup.text()
        # The rotations: one chain from the placed certificate, through the
        # failover (the first after it renews the certificate in use before).
        rot = sup.rotations()
        assert rot[0][0] == placed_ident.serial
        assert all(rot[i][1] == rot[i + 1][0] for i in range(len(rot) - 1)), rot
        serials = [placed_ident.serial] + [new for _, new in rot]
        assert serial_at_move in serials and serials.index(serial_at_move) == rotations_before
        # The certificates the database holds: the placed one is the only
        # one not renewed from another (no identity was minted); every other
        # one renews one the supervisor held (a renewal A answered as it went
        # away may be recorded without the supervisor having received it).
        certs = recorded(b, [sid])
        assert set(serials) <= set(certs)
        assert [s for s, c in certs.items() if c.renewed_from == ""] == [placed_ident.serial]
        assert all(c.renewed_from in serials for s, c in certs.items()
                   if s != placed_ident.serial), certs
        assert len(certs) - len(serials) <= 1, (len(certs), len(serials))
        return sup.text()
    finally:
        if sup is not None:
            sup.close()
        b.stop()
        a.stop()


def test_supervisor_fails_over_on_kill9(pg):
    """kill -9 of the replica the supervisor uses, during sustained log lines
    and rotations."""
    failover_run(pg, lambda a: a.kill9())


def test_supervisor_leaves_a_draining_replica(pg):
    """SIGTERM to the replica the supervisor uses: its GOAWAY and closed
    listener move the supervisor to the other one."""
    def drain(a):
        a.proc.terminate()
        assert a.proc.wait(timeout=15) == 0, a.sanitizer_report()
    failover_run(pg, drain)
