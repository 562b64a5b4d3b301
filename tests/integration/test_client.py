"""The C gRPC client library (client/cl_grpc.h, cl_tls.h) driven through
tests/bin/cl_probe: against the real tessera-gateway (the `gw` fixture) for
statuses and streams, and against tests/bin/gw_test_server with certificates
made here for the server identity checks, deadlines, size limits, identity
reload and dead connections."""
import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import gwtest
from gwtest import TD, pb

BUILD = os.environ.get("TSR_BUILD_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
PROBE = os.path.join(BUILD, "tests", "bin", "cl_probe")
SERVER_BIN = os.path.join(BUILD, "tests", "bin", "gw_test_server")

G = "/tessera.v1.Gateway/"
HEALTH = "/grpc.health.v1.Health/Check"
ECHO = "/tessera.test.Echo/Unary"
COUNT = "/tessera.test.Echo/Count"
SLOW = "/tessera.test.Echo/Slow"

OK, CANCELLED, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 3, 4, 5
PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAVAILABLE = 7, 8, 12, 14
UNAUTHENTICATED = 16


# ---------------------------------------------------------------------------
# the probe


def run_probe(addr, bundle, *steps, ident=None, opts=(), timeout=60):
    """Run cl_probe; return its JSON lines."""
    args = [PROBE, "--addr", addr, "--bundle", bundle, *opts]
    if ident is not None:
        args += ["--cert", ident[0], "--key", ident[1]]
    r = subprocess.run(args + list(steps), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"cl_probe exit {r.returncode}: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def hexmsg(msg):
    return msg.SerializeToString().hex() or "-"


def calls(lines, step="call"):
    return [l for l in lines if l["step"] == step]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def ident_files(d, name, ident):
    return (write(os.path.join(d, name + ".pem"), ident.chain_pem),
            write(os.path.join(d, name + ".key"), ident.key_pem))


# ---------------------------------------------------------------------------
# against the real gateway


@pytest.fixture(scope="module")
def g(gw, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("clid"))

    class Ctx:
        pass
    c = Ctx()
    c.gw = gw
    c.dir = d
    c.addr = f"127.0.0.1:{gw.port}"
    c.bundle = os.path.join(gw.pki, "bundle.pem")
    c.user = lambda n: (os.path.join(gw.pki, "users", n + ".pem"),
                        os.path.join(gw.pki, "users", n + ".key"))
    c.probe = lambda *steps, ident=None, opts=(): run_probe(c.addr, c.bundle, *steps,
                                                             ident=ident, opts=opts)
    return c


def test_unary_ok_and_sequential_calls_share_one_connection(g):
    made = g.gw.create_sandbox()
    out = g.probe("call", G + "GetSandbox", hexmsg(pb.GetSandboxRequest(name=made.sandbox.name)),
                  "call", G + "GetSandbox", hexmsg(pb.GetSandboxRequest(id=made.sandbox.id)),
                  "call", G + "ListSandboxes", "-",
                  "call", G + "GetTrustBundle", "-",
                  opts=["--verify-host"], ident=g.user("admin"))
    opened = calls(out, "open")
    assert len(opened) == 1 and opened[0]["peer"] == f"spiffe://{TD}/gateway"
    got = calls(out)
    assert [c["code"] for c in got] == [OK] * 4 and all(c["conn"] == 0 and c["alive"] for c in got)
    r1 = pb.GetSandboxResponse.FromString(bytes.fromhex(got[0]["response"]))
    r2 = pb.GetSandboxResponse.FromString(bytes.fromhex(got[1]["response"]))
    assert r1.sandbox.id == r2.sandbox.id == made.sandbox.id
    assert made.sandbox.id in [s.id for s in pb.ListSandboxesResponse.FromString(
        bytes.fromhex(got[2]["response"])).sandboxes]
    tb = pb.GetTrustBundleResponse.FromString(bytes.fromhex(got[3]["response"]))
    assert tb.trust_domain == TD and tb.bundle_pem.encode() == g.gw.bundle


def test_error_statuses_come_back_with_their_messages(g):
    a, b = g.gw.create_sandbox(), g.gw.create_sandbox()
    sb = ident_files(g.dir, "sb-a", g.gw.sandbox_identity(a.sandbox.id))

    # No client certificate: only the health check.
    out = g.probe("call", G + "ListSandboxes", "-", "call", HEALTH, "-")
    assert calls(out)[0]["code"] == UNAUTHENTICATED and calls(out)[0]["message"]
    assert calls(out)[1]["code"] == OK and calls(out)[1]["response"] == "0801"

    # A sandbox naming another one.
    out = g.probe("call", G + "GetSandboxConfig",
                  hexmsg(pb.GetSandboxConfigRequest(sandbox_id=b.sandbox.id)),
                  "call", G + "GetSandboxConfig",
                  hexmsg(pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id)), ident=sb)
    c = calls(out)
    assert c[0]["code"] == PERMISSION_DENIED and c[0]["message"] == "cross-sandbox access denied"
    assert c[1]["code"] == OK
    assert pb.GetSandboxConfigResponse.FromString(
        bytes.fromhex(c[1]["response"])).sandbox_id == a.sandbox.id

    # A viewer creating; a missing sandbox; a bad policy; an unknown method.
    out = g.probe("call", G + "CreateSandbox", hexmsg(pb.CreateSandboxRequest(
                      name="viewer-made", policy="version: 1\n")), ident=g.user("bob"))
    assert calls(out)[0]["code"] == PERMISSION_DENIED and calls(out)[0]["message"]
    out = g.probe("call", G + "GetSandbox", hexmsg(pb.GetSandboxRequest(name="no-such-sb")),
                  "call", G + "CreateSandbox", hexmsg(pb.CreateSandboxRequest(
                      name="bad-policy", policy="version: 99\n")),
                  "call", G + "NoSuchMethod", "-",
                  "call", G + "GetSandbox", "0a",  # truncated protobuf
                  ident=g.user("admin"))
    c = calls(out)
    assert c[0]["code"] == NOT_FOUND and "no-such-sb" in c[0]["message"]
    assert c[1]["code"] == INVALID_ARGUMENT and c[1]["message"]
    assert c[2]["code"] == UNIMPLEMENTED and "NoSuchMethod" in c[2]["message"]
    assert c[3]["code"] == INVALID_ARGUMENT
    assert all(x["alive"] for x in c)


def test_client_stream_ok(g):
    a = g.gw.create_sandbox()
    sb = ident_files(g.dir, "sb-stream", g.gw.sandbox_identity(a.sandbox.id))
    batches = [pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=i, stream="stdout", text=b"line %d" % i)
        for i in range(b * 50, b * 50 + 50)]) for b in range(4)]
    out = g.probe("stream", G + "PushSandboxLogs", ",".join(hexmsg(x) for x in batches),
                  "call", G + "GetSandboxConfig",
                  hexmsg(pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id)), ident=sb)
    fin = calls(out, "finish")[0]
    assert not calls(out, "send")
    assert fin["code"] == OK and fin["sent"] == 4
    assert pb.PushSandboxLogsResponse.FromString(
        bytes.fromhex(fin["response"])).accepted_lines == 200
    assert calls(out)[0]["code"] == OK  # the connection is reusable after a stream
    lines = g.gw.stub(g.gw.user("admin")).GetSandboxLogs(
        pb.GetSandboxLogsRequest(sandbox_id=a.sandbox.id), timeout=10).lines
    assert [l.text for l in lines] == [b"line %d" % i for i in range(200)]


