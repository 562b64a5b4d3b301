"""The gateway's gRPC transport (gateway/transport/gw_server.c, gw_conn.c, gw_h2.c, gw_tls.c,
grpc/grpc_frame.c) driven through tests/bin/gw_test_server with a stock grpcio
client and with hand-made TLS / HTTP/2 (python3-h2) for hostile peers.

After every hostile case the test checks that the server is still up and
still serves other clients. At the end the server is stopped with SIGTERM
and must exit 0 (under ASan that includes LeakSanitizer)."""

import datetime
import ipaddress
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BUILD = os.environ.get("TSR_BUILD_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
SERVER_BIN = os.path.join(BUILD, "tests", "bin", "gw_test_server")

MAX_MSG = 65536
HANDSHAKE_TIMEOUT_MS = 1000

HEALTH = "/grpc.health.v1.Health/Check"
ECHO = "/tessera.test.Echo/Unary"
COUNT = "/tessera.test.Echo/Count"
SLOW = "/tessera.test.Echo/Slow"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


# ---------------------------------------------------------------------------
# PKI


class Cert:
    def __init__(self, cert, key, chain=()):
        self.cert = cert
        self.key = key
        self.chain = list(chain)

    @property
    def pem(self):
        return b"".join(c.public_bytes(serialization.Encoding.PEM)
                        for c in [self.cert] + self.chain)

    @property
    def key_pem(self):
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def serial_hex(self):
        # as ca_cert_serial_hex: lowercase, whole bytes, no leading zero bytes
        n = self.cert.serial_number
        return n.to_bytes((n.bit_length() + 7) // 8, "big").hex()


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
    return Cert(cert, key)


def make_leaf(ca, cn, sans):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(ca.cert.subject)
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
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Cert(cert, key, [ca.cert])


def user_cert(ca, name):
    return make_leaf(ca, name, [x509.UniformResourceIdentifier(
        f"spiffe://tessera.local/user/{name}")])


class Pki:
    def __init__(self, d):
        self.dir = d
        self.ca = make_ca("Tessera Test Root")
        self.server = make_leaf(self.ca, "gateway", [
            x509.UniformResourceIdentifier("spiffe://tessera.local/gateway"),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.alice = user_cert(self.ca, "alice")
        self.bob = user_cert(self.ca, "bob")      # revoked live in one test
        self.carol = user_cert(self.ca, "carol")  # refused at handshake in one test
        self.foreign_ca = make_ca("Somebody Else Root")
        self.mallory = user_cert(self.foreign_ca, "mallory")
        self.ca_pem = self.ca.cert.public_bytes(serialization.Encoding.PEM)
        self.files = {}
        for name, data in [("bundle.pem", self.ca_pem), ("server.pem", self.server.pem),
                           ("server.key", self.server.key_pem)]:
            path = os.path.join(d, name)
            with open(path, "wb") as f:
                f.write(data)
            self.files[name] = path
        for who in ("alice", "mallory"):
            c = getattr(self, who)
            for suffix, data in ((".pem", c.pem), (".key", c.key_pem)):
                path = os.path.join(d, who + suffix)
                with open(path, "wb") as f:
                    f.write(data)
                self.files[who + suffix] = path


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


# ---------------------------------------------------------------------------
# the server process


class Server:
    def __init__(self, pki, d, *extra):
        self.pki = pki
        self.revoked = os.path.join(d, "revoked")
        self.log_path = os.path.join(d, "server.log")
        self.log = open(self.log_path, "wb")
        args = [SERVER_BIN, "--cert", pki.files["server.pem"],
                "--key", pki.files["server.key"], "--bundle", pki.files["bundle.pem"],
                "--listen", "127.0.0.1:0", "--revoked", self.revoked, *extra]
        env = dict(os.environ)
        # Under ASan, a small quarantine keeps RSS meaningful for the
        # backpressure test (freed memory is otherwise held back by the GB).
        asan = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=16"
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on (\d+)", line)
        assert m, f"server did not start: {line!r} {self.log_text()}"
        self.port = int(m.group(1))
        assert self.port > 0

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout=3):
        """True once `pattern` (a regex) appears in the server log."""
        deadline = time.monotonic() + timeout
        while True:
            if re.search(pattern, self.log_text()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("server did not stop on SIGTERM")
        self.log.close()
        log = self.log_text()
        assert self.proc.returncode == 0, f"server exit {self.proc.returncode}:\n{log[-4000:]}"
        assert "Sanitizer" not in log, log[-4000:]
        assert "stopped" in log


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory):
    s = Server(pki, str(tmp_path_factory.mktemp("srv")), "--workers", "2",
               "--max-message-bytes", str(MAX_MSG),
               "--handshake-timeout-ms", str(HANDSHAKE_TIMEOUT_MS))
    yield s
    s.stop()


# ---------------------------------------------------------------------------
# clients


def channel(server, who=None):
    kw = {"root_certificates": server.pki.ca_pem}
    if who is not None:
        kw["private_key"] = who.key_pem
        kw["certificate_chain"] = who.pem
    creds = grpc.ssl_channel_credentials(**kw)
    # Own connection per channel (no subchannel sharing between channels).
    return grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                               options=[("grpc.use_local_subchannel_pool", 1)])


def unary(ch, path, req=b"", timeout=10):
    return ch.unary_unary(path)(req, timeout=timeout)


def assert_serving(server):
    """The server is alive and serves a fresh client."""
    assert server.proc.poll() is None, "server died"
    with channel(server) as ch:
        assert unary(ch, HEALTH) == SERVING


def tls_context(server, alpn=("h2",), who=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=server.pki.ca_pem.decode())
    if alpn is not None:
        ctx.set_alpn_protocols(list(alpn))
    if who is not None:
        ctx.load_cert_chain(server.pki.files[who + ".pem"], server.pki.files[who + ".key"])
    return ctx


class H2Client:
    """A minimal HTTP/2 client over TLS for requests grpcio will not send."""

    def __init__(self, server, who=None):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock = tls_context(server, who=who).wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, body_chunks=(), method="POST", content_type="application/grpc",
                extra=(), end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "https"), (":path", path),
                   (":authority", "localhost"), ("te", "trailers")]
        if content_type is not None:
            headers.append(("content-type", content_type))
        headers.extend(extra)
        no_body = not body_chunks
        self.conn.send_headers(sid, headers, end_stream=end_stream and no_body)
        for i, chunk in enumerate(body_chunks):
            last = i == len(body_chunks) - 1
            self.conn.send_data(sid, chunk, end_stream=end_stream and last)
        self.flush()
        self.streams[sid] = {"headers": [], "data": b"", "ended": False, "reset": None}
        return sid

    def pump(self, timeout):
        """Process incoming frames for up to `timeout` seconds (or until closed)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        if not data:
            return False
        for ev in self.conn.receive_data(data):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                st["headers"].extend(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                st["data"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                st["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st["reset"] = ev.error_code
        self.flush()
        return True

    def wait(self, sid, timeout=10, want_reset=False):
        deadline = time.monotonic() + timeout
        st = self.streams[sid]
        while time.monotonic() < deadline:
            if st["ended"] and (not want_reset or st["reset"] is not None):
                break
            if st["reset"] is not None and not want_reset:
                break
            if not self.pump(min(0.2, max(0.01, deadline - time.monotonic()))):
                break
        return st

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def hdr(st, name):
    for k, v in st["headers"]:
        if k == name:
            return v
    return None


def grpc_frame(body, flag=0, length=None):
    n = len(body) if length is None else length
    return bytes([flag]) + n.to_bytes(4, "big") + body


def wait_closed(sock, timeout):
    """Seconds until the peer closes `sock` (EOF or reset), or None."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < timeout:
        try:
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


