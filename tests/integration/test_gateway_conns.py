"""Connection-level behaviour of the real gateway: many concurrent mTLS
connections, and a connection that never outlives its certificate."""
import datetime
import queue
import resource
import socket
import ssl
import threading
import time

import grpc

import gwtest
from gwtest import code_of, pb

S = grpc.StatusCode


def tls_client(gw, ident, tmp_path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=gw.bundle.decode())
    ctx.set_alpn_protocols(["h2"])
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(ident.chain_pem)
    key.write_bytes(ident.key_pem)
    ctx.load_cert_chain(str(chain), str(key))
    return ctx


def test_thousand_concurrent_mtls_connections(gw, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    ident = gw.sandbox_identity(gw.create_sandbox().sandbox.id)
    ctx = tls_client(gw, ident, tmp_path)
    conns = []
    try:
        for _ in range(1000):
            raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            assert s.selected_alpn_protocol() == "h2"
            conns.append(s)
        # All 1000 are still open (the server has not dropped any) ...
        time.sleep(0.5)
        alive = 0
        for s in conns:
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""  # server SETTINGS frame or nothing yet
            except (ssl.SSLWantReadError, BlockingIOError):
                alive += 1
        assert alive == 1000
        # ... and the gateway still answers new callers.
        health = gw.health(None).Check(gwtest.health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == gwtest.health_pb2.HealthCheckResponse.SERVING
    finally:
        for s in conns:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connection_closed_at_certificate_not_after(gw):
    sb = gw.create_sandbox()
    # X.509 times have whole seconds: notAfter is this instant, truncated.
    expires = (gwtest.now() + datetime.timedelta(seconds=3)).replace(microsecond=0)
    ident = gw.sandbox_identity(sb.sandbox.id, not_after=expires)
    stub = gw.stub(ident)
    assert stub.GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sb.sandbox.id),
                                 timeout=5).policy_version == 1
    release = threading.Event()

    def batches():
        yield pb.PushSandboxLogsRequest(sandbox_id=sb.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=1, text=b"still valid")])
        release.wait(15)

    done = queue.Queue()
    threading.Thread(target=lambda: done.put(
        (code_of(lambda: stub.PushSandboxLogs(batches(), timeout=15)), time.time())),
        daemon=True).start()
    (code, _), ended = done.get(timeout=15)
    release.set()
    assert code != S.OK
    deadline = expires.replace(tzinfo=datetime.timezone.utc).timestamp()
    assert deadline <= ended < deadline + 1.0
    # A new connection with the expired certificate identifies nobody.
    code, _ = code_of(lambda: gw.stub(ident).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=sb.sandbox.id), timeout=5))
    assert code == S.UNAUTHENTICATED
