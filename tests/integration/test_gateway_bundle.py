"""GetTrustBundle's SPIFFE bundle (JWKS) checked with python cryptography:
one key per root of bundle_pem, x5c decoding to that root, key parameters
equal to the root's public key, sequence and refresh hint."""
import base64
import datetime
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import gwtest
from gwtest import TD, pb


def b64url_int(text):
    assert "=" not in text and "+" not in text and "/" not in text
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def b64url_bytes(text):
    assert "=" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def self_signed(key, name):
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    alg = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(gwtest.now()).not_valid_after(gwtest.now().replace(year=2099))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, alg))


def check_bundle(resp, bundle_path):
    roots = gwtest.load_chain(bundle_path)
    assert resp.bundle_pem.encode() == open(bundle_path, "rb").read()
    doc = json.loads(resp.spiffe_bundle_json)
    assert set(doc) == {"keys", "spiffe_sequence", "spiffe_refresh_hint"}
    assert doc["spiffe_sequence"] == int(os.stat(bundle_path).st_mtime)
    assert doc["spiffe_refresh_hint"] == 300
    assert len(doc["keys"]) == len(roots)
    for key, root in zip(doc["keys"], roots):
        assert key["use"] == "x509-svid"
        assert len(key["x5c"]) == 1
        der = base64.b64decode(key["x5c"][0], validate=True)
        assert der == root.public_bytes(serialization.Encoding.DER)
        pub = x509.load_der_x509_certificate(der).public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            assert set(key) == {"use", "kty", "crv", "x", "y", "x5c"}
            assert key["kty"] == "EC"
            size = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}[pub.curve.name]
            assert key["crv"] == {32: "P-256", 48: "P-384", 66: "P-521"}[size]
            assert len(b64url_bytes(key["x"])) == size == len(b64url_bytes(key["y"]))
            numbers = pub.public_numbers()
            assert (b64url_int(key["x"]), b64url_int(key["y"])) == (numbers.x, numbers.y)
        elif isinstance(pub, rsa.RSAPublicKey):
            assert set(key) == {"use", "kty", "n", "e", "x5c"}
            assert key["kty"] == "RSA"
            numbers = pub.public_numbers()
            assert (b64url_int(key["n"]), b64url_int(key["e"])) == (numbers.n, numbers.e)
        else:
            assert isinstance(pub, ed25519.Ed25519PublicKey)
            assert set(key) == {"use", "kty", "crv", "x", "x5c"}
            assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
            assert b64url_bytes(key["x"]) == pub.public_bytes(serialization.Encoding.Raw,
                                                              serialization.PublicFormat.Raw)
    return doc


def test_spiffe_bundle_of_the_certgen_pki(gw):
    for ident in (gw.user("bob"), gw.sandbox_identity(gw.create_sandbox().sandbox.id)):
        resp = gw.stub(ident).GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10)
        assert resp.trust_domain == TD
        doc = check_bundle(resp, os.path.join(gw.pki, "bundle.pem"))
        assert len(doc["keys"]) == 1 and doc["keys"][0]["crv"] == "P-256"


@pytest.fixture(scope="module")
def multi_root_gw():
    """A bundle with more roots (rotation): P-384, RSA and Ed25519 added."""
    g = gwtest.Gateway()
    g.stop()
    extra = [self_signed(ec.generate_private_key(ec.SECP384R1()), "P-384 root"),
             self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                         "RSA root"),
             self_signed(ed25519.Ed25519PrivateKey.generate(), "Ed25519 root")]
    with open(os.path.join(g.pki, "bundle.pem"), "ab") as f:
        for c in extra:
            f.write(gwtest.pem(c))
    g.start()
    yield g
    rc = g.stop()
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, g.sanitizer_report())


def test_spiffe_bundle_with_every_key_type(multi_root_gw):
    g = multi_root_gw
    resp = g.stub(g.user("admin")).GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10)
    doc = check_bundle(resp, os.path.join(g.pki, "bundle.pem"))
    assert [k["kty"] for k in doc["keys"]] == ["EC", "EC", "RSA", "OKP"]
    assert [k.get("crv") for k in doc["keys"]] == ["P-256", "P-384", None, "Ed25519"]


# ---- the CRL ---------------------------------------------------------------------------

def crl_of(gw, ident=None):
    resp = gw.stub(ident or gw.user("bob")).GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10)
    assert resp.crl_pem.count("-----BEGIN X509 CRL-----") == 1
    return resp.crl_pem, x509.load_pem_x509_crl(resp.crl_pem.encode())


def renewed_leaf(gw, ident):
    """A certificate the gateway issued (and recorded) for `ident`'s sandbox."""
    der, _ = gwtest.csr_der()
    return gw.stub(ident).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)


def openssl(*args, cwd):
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)