# ---------------------------------------------------------------------------
# stock grpcio client


def test_health_without_client_cert(server):
    with channel(server) as ch:
        assert unary(ch, HEALTH) == SERVING
        # service "tessera.v1.Gateway" (field 1, length 18)
        assert unary(ch, HEALTH, b"\x0a\x12tessera.v1.Gateway") == SERVING
        with pytest.raises(grpc.RpcError) as e:
            unary(ch, HEALTH, b"\x0a\x04nope")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_echo_shows_principal(server):
    alice = server.pki.alice
    with channel(server, alice) as ch:
        out = unary(ch, ECHO, b"payload\x00\xff")
    assert out == (f"kind=user name=alice serial={alice.serial_hex}\n").encode() + \
        b"payload\x00\xff"
    with channel(server) as ch:
        assert unary(ch, ECHO, b"x").startswith(b"kind=anonymous name= serial=\n")


# An idle connection is parked after GW_PARK_AFTER_MS (1 s) without I/O, at
# the next 250 ms tick: its HTTP/2 session gives back the pages of its frame
# buffer and stream map (gateway/transport/gw_h2.c). Waking it must change nothing.
PARKED_AFTER_S = 1.0 + 0.25 + 0.5


def test_parked_connection_answers_exactly(server):
    alice = server.pki.alice
    head = f"kind=user name=alice serial={alice.serial_hex}\n".encode()
    sizes = (0, 1, 4000, 16384 - len(head) - 5, 40000, MAX_MSG - len(head))
    with channel(server, alice) as ch:
        for cycle in range(3):
            payloads = [os.urandom(n) for n in sizes]
            # one after the other, then all at once on the same connection
            for p in payloads:
                assert unary(ch, ECHO, p) == head + p
            calls = [ch.unary_unary(ECHO).future(p, timeout=10) for p in payloads]
            assert [c.result() for c in calls] == [head + p for p in payloads]
            time.sleep(PARKED_AFTER_S)
        assert unary(ch, ECHO, b"last") == head + b"last"