def test_client_stream_ended_early_by_the_server(g):
    a, b = g.gw.create_sandbox(), g.gw.create_sandbox()
    sb = ident_files(g.dir, "sb-pin", g.gw.sandbox_identity(a.sandbox.id))
    own = pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=1, stream="stdout", text=b"mine")])
    other = pb.PushSandboxLogsRequest(sandbox_id=b.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=2, stream="stdout", text=b"smuggled")])
    # With a pause between sends, the send after the foreign batch already
    # sees the server's status and does not send.
    out = g.probe("delay", "400", "stream", G + "PushSandboxLogs",
                  ",".join([hexmsg(own), hexmsg(other), hexmsg(own), hexmsg(own)]), ident=sb)
    sends = calls(out, "send")
    assert sends and sends[0]["index"] == 2
    assert all(s["code"] == PERMISSION_DENIED and s["message"] == "cross-sandbox access denied"
               for s in sends)
    fin = calls(out, "finish")[0]
    assert fin["code"] == PERMISSION_DENIED and fin["message"] == "cross-sandbox access denied"
    assert fin["sent"] == 2
    adm = g.gw.stub(g.gw.user("admin"))
    assert [l.text for l in adm.GetSandboxLogs(
        pb.GetSandboxLogsRequest(sandbox_id=a.sandbox.id), timeout=10).lines] == [b"mine"]
    assert list(adm.GetSandboxLogs(
        pb.GetSandboxLogsRequest(sandbox_id=b.sandbox.id), timeout=10).lines) == []


