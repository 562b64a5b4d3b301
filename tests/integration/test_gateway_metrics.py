"""Prometheus metrics of the real gateway: scraped over HTTP after real
calls, parsed strictly (gwtest.parse_metrics), each counter moving by
exactly what the calls did."""
import gc
import http.client
import socket
import ssl
import time

import grpc
import pytest

import gwtest
from gwtest import code_of, metric, pb

S = grpc.StatusCode
CREATE = "/tessera.v1.Gateway/CreateSandbox"


@pytest.fixture(scope="module")
def mgw():
    g = gwtest.Gateway(metrics=True)
    yield g
    rc = g.stop()
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, g.sanitizer_report())


def delta(before, after, name, **labels):
    return metric(after, name, **labels) - metric(before, name, **labels)


def eventually(fn, timeout=5):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def test_format_and_families(mgw):
    m = mgw.scrape()   # parse_metrics asserts the format
    names = {name for name, _ in m}
    for family in ("tessera_certificates_issued_total", "tessera_certificates_revoked_total",
                   "tessera_denials_total", "tessera_handshake_failures_total",
                   "tessera_open_connections", "tessera_store_errors_total",
                   "tessera_rpc_duration_seconds_bucket", "tessera_rpc_duration_seconds_sum",
                   "tessera_rpc_duration_seconds_count", "tessera_forwarded_certificates_total"):
        assert family in names, family
    assert metric(m, "tessera_store_errors_total") == 0
    assert metric(m, "tessera_audit_write_failures_total") == 0
    # One histogram per method of the service, with the health check.
    methods = {dict(l)["method"] for n, l in m if n == "tessera_rpc_duration_seconds_count"}
    assert CREATE in methods and "/grpc.health.v1.Health/Check" in methods
    assert len(methods) == 20   # the 17 RPCs, health Watch, reflection v1 and v1alpha


def test_issuance_revocation_and_durations(mgw):
    before = mgw.scrape()
    admin = mgw.stub(mgw.user("admin"))
    s = mgw.create_sandbox()
    der, _ = gwtest.csr_der()
    r = mgw.stub(mgw.placed_identity(s.sandbox.id)).RenewCertificate(
        pb.RenewCertificateRequest(csr=der), timeout=10)
    admin.RevokeCertificate(pb.RevokeCertificateRequest(serial=r.serial, reason="t"), timeout=10)
    d = admin.DeleteSandbox(pb.DeleteSandboxRequest(id=s.sandbox.id), timeout=10)
    after = mgw.scrape()
    assert delta(before, after, "tessera_certificates_issued_total", kind="create") == 1
    assert delta(before, after, "tessera_certificates_issued_total", kind="renew") == 1
    assert d.revoked_certificates == 1   # the first certificate; the renewed one was already
    assert delta(before, after, "tessera_certificates_revoked_total") == 2
    assert delta(before, after, "tessera_rpc_duration_seconds_count", method=CREATE) == 1
    assert delta(before, after, "tessera_rpc_duration_seconds_sum", method=CREATE) > 0
    assert delta(before, after, "tessera_rpcs_total", method=CREATE, code="OK") == 1
    assert delta(before, after, "tessera_rpcs_total",
                 method="/tessera.v1.Gateway/RevokeCertificate", code="OK") == 1


def test_denials_by_reason(mgw):
    a, b = mgw.create_sandbox(), mgw.create_sandbox()
    before = mgw.scrape()
    code_of(lambda: mgw.stub(mgw.user("bob")).CreateSandbox(
        pb.CreateSandboxRequest(name="nope", policy=gwtest.POLICY), timeout=10))
    code_of(lambda: mgw.stub(mgw.sandbox_identity(a.sandbox.id)).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=b.sandbox.id), timeout=10))
    code_of(lambda: mgw.stub(None).ListSandboxes(pb.ListSandboxesRequest(), timeout=10))
    code_of(lambda: mgw.stub(None).ListSandboxes(pb.ListSandboxesRequest(), timeout=10))
    after = mgw.scrape()
    assert delta(before, after, "tessera_denials_total", reason="permission") == 1
    assert delta(before, after, "tessera_denials_total", reason="cross_sandbox") == 1
    assert delta(before, after, "tessera_denials_total", reason="unauthenticated") == 2
    assert delta(before, after, "tessera_rpcs_total", method=CREATE,
                 code="PERMISSION_DENIED") == 1


def test_handshake_failures_and_connections(mgw):
    before = mgw.scrape()
    # Closed during the handshake: TCP only.
    socket.create_connection(("127.0.0.1", mgw.port)).close()
    # TLS failures: no ALPN (the gateway requires h2), and plain HTTP.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", mgw.port)) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost").do_handshake()
    with socket.create_connection(("127.0.0.1", mgw.port)) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(5)
        try:
            while raw.recv(4096):
                pass
        except OSError:
            pass

    def counted():
        m = mgw.scrape()
        return (delta(before, m, "tessera_handshake_failures_total", reason="closed") >= 1 and
                delta(before, m, "tessera_handshake_failures_total", reason="tls") >= 2) and m
    after = eventually(counted)
    assert after, mgw.scrape()
    assert delta(before, after, "tessera_handshake_failures_total", reason="closed") == 1
    assert delta(before, after, "tessera_handshake_failures_total", reason="tls") == 2
    assert delta(before, after, "tessera_handshake_failures_total", reason="timeout") == 0

    # Open connections: a channel with a finished call keeps its connection.
    # Channels of earlier tests close when collected: let the gauge settle.
    gc.collect()
    readings = []
    for _ in range(100):
        readings.append(metric(mgw.scrape(), "tessera_open_connections"))
        if len(readings) >= 4 and len(set(readings[-4:])) == 1:
            break
        time.sleep(0.1)
    base = readings[-1]
    channels = [mgw.channel(mgw.user("bob")) for _ in range(3)]
    for ch in channels:
        gwtest.pb_grpc.GatewayStub(ch).ListSandboxes(pb.ListSandboxesRequest(), timeout=10)
    assert eventually(lambda: metric(mgw.scrape(), "tessera_open_connections") == base + 3)
    for ch in channels:
        ch.close()
    assert eventually(lambda: metric(mgw.scrape(), "tessera_open_connections") == base)


def test_listener_answers_only_get_metrics(mgw):
    for method, path, status in (("GET", "/", 404), ("POST", "/metrics", 405),
                                 ("GET", "/metrics?x=1", 404), ("HEAD", "/metrics", 405)):
        conn = http.client.HTTPConnection("127.0.0.1", mgw.metrics_port, timeout=10)
        conn.request(method, path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == status, (method, path)
        conn.close()
    # It is plain HTTP on its own port: the gRPC port is not it, and vice versa.
    assert mgw.metrics_port != mgw.port
