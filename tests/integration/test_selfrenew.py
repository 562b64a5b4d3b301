"""The gateway's certificates never expire by surprise (docs/operations.md,
"The gateway's own certificate", "Watching expiry"): the gateway renews its
serving certificate at 2/3 of its life (new key, same names), records it,
swaps it in without dropping a connection; `certgen renew-gateway` does the
same offline (and a crash in the middle is finished at start);
tessera_certificate_expiry_timestamp_seconds and warnings at 1/6 of a
lifetime; `certgen issue-proxy` certificates are recorded, listed and
revoked like any other."""
import datetime
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

import gwtest
import h2client
from gwtest import BIN, TD, escape_pem, pb

S = grpc.StatusCode
UTC = datetime.timezone.utc


def certgen(*args):
    return subprocess.run([os.path.join(BIN, "certgen")] + list(args), capture_output=True,
                          text=True, timeout=30)


def wait_log(g, text, start=0, timeout=20):
    gwtest.wait_for(repr(text), lambda: any(text in l for l in g.stderr_lines[start:]),
                    timeout=timeout, every=0.05)
    return [l for l in g.stderr_lines[start:] if text in l][0]


def reload(g):
    start = len(g.stderr_lines)
    os.kill(g.pid, signal.SIGHUP)
    wait_log(g, "reloaded:", start)
    return start


def gateway_cert(issuer_cert, issuer_key, nb, na, key=None):
    """A gateway certificate as certgen makes it: spiffe://TD/gateway, DNS localhost,
    IPs 127.0.0.1 and ::1."""
    return gwtest.make_leaf(f"spiffe://{TD}/gateway", issuer_cert, issuer_key, not_before=nb,
                            not_after=na, key=key, dns=["localhost"], ips=["127.0.0.1", "::1"])


def install_gateway_cert(g, cert, key, issuing):
    with open(os.path.join(g.pki, "gateway.pem"), "wb") as f:
        f.write(gwtest.pem(cert) + gwtest.pem(issuing))
    with open(os.path.join(g.pki, "gateway.key"), "wb") as f:
        f.write(gwtest.key_pem(key))


def served_cert(g):
    s = h2client.tls_connect(g)
    try:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
    finally:
        s.close()


def names(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (san.get_values_for_type(x509.UniformResourceIdentifier),
            san.get_values_for_type(x509.DNSName),
            sorted(str(i) for i in san.get_values_for_type(x509.IPAddress)))


def lifetime(cert):
    return (cert.not_valid_after - cert.not_valid_before).total_seconds()


def ts(dt):
    return int(dt.replace(tzinfo=UTC).timestamp())


def test_gateway_renews_its_own_certificate():
    g = gwtest.Gateway(metrics=True)
    try:
        original = served_cert(g)
        # A gateway certificate past 2/3 of its life, with less than 1/6 left.
        t0 = gwtest.now().replace(microsecond=0)
        old, old_key = gateway_cert(g.issuing_cert, g.issuing_key,
                                    t0 - datetime.timedelta(seconds=1000),
                                    t0 + datetime.timedelta(seconds=150))
        install_gateway_cert(g, old, old_key, g.issuing_cert)
        # An HTTP/2 connection opened on the old certificate, kept open.
        h2 = h2client.H2(g)
        assert x509.load_der_x509_certificate(h2.sock.getpeercert(True)) == original
        start = reload(g)
        old_serial = gwtest.serial_hex(old)
        warn = wait_log(g, f"the gateway certificate (serial {old_serial}) expires at", start)
        assert " warning tessera-gateway: warning: " in warn, warn
        assert "less than 1/6 of its lifetime is left" in warn
        line = wait_log(g, "renewed the gateway certificate: serial", start)
        m = re.search(r"serial ([0-9a-f]+) \(was ([0-9a-f]+)\), valid until (\S+), new key; new "
                      r"connections get it, open ones keep theirs", line)
        assert m and m.group(2) == old_serial, line
        new_serial = m.group(1)

        new = served_cert(g)
        assert gwtest.serial_hex(new) == new_serial
        assert names(new) == names(old)
        assert new.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) != \
            old_key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        assert lifetime(new) == lifetime(old) == 1150
        assert new.issuer == g.issuing_cert.subject
        # The files: the new pair, the key 0600, no leftover.
        on_disk = gwtest.load_chain(os.path.join(g.pki, "gateway.pem"))
        assert on_disk[0] == new and on_disk[1] == g.issuing_cert
        key = serialization.load_pem_private_key(
            open(os.path.join(g.pki, "gateway.key"), "rb").read(), None)
        assert key.public_key() == new.public_key() or key.public_key().public_numbers() == \
            new.public_key().public_numbers()
        assert os.stat(os.path.join(g.pki, "gateway.key")).st_mode & 0o777 == 0o600
        assert not os.path.exists(os.path.join(g.pki, "gateway.pem.new"))
        # Recorded: a gateway certificate, no sandbox.
        db = sqlite3.connect(g.db_path)
        rows = db.execute("SELECT spiffe_id, sandbox_id, not_before, not_after, revoked_at FROM "
                          "certificates WHERE serial = ?", (new_serial,)).fetchall()
        db.close()
        assert rows == [(f"spiffe://{TD}/gateway", None, ts(new.not_valid_before),
                         ts(new.not_valid_after), None)]
        out = certgen("list", "--store", g.db_path)
        assert out.returncode == 0, out.stderr
        assert re.search(rf"^{new_serial} +\S+ +valid +spiffe://{TD}/gateway$", out.stdout, re.M), \
            out.stdout
        # The open connection was not dropped: a call on it still works.
        sid = h2.call("/grpc.health.v1.Health/Check", [h2client.grpc_frame(b"")])
        st = h2.wait(sid)
        assert st["headers"].get("grpc-status") == "0", st
        h2.close()
        # Expiry gauges.
        samples = g.scrape()
        exp = lambda c: gwtest.metric(samples, "tessera_certificate_expiry_timestamp_seconds",
                                      cert=c)
        assert exp("gateway") == ts(new.not_valid_after)
        assert exp("issuing") == ts(g.issuing_cert.not_valid_after)
        root = gwtest.load_chain(os.path.join(g.pki, "root.pem"))[0]
        assert exp("root") == ts(root.not_valid_after)
        assert time.time() + 5 * 3600 < exp("crl") <= time.time() + 6 * 3600 + 5
        # Not renewed again: the new certificate is far from due.
        time.sleep(2)
        assert sum("renewed the gateway certificate" in l for l in g.stderr_lines) == 1
    finally:
        g.stop()