def test_user_cannot_push_logs_and_stream_reports_it(g):
    a = g.gw.create_sandbox()
    batch = pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=1, stream="stdout", text=b"x")])
    out = g.probe("stream", G + "PushSandboxLogs", hexmsg(batch), ident=g.user("admin"))
    assert calls(out, "finish")[0]["code"] == PERMISSION_DENIED


def test_connection_refused_is_unavailable(g):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    out = run_probe(f"127.0.0.1:{port}", g.bundle, "call", HEALTH, "-")
    assert out[0]["step"] == "open" and out[0]["code"] == UNAVAILABLE
    assert "refused" in out[0]["message"].lower() and str(port) in out[0]["message"]


def test_gateway_shutdown_is_unavailable_then_reconnects(g):
    """The gateway stops (GOAWAY, close) under an open connection: the next
    call on it is UNAVAILABLE and the connection reports itself dead; a new
    connection to the restarted gateway works."""
    p = subprocess.Popen([PROBE, "--addr", g.addr, "--bundle", g.bundle,
                          "call", HEALTH, "-", "sleep", "2500", "call", HEALTH, "-"],
                         stdout=subprocess.PIPE, text=True)
    assert json.loads(p.stdout.readline())["code"] == OK   # open
    assert json.loads(p.stdout.readline())["code"] == OK   # first call
    assert g.gw.stop() == 0, g.gw.sanitizer_report()
    g.gw.start()
    g.addr = f"127.0.0.1:{g.gw.port}"
    rest = [json.loads(l) for l in p.stdout.read().splitlines()]
    assert p.wait(timeout=30) == 0
    assert rest[0]["code"] == UNAVAILABLE and not rest[0]["alive"], rest
    out = g.probe("call", HEALTH, "-")
    assert [c["code"] for c in calls(out)] == [OK]


# ---------------------------------------------------------------------------
# against gw_test_server with certificates made here


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca, sans, cn="leaf"):
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def uri(u):
    return x509.UniformResourceIdentifier(u)


LOCAL_SANS = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


class ClPki:
    def __init__(self, d):
        self.dir = d
        self.ca = make_ca("Client Test Root")
        self.foreign = make_ca("Foreign Root")
        self.bundle = write(os.path.join(d, "bundle.pem"), self.pem(self.ca[0]))

    @staticmethod
    def pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    def files(self, name, leaf, ca):
        cert, key = leaf
        chain = self.pem(cert) + self.pem(ca[0])
        keyb = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        return (write(os.path.join(self.dir, name + ".pem"), chain),
                write(os.path.join(self.dir, name + ".key"), keyb))

    def server(self, name, sans, ca=None):
        ca = ca or self.ca
        return self.files(name, make_leaf(ca, sans, cn=name), ca)

    def user(self, name):
        return self.files(name, make_leaf(self.ca, [uri(f"spiffe://{TD}/user/{name}")],
                                          cn=name), self.ca)


class ClServer:
    def __init__(self, pki, d, cert, *extra):
        self.log_path = os.path.join(d, f"server-{os.path.basename(cert[0])}.log")
        self.revoked = os.path.join(d, "revoked")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--cert", cert[0], "--key", cert[1], "--bundle", pki.bundle,
             "--listen", "127.0.0.1:0", "--workers", "1", "--revoked", self.revoked, *extra],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on (\d+)", line)
        assert m, f"server did not start: {line!r}"
        self.port = int(m.group(1))
        self.addr = f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()
        text = open(self.log_path, "rb").read().decode(errors="replace")
        assert self.proc.returncode == 0, text[-3000:]
        assert "Sanitizer" not in text, text[-3000:]


@pytest.fixture(scope="module")
def tpki(tmp_path_factory):
    return ClPki(str(tmp_path_factory.mktemp("clpki")))


