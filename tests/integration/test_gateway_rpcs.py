"""Gateway behaviour through the stock grpcio client: log stream pinning,
renewal and its refusals, revocation of live connections, limits, malformed
input, secrets at rest, restarts."""
import os
import queue
import sqlite3
import threading
import time
import uuid

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import gwtest
from gwtest import TD, code_of, pb

S = grpc.StatusCode


def admin(gw):
    return gw.stub(gw.user("admin"))


def logs_of(gw, sid):
    return admin(gw).GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid), timeout=10).lines


def test_log_stream_pinned_to_first_sandbox(gw):
    a, b = gw.create_sandbox(), gw.create_sandbox()
    me = gw.stub(gw.sandbox_identity(a.sandbox.id))
    batches = [
        pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=1, stream="stdout", text=b"first")]),
        pb.PushSandboxLogsRequest(sandbox_id=b.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=2, stream="stdout", text=b"smuggled")]),
        pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=3, stream="stdout", text=b"after")]),
    ]
    code, details = code_of(lambda: me.PushSandboxLogs(iter(batches), timeout=10))
    assert code == S.PERMISSION_DENIED and details == "cross-sandbox access denied"
    assert [l.text for l in logs_of(gw, a.sandbox.id)] == [b"first"]
    assert list(logs_of(gw, b.sandbox.id)) == []


def test_log_stream_stores_every_accepted_line(gw):
    a = gw.create_sandbox()
    me = gw.stub(gw.sandbox_identity(a.sandbox.id))
    batches = [pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=i, stream="stderr", text=b"line %d \xff\xfe" % i)
        for i in range(b * 100, b * 100 + 100)]) for b in range(5)]
    resp = me.PushSandboxLogs(iter(batches), timeout=20)
    assert resp.accepted_lines == 500
    got = logs_of(gw, a.sandbox.id)
    assert len(got) == 500
    assert got[0].text == b"line 0 \xff\xfe" and got[-1].text == b"line 499 \xff\xfe"
    assert [l.seq for l in got] == sorted(l.seq for l in got)


def test_log_line_and_batch_caps(gw):
    a = gw.create_sandbox()
    me = gw.stub(gw.sandbox_identity(a.sandbox.id))
    big = pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=1, text=b"x" * 16385)])
    assert code_of(lambda: me.PushSandboxLogs(iter([big]), timeout=10))[0] == S.RESOURCE_EXHAUSTED
    many = pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=1, text=b"x")] * 1001)
    assert code_of(lambda: me.PushSandboxLogs(iter([many]), timeout=10))[0] == S.RESOURCE_EXHAUSTED
    assert list(logs_of(gw, a.sandbox.id)) == []


def test_renew_issues_for_the_callers_identity_only(gw):
    a = gw.create_sandbox()
    ident = gw.placed_identity(a.sandbox.id)
    key = ec.generate_private_key(ec.SECP256R1())
    # The CSR asks for nothing; the certificate carries the caller's ID.
    der, _ = gwtest.csr_der(key)
    r = gw.stub(ident).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
    cert = x509.load_pem_x509_certificate(r.certificate_pem.encode())
    uris = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TD}/sandbox/{a.sandbox.id}"]
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert format(cert.serial_number, "x") == r.serial.lstrip("0")
    assert r.serial != ident.serial
    # Recorded before it was returned.
    certs = admin(gw).ListCertificates(pb.ListCertificatesRequest(sandbox_id=a.sandbox.id),
                                       timeout=10).certificates
    assert r.serial in [c.serial for c in certs]
    assert any('"event":"renew"' in l and r.serial in l for l in gw.audit_lines())


def test_renew_refuses_bad_csrs(gw):
    a = gw.create_sandbox()
    me = gw.stub(gw.placed_identity(a.sandbox.id))
    key = ec.generate_private_key(ec.SECP256R1())
    other = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
             .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                 f"spiffe://{TD}/sandbox/{uuid.uuid4()}")]), critical=False)
             .sign(key, gwtest.hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    weak = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .sign(rsa.generate_private_key(65537, 1024), gwtest.hashes.SHA256())
            .public_bytes(serialization.Encoding.DER))
    good, _ = gwtest.csr_der()
    tampered = good[:-3] + bytes([good[-3] ^ 1]) + good[-2:]
    for csr in (b"", b"garbage", other, weak, tampered, b"\x30" * 20000):
        code, details = code_of(lambda: me.RenewCertificate(pb.RenewCertificateRequest(csr=csr),
                                                            timeout=10))
        assert code == S.INVALID_ARGUMENT, (csr[:20], details)