def test_issuing_ca_short_of_life_warns():
    g = gwtest.Gateway()
    try:
        root = gwtest.load_chain(os.path.join(g.pki, "root.pem"))[0]
        root_key = serialization.load_pem_private_key(
            open(os.path.join(g.pki, "root.key"), "rb").read(), None)
        t0 = gwtest.now().replace(microsecond=0)
        # An issuing CA with 100 s of its 1000 s left (certgen's profile).
        ikey = ec.generate_private_key(ec.SECP256R1())
        issuing = (x509.CertificateBuilder().subject_name(g.issuing_cert.subject)
                   .issuer_name(root.subject).public_key(ikey.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(t0 - datetime.timedelta(seconds=900))
                   .not_valid_after(t0 + datetime.timedelta(seconds=100))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                                False, False), critical=True)
                   .add_extension(g.issuing_cert.extensions.get_extension_for_class(
                       x509.NameConstraints).value, critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ikey.public_key()),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       root_key.public_key()), critical=False)
                   .sign(root_key, hashes.SHA256()))
        with open(os.path.join(g.pki, "issuing.pem"), "wb") as f:
            f.write(gwtest.pem(issuing))
        with open(os.path.join(g.pki, "issuing.key"), "wb") as f:
            f.write(gwtest.key_pem(ikey))
        gw, gw_key = gateway_cert(issuing, ikey, t0 - datetime.timedelta(seconds=10),
                                  t0 + datetime.timedelta(seconds=3600))
        install_gateway_cert(g, gw, gw_key, issuing)
        start = reload(g)
        line = wait_log(g, "the issuing CA certificate (serial", start)
        assert re.search(r"warning tessera-gateway: warning: the issuing CA certificate \(serial "
                         + gwtest.serial_hex(issuing) + r"\) expires at \S+, in 1m\d+s: "
                         r"less than 1/6 of its lifetime is left; rotate it with certgen "
                         r"rotate-issuing", line), line
        # Once an hour, not once a tick; nothing about the 10-year root.
        time.sleep(2.5)
        assert sum("the issuing CA certificate (serial" in l for l in g.stderr_lines) == 1
        assert not any("a root CA certificate" in l for l in g.stderr_lines)
        # The gateway certificate is capped by the issuing CA: it is not renewed
        # (it could not be made to live longer), and that says why.
    finally:
        g.stop()


