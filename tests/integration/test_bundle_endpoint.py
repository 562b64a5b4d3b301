"""The SPIFFE bundle endpoint (docs/operations.md, "Federation: the bundle
endpoint"): the trust bundle as the SPIFFE Trust Domain and Bundle standard
serves it, over HTTPS without a client certificate, fetched with curl;
every field checked; spiffe_sequence grows on a rotation (even two within
one second); `tessera bundle --format spiffe|pem`."""
import base64
import datetime
import json
import os
import re
import signal
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import gwtest
from gwtest import BIN, TD


def start(extra=""):
    g = gwtest.Gateway(extra_config="bundle_endpoint:\n  listen: 127.0.0.1:0\n" + extra)
    line = g.proc.stdout.readline()
    m = re.fullmatch(r"tessera-gateway SPIFFE bundle endpoint on https://127\.0\.0\.1:(\d+)/ "
                     r"\((https_spiffe|https_web)\)\n", line)
    assert m, line
    return g, int(m.group(1)), m.group(2)


def curl(port, cafile, path="/", *extra):
    r = subprocess.run(["curl", "-sS", "--cacert", cafile, "-D", "-", *extra,
                        f"https://localhost:{port}{path}"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    headers = {k.lower(): v for k, v in (l.split(": ", 1) for l in head.split("\r\n")[1:])}
    return status, headers, body


def b64url(data):
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def check_document(doc, roots, sequence):
    assert set(doc) == {"keys", "spiffe_sequence", "spiffe_refresh_hint"}
    assert doc["spiffe_sequence"] == sequence
    assert doc["spiffe_refresh_hint"] == 300
    assert len(doc["keys"]) == len(roots)
    for key, root in zip(doc["keys"], roots):
        assert set(key) == {"use", "kty", "crv", "x", "y", "x5c"}, key
        assert key["use"] == "x509-svid" and key["kty"] == "EC" and key["crv"] == "P-256"
        nums = root.public_key().public_numbers()
        assert b64url(key["x"]) == nums.x.to_bytes(32, "big")
        assert b64url(key["y"]) == nums.y.to_bytes(32, "big")
        assert "=" not in key["x"] + key["y"]
        assert key["x5c"] == [base64.b64encode(root.public_bytes(
            serialization.Encoding.DER)).decode()]


def reload(g):
    start = len(g.stderr_lines)
    os.kill(g.pid, signal.SIGHUP)
    gwtest.wait_for("reload", lambda: any("reloaded:" in l for l in g.stderr_lines[start:]),
                    timeout=20)


def cli(g, *args):
    e = {k: v for k, v in os.environ.items()
         if k not in ("TESSERA_ADDR", "TESSERA_PKI", "TESSERA_USER")}
    return subprocess.run([os.path.join(BIN, "tessera"), "--addr", f"127.0.0.1:{g.port}",
                           "--pki", g.pki, *args], capture_output=True, text=True, env=e,
                          timeout=30)


def test_bundle_endpoint_serves_the_spiffe_bundle():
    g, port, profile = start()
    try:
        assert profile == "https_spiffe"
        bundle_path = os.path.join(g.pki, "bundle.pem")
        status, headers, body = curl(port, bundle_path)
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert headers["content-length"] == str(len(body.encode()))
        doc = json.loads(body)
        seq = int(os.stat(bundle_path).st_mtime)
        check_document(doc, gwtest.load_chain(bundle_path), seq)
        # https_spiffe: the endpoint authenticates as the gateway's SPIFFE ID.
        r = subprocess.run(["curl", "-sS", "--cacert", bundle_path, "-o", "/dev/null",
                            "--write-out", "%{ssl_verify_result}", f"https://localhost:{port}/"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout == "0", (r.stdout, r.stderr)
        import ssl
        pem = ssl.get_server_certificate(("127.0.0.1", port))
        leaf = x509.load_pem_x509_certificate(pem.encode())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://{TD}/gateway"]
        # The CLI prints the same document, and the PEM.
        r = cli(g, "bundle", "--format", "spiffe")
        assert r.returncode == 0, r.stderr
        assert r.stdout == body + "\n"
        r = cli(g, "bundle", "--format", "pem")
        assert r.returncode == 0 and r.stdout.encode() == g.bundle
        r = cli(g, "bundle", "--format", "jwks")
        assert r.returncode == 2 and "--format is pem or spiffe" in r.stderr
        # Nothing else is served.
        assert curl(port, bundle_path, "/keys")[0] == 404
        status, headers, body404 = curl(port, bundle_path, "/", "-X", "POST")
        assert status == 405 and headers["allow"] == "GET"

        # A rotation adds a root: the sequence grows.
        time.sleep(1.1)
        r = subprocess.run([os.path.join(BIN, "certgen"), "rotate-root", "--pki", g.pki],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        reload(g)
        status, _, body2 = curl(port, bundle_path)
        doc2 = json.loads(body2)
        roots = gwtest.load_chain(bundle_path)
        assert len(roots) == 2
        check_document(doc2, roots, int(os.stat(bundle_path).st_mtime))
        assert doc2["spiffe_sequence"] > doc["spiffe_sequence"]
        # Another change within the same second (the file's time does not
        # move): still a greater sequence.
        st = os.stat(bundle_path)
        with open(bundle_path, "wb") as f:   # the same roots, the other order
            f.write(b"".join(gwtest.pem(c) for c in reversed(roots)))
        os.utime(bundle_path, ns=(st.st_atime_ns, st.st_mtime_ns))
        reload(g)
        doc3 = json.loads(curl(port, bundle_path)[2])
        check_document(doc3, gwtest.load_chain(bundle_path), doc2["spiffe_sequence"] + 1)
        # A reload with nothing changed keeps the document as it is.
        reload(g)
        assert json.loads(curl(port, bundle_path)[2]) == doc3
    finally:
        g.stop()


def test_bundle_endpoint_https_web(tmp_path):
    """With bundle_endpoint.cert/key (a Web PKI certificate) the endpoint
    presents that certificate instead of the gateway's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(gwtest.now() - datetime.timedelta(minutes=1))
            .not_valid_after(gwtest.now() + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "web.pem").write_bytes(gwtest.pem(cert))
    (tmp_path / "web.key").write_bytes(gwtest.key_pem(key))
    g, port, profile = start(f"  cert: {tmp_path}/web.pem\n  key: {tmp_path}/web.key\n")
    try:
        assert profile == "https_web"
        status, _, body = curl(port, str(tmp_path / "web.pem"))
        assert status == 200
        check_document(json.loads(body), gwtest.load_chain(os.path.join(g.pki, "bundle.pem")),
                       int(os.stat(os.path.join(g.pki, "bundle.pem")).st_mtime))
    finally:
        g.stop()


def test_bundle_endpoint_config_errors(tmp_path):
    g = gwtest.Gateway()
    g.stop()
    base = open(g.config).read()
    for extra, want in [
        ("bundle_endpoint:\n  cert: /x\n", 'bundle_endpoint: "listen" is required'),
        ("bundle_endpoint:\n  listen: 127.0.0.1:0\n  cert: /x\n",
         'bundle_endpoint: "cert" and "key" go together'),
        ("bundle_endpoint:\n  listen: nope\n", "bundle_endpoint: "),
        ("bundle_endpoint:\n  listen: 127.0.0.1:0\n  port: 1\n", "port"),
    ]:
        with open(g.config, "w") as f:
            f.write(base + extra)
        r = subprocess.run([os.path.join(BIN, "tessera-gateway"), "--config", g.config,
                            "--check"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and want in r.stderr, (extra, r.stderr)
