"""Graceful reload (SIGHUP) and CA rotation without downtime: a new issuing
CA, users and server certificate are picked up without dropping an open
stream; a broken PKI is refused and the running one keeps serving; SIGTERM
drains in-flight calls."""
import datetime
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import time

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import gwtest
from gwtest import BIN, code_of, pb

S = grpc.StatusCode


def wait_log(g, text, start=0, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [l for l in g.stderr_lines[start:] if text in l]
        if found:
            return found[0]
        assert g.alive(), "gateway died:\n" + g.sanitizer_report()
        time.sleep(0.05)
    raise AssertionError(f"no log line {text!r}:\n" + g.log_text())


def reload(g, expect="reloaded:"):
    """SIGHUP, then wait for the verdict line of this reload."""
    start = len(g.stderr_lines)
    os.kill(g.pid, signal.SIGHUP)
    return wait_log(g, expect, start)


def certgen(*args):
    return subprocess.run([os.path.join(BIN, "certgen")] + list(args), capture_output=True,
                          text=True)


def server_leaf(g):
    """The certificate the gateway presents to a NEW connection."""
    ctx = ssl.create_default_context(cadata=None)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", g.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def issued_by(cert, ca):
    """cert names ca's subject as issuer, its authority key identifier is
    ca's subject key identifier (the AKI the issuer prepares once per
    snapshot), and its signature verifies with ca's (ECDSA) key."""
    if cert.issuer != ca.subject:
        return False
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    if aki.key_identifier != ski.digest:
        return False
    try:
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                               ec.ECDSA(cert.signature_hash_algorithm))
        return True
    except InvalidSignature:
        return False


def chain_of(pem_text):
    return [x509.load_pem_x509_certificate(b) for b in re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem_text.encode(), re.S)]