def test_certgen_renew_gateway_and_crash_recovery():
    g = gwtest.Gateway()
    try:
        before = served_cert(g)
        gw_pem = os.path.join(g.pki, "gateway.pem")
        gw_key = os.path.join(g.pki, "gateway.key")
        old_pem = open(gw_pem, "rb").read()
        r = certgen("renew-gateway", "--pki", g.pki, "--store", g.db_path)
        assert r.returncode == 0, r.stderr
        m = re.search(r"serial ([0-9a-f]+) \(was ([0-9a-f]+)\)", r.stdout)
        assert m and m.group(2) == gwtest.serial_hex(before), r.stdout
        assert "Reload the gateway (SIGHUP, systemctl reload tessera-gateway) to serve it." \
            in r.stdout
        new = gwtest.load_chain(gw_pem)[0]
        assert names(new) == names(before) and lifetime(new) == lifetime(before)
        assert gwtest.serial_hex(new) == m.group(1)
        reload(g)
        assert served_cert(g) == new
        out = certgen("list", "--store", g.db_path).stdout
        assert m.group(1) in out
        # A crash between the key and the certificate: the new key is in
        # place, the new certificate still in gateway.pem.new.
        g.stop()
        new_pem = open(gw_pem, "rb").read()
        r = certgen("renew-gateway", "--pki", g.pki)
        assert r.returncode == 0, r.stderr
        newer = gwtest.load_chain(gw_pem)[0]
        os.rename(gw_pem, gw_pem + ".new")
        with open(gw_pem, "wb") as f:
            f.write(new_pem)
        g.start()
        wait_log(g, f"finished installing the renewed gateway certificate {gw_pem}.new")
        assert served_cert(g) == newer
        assert not os.path.exists(gw_pem + ".new")
        # A crash before the key: gateway.pem.new does not match the key and is dropped.
        g.stop()
        with open(gw_pem + ".new", "wb") as f:
            f.write(old_pem)
        g.start()
        assert served_cert(g) == newer
        assert not os.path.exists(gw_pem + ".new")
        assert not any("finished installing" in l for l in g.stderr_lines)
    finally:
        g.stop()


def test_issue_proxy_recorded_listed_revoked():
    g = gwtest.Gateway(extra_config="proxy:\n  trusted: [edge]\n")
    try:
        r = certgen("issue-proxy", "edge", "--pki", g.pki)
        assert r.returncode == 2
        assert "--store DB is required: the certificate is recorded in the gateway's database" \
            in r.stderr
        r = certgen("issue-proxy", "edge", "--pki", g.pki, "--store", g.db_path + ".typo")
        assert r.returncode == 1
        assert f"{g.db_path}.typo does not exist: --store is the gateway's database" in r.stderr
        assert not os.path.exists(g.db_path + ".typo")
        assert not os.path.exists(os.path.join(g.pki, "proxies", "edge.pem"))
        r = certgen("issue-proxy", "edge", "--pki", g.pki, "--store", g.db_path)
        assert r.returncode == 0, r.stderr
        serial = re.search(r"serial ([0-9a-f]+), valid until \S+, recorded in", r.stdout).group(1)
        chain = open(os.path.join(g.pki, "proxies", "edge.pem"), "rb").read()
        key = open(os.path.join(g.pki, "proxies", "edge.key"), "rb").read()
        assert os.stat(os.path.join(g.pki, "proxies", "edge.key")).st_mode & 0o777 == 0o600
        leaf = x509.load_pem_x509_certificate(chain)
        assert gwtest.serial_hex(leaf) == serial
        assert names(leaf)[0] == [f"spiffe://{TD}/proxy/edge"]
        out = certgen("list", "--store", g.db_path).stdout
        assert re.search(rf"^{serial} +\S+ +valid +spiffe://{TD}/proxy/edge$", out, re.M), out
        # The proxy forwards the admin: it works.
        proxy = gwtest.Identity(chain, key)
        fwd = [("x-client-cert", escape_pem(g.user("admin").chain_pem))]
        stub = g.stub(proxy)
        assert stub.GetTrustBundle(pb.GetTrustBundleRequest(), metadata=fwd,
                                   timeout=10).trust_domain == TD
        # Revoked like any certificate: listed as revoked, refused.
        resp = g.stub(g.user("admin")).RevokeCertificate(
            pb.RevokeCertificateRequest(serial=serial, reason="keyCompromise"), timeout=10)
        assert resp.certificate.serial == serial
        out = certgen("list", "--store", g.db_path).stdout
        assert re.search(rf"^{serial} +\S+ +revoked +spiffe://{TD}/proxy/edge$", out, re.M), out
        code, msg = gwtest.code_of(lambda: g.stub(proxy).GetTrustBundle(
            pb.GetTrustBundleRequest(), metadata=fwd, timeout=10))
        assert code == S.UNAUTHENTICATED and msg == "certificate revoked", (code, msg)
    finally:
        g.stop()