def test_foreign_ca_cert_completes_handshake_unauthenticated(server):
    m = server.pki.mallory
    with channel(server, m) as ch:
        out = unary(ch, ECHO, b"hi")
    assert out == f"kind=unauthenticated name= serial={m.serial_hex}\nhi".encode()


def test_unknown_method(server):
    with channel(server) as ch:
        with pytest.raises(grpc.RpcError) as e:
            unary(ch, "/tessera.test.Echo/Nope")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert e.value.details() == "unknown method /tessera.test.Echo/Nope"


def test_message_size_limit(server):
    with channel(server) as ch:
        # exactly the maximum is accepted
        out = unary(ch, ECHO, b"a" * MAX_MSG)
        assert out.endswith(b"a" * MAX_MSG)
        with pytest.raises(grpc.RpcError) as e:
            unary(ch, ECHO, b"a" * (MAX_MSG + 1))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in e.value.details()
        # the connection is still fine
        assert unary(ch, HEALTH) == SERVING


def test_client_stream_count(server):
    with channel(server, server.pki.alice) as ch:
        call = ch.stream_unary(COUNT)
        assert call(iter([b"a", b"bb", b"ccc"]), timeout=10) == b"count=3 bytes=6"
        assert call(iter([]), timeout=10) == b"count=0 bytes=0"
        big = [b"z" * 1000] * 300
        assert call(iter(big), timeout=10) == b"count=300 bytes=300000"


def test_client_stream_early_permission_denied(server):
    release = threading.Event()

    def requests():
        yield b"one"
        yield b"DENY this"
        # the server must end the call now, without waiting for the client
        release.wait(10)
        for _ in range(3):
            yield b"after"

    start = time.monotonic()
    with channel(server) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.stream_unary(COUNT)(requests(), timeout=20)
    elapsed = time.monotonic() - start
    release.set()
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "denied at message 2"
    assert elapsed < 5, elapsed
    assert_serving(server)