def renew(g, ident, key=None):
    """RenewCertificate as a supervisor would: a fresh key, its CSR."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    resp = g.stub(ident).RenewCertificate(pb.RenewCertificateRequest(csr=gwtest.csr_der(key)[0]),
                                          timeout=10)
    return resp, gwtest.Identity((resp.certificate_pem + resp.chain_pem).encode(),
                                 gwtest.key_pem(key))


class LogStream:
    """A PushSandboxLogs client stream held open across events."""

    def __init__(self, g, ident, sandbox_id):
        self.q = queue.Queue()
        self.sid = sandbox_id
        self.ch = g.channel(ident)
        stub = gwtest.pb_grpc.GatewayStub(self.ch)
        self.future = stub.PushSandboxLogs.future(iter(self.q.get, None), timeout=60)

    def send(self, text):
        self.q.put(pb.PushSandboxLogsRequest(sandbox_id=self.sid, lines=[pb.LogLine(
            timestamp_ms=int(time.time() * 1000), stream="stdout", text=text.encode())]))

    def finish(self):
        self.q.put(None)
        try:
            return self.future.result(timeout=30)
        finally:
            self.ch.close()


@pytest.fixture
def g():
    gw = gwtest.Gateway(renew_limit=100)
    yield gw
    assert gw.stop() == 0, gw.sanitizer_report()


def test_rotate_issuing_then_sighup(g):
    sid = g.create_sandbox().sandbox.id
    old_ident = g.placed_identity(sid)
    old_issuing = g.issuing_cert
    old_server = server_leaf(g)

    # A stream opened before the reload and still open after it.
    stream = LogStream(g, old_ident, sid)
    stream.send("before the reload")

    r = certgen("rotate-issuing", "--pki", g.pki)
    assert r.returncode == 0, r.stderr
    new_issuing = gwtest.load_chain(os.path.join(g.pki, "issuing.pem"))[0]
    assert new_issuing.serial_number != old_issuing.serial_number
    reload(g)

    stream.send("after the reload")
    assert stream.finish().accepted_lines == 2

    # RenewCertificate now signs with the new issuing CA and says so in the chain.
    resp, renewed = renew(g, old_ident)
    leaf = x509.load_pem_x509_certificate(resp.certificate_pem.encode())
    assert issued_by(leaf, new_issuing) and not issued_by(leaf, old_issuing)
    assert chain_of(resp.chain_pem) == [new_issuing]
    # The old-chain identity still authenticates on a new connection.
    assert g.stub(old_ident).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sid),
                                              timeout=10).policy_version == 1
    # ... and so does the renewed one, with the chain the gateway sent.
    assert g.stub(renewed).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sid),
                                            timeout=10).policy_version == 1
    # New connections get the re-issued server certificate (same key).
    new_server = server_leaf(g)
    assert new_server != old_server
    assert issued_by(new_server, new_issuing)
    assert new_server.public_key().public_numbers() == old_server.public_key().public_numbers()
    g.assert_serving(g.user("admin"))


def test_users_reload(g):
    mallory = g.stub(g.user("mallory"))
    code, _ = code_of(lambda: mallory.ListSandboxes(pb.ListSandboxesRequest(), timeout=10))
    assert code == S.PERMISSION_DENIED
    text = open(g.config).read().replace("  bob: viewer\n", "  bob: viewer\n  mallory: viewer\n")
    # A restart-only change is reported, not applied.
    text = text.replace("workers: 2", "workers: 1")
    open(g.config, "w").write(text)
    start = len(g.stderr_lines)
    reload(g)
    assert "workers changed: it needs a restart" in "".join(g.stderr_lines[start:])
    assert g.stub(g.user("mallory")).ListSandboxes(pb.ListSandboxesRequest(),
                                                   timeout=10) is not None


@pytest.mark.parametrize("breakage", ["garbage issuing.pem", "foreign issuing CA",
                                      "mismatched gateway key", "bad config",
                                      "trust domain change"])
def test_bad_reload_is_refused(g, breakage):
    sid = g.create_sandbox().sandbox.id
    ident = g.placed_identity(sid)
    stream = LogStream(g, ident, sid)
    stream.send("before")
    old_server = server_leaf(g)
    saved = {n: open(os.path.join(g.pki, n), "rb").read()
             for n in ("issuing.pem", "issuing.key", "gateway.key")}
    saved_config = open(g.config).read()
    if breakage == "garbage issuing.pem":
        open(os.path.join(g.pki, "issuing.pem"), "wb").write(b"-----BEGIN CERTIFICATE-----\nnope\n")
    elif breakage == "foreign issuing CA":
        cert, key = gwtest.make_ca("Foreign CA")
        open(os.path.join(g.pki, "issuing.pem"), "wb").write(gwtest.pem(cert))
        open(os.path.join(g.pki, "issuing.key"), "wb").write(gwtest.key_pem(key))
    elif breakage == "mismatched gateway key":
        _, key = gwtest.make_ca("Other key")
        open(os.path.join(g.pki, "gateway.key"), "wb").write(gwtest.key_pem(key))
    elif breakage == "bad config":
        open(g.config, "a").write("\nno_such_key: 1\n")
    else:
        open(g.config, "w").write(saved_config.replace(f"trust_domain: {gwtest.TD}",
                                                       "trust_domain: other.example"))
    line = reload(g, expect="reload refused")
    assert "still serving with the previous PKI" in line

    # Restore the files: nothing the refused reload read is in use.
    for n, data in saved.items():
        open(os.path.join(g.pki, n), "wb").write(data)
    open(g.config, "w").write(saved_config)
    stream.send("after")
    assert stream.finish().accepted_lines == 2
    g.assert_serving(g.user("admin"))
    assert server_leaf(g) == old_server
    resp, _ = renew(g, ident)
    leaf = x509.load_pem_x509_certificate(resp.certificate_pem.encode())
    assert issued_by(leaf, g.issuing_cert)


def test_sigterm_drains_open_stream(g):
    sid = g.create_sandbox().sandbox.id
    stream = LogStream(g, g.placed_identity(sid), sid)
    stream.send("one")
    time.sleep(0.3)
    g.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # In-flight call may still finish during the drain ...
    stream.send("two")
    assert stream.finish().accepted_lines == 2
    # ... while new connections are no longer accepted and the process exits 0.
    assert g.proc.wait(timeout=15) == 0
    code, _ = code_of(lambda: g.stub(g.user("admin")).ListSandboxes(
        pb.ListSandboxesRequest(), timeout=3))
    assert code == S.UNAVAILABLE


# ---- root rotation end to end, with a live sandbox that keeps renewing ------

ROTATE = 10  # seconds: each 5 min certificate is renewed this long after its issue


def wait_for(what, fn, timeout=60.0, every=0.25):
    return gwtest.wait_for(what, fn, timeout, every)


def test_root_rotation_with_live_sandbox():
    g = gwtest.Gateway(
        sandbox_ttl=gwtest.SHORT_TTL, real_supervisor=True, renew_limit=1000,
        driver_options={"process": {
            "supervisor_args": "--min-rotate-seconds 1 %s -- /bin/sleep 1000"
                               % gwtest.renew_before(ROTATE)}})
    try:
        _root_rotation(g)
    finally:
        assert g.stop() == 0, g.sanitizer_report()


def _root_rotation(g):
    sid = g.create_sandbox("rotating").sandbox.id
    ident = os.path.join(g.data_dir, "sandboxes", sid, "identity")
    admin = lambda: g.stub(g.user("admin"))

    def serials():
        return [c.serial for c in admin().ListCertificates(
            pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates]

    def renewed_since(n, more=1):
        return lambda: len(serials()) >= n + more

    def on_disk():
        return gwtest.load_chain(os.path.join(ident, "cert.pem"))[0]

    def bundle_on_disk():
        return gwtest.load_chain(os.path.join(ident, "bundle.pem"))

    pidfile = os.path.join(g.data_dir, "sandboxes", sid, "pid")
    supervisor_pid = int(open(pidfile).read().split()[0])
    old_root = gwtest.load_chain(os.path.join(g.pki, "root.pem"))[0]
    old_sandbox_ident = g.sandbox_identity(sid)   # a leaf under the old root
    wait_for("a first renewal", renewed_since(1))

    # 1. Publish a bundle with both roots; issuance unchanged.
    r = certgen("rotate-root", "--pki", g.pki)
    assert r.returncode == 0, r.stderr
    new_root = gwtest.load_chain(os.path.join(g.pki, "next", "root.pem"))[0]
    reload(g)
    g.bundle = open(os.path.join(g.pki, "bundle.pem"), "rb").read()   # our clients learn it too
    wait_for("the supervisor to get both roots",
             lambda: sorted(c.serial_number for c in bundle_on_disk()) ==
             sorted([old_root.serial_number, new_root.serial_number]))

    # 2. Issue under the new root; the old one is still trusted.
    r = certgen("rotate-root", "--pki", g.pki, "--activate")
    assert r.returncode == 0, r.stderr
    new_issuing = gwtest.load_chain(os.path.join(g.pki, "issuing.pem"))[0]
    assert issued_by(new_issuing, new_root)
    for user in ("admin",):
        r = certgen("issue-user", user, "--pki", g.pki, "--force")
        assert r.returncode == 0, r.stderr
    reload(g)
    assert issued_by(server_leaf(g), new_issuing)
    # A leaf under the old root still authenticates (bundle has both roots).
    assert g.stub(old_sandbox_ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10).policy_version == 1
    wait_for("a sandbox certificate under the new root",
             lambda: issued_by(on_disk(), new_issuing))

    # 3. Retire the old root: the sandbox keeps renewing, old-root leaves are refused.
    r = certgen("retire-root", "--pki", g.pki)
    assert r.returncode == 0, r.stderr
    reload(g)
    g.bundle = open(os.path.join(g.pki, "bundle.pem"), "rb").read()
    n = len(serials())
    wait_for("two renewals after the retirement", renewed_since(n, 2))
    assert [c.serial_number for c in bundle_on_disk()] == [new_root.serial_number]
    assert issued_by(on_disk(), new_issuing)
    code, _ = code_of(lambda: g.stub(old_sandbox_ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))
    assert code == S.UNAUTHENTICATED
    mine = gwtest.Identity(open(os.path.join(ident, "cert.pem"), "rb").read(),
                           open(os.path.join(ident, "key.pem"), "rb").read())
    assert g.stub(mine).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sid),
                                         timeout=10).policy_version == 1
    got = admin().GetSandbox(pb.GetSandboxRequest(id=sid), timeout=10).sandbox
    assert got.state == "running"
    # The same supervisor all along: it never had to be restarted.
    assert int(open(pidfile).read().split()[0]) == supervisor_pid
    os.kill(supervisor_pid, 0)


def test_certgen_root_rotation_refusals(tmp_path):
    pki = str(tmp_path / "pki")
    assert certgen("init", "--out", pki).returncode == 0
    # Nothing staged: --activate refuses and changes nothing.
    before = {n: open(os.path.join(pki, n), "rb").read() for n in
              ("root.pem", "issuing.pem", "gateway.pem", "bundle.pem")}
    r = certgen("rotate-root", "--pki", pki, "--activate")
    assert r.returncode == 1 and "nothing staged" in r.stderr
    r = certgen("retire-root", "--pki", pki)
    assert r.returncode == 0 and "nothing to retire" in r.stdout
    assert certgen("rotate-root", "--pki", pki, "--activate", "--root-ttl", "1d").returncode == 2

    assert certgen("rotate-root", "--pki", pki).returncode == 0
    assert len(gwtest.load_chain(os.path.join(pki, "bundle.pem"))) == 2
    for n in ("root.pem", "issuing.pem", "gateway.pem"):   # nothing in use changed
        assert open(os.path.join(pki, n), "rb").read() == before[n]
    r = certgen("rotate-root", "--pki", pki)
    assert r.returncode == 1 and "already staged" in r.stderr
    r = certgen("retire-root", "--pki", pki)
    assert r.returncode == 1 and "activate it first" in r.stderr

    # A bundle that lost the staged root (clients would not trust it): refused.
    staged_bundle = open(os.path.join(pki, "bundle.pem"), "rb").read()
    open(os.path.join(pki, "bundle.pem"), "wb").write(before["bundle.pem"])
    r = certgen("rotate-root", "--pki", pki, "--activate")
    assert r.returncode == 1 and "does not hold the staged root" in r.stderr
    assert open(os.path.join(pki, "root.pem"), "rb").read() == before["root.pem"]

    open(os.path.join(pki, "bundle.pem"), "wb").write(staged_bundle)
    assert certgen("rotate-root", "--pki", pki, "--activate").returncode == 0
    assert not os.path.exists(os.path.join(pki, "next"))
    root = gwtest.load_chain(os.path.join(pki, "root.pem"))[0]
    assert issued_by(gwtest.load_chain(os.path.join(pki, "issuing.pem"))[0], root)
    assert certgen("retire-root", "--pki", pki).returncode == 0
    assert gwtest.load_chain(os.path.join(pki, "bundle.pem")) == [root]
    archived = sorted((n.split("-")[0], int(n.split("-")[1].split(".")[0], 16), n.rsplit(".", 1)[1])
                      for n in os.listdir(os.path.join(pki, "archive")))
    assert archived == sorted(
        (k, x509.load_pem_x509_certificate(before[k + ".pem"]).serial_number, e)
        for k in ("root", "issuing") for e in ("pem", "key"))


def forged_intermediate(named_issuer, signing_key):
    """A CA certificate that names `named_issuer` as its issuer (name and
    authority key identifier) but is signed with another key: what one who
    holds an old root's key can mint. No signature check would take it."""
    key = ec.generate_private_key(ec.SECP256R1())
    ski = named_issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "forged")]))
            .issuer_name(named_issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(gwtest.now() - datetime.timedelta(minutes=1))
            .not_valid_after(gwtest.now() + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
            .sign(signing_key, hashes.SHA256()))
    return cert


def test_retire_root_closes_connections_under_it(g):
    """Open connections are re-evaluated against the reloaded PKI: after the
    old root is retired, every connection whose verified chain ends in it is
    closed within a couple of seconds, its open call answered
    UNAUTHENTICATED; one under the remaining root keeps working (and a reload
    that keeps the root, like a new issuing CA, closes nothing). The root a
    connection is kept under is the one its chain was verified to, never one
    the client merely listed: the same leaf with the new root's certificate,
    the new issuing CA, or an intermediate minted with the old root's key
    that names the new root, listed before its real intermediate, is closed
    like the plain chain."""
    sid = g.create_sandbox().sandbox.id
    old_ident = g.placed_identity(sid)              # under the old root
    old_root_key = serialization.load_pem_private_key(
        open(os.path.join(g.pki, "root.key"), "rb").read(), None)
    r = certgen("rotate-root", "--pki", g.pki)      # bundle: old + new root
    assert r.returncode == 0, r.stderr
    new_root = gwtest.load_chain(os.path.join(g.pki, "next", "root.pem"))[0]
    reload(g)
    g.bundle = open(os.path.join(g.pki, "bundle.pem"), "rb").read()
    r = certgen("rotate-root", "--pki", g.pki, "--activate")   # issue under the new root
    assert r.returncode == 0, r.stderr
    reload(g)
    new_issuing = gwtest.load_chain(os.path.join(g.pki, "issuing.pem"))[0]
    resp, new_ident = renew(g, old_ident)
    assert issued_by(x509.load_pem_x509_certificate(resp.certificate_pem.encode()), new_issuing)

    leaf_pem, old_issuing_pem = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", old_ident.chain_pem,
        re.S)
    decoys = {"plain": b"",
              "new root listed": gwtest.pem(new_root),
              "new issuing CA listed": gwtest.pem(new_issuing),
              "forged under the old root's key": gwtest.pem(
                  forged_intermediate(new_root, old_root_key))}
    old_streams = {}
    for what, decoy in decoys.items():
        ident = gwtest.Identity(leaf_pem + decoy + old_issuing_pem, old_ident.key_pem)
        old_streams[what] = LogStream(g, ident, sid)
        old_streams[what].send(f"old root ({what}), before")
    new_stream = LogStream(g, new_ident, sid)
    new_stream.send("new root, before")
    # Every call is running on its connection.
    wait_for("every stream to be accepted", lambda: len(g.stub(g.user("admin")).GetSandboxLogs(
        pb.GetSandboxLogsRequest(sandbox_id=sid), timeout=10).lines) >= 5, timeout=20)

    # A reload that changes nothing about trust closes nothing.
    start = len(g.stderr_lines)
    reload(g)
    time.sleep(1.0)
    assert not any("credentials no longer valid" in l for l in g.stderr_lines[start:])
    for what, stream in old_streams.items():
        stream.send(f"old root ({what}), after a neutral reload")

    r = certgen("retire-root", "--pki", g.pki)
    assert r.returncode == 0, r.stderr
    start = len(g.stderr_lines)
    t0 = time.monotonic()
    reload(g)
    wait_for("every old-root connection to close", lambda: len(
        [l for l in g.stderr_lines[start:] if "credentials no longer valid" in l]) >= 4,
        timeout=10, every=0.05)
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, elapsed
    closed = [l for l in g.stderr_lines[start:] if "credentials no longer valid" in l]
    assert len(closed) == 4, closed
    for line in closed:
        assert "trust root no longer in the bundle" in line, line
        m = re.search(rf"sandbox {sid} serial ([0-9a-f]+)", line)
        assert m and m.group(1) == old_ident.serial, line
    # The old-root calls were answered before their connections closed.
    for what, stream in old_streams.items():
        with pytest.raises(grpc.RpcError) as e:
            stream.finish()
        assert (e.value.code(), e.value.details()) == \
            (S.UNAUTHENTICATED, "trust root no longer in the bundle"), what
    # The new-root stream lives on.
    new_stream.send("new root, after the retirement")
    assert new_stream.finish().accepted_lines == 2
    # And a new connection with the old-root leaf is refused outright.
    code, _ = code_of(lambda: g.stub(old_ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10))
    assert code == S.UNAUTHENTICATED


def test_role_change_closes_user_connection(g):
    """A user removed from the config by a reload loses its open connection."""
    ch = g.channel(g.user("bob"))
    stub = gwtest.pb_grpc.GatewayStub(ch)
    assert stub.ListSandboxes(pb.ListSandboxesRequest(), timeout=10) is not None
    text = open(g.config).read()
    assert "  bob: viewer\n" in text
    open(g.config, "w").write(text.replace("  bob: viewer\n", ""))
    start = len(g.stderr_lines)
    reload(g)
    line = wait_log(g, "credentials no longer valid", start, timeout=10)
    assert "user bob" in line
    # Reconnected, bob has no role any more.
    code, msg = code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), timeout=10))
    assert (code, msg) == (S.PERMISSION_DENIED, "user has no role on this gateway")
    ch.close()
