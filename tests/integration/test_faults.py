"""Faults against the real tessera-gateway: nothing issued is ever lost.

- SIGKILL during sustained issuance: every certificate a client received is
  in the store after a restart on the same data dir, and a record whose
  certificate never reached its client revokes like any other.
- Disk full (the data dir on a small tmpfs filled up) and an immutable WAL
  (chattr +i): writes answer UNAVAILABLE and leave no record, reads still
  work, the gateway stays up and recovers without a restart.
- Clock skew, gateway side: a leaf whose notBefore is in the future is
  refused (not yet valid); one from an issuer 5 min slow is accepted.

TSR_SLOW=1 runs more kill rounds (`make soak`)."""
import datetime
import errno
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid

import grpc
import pytest
from cryptography import x509

import gwtest
from gwtest import TD, code_of, pb, pb_grpc

S = grpc.StatusCode
SLOW = os.environ.get("TSR_SLOW") == "1"


def admin(gw):
    return gw.stub(gw.user("admin"))


def store_rows(gw):
    """Every certificate row, read straight from the database file
    (read-only, while the gateway may be running)."""
    db = sqlite3.connect(f"file:{gw.db_path}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0]: row for row in db.execute(
            "SELECT serial, spiffe_id, sandbox_id, revoked_at FROM certificates")}
    finally:
        db.close()


def listed_certs(gw, sandbox_id):
    return {c.serial: c for c in admin(gw).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sandbox_id), timeout=10).certificates}


def all_sandboxes(gw):
    out, token = [], ""
    while True:
        r = admin(gw).ListSandboxes(pb.ListSandboxesRequest(page_size=1000, page_token=token),
                                    timeout=10)
        out += list(r.sandboxes)
        token = r.next_page_token
        if not token:
            return out


# ---------------------------------------------------------------------------
# SIGKILL during sustained issuance


class Issuer(threading.Thread):
    """Creates sandboxes and renews their certificates in a loop, chaining
    each renewal on the certificate it just received, and records every
    certificate it actually got back."""

    def __init__(self, gw, stop):
        super().__init__(daemon=True)
        self.gw, self.stop = gw, stop
        self.received = []        # (sandbox_id, serial) for every certificate returned
        self.idents = {}          # sandbox_id -> [Identity] of every renewal received
        self.errors = []          # protocol violations seen by the client
        self.last_code = None

    def run(self):
        gw = self.gw
        ch = gw.channel(gw.user("admin"))
        stub = pb_grpc.GatewayStub(ch)
        try:
            while not self.stop.is_set():
                name = "k-" + uuid.uuid4().hex[:12]
                r = stub.CreateSandbox(pb.CreateSandboxRequest(
                    name=name, policy=gwtest.POLICY, provider_env={"EXAMPLE_API_KEY": "s"}),
                    timeout=5)
                sid = r.sandbox.id
                self.received.append((sid, r.certificate_serial))
                ident = gw.placed_identity(sid)   # what the driver placed (recorded)
                for _ in range(3):
                    der, key = gwtest.csr_der()
                    sch = gw.channel(ident)
                    try:
                        rr = pb_grpc.GatewayStub(sch).RenewCertificate(
                            pb.RenewCertificateRequest(csr=der), timeout=5)
                    finally:
                        sch.close()
                    leaf = x509.load_pem_x509_certificate(rr.certificate_pem.encode())
                    if gwtest.serial_hex(leaf) != rr.serial:
                        self.errors.append(f"serial field {rr.serial} != PEM "
                                           f"{gwtest.serial_hex(leaf)}")
                    self.received.append((sid, rr.serial))
                    ident = gwtest.Identity((rr.certificate_pem + rr.chain_pem).encode(),
                                            gwtest.key_pem(key), rr.serial)
                    self.idents.setdefault(sid, []).append(ident)
        except grpc.RpcError as e:
            self.last_code = e.code()
            if not self.stop.is_set():   # set just before the kill
                self.errors.append(f"call failed while the gateway was up: {e.code()} "
                                   f"{e.details()}")
        finally:
            ch.close()


