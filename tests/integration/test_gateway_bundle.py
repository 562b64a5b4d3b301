"""GetTrustBundle's SPIFFE bundle (JWKS) checked with python cryptography:
one key per root of bundle_pem, x5c decoding to that root, key parameters
equal to the root's public key, sequence and refresh hint."""
import base64
import json
import os

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