def test_deadline_on_slow(server):
    with channel(server) as ch:
        with pytest.raises(grpc.RpcError) as e:
            unary(ch, SLOW, b"", timeout=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_serving(server)


def test_200_calls_over_50_channels(server):
    pki = server.pki
    chans = [channel(server, pki.alice if i % 2 else None) for i in range(50)]
    try:
        # all 200 in flight at once (4 per channel), then collected
        bodies = [f"req-{i}-".encode() * 20 for i in range(200)]
        futs = [chans[i % 50].unary_unary(ECHO).future(bodies[i], timeout=30)
                for i in range(200)]
        outs = [f.result() for f in futs]
    finally:
        for ch in chans:
            ch.close()
    heads = []
    for i, out in enumerate(outs):
        assert out.endswith(bodies[i])
        heads.append(out.split(b"\n", 1)[0])
    alice = [h for i, h in enumerate(heads) if (i % 50) % 2]
    anon = [h for i, h in enumerate(heads) if not (i % 50) % 2]
    assert len(alice) == len(anon) == 100
    assert all(h.startswith(b"kind=user name=alice") for h in alice)
    assert all(h == b"kind=anonymous name= serial=" for h in anon)


def test_revoked_connection_closed_live(server):
    bob = server.pki.bob
    with channel(server, bob) as ch:
        assert unary(ch, ECHO, b"before").endswith(b"before")
        t0 = time.monotonic()
        with open(server.revoked + ".tmp", "w") as f:
            f.write(bob.serial_hex + "\n")
        os.rename(server.revoked + ".tmp", server.revoked)
        closed_at = None
        while time.monotonic() - t0 < 3:
            if re.search(r"closed: credentials no longer valid: certificate revoked \(user bob serial "
                         + bob.serial_hex, server.log_text()):
                closed_at = time.monotonic() - t0
                break
            time.sleep(0.05)
        try:
            assert closed_at is not None, server.log_text()[-2000:]
            assert closed_at < 1.0, closed_at
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, ECHO, b"after", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            os.unlink(server.revoked)
    # the refusal at the new handshake was logged too
    assert server.wait_log(r"refused user bob serial " + bob.serial_hex)
    assert_serving(server)


# ---------------------------------------------------------------------------
# hostile TLS peers


def test_alpn_http11_only_refused(server):
    for alpn in (("http/1.1",), None):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises(ssl.SSLError) as e:
            tls_context(server, alpn=alpn).wrap_socket(raw, server_hostname="localhost")
        raw.close()
        assert "NO APPLICATION PROTOCOL" in str(e.value).upper()
    assert server.wait_log("TLS handshake failed: no application protocol")
    assert_serving(server)


def test_garbage_before_tls(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + os.urandom(64))
    assert wait_closed(s, 3) is not None
    s.close()
    assert_serving(server)


def test_stalled_handshake_closed(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    took = wait_closed(s, 5)
    s.close()
    assert took is not None, "stalled handshake never closed"
    limit = HANDSHAKE_TIMEOUT_MS / 1000
    assert limit * 0.9 <= took <= limit + 1.0, took
    assert server.wait_log("TLS handshake timeout")
    assert_serving(server)


def test_partial_client_hello_stalled(server):
    # a few bytes of a ClientHello, then nothing
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    took = wait_closed(s, 5)
    s.close()
    assert took is not None and took <= HANDSHAKE_TIMEOUT_MS / 1000 + 1.0
    assert_serving(server)


def _tls12(server, ciphers):
    ctx = tls_context(server)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except ssl.SSLError:
        raw.close()
        raise
    return s


def test_tls12_only_ecdhe_aead(server):
    for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                  "ECDHE-ECDSA-CHACHA20-POLY1305"):
        s = _tls12(server, suite)
        assert s.version() == "TLSv1.2"
        assert s.cipher()[0] == suite
        assert s.selected_alpn_protocol() == "h2"
        s.close()
    for suite in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"):
        with pytest.raises(ssl.SSLError):
            _tls12(server, suite)
    ctx = tls_context(server)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.version() == "TLSv1.3"
    assert_serving(server)


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_no_session_resumption(server, version):
    ctx = tls_context(server)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    # give a TLS 1.3 server the chance to send NewSessionTicket
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    s.settimeout(0.5)
    try:
        s.recv(4096)
    except (socket.timeout, ssl.SSLError):
        pass
    sess = s.session
    s.close()
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s2 = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
    try:
        assert not s2.session_reused
        assert sess is None or not sess.has_ticket
    finally:
        s2.close()


def test_bad_http2_preface(server):
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s = tls_context(server).wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert wait_closed(s, 3) is not None
    s.close()
    assert_serving(server)


# ---------------------------------------------------------------------------
# hostile / unusual HTTP/2 + gRPC peers


def test_raw_4gib_length_prefix(server):
    c = H2Client(server)
    try:
        sid = c.request(ECHO, [b"\x00\xff\xff\xff\xff" + b"x" * 100], end_stream=False)
        st = c.wait(sid, want_reset=True)
        assert hdr(st, ":status") == "200"
        assert hdr(st, "grpc-status") == "8", st
        assert "larger than max" in hdr(st, "grpc-message")
        assert st["ended"]
        # our request was still open: RST_STREAM(NO_ERROR) follows the trailers
        assert st["reset"] == 0
        # the connection still works
        sid2 = c.request(HEALTH, [grpc_frame(b"")])
        st2 = c.wait(sid2)
        assert hdr(st2, "grpc-status") == "0"
        assert st2["data"] == grpc_frame(SERVING)
    finally:
        c.close()
    assert_serving(server)


@pytest.mark.parametrize("case, chunks, extra, status, msg", [
    ("compressed flag", [grpc_frame(b"abc", flag=1)], (), "12", "compressed"),
    ("flag 2", [grpc_frame(b"abc", flag=2)], (), "13", "flags"),
    ("deflate encoding", [grpc_frame(b"abc")], (("grpc-encoding", "deflate"),), "12",
     "compression not supported"),
    ("gzip flag, not gzip", [grpc_frame(b"abc", flag=1)], (("grpc-encoding", "gzip"),), "13",
     "invalid gzip message"),
    ("no message", [], (), "13", "missing request message"),
    ("two messages", [grpc_frame(b"a") + grpc_frame(b"b")], (), "12", "more than one"),
    ("truncated", [grpc_frame(b"abcdef")[:7]], (), "13", "truncated"),
    ("truncated prefix", [b"\x00\x00"], (), "13", "truncated"),
    ("bad timeout", [grpc_frame(b"a")], (("grpc-timeout", "1x"),), "13", "grpc-timeout"),
    ("9-digit timeout", [grpc_frame(b"a")], (("grpc-timeout", "123456789S"),), "13",
     "grpc-timeout"),
    ("zero timeout", [grpc_frame(b"a")], (("grpc-timeout", "0m"),), "4", "deadline"),
])
def test_raw_grpc_errors(server, case, chunks, extra, status, msg):
    c = H2Client(server)
    try:
        sid = c.request(ECHO, chunks, extra=extra)
        st = c.wait(sid)
        assert hdr(st, ":status") == "200", case
        assert hdr(st, "grpc-status") == status, (case, st)
        assert msg in (hdr(st, "grpc-message") or ""), (case, st)
        if case in ("compressed flag", "deflate encoding"):
            assert hdr(st, "grpc-accept-encoding") == "identity,gzip"
        assert st["data"] == b""
    finally:
        c.close()
    assert_serving(server)


def test_raw_http_errors(server):
    c = H2Client(server)
    try:
        st = c.wait(c.request(ECHO, [grpc_frame(b"a")], content_type="application/json"))
        assert hdr(st, ":status") == "415"
        assert hdr(st, "grpc-status") == "13"
        st = c.wait(c.request(ECHO, [grpc_frame(b"a")], content_type=None))
        assert hdr(st, ":status") == "415"
        st = c.wait(c.request(ECHO, [], method="GET"))
        assert hdr(st, ":status") == "405"
        st = c.wait(c.request("/" + "x" * 4000, [grpc_frame(b"a")]))
        assert hdr(st, "grpc-status") == "12"
        # a percent and non-ASCII in the path: the message is percent-encoded
        st = c.wait(c.request("/a%b/\u00e9", [grpc_frame(b"a")]))
        assert hdr(st, "grpc-status") == "12"
        assert "%25" in hdr(st, "grpc-message")
        assert all(0x20 <= ord(ch) <= 0x7e for ch in hdr(st, "grpc-message"))
    finally:
        c.close()
    assert_serving(server)


def test_raw_deadline_after_slow_handler(server):
    c = H2Client(server)
    try:
        t0 = time.monotonic()
        sid = c.request(SLOW, [grpc_frame(b"")], extra=(("grpc-timeout", "300m"),))
        st = c.wait(sid)
        assert hdr(st, "grpc-status") == "4", st
        assert st["data"] == b""
        assert time.monotonic() - t0 >= 1.4
    finally:
        c.close()


def test_raw_deadline_while_waiting_for_data(server):
    # a client stream that sends nothing: the timer ends it at its deadline
    c = H2Client(server)
    try:
        t0 = time.monotonic()
        sid = c.request(COUNT, [], extra=(("grpc-timeout", "400m"),), end_stream=False)
        st = c.wait(sid, timeout=5, want_reset=True)
        took = time.monotonic() - t0
        assert hdr(st, "grpc-status") == "4", st
        assert st["reset"] == 0
        assert 0.35 <= took <= 1.5, took
    finally:
        c.close()
    assert_serving(server)


def test_raw_stream_denied_then_nothing_more(server):
    c = H2Client(server)
    try:
        sid = c.request(COUNT, [grpc_frame(b"ok"), grpc_frame(b"DENY"), grpc_frame(b"x")],
                        end_stream=False)
        st = c.wait(sid, want_reset=True)
        assert hdr(st, "grpc-status") == "7"
        assert hdr(st, "grpc-message") == "denied at message 2"
        assert st["reset"] == 0
        # the connection is still usable for new streams
        st2 = c.wait(c.request(COUNT, [grpc_frame(b"a"), grpc_frame(b"bc")]))
        assert st2["data"] == grpc_frame(b"count=2 bytes=3")
    finally:
        c.close()


def test_raw_streams_beyond_max_concurrent_refused(server):
    # 105 open client streams before even reading the server's SETTINGS
    c = H2Client(server)
    try:
        sids = [c.request(COUNT, [], end_stream=False) for _ in range(105)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if sum(c.streams[s]["reset"] is not None for s in sids) >= 5:
                break
            c.pump(0.2)
        refused = [s for s in sids if c.streams[s]["reset"] == 7]  # REFUSED_STREAM
        assert len(refused) == 5, [c.streams[s]["reset"] for s in sids]
        assert refused == sids[100:]
        assert c.conn.remote_settings.max_concurrent_streams == 100
    finally:
        c.close()
    assert_serving(server)


def test_headers_flood_without_reading_is_bounded(server):
    """A client that sends requests as fast as it can and never reads its
    responses: the server must stop reading it (bounded memory) and keep
    serving others meanwhile."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s = tls_context(server).wrap_socket(raw, server_hostname="localhost")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    # one HEADERS frame (END_STREAM | END_HEADERS) for an unknown method, with
    # only never-indexed literals so the same block is valid for every stream
    from hpack import Encoder, NeverIndexedHeaderTuple
    block = Encoder().encode([NeverIndexedHeaderTuple(k, v) for k, v in [
        (":method", "POST"), (":scheme", "https"), (":path", "/flood.F/" + "x" * 40),
        (":authority", "localhost"), ("content-type", "application/grpc")]])

    def frames(first, n):
        out = bytearray()
        for sid in range(first, first + 2 * n, 2):
            out += len(block).to_bytes(3, "big") + b"\x01\x05" + sid.to_bytes(4, "big") + block
        return bytes(out)

    rss0 = server.rss_kib()
    sent = 0
    sid = 1
    per = 2000
    s.setblocking(False)
    t_end = time.monotonic() + 4
    stalled_since = None
    while time.monotonic() < t_end:
        chunk = frames(sid, per)
        sid += 2 * per
        view = memoryview(chunk)
        while view and time.monotonic() < t_end:
            try:
                n = s.send(view)
                view = view[n:]
                sent += n
                stalled_since = None
            except (ssl.SSLWantWriteError, BlockingIOError):
                if stalled_since is None:
                    stalled_since = time.monotonic()
                select.select([], [s], [], 0.05)
        # meanwhile others are served
    rss1 = server.rss_kib()
    try:
        assert stalled_since is not None, f"never blocked after {sent} bytes"
        assert_serving(server)
        grew = rss1 - rss0
        assert grew < 64 * 1024, f"server RSS grew by {grew} KiB ({sent} bytes sent)"
        assert sent < 256 * 1024 * 1024, sent
    finally:
        s.close()
    assert_serving(server)


def test_max_connections(pki, tmp_path):
    srv = Server(pki, str(tmp_path), "--workers", "2", "--max-connections", "3",
                 "--handshake-timeout-ms", "3000")
    try:
        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(3)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", srv.port))
        took = wait_closed(extra, 2)
        extra.close()
        assert took is not None and took < 1.0, took
        assert srv.wait_log(r"connection limit \(3\) reached")
        for h in held:
            h.close()
        # slots are given back
        deadline = time.monotonic() + 5
        while True:
            try:
                with channel(srv) as ch:
                    assert unary(ch, HEALTH, timeout=2) == SERVING
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        srv.stop()


def test_idle_timeout(pki, tmp_path):
    srv = Server(pki, str(tmp_path), "--workers", "1", "--idle-timeout-ms", "600")
    try:
        idle = H2Client(srv)
        busy = H2Client(srv)
        # a call in flight (client stream, no deadline) keeps its connection
        busy_sid = busy.request(COUNT, [grpc_frame(b"a")], end_stream=False)
        t0 = time.monotonic()
        took = wait_closed(idle.sock, 3)
        assert took is not None and 0.5 <= took <= 1.5, took
        assert srv.wait_log("idle timeout")
        time.sleep(0.8)  # busy has had no I/O for well over the idle timeout now
        # busy is still open and can finish its call
        busy.conn.send_data(busy_sid, grpc_frame(b"bc"), end_stream=True)
        busy.flush()
        st = busy.wait(busy_sid)
        assert st["data"] == grpc_frame(b"count=2 bytes=3"), st
        assert time.monotonic() - t0 >= 0.6
        idle.close()
        busy.close()
    finally:
        srv.stop()


def test_graceful_stop_with_live_connections(pki, tmp_path):
    srv = Server(pki, str(tmp_path), "--workers", "2")
    ch = channel(srv, pki.alice)
    assert unary(ch, ECHO, b"x").endswith(b"x")
    c = H2Client(srv)
    c.request(COUNT, [grpc_frame(b"a")], end_stream=False)  # an open client stream
    stalled = socket.create_connection(("127.0.0.1", srv.port))
    t0 = time.monotonic()
    srv.stop()  # asserts exit 0, no sanitizer report
    assert time.monotonic() - t0 < 10
    ch.close()
    c.close()
    stalled.close()