def test_renew_rate_limited_per_sandbox(gw):
    a, b = gw.create_sandbox(), gw.create_sandbox()
    me = gw.stub(gw.placed_identity(a.sandbox.id))
    codes = []
    for _ in range(6):
        der, _ = gwtest.csr_der()
        codes.append(code_of(lambda: me.RenewCertificate(pb.RenewCertificateRequest(csr=der),
                                                         timeout=10))[0])
    assert codes == [S.OK] * 5 + [S.RESOURCE_EXHAUSTED]
    der, _ = gwtest.csr_der()
    gw.stub(gw.placed_identity(b.sandbox.id)).RenewCertificate(
        pb.RenewCertificateRequest(csr=der), timeout=10)  # another sandbox is unaffected


def test_deleted_sandbox_gets_no_certificate(gw):
    a = gw.create_sandbox()
    ident = gw.placed_identity(a.sandbox.id)
    der, _ = gwtest.csr_der()
    gw.stub(ident).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
    d = admin(gw).DeleteSandbox(pb.DeleteSandboxRequest(id=a.sandbox.id), timeout=10)
    assert d.revoked_certificates == 2  # the first certificate and the renewed one
    certs = admin(gw).ListCertificates(pb.ListCertificatesRequest(sandbox_id=a.sandbox.id),
                                       timeout=10).certificates
    assert len(certs) == 2 and all(c.revoked_at > 0 for c in certs)
    der, _ = gwtest.csr_der()
    code, _ = code_of(lambda: gw.stub(ident).RenewCertificate(
        pb.RenewCertificateRequest(csr=der), timeout=10))
    assert code == S.UNAUTHENTICATED


def test_revocation_closes_open_stream_within_a_second(gw):
    a = gw.create_sandbox()
    der, key = gwtest.csr_der()
    r = gw.stub(gw.placed_identity(a.sandbox.id)).RenewCertificate(
        pb.RenewCertificateRequest(csr=der), timeout=10)
    ident = gwtest.Identity((r.certificate_pem + r.chain_pem).encode(), gwtest.key_pem(key))
    stub = gw.stub(ident)
    assert stub.GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id),
                                 timeout=10).policy_version == 1
    release = threading.Event()

    def batches():
        yield pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=1, text=b"before revocation")])
        release.wait(10)

    result = queue.Queue()

    def run():
        result.put((code_of(lambda: stub.PushSandboxLogs(batches(), timeout=15)),
                    time.monotonic()))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    revoked_at = time.monotonic()
    admin(gw).RevokeCertificate(pb.RevokeCertificateRequest(serial=r.serial), timeout=10)
    (code, _), ended = result.get(timeout=10)
    release.set()
    t.join()
    assert code in (S.UNAVAILABLE, S.CANCELLED, S.INTERNAL, S.UNAUTHENTICATED)
    assert ended - revoked_at < 1.5
    # Reconnecting with the revoked certificate is refused.
    code, _ = code_of(lambda: gw.stub(ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id), timeout=10))
    assert code == S.UNAUTHENTICATED
    assert [l.text for l in logs_of(gw, a.sandbox.id)] == [b"before revocation"]


def test_oversized_message_refused(gw):
    code, _ = code_of(lambda: admin(gw).CreateSandbox(pb.CreateSandboxRequest(
        name="huge", policy="x" * (2 * 1024 * 1024)), timeout=10))
    assert code == S.RESOURCE_EXHAUSTED


def test_unknown_method_and_malformed_protobuf(gw):
    ch = gw.channel(gw.user("admin"))
    nope = ch.unary_unary("/tessera.v1.Gateway/NoSuchMethod")
    assert code_of(lambda: nope(b"", timeout=10))[0] == S.UNIMPLEMENTED
    raw = ch.unary_unary("/tessera.v1.Gateway/GetSandbox")
    assert code_of(lambda: raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10))[0] == S.INVALID_ARGUMENT
    # Unauthenticated callers never reach the decoder.
    anon = gw.channel(None).unary_unary("/tessera.v1.Gateway/GetSandbox")
    assert code_of(lambda: anon(b"\xff", timeout=10))[0] == S.UNAUTHENTICATED


def test_create_validates_input(gw):
    s = admin(gw)
    cases = [
        pb.CreateSandboxRequest(name="Bad Name", policy=gwtest.POLICY),
        pb.CreateSandboxRequest(name="ok-name", policy=""),
        pb.CreateSandboxRequest(name="ok-name", policy="version: 2\n"),
        pb.CreateSandboxRequest(name="ok-name", policy="version: 1\nnetwork: {default: maybe}\n"),
        pb.CreateSandboxRequest(name="ok-name", policy=gwtest.POLICY, driver="podman"),
        pb.CreateSandboxRequest(name="ok-name", policy=gwtest.POLICY,
                                provider_env={"BAD-NAME": "x"}),
    ]
    for req in cases:
        code, details = code_of(lambda: s.CreateSandbox(req, timeout=10))
        assert code == S.INVALID_ARGUMENT, (req, details)
    name = "dup-" + uuid.uuid4().hex[:8]
    gw.create_sandbox(name)
    assert code_of(lambda: gw.create_sandbox(name))[0] == S.ALREADY_EXISTS


