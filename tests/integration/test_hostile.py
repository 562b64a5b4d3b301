"""Hostile peers against the real tessera-gateway (not the transport's test
server; tests/integration/test_transport.py covers garbage before TLS,
stalled handshakes, ALPN, the 4 GiB prefix, max streams, a headers flood
without reading and max connections there).

Every case ends with the gateway still answering a health check and an
authenticated call on fresh connections (the autouse `serving` fixture).
Numbers measured here (RSS, descriptors) are printed; run with -s to see
them. docs/security.md lists them."""
import os
import resource
import select
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ObjectIdentifier
from hpack import Encoder

import gwtest
from gwtest import code_of, pb
from h2client import H2, grpc_frame, tls_connect, tls_context

S = grpc.StatusCode
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GW = "/tessera.v1.Gateway/"
HEALTH = "/grpc.health.v1.Health/Check"

# HTTP/2 frame types and error codes (RFC 9113)
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS = 0x1, 0x4
INTERNAL_ERROR, ENHANCE_YOUR_CALM, CANCEL = 2, 11, 8

# Under ASan freed memory sits in a quarantine (256 MiB by default), which
# would hide what the gateway holds; a small one keeps RSS meaningful.
ASAN_ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8:"
                             "malloc_context_size=5").lstrip(":")}


@pytest.fixture(scope="module")
def gw():
    g = gwtest.Gateway(renew_limit=1000, env=ASAN_ENV)
    g.sb = g.create_sandbox()
    g.sb_ident = g.sandbox_identity(g.sb.sandbox.id)
    yield g
    rc = g.stop()
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, g.sanitizer_report())


@pytest.fixture(autouse=True)
def serving(gw):
    """After every hostile case: still up, still serving anonymous and
    authenticated callers on fresh connections."""
    yield
    gw.assert_serving(gw.user("admin"))
    gw.assert_serving(gw.sb_ident)