@pytest.fixture(scope="module")
def srv(tpki, tmp_path_factory):
    """A test server with a proper gateway identity (and a 64 KiB limit)."""
    cert = tpki.server("gateway", [uri(f"spiffe://{TD}/gateway")] + LOCAL_SANS)
    s = ClServer(tpki, str(tmp_path_factory.mktemp("clsrv")), cert,
                   "--max-message-bytes", "65536")
    yield s
    s.stop()


def server_with(tpki, tmp_path, name, sans, ca=None):
    return ClServer(tpki, str(tmp_path), tpki.server(name, sans, ca))


@pytest.mark.parametrize("case, sans, foreign, reason", [
    ("user-id", [uri(f"spiffe://{TD}/user/gateway")] + LOCAL_SANS, False, "wrong"),
    ("sandbox-id", [uri(f"spiffe://{TD}/sandbox/0b7c1b5e-52f4-4a77-9a6f-3d7c2a1e9f00")]
     + LOCAL_SANS, False, "wrong"),
    ("other-td", [uri("spiffe://example.org/gateway")] + LOCAL_SANS, False, "trust domain"),
    ("no-uri", LOCAL_SANS, False, "uri"),
    ("two-uris", [uri(f"spiffe://{TD}/gateway"), uri(f"spiffe://{TD}/gateway2")] + LOCAL_SANS,
     False, ""),
    ("foreign-ca", [uri(f"spiffe://{TD}/gateway")] + LOCAL_SANS, True, "issuer"),
])
def test_server_identity_refused(tpki, tmp_path, case, sans, foreign, reason):
    s = server_with(tpki, tmp_path, "srv-" + case, sans, tpki.foreign if foreign else None)
    try:
        out = run_probe(s.addr, tpki.bundle, "call", HEALTH, "-", ident=tpki.user("alice"))
        assert len(out) == 1 and out[0]["step"] == "open"
        assert out[0]["code"] == UNAUTHENTICATED, out
        msg = out[0]["message"].lower()
        print(case, out[0]["message"])
        assert "server identity refused" in msg and reason in msg, msg
    finally:
        s.stop()


def test_server_host_san_checked_when_asked(tpki, tmp_path):
    s = server_with(tpki, tmp_path, "srv-otherhost",
                    [uri(f"spiffe://{TD}/gateway"), x509.DNSName("gateway.example")])
    try:
        out = run_probe(s.addr, tpki.bundle, "call", HEALTH, "-", opts=["--verify-host"])
        assert out[0]["code"] == UNAUTHENTICATED and "127.0.0.1" in out[0]["message"]
        assert "DNS/IP SAN" in out[0]["message"]
        # The SPIFFE identity alone is enough without --verify-host.
        out = run_probe(s.addr, tpki.bundle, "call", HEALTH, "-")
        assert [c["code"] for c in calls(out)] == [OK]
    finally:
        s.stop()


def test_server_host_san_by_name(tpki, srv):
    out = run_probe(f"localhost:{srv.port}", tpki.bundle, "call", HEALTH, "-",
                    opts=["--verify-host"])
    assert [c["code"] for c in calls(out)] == [OK]


def test_wrong_trust_domain_expected(tpki, srv):
    out = run_probe(srv.addr, tpki.bundle, "call", HEALTH, "-",
                    opts=["--trust-domain", "example.org"])
    assert out[0]["code"] == UNAUTHENTICATED and "trust domain" in out[0]["message"]


def test_anonymous_client_and_principal(tpki, srv):
    out = run_probe(srv.addr, tpki.bundle, "call", ECHO, "-", "call", ECHO, "-",
                    ident=tpki.user("alice"))
    c = calls(out)
    assert bytes.fromhex(c[0]["response"]).startswith(b"kind=user name=alice ")
    out = run_probe(srv.addr, tpki.bundle, "call", ECHO, b"hi".hex())
    assert bytes.fromhex(calls(out)[0]["response"]) == b"kind=anonymous name= serial=\nhi"


def test_deadline_exceeded_and_connection_still_usable(tpki, srv):
    t0 = time.monotonic()
    out = run_probe(srv.addr, tpki.bundle, "timeout", "300", "call", SLOW, "-",
                    "timeout", "5000", "call", ECHO, b"after".hex())
    c = calls(out)
    assert c[0]["code"] == DEADLINE_EXCEEDED and "300" in c[0]["message"]
    assert c[1]["code"] == OK and bytes.fromhex(c[1]["response"]).endswith(b"after")
    assert c[1]["conn"] == c[0]["conn"] and c[1]["alive"]
    # The slow handler blocks the single worker for 1.5 s; the deadline
    # itself fired at about 300 ms.
    assert time.monotonic() - t0 < 10


