"""Identity is decided at the moment a call runs, not when it was admitted
(docs/security.md, "Identity at the moment of the call"):

- a RenewCertificate whose headers and body arrived before its caller's
  certificate was revoked, and whose END_STREAM came after, mints nothing;
- a held RenewCertificate (waiting for its group commit) completed after its
  caller's revocation answers UNAUTHENTICATED and leaves no living record;
- revocation follows renewal lineage: revoking a certificate revokes every
  certificate renewed from it, and closes connections that use them."""
import sqlite3
import threading
import time

import grpc
import pytest

import gwtest
from gwtest import code_of, pb
from h2client import H2, grpc_frame

S = grpc.StatusCode
RENEW = "/tessera.v1.Gateway/RenewCertificate"


@pytest.fixture(scope="module")
def gw():
    g = gwtest.Gateway(renew_limit=1000)
    yield g
    assert g.stop() == 0, g.sanitizer_report()


def admin(g):
    return g.stub(g.user("admin"))


def certificates(g, sid):
    """serial -> Certificate, every certificate of the sandbox."""
    return {c.serial: c for c in admin(g).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates}


def renew_body():
    der, _ = gwtest.csr_der()
    return grpc_frame(pb.RenewCertificateRequest(csr=der).SerializeToString())


def test_renewal_ended_after_its_revocation_mints_nothing(gw):
    """Headers and body of RenewCertificate, then the caller's certificate is
    revoked, then END_STREAM (within a millisecond or two): the handler never
    runs; the call answers UNAUTHENTICATED and no certificate is minted."""
    for _ in range(5):
        sid = gw.create_sandbox().sandbox.id
        ident = gw.renewed_identity(gw.placed_identity(sid))
        before = certificates(gw, sid)
        c = H2(gw, ident)
        try:
            stream = c.call(RENEW, [renew_body()], end_stream=False)
            admin(gw).RevokeCertificate(pb.RevokeCertificateRequest(serial=ident.serial),
                                        timeout=10)
            try:
                c.end(stream)
            except OSError:
                pass   # the 250 ms tick closed the connection first: same answer below
            got = c.wait(stream)
        finally:
            c.close()
        assert got["ended"], got
        assert (got["headers"].get("grpc-status"), got["headers"].get("grpc-message")) == \
            ("16", "certificate revoked"), got
        assert got["data"] == b""
        after = certificates(gw, sid)
        assert after.keys() == before.keys(), "a certificate was minted after the revocation"


def test_held_renewal_completed_after_revocation():
    """One worker; the store is locked, so RenewCertificate is held waiting for
    its group commit, and RevokeCertificate of the caller waits for the store
    on the worker. When the store is free, either the revocation commits first
    (the renewal is refused in its own transaction) or the renewal does (then
    its record is revoked with its parent, and the held answer, sent only
    after the revocation ran, is refused at dispatch). Either way:
    UNAUTHENTICATED, and no certificate of the sandbox but the first lives."""
    g = gwtest.Gateway(renew_limit=1000, workers=1)
    try:
        for _ in range(3):
            sid = g.create_sandbox().sandbox.id
            first = g.placed_identity(sid)
            ident = g.renewed_identity(first)
            lock = sqlite3.connect(g.db_path, timeout=10, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            results = {}

            def renew():
                der, _ = gwtest.csr_der()
                results["renew"] = code_of(lambda: g.stub(ident).RenewCertificate(
                    pb.RenewCertificateRequest(csr=der), timeout=20))

            def revoke():
                results["revoke"] = code_of(lambda: admin(g).RevokeCertificate(
                    pb.RevokeCertificateRequest(serial=ident.serial), timeout=20))

            t1 = threading.Thread(target=renew)
            t1.start()
            time.sleep(0.3)          # the renewal is held: its commit waits for the store
            t2 = threading.Thread(target=revoke)
            t2.start()
            time.sleep(0.3)          # the revocation waits for the store, on the worker
            lock.execute("COMMIT")
            lock.close()
            t1.join(30)
            t2.join(30)
            assert results["renew"] == (S.UNAUTHENTICATED, "certificate revoked"), results
            assert results["revoke"][0] == S.OK, results
            certs = certificates(g, sid)
            living = [s for s, c in certs.items() if c.revoked_at == 0]
            assert living == [first.serial], certs
    finally:
        assert g.stop() == 0, g.sanitizer_report()


def test_revoking_a_parent_closes_its_childs_connection(gw):
    """A connection authenticated by a renewed certificate is closed (its
    open call answered UNAUTHENTICATED) when the certificate it was renewed
    from is revoked."""
    sid = gw.create_sandbox().sandbox.id
    parent = gw.renewed_identity(gw.placed_identity(sid))
    child = gw.renewed_identity(parent)
    assert certificates(gw, sid)[child.serial].renewed_from == parent.serial
    c = H2(gw, child)
    try:
        stream = c.call("/tessera.v1.Gateway/PushSandboxLogs", [grpc_frame(
            pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[pb.LogLine(text=b"x")])
            .SerializeToString())], end_stream=False)
        time.sleep(0.3)
        t0 = time.monotonic()
        admin(gw).RevokeCertificate(pb.RevokeCertificateRequest(serial=parent.serial,
                                                                reason="key compromise"),
                                    timeout=10)
        got = c.wait(stream, timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert (got["headers"].get("grpc-status"), got["headers"].get("grpc-message")) == \
        ("16", "certificate revoked"), got
    assert elapsed < 1.0, elapsed
    code, msg = code_of(lambda: gw.stub(child).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))
    assert (code, msg) == (S.UNAUTHENTICATED, "certificate revoked")


def test_lineage_of_three_renewals_revoked_whole(gw):
    """first -> a -> b -> c: revoking a revokes b and c (their reason names a),
    leaves the first, and ListCertificates shows each one's parent."""
    sid = gw.create_sandbox().sandbox.id
    first = gw.placed_identity(sid)
    a = gw.renewed_identity(first)
    b = gw.renewed_identity(a)
    c = gw.renewed_identity(b)
    certs = certificates(gw, sid)
    assert [certs[x.serial].renewed_from for x in (first, a, b, c)] == \
        ["", first.serial, a.serial, b.serial]
    r = admin(gw).RevokeCertificate(pb.RevokeCertificateRequest(serial=a.serial, reason="lost"),
                                    timeout=10)
    assert r.certificate.serial == a.serial and r.certificate.revocation_reason == "lost"
    certs = certificates(gw, sid)
    assert certs[first.serial].revoked_at == 0
    assert certs[a.serial].revocation_reason == "lost"
    for x in (b, c):
        assert certs[x.serial].revoked_at == certs[a.serial].revoked_at
        assert certs[x.serial].revocation_reason == \
            f"renewed from revoked certificate {a.serial}"
        code, msg = code_of(lambda: gw.stub(x).GetSandboxConfig(
            pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))
        assert (code, msg) == (S.UNAUTHENTICATED, "certificate revoked")
    # The CRL lists the whole lineage.
    crl = gw.stub(gw.user("bob")).GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10).crl_pem
    from cryptography import x509
    listed = {r.serial_number for r in x509.load_pem_x509_crl(crl.encode())}
    assert {int(x.serial, 16) for x in (a, b, c)} <= listed
    assert int(first.serial, 16) not in listed
    # A revoked certificate renews into nothing.
    code, msg = code_of(lambda: gw.stub(c).RenewCertificate(
        pb.RenewCertificateRequest(csr=gwtest.csr_der()[0]), timeout=10))
    assert (code, msg) == (S.UNAUTHENTICATED, "certificate revoked")
    assert certificates(gw, sid).keys() == certs.keys()