def measure(name, **values):
    print(f"\n[measure] {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# ---------------------------------------------------------------------------
# raw TLS + HTTP/2


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + \
        payload


def header_block(path):
    return Encoder().encode([(":method", "POST"), (":scheme", "https"), (":path", path),
                             (":authority", "localhost"), ("content-type", "application/grpc"),
                             ("te", "trailers")])


class Raw:
    """TLS socket speaking hand-made HTTP/2 frames; reads the server's frames
    without an HTTP/2 state machine (so it can break every rule)."""

    def __init__(self, gw, ident=None, settings=b""):
        self.sock = tls_connect(gw, ident)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
        self.buf = b""
        self.eof = False

    def flood(self, unit, seconds):
        """Send `unit` back to back for up to `seconds` without reading.
        Returns (bytes sent, True if the server closed the connection)."""
        chunk = unit * max(1, 16384 // len(unit))   # one TLS record per send
        view = memoryview(chunk)
        sent = 0
        self.sock.setblocking(False)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                try:
                    n = self.sock.send(view)
                    sent += n
                    view = view[n:] or memoryview(chunk)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    select.select([], [self.sock], [], 0.05)
        except (OSError, ssl.SSLError):
            return sent, True
        finally:
            self.sock.setblocking(True)
        return sent, False

    def read_all(self, timeout=5):
        """Read until EOF or `timeout`; returns the frames [(type, flags, sid, payload)]."""
        self.sock.settimeout(0.2)
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.eof:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                self.eof = True
                break
            if not d:
                self.eof = True
            self.buf += d
        out, i = [], 0
        while i + 9 <= len(self.buf):
            n = int.from_bytes(self.buf[i:i + 3], "big")
            if i + 9 + n > len(self.buf):
                break
            out.append((self.buf[i + 3], self.buf[i + 4],
                        int.from_bytes(self.buf[i + 5:i + 9], "big") & 0x7fffffff,
                        self.buf[i + 9:i + 9 + n]))
            i += 9 + n
        return out

    def goaway(self, timeout=5):
        """(last_stream_id, error_code, debug text) of the server's last GOAWAY."""
        frames = [f for f in self.read_all(timeout) if f[0] == GOAWAY]
        assert frames, "no GOAWAY from the server"
        p = frames[-1][3]
        return (int.from_bytes(p[0:4], "big") & 0x7fffffff, int.from_bytes(p[4:8], "big"),
                p[8:].decode(errors="replace"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# identity


RPCS = ["CreateSandbox", "GetSandbox", "ListSandboxes", "DeleteSandbox", "GetSandboxLogs",
        "ListCertificates", "RevokeCertificate", "GetSandboxConfig",
        "GetSandboxProviderEnvironment", "ReportPolicyStatus", "SubmitPolicyAnalysis",
        "GetDraftPolicy", "UpdateConfig", "PushSandboxLogs", "RenewCertificate", "GetTrustBundle"]
SANDBOX_RPCS = {"ReportPolicyStatus", "SubmitPolicyAnalysis", "PushSandboxLogs",
                "RenewCertificate"}


def test_no_client_cert_on_every_protected_rpc(gw):
    """Plain TLS, no client certificate, hand-made requests with a valid
    empty message: UNAUTHENTICATED for every RPC, and the connection stays
    usable for the health check (an identity refusal, not a transport one)."""
    c = H2(gw)
    try:
        for rpc in RPCS:
            st = c.wait(c.call(GW + rpc, [grpc_frame(b"")]))
            assert st["headers"].get("grpc-status") == "16", (rpc, st)
            assert st["data"] == b""
        st = c.wait(c.call(HEALTH, [grpc_frame(b"")]))
        assert st["headers"].get("grpc-status") == "0" and st["data"] == grpc_frame(b"\x08\x01")
    finally:
        c.close()
    lines = [l for l in gw.audit_lines() if '"peer":"anonymous"' in l]
    assert len(lines) >= len(RPCS)


# ---------------------------------------------------------------------------
# HTTP/2 floods


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_flood(gw, kind):
    """SETTINGS or PING as fast as possible, never reading the ACKs:
    nghttp2's outbound-ACK limit (100) ends the connection with GOAWAY
    ENHANCE_YOUR_CALM; memory does not grow."""
    unit = frame(SETTINGS, 0, 0) if kind == "settings" else frame(PING, 0, 0, b"tessera!")
    rss0 = gw.rss_kib()
    r = Raw(gw, gw.user("admin"))
    try:
        t0 = time.monotonic()
        sent, closed = r.flood(unit, 5)
        took = time.monotonic() - t0
        last, err, why = r.goaway()
        assert err == ENHANCE_YOUR_CALM, (err, why)
        assert "Flooding" in why
        assert r.eof
        assert closed and took < 5, f"still open after {took:.1f}s, {sent} bytes"
    finally:
        r.close()
    measure(f"{kind} flood", bytes_sent=sent, seconds=round(took, 2),
            rss_growth_kib=gw.rss_kib() - rss0)
    assert gw.rss_kib() - rss0 < 16 * 1024


def test_settings_with_too_many_entries(gw):
    r = Raw(gw, settings=b"".join(struct.pack(">HI", 3, 100) for _ in range(40)))
    try:
        _, err, why = r.goaway()
        assert err == ENHANCE_YOUR_CALM and "too many setting entries" in why, (err, why)
    finally:
        r.close()


def test_rapid_reset(gw):
    """HEADERS + RST_STREAM(CANCEL), thousands of times (CVE-2023-44487):
    nghttp2's reset rate limit (burst 1000, 33/s) ends the connection; the
    gateway ran at most about the burst of calls."""
    blk = header_block(GW + "GetTrustBundle")
    unit = bytearray()
    for i in range(20000):
        sid = 1 + 2 * i
        unit += frame(HEADERS, END_HEADERS, sid, blk) + frame(RST_STREAM, 0, sid,
                                                               CANCEL.to_bytes(4, "big"))
    r = Raw(gw, gw.user("admin"))
    try:
        t0 = time.monotonic()
        view = memoryview(bytes(unit))
        r.sock.setblocking(False)
        try:
            while view and time.monotonic() - t0 < 5:
                try:
                    view = view[r.sock.send(view):]
                except (ssl.SSLWantWriteError, BlockingIOError):
                    select.select([], [r.sock], [], 0.05)
        except (OSError, ssl.SSLError):
            pass
        r.sock.setblocking(True)
        last, err, why = r.goaway()
        took = time.monotonic() - t0
        assert err in (INTERNAL_ERROR, ENHANCE_YOUR_CALM), (err, why)
        assert r.eof
        streams = (last + 1) // 2
        measure("rapid reset", streams_before_goaway=streams, seconds=round(took, 2))
        assert streams <= 1200, streams
        assert took < 5
    finally:
        r.close()


@pytest.mark.parametrize("empty", [False, True], ids=["header_bytes", "empty_frames"])
def test_continuation_flood(gw, empty):
    """A header block split over endless CONTINUATION frames (CVE-2024-27316
    style): refused after 8 with GOAWAY ENHANCE_YOUR_CALM."""
    blk = Encoder().encode([(":method", "POST"), (":scheme", "https"),
                            (":path", GW + "GetTrustBundle"), (":authority", "localhost")] +
                           [(f"x-h{i}", "v" * 20) for i in range(300)])
    if empty:
        frames = frame(HEADERS, 0, 1, blk[:5]) + frame(CONTINUATION, 0, 1) * 20000
    else:
        frames = frame(HEADERS, 0, 1, blk[:5]) + b"".join(
            frame(CONTINUATION, 0, 1, blk[i:i + 1]) for i in range(5, len(blk)))
    r = Raw(gw, gw.user("admin"))
    try:
        r.flood(frames, 0.5)
        _, err, why = r.goaway()
        assert err == ENHANCE_YOUR_CALM and "CONTINUATION" in why, (err, why)
        assert r.eof
    finally:
        r.close()


# ---------------------------------------------------------------------------
# malformed gRPC / protobuf


@pytest.mark.parametrize("case, chunks", [
    ("prefix says 100, 10 sent", [grpc_frame(b"0123456789", length=100)]),
    ("half a prefix", [b"\x00\x00\x00"]),
    ("prefix only", [grpc_frame(b"", length=7)]),
])
def test_truncated_message_then_end_stream(gw, case, chunks):
    c = H2(gw, gw.user("admin"))
    try:
        st = c.wait(c.call(GW + "GetSandbox", chunks))
        assert st["headers"].get("grpc-status") == "13", (case, st)
        assert "truncated" in st["headers"].get("grpc-message", ""), (case, st)
        assert st["data"] == b""
        # the connection still serves
        ok = c.wait(c.call(GW + "GetTrustBundle", [grpc_frame(b"")]))
        assert ok["headers"].get("grpc-status") == "0"
    finally:
        c.close()


MALFORMED = {
    "length overflow": b"\x0a\xff\xff\xff\xff\x0f",
    "length past the end": b"\x0a\x05ab",
    "truncated varint": b"\x10\xff",
    "varint of 11 bytes": b"\x10" + b"\xff" * 10 + b"\x01",
    "wire type 7": b"\x0f",
    "field number 0": b"\x00\x01",
    "unterminated group": b"\x0b",
}


@pytest.mark.parametrize("rpc", RPCS)
def test_malformed_protobuf_from_authorized_caller(gw, rpc):
    """Each malformed encoding to each RPC, from a caller allowed to call it:
    INVALID_ARGUMENT naming the message, never a crash or another status."""
    ident = gw.sb_ident if rpc in SANDBOX_RPCS else gw.user("admin")
    ch = gw.channel(ident)
    try:
        if rpc == "PushSandboxLogs":
            call = ch.stream_unary(GW + rpc)
            invoke = lambda body: call(iter([body]), timeout=10)  # noqa: E731
        else:
            call = ch.unary_unary(GW + rpc)
            invoke = lambda body: call(body, timeout=10)  # noqa: E731
        for case, body in MALFORMED.items():
            code, details = code_of(lambda: invoke(body))
            assert code == S.INVALID_ARGUMENT, (rpc, case, code, details)
            assert details.startswith("malformed tessera.v1."), (rpc, case, details)
    finally:
        ch.close()


def test_malformed_health_check(gw):
    ch = gw.channel(None)
    try:
        for case, body in MALFORMED.items():
            code, _ = code_of(lambda: ch.unary_unary(HEALTH)(body, timeout=10))
            assert code == S.INVALID_ARGUMENT, case
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# CSR bombs


def many_extension_csr(n):
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    for i in range(n):
        b = b.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(f"1.3.6.1.4.1.99999.{i}"), b""), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def nested_der(depth):
    body = b"\x05\x00"
    for _ in range(depth):
        n = len(body)
        body = b"\x30" + (bytes([n]) if n < 128 else b"\x81" + bytes([n]) if n < 256
                          else b"\x82" + n.to_bytes(2, "big")) + body
    return body


CSR_BOMBS = [
    ("a thousand extensions in 16 KiB", many_extension_csr(1000), "extensions (at most 32)"),
    ("nested SEQUENCEs, 2000 deep", nested_der(2000), "not a DER PKCS#10"),
    ("indefinite-length nesting, 8000 deep", b"\x30\x80" * 8000, "not a DER PKCS#10"),
    ("16 KiB + 1", b"\x30" * 16385, "1..16384 bytes"),
    ("random bytes", b"\x31" + os.urandom(4095), "bad CSR"),
]


@pytest.mark.parametrize("case, csr, needle", CSR_BOMBS, ids=[c[0] for c in CSR_BOMBS])
def test_csr_bomb(gw, case, csr, needle):
    sid = gw.sb.sandbox.id
    before = {c.serial for c in gw.stub(gw.user("admin")).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates}
    t0 = time.monotonic()
    code, details = code_of(lambda: gw.stub(gw.sb_ident).RenewCertificate(
        pb.RenewCertificateRequest(csr=csr), timeout=10))
    took = time.monotonic() - t0
    assert code == S.INVALID_ARGUMENT, (case, code, details)
    assert needle in details, (case, details)
    assert took < 1.0, f"{case}: {took:.2f}s"
    after = {c.serial for c in gw.stub(gw.user("admin")).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates}
    assert after == before
    measure(f"CSR bomb {case}", bytes=len(csr), ms=round(took * 1000, 1))


# ---------------------------------------------------------------------------
# connection churn


def partial_client_hello():
    """The first bytes of a real ClientHello (TLS record header and a bit)."""
    return bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + os.urandom(20)


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_ten_thousand_connections_opened_and_dropped(gw):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    fds0, rss0 = gw.fd_count(), gw.rss_kib()
    addr = ("127.0.0.1", gw.port)
    hello = partial_client_hello()
    t0 = time.monotonic()
    opened = 0
    peak = fds0
    try:
        for batch in range(200 if os.environ.get("TSR_SLOW") == "1" else 40):
            socks = []
            for _ in range(250):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(addr)
                socks.append(s)
            select.select([], socks, [], 5)
            for i, s in enumerate(socks):
                mode = (i + batch) % 3
                try:
                    if mode == 0:      # reset at once
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    elif mode == 1:    # half a ClientHello, then gone
                        s.send(hello)
                except OSError:
                    pass
                s.close()              # mode 2: plain FIN
            opened += len(socks)
            if batch % 10 == 9:
                peak = max(peak, gw.fd_count())
        # and some complete handshakes, dropped without close_notify
        ctx = tls_context(gw)
        for _ in range(200):
            raw = socket.create_connection(addr, timeout=10)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(PREFACE)
            raw_fd = s.detach()
            os.close(raw_fd) if isinstance(raw_fd, int) else raw_fd.close()
            opened += 1
        took = time.monotonic() - t0
        assert gw.alive()
        # Every descriptor is given back.
        assert wait_for(lambda: gw.fd_count() <= fds0, 15), \
            f"gateway holds {gw.fd_count()} descriptors, {fds0} before"
        measure("10k connections opened and dropped", connections=opened,
                seconds=round(took, 1), fds_before=fds0, fds_peak_sampled=peak,
                fds_after=gw.fd_count(), rss_before_kib=rss0, rss_after_kib=gw.rss_kib())
        assert gw.rss_kib() - rss0 < 32 * 1024
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_tls12_client_renegotiation_refused(gw):
    """openssl s_client on TLS 1.2 asks to renegotiate ("R"): the gateway
    (SSL_OP_NO_RENEGOTIATION) answers no_renegotiation, the handshake fails,
    the connection closes."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found")
    users = os.path.join(gw.pki, "users")
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{gw.port}", "-tls1_2",
                          "-alpn", "h2", "-CAfile", os.path.join(gw.pki, "bundle.pem"),
                          "-cert", os.path.join(users, "admin.pem"),
                          "-key", os.path.join(users, "admin.key"),
                          "-servername", "localhost"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = b""
        end = time.monotonic() + 10
        os.set_blocking(p.stdout.fileno(), False)
        def got_settings():
            # the session summary, then the server's first HTTP/2 frames (its
            # SETTINGS): renegotiating before they arrive races them
            at = out.find(b"Extended master secret")
            end_of_summary = out.find(b"---\n", at) if at >= 0 else -1
            return end_of_summary >= 0 and len(out) >= end_of_summary + 4 + 9
        while not got_settings() and time.monotonic() < end:
            select.select([p.stdout], [], [], 0.2)
            out += p.stdout.read() or b""
        assert b"Protocol  : TLSv1.2" in out, out[-2000:]
        assert got_settings(), out[-2000:]
        time.sleep(0.2)   # the rest of the server's first flight
        p.stdin.write(b"R\n")
        p.stdin.flush()
        rc = p.wait(10)
        os.set_blocking(p.stdout.fileno(), True)
        out += p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode(errors="replace")
    assert "RENEGOTIATING" in text, text[-2000:]
    assert "no renegotiation" in text, text[-2000:]
    assert rc != 0
    assert wait_for(lambda: any("handshake failure" in l or "renegotiation" in l
                                for l in gw.stderr_lines), 3), "".join(gw.stderr_lines[-5:])


# ---------------------------------------------------------------------------
# a client that never reads


@pytest.fixture(scope="module")
def big_logs(gw):
    """A sandbox with ~2 MiB of logs: each GetSandboxLogs answer is a full
    message (1 MiB, the fixture's max_message_bytes)."""
    sb = gw.create_sandbox()
    ident = gw.sandbox_identity(sb.sandbox.id)

    def batches():
        for _ in range(2):
            yield pb.PushSandboxLogsRequest(sandbox_id=sb.sandbox.id, lines=[
                pb.LogLine(timestamp_ms=1, stream="stdout", text=b"y" * 16000)
                for _ in range(64)])
    assert gw.stub(ident).PushSandboxLogs(batches(), timeout=30).accepted_lines == 128
    return sb.sandbox.id


def logs_request(sid):
    return grpc_frame(pb.GetSandboxLogsRequest(sandbox_id=sid, limit=10000).SerializeToString())


def test_logs_answer_bounded_by_max_message(gw, big_logs):
    """GetSandboxLogs never answers more than max_message_bytes (here 1 MiB;
    the store holds 2 MiB): a stock client receives it, and paging with
    since = last seq returns every line exactly once."""
    stub = gw.stub(gw.user("bob"))   # viewer
    seen, since, pages = [], 0, 0
    while True:
        r = stub.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=big_logs, since=since,
                                                         limit=10000), timeout=10)
        assert r.ByteSize() <= 1048576
        if not r.lines:
            break
        seen += [l.seq for l in r.lines]
        since = r.lines[-1].seq
        pages += 1
    assert seen == list(range(1, 129)) and pages >= 2


def test_client_that_never_reads(gw, big_logs):
    """Three connections advertise a zero receive window and each open 100
    GetSandboxLogs calls (1 MiB answers) that they never read. The gateway
    holds at most ~3 MiB of unsent answers per connection (the calls past
    that wait), others are served meanwhile, and a legitimate client's 20
    concurrent large calls on one connection all complete."""
    rss0 = gw.rss_kib()
    req = logs_request(big_logs)
    blk = header_block(GW + "GetSandboxLogs")
    hostile = []
    try:
        for _ in range(3):
            r = Raw(gw, gw.user("bob"), settings=struct.pack(">HI", 4, 0))  # INITIAL_WINDOW 0
            r.sock.sendall(b"".join(frame(HEADERS, END_HEADERS, 1 + 2 * i, blk) +
                                    frame(DATA, END_STREAM, 1 + 2 * i, req) for i in range(100)))
            hostile.append(r)
        time.sleep(1.5)   # several ticks: every call that may run has run
        held = gw.rss_kib() - rss0
        # Others are served meanwhile, large answers included.
        stub = gw.stub(gw.user("admin"))
        r = stub.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=big_logs, limit=10000),
                                timeout=10)
        assert len(r.lines) > 0 and r.ByteSize() > 512 * 1024
        results = []

        def one():
            results.append(code_of(lambda: stub.GetSandboxLogs(pb.GetSandboxLogsRequest(
                sandbox_id=big_logs, limit=10000), timeout=30)))
        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [c for c, _ in results] == [S.OK] * 20, results
        held_after = gw.rss_kib() - rss0
        measure("never-reading clients (3 conns x 100 calls x 1 MiB answers)",
                rss_before_kib=rss0, rss_growth_while_held_kib=held,
                rss_growth_after_20_concurrent_kib=held_after,
                unbounded_would_be_kib=3 * 100 * 1024)
        # Without the bound: 300 MiB. With it: ~3 x 4 MiB plus allocator slack.
        assert held < 48 * 1024, f"RSS grew by {held} KiB"
    finally:
        for r in hostile:
            r.close()