def test_max_response_size(tpki, srv):
    body = "zeros:3000"
    out = run_probe(srv.addr, tpki.bundle, "call", ECHO, body, "call", ECHO, "zeros:10",
                    opts=["--max-response", "2048"])
    c = calls(out)
    assert c[0]["code"] == RESOURCE_EXHAUSTED and "larger than max" in c[0]["message"]
    assert c[1]["code"] == OK and c[1]["alive"]
    # Up to the limit is fine, across several DATA frames.
    out = run_probe(srv.addr, tpki.bundle, "call", ECHO, "zeros:60000")
    resp = bytes.fromhex(calls(out)[0]["response"])
    assert resp.endswith(b"\0" * 60000) and resp.startswith(b"kind=anonymous")


def test_request_over_the_server_limit(tpki, srv):
    out = run_probe(srv.addr, tpki.bundle, "call", ECHO, "zeros:70000", "call", HEALTH, "-")
    c = calls(out)
    assert c[0]["code"] == RESOURCE_EXHAUSTED
    assert c[1]["code"] == OK


def test_client_stream_flow_control(tpki, srv):
    """20 messages of 60 KB: more than any window, so sends wait for
    WINDOW_UPDATEs."""
    msgs = ",".join(["zeros:60000"] * 20)
    out = run_probe(srv.addr, tpki.bundle, "stream", COUNT, msgs, ident=tpki.user("alice"))
    fin = calls(out, "finish")[0]
    assert fin["code"] == OK and fin["sent"] == 20
    assert bytes.fromhex(fin["response"]) == b"count=20 bytes=1200000"


def test_client_stream_denied_midway_test_server(tpki, srv):
    out = run_probe(srv.addr, tpki.bundle, "delay", "300", "stream", COUNT,
                    ",".join(["00", b"DENY".hex(), "00"]), "call", HEALTH, "-")
    assert calls(out, "send")[0]["index"] == 2
    fin = calls(out, "finish")[0]
    assert fin["code"] == PERMISSION_DENIED and fin["message"] == "denied at message 2"
    assert calls(out)[0]["code"] == OK


def test_empty_stream(tpki, srv):
    out = run_probe(srv.addr, tpki.bundle, "stream", COUNT, "-")
    assert bytes.fromhex(calls(out, "finish")[0]["response"]) == b"count=1 bytes=0"


def test_identity_reload_for_new_connections_only(tpki, srv):
    bob = tpki.user("bob")
    out = run_probe(srv.addr, tpki.bundle,
                    "call", ECHO, "-",
                    "reload", bob[0], bob[1],
                    "open", "call", ECHO, "-",
                    "use", "0", "call", ECHO, "-",
                    "reload", bob[0], tpki.user("carol")[1],  # key mismatch: refused
                    "open", "call", ECHO, "-",
                    ident=tpki.user("alice"))
    c = calls(out)
    names = [re.match(rb"kind=\w+ name=(\w*)", bytes.fromhex(x["response"])).group(1)
             for x in c]
    assert names == [b"alice", b"bob", b"alice", b"bob"]
    assert [x["conn"] for x in c] == [0, 1, 0, 2]
    reloads = calls(out, "reload")
    assert reloads[0]["ok"] and reloads[0]["generation"] == 1
    assert not reloads[1]["ok"] and "does not match" in reloads[1]["error"]


def test_revoked_connection_is_unavailable(tpki, srv):
    """The server closes the connection (revocation); the client reports
    UNAVAILABLE and a dead connection, and a new one is refused too."""
    carol = tpki.user("carol")
    serial = x509.load_pem_x509_certificate(open(carol[0], "rb").read()).serial_number
    hexserial = serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex()
    p = subprocess.Popen([PROBE, "--addr", srv.addr, "--bundle", tpki.bundle,
                          "--cert", carol[0], "--key", carol[1],
                          "call", ECHO, "-", "sleep", "1500", "call", ECHO, "-"],
                         stdout=subprocess.PIPE, text=True)
    first = json.loads(p.stdout.readline())
    assert first["step"] == "open" and first["code"] == OK
    first = json.loads(p.stdout.readline())
    assert first["code"] == OK
    write(srv.revoked, hexserial.encode())
    try:
        rest = [json.loads(l) for l in p.stdout.read().splitlines()]
        assert p.wait(timeout=30) == 0
    finally:
        os.unlink(srv.revoked)
    assert rest[0]["code"] == UNAVAILABLE and not rest[0]["alive"], rest