def test_crl_empty_then_lists_revocations(gw):
    pem0, crl0 = crl_of(gw)
    issuing = gw.issuing_cert
    assert crl0.issuer == issuing.subject
    assert crl0.is_signature_valid(issuing.public_key())
    before = {r.serial_number for r in crl0}   # (the module's gateway is shared)
    number0 = crl0.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    aki = crl0.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert crl0.next_update > gwtest.now() + datetime.timedelta(hours=5)
    # Cached: the same bytes until something changes.
    assert crl_of(gw)[0] == pem0

    # RevokeCertificate: the next GetTrustBundle lists it, with its reason.
    sb = gw.create_sandbox()
    ident = gw.placed_identity(sb.sandbox.id)
    victim = renewed_leaf(gw, ident)
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=victim.serial, reason="keyCompromise"), timeout=10)
    pem1, crl1 = crl_of(gw, ident)
    assert crl1.is_signature_valid(issuing.public_key())
    number1 = crl1.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number1 > number0
    entry = crl1.get_revoked_certificate_by_serial_number(int(victim.serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    assert {r.serial_number for r in crl1} == before | {int(victim.serial, 16)}

    # DeleteSandbox: every certificate of the sandbox, reason cessationOfOperation.
    sb2 = gw.create_sandbox()
    other = renewed_leaf(gw, gw.placed_identity(sb2.sandbox.id))
    gw.stub(gw.user("admin")).DeleteSandbox(pb.DeleteSandboxRequest(id=sb2.sandbox.id), timeout=10)
    _, crl2 = crl_of(gw)
    listed = {r.serial_number: r for r in crl2}
    for serial in (sb2.certificate_serial, other.serial):
        r = listed[int(serial, 16)]
        assert r.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
            x509.ReasonFlags.cessation_of_operation
    assert int(victim.serial, 16) in listed
    assert sorted(listed) == [r.serial_number for r in crl2]   # ascending serials
    # A free-text reason has no reasonCode.
    third = renewed_leaf(gw, ident)
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=third.serial, reason="operator asked"), timeout=10)
    r = crl_of(gw)[1].get_revoked_certificate_by_serial_number(int(third.serial, 16))
    assert r is not None and len(r.extensions) == 0


def test_crl_with_openssl_cli(gw, tmp_path):
    sb = gw.create_sandbox()
    ident = gw.placed_identity(sb.sandbox.id)
    revoked = renewed_leaf(gw, ident)
    live = renewed_leaf(gw, ident)
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=revoked.serial), timeout=10)
    pem, _ = crl_of(gw)
    d = str(tmp_path)
    open(os.path.join(d, "crl.pem"), "w").write(pem)
    open(os.path.join(d, "bundle.pem"), "wb").write(gw.bundle)
    open(os.path.join(d, "issuing.pem"), "w").write(revoked.chain_pem)
    open(os.path.join(d, "revoked.pem"), "w").write(revoked.certificate_pem)
    open(os.path.join(d, "live.pem"), "w").write(live.certificate_pem)
    # The CRL's signature, by the issuing CA.
    r = openssl("crl", "-in", "crl.pem", "-CAfile", "issuing.pem", "-noout", "-verify", cwd=d)
    assert r.returncode == 0 and "verify OK" in r.stderr + r.stdout, r
    r = openssl("crl", "-in", "crl.pem", "-CAfile", "bundle.pem", "-noout", "-verify", cwd=d)
    assert r.returncode != 0 or "verify failure" in r.stderr + r.stdout, r   # root did not sign it
    r = openssl("crl", "-in", "crl.pem", "-noout", "-text", cwd=d)
    assert "Version 2" in r.stdout and "X509v3 CRL Number" in r.stdout
    assert "X509v3 Authority Key Identifier" in r.stdout
    # verify -crl_check: the revoked leaf is refused, the live one accepted.
    common = ["verify", "-crl_check", "-CAfile", "bundle.pem", "-untrusted", "issuing.pem",
              "-CRLfile", "crl.pem"]
    r = openssl(*common, "revoked.pem", cwd=d)
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr, r
    r = openssl(*common, "live.pem", cwd=d)
    assert r.returncode == 0 and "live.pem: OK" in r.stdout, r
    # Without the CRL the revoked one would pass: the check above is the CRL's doing.
    r = openssl("verify", "-CAfile", "bundle.pem", "-untrusted", "issuing.pem", "revoked.pem",
                cwd=d)
    assert r.returncode == 0, r


def test_crl_number_grows_across_restarts(gw):
    _, crl0 = crl_of(gw)
    n0 = crl0.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    number_file = os.path.join(gw.data_dir, "crl.number")
    assert int(open(number_file).read()) == n0
    assert os.stat(number_file).st_mode & 0o777 == 0o600
    gw.stop()
    # A number far ahead of the clock is continued, not reset.
    open(number_file, "w").write(str(n0 + 10 ** 9) + "\n")
    gw.start()
    _, crl1 = crl_of(gw)
    assert crl1.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == \
        n0 + 10 ** 9 + 1