def test_get_and_list_sandboxes(gw):
    made = [gw.create_sandbox() for _ in range(3)]
    s = admin(gw)
    got = s.GetSandbox(pb.GetSandboxRequest(name=made[0].sandbox.name), timeout=10).sandbox
    assert got.id == made[0].sandbox.id
    assert got.spiffe_id == f"spiffe://{TD}/sandbox/{got.id}"
    assert code_of(lambda: s.GetSandbox(pb.GetSandboxRequest(), timeout=10))[0] == \
        S.INVALID_ARGUMENT
    seen, token = [], ""
    while True:
        page = s.ListSandboxes(pb.ListSandboxesRequest(page_size=2, page_token=token), timeout=10)
        seen += [x.id for x in page.sandboxes]
        token = page.next_page_token
        if not token:
            break
    assert all(m.sandbox.id in seen for m in made)
    assert len(seen) == len(set(seen))


def test_provider_env_encrypted_at_rest_and_admin_only(gw):
    secret = "sk-" + uuid.uuid4().hex
    a = gw.create_sandbox(env={"EXAMPLE_API_KEY": secret})
    env = admin(gw).GetSandboxProviderEnvironment(
        pb.GetSandboxProviderEnvironmentRequest(sandbox_id=a.sandbox.id), timeout=10).environment
    assert env["EXAMPLE_API_KEY"] == secret
    own = gw.stub(gw.sandbox_identity(a.sandbox.id)).GetSandboxProviderEnvironment(
        pb.GetSandboxProviderEnvironmentRequest(sandbox_id=a.sandbox.id), timeout=10)
    assert own.environment["EXAMPLE_API_KEY"] == secret
    for top, _, files in os.walk(os.path.join(gw.dir, "data")):
        for name in files:
            blob = open(os.path.join(top, name), "rb").read()
            assert secret.encode() not in blob, os.path.join(top, name)
    assert not any(secret in l for l in gw.audit_lines())


def test_sandbox_may_only_change_its_policy(gw):
    a = gw.create_sandbox()
    me = gw.stub(gw.sandbox_identity(a.sandbox.id))
    code, _ = code_of(lambda: me.UpdateConfig(pb.UpdateConfigRequest(
        name=a.sandbox.name, policy=gwtest.POLICY, provider_env={"X": "y"}), timeout=10))
    assert code == S.PERMISSION_DENIED
    v = me.UpdateConfig(pb.UpdateConfigRequest(name=a.sandbox.name, policy=gwtest.POLICY),
                        timeout=10).policy_version
    assert v == 2
    cfg = me.GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id), timeout=10)
    assert cfg.policy_version == 2 and cfg.policy == gwtest.POLICY


def test_draft_policy_round_trip(gw):
    a = gw.create_sandbox()
    me = gw.stub(gw.sandbox_identity(a.sandbox.id))
    r = me.SubmitPolicyAnalysis(pb.SubmitPolicyAnalysisRequest(
        sandbox_name=a.sandbox.name, chunks=[
            pb.PolicyChunk(domain="network", content="default: deny\n"),
            pb.PolicyChunk(domain="process", content="max_processes: 10\n")]), timeout=10)
    assert r.accepted_chunks == 2
    d = admin(gw).GetDraftPolicy(pb.GetDraftPolicyRequest(name=a.sandbox.name), timeout=10)
    assert [c.domain for c in d.chunks] == ["network", "process"]
    bad = pb.SubmitPolicyAnalysisRequest(sandbox_name=a.sandbox.name, chunks=[
        pb.PolicyChunk(domain="kernel", content="x: 1\n")])
    assert code_of(lambda: me.SubmitPolicyAnalysis(bad, timeout=10))[0] == S.INVALID_ARGUMENT


def test_trust_bundle(gw):
    b = admin(gw).GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10)
    assert b.trust_domain == TD and b.bundle_pem.encode() == gw.bundle


def test_revocations_survive_restart():
    g = gwtest.Gateway()
    try:
        a = g.create_sandbox()
        der, key = gwtest.csr_der()
        r = g.stub(g.placed_identity(a.sandbox.id)).RenewCertificate(
            pb.RenewCertificateRequest(csr=der), timeout=10)
        ident = gwtest.Identity((r.certificate_pem + r.chain_pem).encode(), gwtest.key_pem(key))
        admin(g).RevokeCertificate(pb.RevokeCertificateRequest(serial=r.serial), timeout=10)
        assert g.stop() == 0
        g.start()
        code, _ = code_of(lambda: g.stub(ident).GetSandboxConfig(
            pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id), timeout=10))
        assert code == S.UNAUTHENTICATED
        # The sandbox and its policy are still there.
        assert admin(g).GetSandbox(pb.GetSandboxRequest(id=a.sandbox.id), timeout=10) \
            .sandbox.name == a.sandbox.name
    finally:
        g.stop()