def test_unix_socket(tpki, srv, tmp_path):
    """unix:PATH dialling (through a relay to the TCP server)."""
    path = str(tmp_path / "gw.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen(4)

    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def relay():
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        up = socket.create_connection(("127.0.0.1", srv.port))
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        pipe(up, conn)

    t = threading.Thread(target=relay, daemon=True)
    t.start()
    try:
        out = run_probe("unix:" + path, tpki.bundle, "call", ECHO, b"via unix".hex(),
                        opts=["--verify-host"])
        c = calls(out)
        assert c[0]["code"] == OK and bytes.fromhex(c[0]["response"]).endswith(b"via unix")
    finally:
        lsock.close()


def test_stream_open_while_unary_calls_on_the_same_connection(g):
    """One thread may keep a client stream open and make unary calls on the
    same connection in between."""
    a = g.gw.create_sandbox()
    sb = ident_files(g.dir, "sb-mix", g.gw.sandbox_identity(a.sandbox.id))
    batch = lambda t: hexmsg(pb.PushSandboxLogsRequest(sandbox_id=a.sandbox.id, lines=[
        pb.LogLine(timestamp_ms=1, stream="stdout", text=t)]))
    cfg = hexmsg(pb.GetSandboxConfigRequest(sandbox_id=a.sandbox.id))
    out = g.probe("sopen", G + "PushSandboxLogs", "ssend", batch(b"one"),
                  "call", G + "GetSandboxConfig", cfg,
                  "ssend", batch(b"two"),
                  "call", G + "GetSandboxConfig", cfg,
                  "sfinish", ident=sb)
    assert [l["code"] for l in out if l["step"] in ("sopen", "ssend", "call", "finish")] == \
        [OK] * 6
    assert len(calls(out, "open")) == 1
    fin = calls(out, "finish")[0]
    assert pb.PushSandboxLogsResponse.FromString(
        bytes.fromhex(fin["response"])).accepted_lines == 2


def _serve_once(handler):
    """A TCP listener on 127.0.0.1 whose first connection goes to handler."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def run():
        try:
            conn, _ = ls.accept()
        except OSError:
            return
        try:
            handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls, t


def test_peer_not_speaking_tls_is_unavailable(tpki):
    def http1(conn):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    ls, t = _serve_once(http1)
    try:
        out = run_probe(f"127.0.0.1:{ls.getsockname()[1]}", tpki.bundle, "call", HEALTH, "-")
        assert out[0]["step"] == "open" and out[0]["code"] == UNAVAILABLE
        assert "TLS handshake" in out[0]["message"]
    finally:
        ls.close()


def test_silent_peer_times_out_as_unavailable(tpki):
    ls, t = _serve_once(lambda conn: time.sleep(3))
    try:
        t0 = time.monotonic()
        out = run_probe(f"127.0.0.1:{ls.getsockname()[1]}", tpki.bundle, "call", HEALTH, "-",
                        opts=["--connect-timeout-ms", "400"])
        assert time.monotonic() - t0 < 2.5
        assert out[0]["code"] == UNAVAILABLE and "timed out" in out[0]["message"]
    finally:
        ls.close()


def test_server_without_h2_is_refused(tpki, tmp_path):
    import ssl
    cert = tpki.server("srv-noh2", [uri(f"spiffe://{TD}/gateway")] + LOCAL_SANS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert[0], cert[1])
    ctx.set_alpn_protocols(["http/1.1"])

    def tls(conn):
        with ctx.wrap_socket(conn, server_side=True) as s:
            s.recv(1)

    ls, t = _serve_once(tls)
    try:
        out = run_probe(f"127.0.0.1:{ls.getsockname()[1]}", tpki.bundle, "call", HEALTH, "-")
        assert out[0]["code"] == UNAVAILABLE and "ALPN h2" in out[0]["message"], out
    finally:
        ls.close()