def test_zero_window_peer_closed_at_idle_timeout(gw, big_logs):
    """A peer that keeps its window at zero and stays silent is closed at the
    idle timeout ("write stalled"), like a peer whose TCP window is full,
    even though it has calls open."""
    g = gwtest.Gateway(limits="idle_timeout: 10s", env=ASAN_ENV)
    try:
        sb = g.create_sandbox()
        ident = g.sandbox_identity(sb.sandbox.id)
        assert g.stub(ident).PushSandboxLogs(iter([pb.PushSandboxLogsRequest(
            sandbox_id=sb.sandbox.id, lines=[pb.LogLine(text=b"z" * 16000)] * 32)]),
            timeout=10).accepted_lines == 32
        r = Raw(g, g.user("admin"), settings=struct.pack(">HI", 4, 0))
        t0 = time.monotonic()
        r.sock.sendall(frame(HEADERS, END_HEADERS, 1, header_block(GW + "GetSandboxLogs")) +
                       frame(DATA, END_STREAM, 1, logs_request(sb.sandbox.id)))
        _, err, why = r.goaway(timeout=15)
        took = time.monotonic() - t0
        assert "write stalled" in why, why
        measure("zero-window silent peer", idle_timeout_s=10, closed_after_s=round(took, 2))
        assert 9.5 <= took <= 12, took
        assert r.eof
        r.close()
        g.assert_serving(g.user("admin"))
    finally:
        rc = g.stop()
    assert rc == 0, g.sanitizer_report()