def kill_round(gw, n_threads, seconds):
    stop = threading.Event()
    workers = [Issuer(gw, stop) for _ in range(n_threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    gw.kill9()
    for w in workers:
        w.join(30)
        assert not w.is_alive(), "an issuing client hung after the kill"
    return workers


def test_sigkill_during_issuance_loses_no_certificate():
    gw = gwtest.Gateway(renew_limit=1000)
    rounds = 8 if SLOW else 3
    totals = {"received": 0, "unreturned": 0}
    received = {}    # every certificate any client got back: serial -> sandbox id
    revoked = set()  # the received ones this test revoked
    try:
        for rnd in range(rounds):
            workers = kill_round(gw, 4, random.uniform(1.5, 2.5))
            for w in workers:
                assert not w.errors, w.errors
            before = len(received)
            for w in workers:
                for sid, serial in w.received:
                    assert serial not in received, "serial issued twice: " + serial
                    received[serial] = sid
            assert len(received) > before, "no certificate was issued before the kill"

            # Same data dir, same config.
            gw.start()
            rows = store_rows(gw)
            # Every certificate a client received is recorded, for its sandbox.
            for serial, sid in received.items():
                assert serial in rows, f"round {rnd}: certificate {serial} was returned but " \
                                       f"is not in the database"
                _, spiffe, row_sid, revoked_at = rows[serial]
                assert row_sid == sid and spiffe == f"spiffe://{TD}/sandbox/{sid}"
                assert (revoked_at is not None) == (serial in revoked)
            # ... and visible through the API.
            sandboxes = {s.id for s in all_sandboxes(gw)}
            listed = {}
            for sid in sandboxes:
                listed.update(listed_certs(gw, sid))
            assert set(received) <= set(listed)
            assert set(listed) == {s for s, r in rows.items() if r[2] in sandboxes}

            # Records whose certificate never reached a client (calls in flight
            # at the kill): revoking them works like for any other certificate.
            unreturned = [s for s in listed if s not in received and not listed[s].revoked_at]
            for serial in unreturned:
                c = admin(gw).RevokeCertificate(pb.RevokeCertificateRequest(
                    serial=serial, reason="never returned"), timeout=10).certificate
                assert c.revoked_at > 0 and c.serial == serial
                assert store_rows(gw)[serial][3] is not None
            totals["received"] = len(received)
            totals["unreturned"] += len(unreturned)

            # The sandboxes' received certificates still behave: the newest of
            # each works; revoking an older one revokes it and, with it, every
            # certificate renewed from it (its lineage), the newest included.
            chains = [(sid, ids) for w in workers for sid, ids in w.idents.items()]
            for sid, ids in chains[:6]:
                cfg = gw.stub(ids[-1]).GetSandboxConfig(
                    pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10)
                assert cfg.sandbox_id == sid
            multi = [(sid, ids) for sid, ids in chains if len(ids) >= 2]
            if multi:
                sid, ids = multi[0]
                admin(gw).RevokeCertificate(pb.RevokeCertificateRequest(
                    serial=ids[0].serial, reason="test"), timeout=10)
                revoked.update(i.serial for i in ids)   # each was renewed from the one before
                for gone in (ids[0], ids[-1]):
                    code, _ = code_of(lambda: gw.stub(gone).GetSandboxConfig(
                        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))
                    assert code == S.UNAUTHENTICATED
            # A sandbox created before the kill renews after the restart.
            live = [(sid, ids) for sid, ids in chains if ids[-1].serial not in revoked]
            assert live, "no renewal was returned before the kill"
            sid, ids = live[0]
            der, _ = gwtest.csr_der()
            r = gw.stub(ids[-1]).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
            assert r.serial in store_rows(gw)
            received[r.serial] = sid
        print(f"\nkill -9: {rounds} rounds, {totals['received']} certificates returned and "
              f"found, {totals['unreturned']} recorded but never returned (revoked)")
    finally:
        rc = gw.stop()
    assert rc == 0, gw.sanitizer_report()


# ---------------------------------------------------------------------------
# Storage that refuses writes: disk full, immutable WAL


def fill_fs(directory):
    """Fill the file system of `directory` with one file until ENOSPC (down to
    the last byte), so that no new block can be allocated. Returns its path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 4096, 1):
            buf = b"\xa5" * chunk
            while True:
                try:
                    if os.write(fd, buf) == 0:
                        break
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return path


class DiskFull:
    """The data dir on a small tmpfs of its own, filled up by a file."""

    what = "disk full (tmpfs filled to ENOSPC)"

    def __init__(self):
        self.mnt = None
        self.filler = None

    def setup(self):
        if os.geteuid() != 0:
            pytest.skip("disk-full test needs root to mount a tmpfs")
        self.mnt = tempfile.mkdtemp(prefix="tsr-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tsr-faults",
                            self.mnt], capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(self.mnt)
            self.mnt = None
            pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
        return os.path.join(self.mnt, "data")

    def inject(self, gw):
        self.filler = fill_fs(self.mnt)
        st = os.statvfs(self.mnt)
        assert st.f_bavail == 0, "the tmpfs still has free blocks"

    def heal(self, gw):
        os.unlink(self.filler)

    def teardown(self):
        if self.mnt:
            # Its sandbox's pid file goes with the tmpfs: stopped now, not
            # left to run forever (gwtest stops the others at exit).
            gwtest.kill_sandboxes(os.path.join(self.mnt, "data"))
            subprocess.run(["umount", "-l", self.mnt], check=False)
            os.rmdir(self.mnt)


class ImmutableWal:
    """chattr +i on the database and its -wal file while the gateway holds
    them open: every write(2) to them fails with EPERM (what a read-only
    remount would do; that remount itself is refused with EBUSY while the
    files are open for writing)."""

    what = "immutable database and WAL (chattr +i)"

    def __init__(self):
        self.files = []

    def setup(self):
        if os.geteuid() != 0 or shutil.which("chattr") is None:
            pytest.skip("immutable-WAL test needs root and chattr")
        return None

    def inject(self, gw):
        self.files = [gw.db_path, gw.db_path + "-wal"]
        for f in self.files:
            assert os.path.exists(f), f
            r = subprocess.run(["chattr", "+i", f], capture_output=True, text=True)
            if r.returncode != 0:
                self.files = []
                pytest.skip(f"chattr +i not supported on {f}: {r.stderr.strip()}")

    def heal(self, gw):
        for f in self.files:
            subprocess.run(["chattr", "-i", f], check=True)
        self.files = []

    def teardown(self):
        for f in self.files:
            subprocess.run(["chattr", "-i", f], check=False)


def sqlite_count(gw, sql, *args):
    db = sqlite3.connect(f"file:{gw.db_path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchone()[0]
    finally:
        db.close()


def push(gw, ident, sid, texts):
    batch = pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[
        pb.LogLine(timestamp_ms=1, stream="stdout", text=t) for t in texts])
    return gw.stub(ident).PushSandboxLogs(iter([batch]), timeout=10)


@pytest.mark.parametrize("fault", [DiskFull, ImmutableWal], ids=["disk_full", "immutable_wal"])
def test_storage_refusing_writes(fault):
    f = fault()
    try:
        data_dir = f.setup()
        gw = gwtest.Gateway(renew_limit=1000, data_dir=data_dir)
        try:
            storage_refusal_scenario(gw, f)
        finally:
            rc = gw.stop()
        assert rc == 0, gw.sanitizer_report()
    finally:
        f.teardown()


def storage_refusal_scenario(gw, fault):
    adm = admin(gw)
    a = gw.create_sandbox()
    sid, name = a.sandbox.id, a.sandbox.name
    ident = gw.placed_identity(sid)
    push(gw, ident, sid, [b"before the fault"])
    der, key = gwtest.csr_der()
    r = gw.stub(ident).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
    renewed = gwtest.Identity((r.certificate_pem + r.chain_pem).encode(), gwtest.key_pem(key),
                              r.serial)
    certs_before = listed_certs(gw, sid)
    n_certs = sqlite_count(gw, "SELECT count(*) FROM certificates")
    n_sandboxes = sqlite_count(gw, "SELECT count(*) FROM sandboxes")
    n_logs = sqlite_count(gw, "SELECT count(*) FROM logs")
    pid = gw.pid

    fault.inject(gw)
    # ---- every write: UNAVAILABLE, nothing recorded -------------------------
    writes = {
        "CreateSandbox": lambda: adm.CreateSandbox(pb.CreateSandboxRequest(
            name="full-" + uuid.uuid4().hex[:8], policy=gwtest.POLICY,
            provider_env={"EXAMPLE_API_KEY": "x" * 20000}), timeout=10),
        "RenewCertificate": lambda: gw.stub(renewed).RenewCertificate(
            pb.RenewCertificateRequest(csr=gwtest.csr_der()[0]), timeout=10),
        "PushSandboxLogs": lambda: push(gw, renewed, sid, [b"during the fault"] * 50),
        "UpdateConfig": lambda: adm.UpdateConfig(pb.UpdateConfigRequest(
            name=name, policy=gwtest.POLICY), timeout=10),
        "ReportPolicyStatus": lambda: gw.stub(renewed).ReportPolicyStatus(
            pb.ReportPolicyStatusRequest(sandbox_id=sid, version=1,
                                         status=pb.POLICY_STATUS_APPLIED), timeout=10),
        "SubmitPolicyAnalysis": lambda: gw.stub(renewed).SubmitPolicyAnalysis(
            pb.SubmitPolicyAnalysisRequest(sandbox_name=name, chunks=[pb.PolicyChunk(
                domain="network", content="default: deny\n")]), timeout=10),
        "RevokeCertificate": lambda: adm.RevokeCertificate(pb.RevokeCertificateRequest(
            serial=a.certificate_serial, reason="fault"), timeout=10),
        "DeleteSandbox": lambda: adm.DeleteSandbox(pb.DeleteSandboxRequest(id=sid), timeout=10),
    }
    for rpc, call in writes.items():
        t0 = time.monotonic()
        code, details = code_of(call)
        took = time.monotonic() - t0
        assert code == S.UNAVAILABLE, f"{fault.what}: {rpc} -> {code} {details}"
        assert "storage unavailable" in details, details
        assert took < 8, f"{rpc} took {took:.1f}s"
        assert gw.alive() and gw.pid == pid
    # Nothing of the refused writes is in the file ...
    assert sqlite_count(gw, "SELECT count(*) FROM certificates") == n_certs
    assert sqlite_count(gw, "SELECT count(*) FROM sandboxes") == n_sandboxes
    assert sqlite_count(gw, "SELECT count(*) FROM logs") == n_logs
    assert sqlite_count(gw, "SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL") == 0
    # ... nor visible through the API; reads keep working.
    assert listed_certs(gw, sid).keys() == certs_before.keys()
    assert [s.id for s in all_sandboxes(gw)] == [sid]
    got = adm.GetSandbox(pb.GetSandboxRequest(id=sid), timeout=10).sandbox
    assert got.state != "deleted" and got.policy_version == 1
    logs = adm.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid), timeout=10).lines
    assert [l.text for l in logs] == [b"before the fault"]
    assert gw.stub(renewed).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sid),
                                             timeout=10).policy_version == 1
    env = adm.GetSandboxProviderEnvironment(pb.GetSandboxProviderEnvironmentRequest(
        sandbox_id=sid), timeout=10).environment
    assert env["EXAMPLE_API_KEY"].startswith("secret-")
    # The certificate whose revocation failed was not revoked in memory either.
    assert gw.stub(gw.placed_identity(sid)).GetTrustBundle(pb.GetTrustBundleRequest(),
                                                            timeout=10).trust_domain == TD
    gw.assert_serving(renewed)

    # ---- space returns: the same process writes again ------------------------
    fault.heal(gw)
    r2 = adm.CreateSandbox(pb.CreateSandboxRequest(name="after-" + uuid.uuid4().hex[:8],
                                                   policy=gwtest.POLICY), timeout=10)
    assert r2.certificate_serial in store_rows(gw)
    der, _ = gwtest.csr_der()
    rr = gw.stub(renewed).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
    assert rr.serial in listed_certs(gw, sid) and rr.serial in store_rows(gw)
    assert push(gw, renewed, sid, [b"after the fault"]).accepted_lines == 1
    logs = adm.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid), timeout=10).lines
    assert [l.text for l in logs] == [b"before the fault", b"after the fault"]
    assert adm.UpdateConfig(pb.UpdateConfigRequest(name=name, policy=gwtest.POLICY),
                            timeout=10).policy_version == 2
    adm.RevokeCertificate(pb.RevokeCertificateRequest(serial=r.serial, reason="test"), timeout=10)
    assert code_of(lambda: gw.stub(renewed).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))[0] == S.UNAUTHENTICATED
    # rr was renewed from r: revoked with it. The deletion revokes what is
    # left, the first certificate.
    assert listed_certs(gw, sid)[rr.serial].revoked_at > 0
    assert adm.DeleteSandbox(pb.DeleteSandboxRequest(id=sid), timeout=10).revoked_certificates == 1
    assert gw.pid == pid
    gw.assert_serving(gw.user("admin"))


# ---------------------------------------------------------------------------
# Clock skew, gateway side (the CA library side: tests/unit/test_ca_skew.c)


@pytest.fixture(scope="module")
def skew_gw():
    g = gwtest.Gateway()
    yield g
    rc = g.stop()
    assert rc == 0, g.sanitizer_report()


@pytest.mark.parametrize("case, nb_offset, na_offset, want", [
    # An issuer (another replica, or a forger) whose clock runs ahead.
    ("notBefore 4 min in the future", 240, 3600, S.UNAUTHENTICATED),
    ("notBefore 5 s in the future", 5, 3600, S.UNAUTHENTICATED),
    # An issuer 5 min slow: backdated from its clock, so 6 min in the past.
    ("issued by a clock 5 min slow", -360, 3300, S.OK),
    ("notBefore now - 60 s (the profile)", -60, 3600, S.OK),
    ("notAfter 2 s ago", -3600, -2, S.UNAUTHENTICATED),
])
def test_gateway_refuses_not_yet_valid_leaf(skew_gw, case, nb_offset, na_offset, want):
    gw = skew_gw
    sb = gw.create_sandbox()
    t = gwtest.now().replace(microsecond=0)
    ident = gw.sandbox_identity(sb.sandbox.id,
                                not_before=t + datetime.timedelta(seconds=nb_offset),
                                not_after=t + datetime.timedelta(seconds=na_offset))
    code, details = code_of(lambda: gw.stub(ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sb.sandbox.id), timeout=10))
    assert code == want, (case, details)
    if want == S.UNAUTHENTICATED:
        # The refusal is an identity refusal at the connection, not an error
        # of the call: the same caller may still run the health check.
        health = gw.health(ident).Check(gwtest.health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == gwtest.health_pb2.HealthCheckResponse.SERVING
        why = "not yet valid" if nb_offset > 0 else "expired"
        assert why in details, (case, details)
        assert any(why in l and '"decision":"deny"' in l for l in gw.audit_lines())
    gw.assert_serving(gw.user("admin"))
