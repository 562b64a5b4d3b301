"""The gateway behind a TLS terminator (docs/operations.md), with a real nginx running
docs/examples/nginx-tessera.conf: the client's certificate is forwarded per
request and re-verified by the gateway, so authorization through the proxy
matches authorization direct. Then the header from callers that may not
forward it (ignored and logged), the proxy's own calls, forwarded identities
that identify nobody, and a forwarded identity revoked mid-stream."""
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import grpc
import pytest

import gwtest
from gwtest import TD, code_of, escape_pem, pb, pb_grpc

S = grpc.StatusCode
NGINX = "/usr/sbin/nginx"
ROOT = os.environ.get("TSR_ROOT", os.path.join(os.path.dirname(__file__), "../.."))
TEMPLATE = os.path.join(ROOT, "docs/examples/nginx-tessera.conf")
UNIX_TEMPLATE = os.path.join(ROOT, "docs/examples/nginx-tessera-unix.conf")
HEADER = "x-client-cert"


def nginx_build():
    """`nginx -V` text, or None when nginx is missing."""
    if not os.access(NGINX, os.X_OK):
        return None
    return subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr


free_port = gwtest.free_port


class Nginx:
    """nginx with the documented configuration, in front of `gw`: over TLS,
    or with socket_path over the gateway's unix socket."""

    def __init__(self, gw, socket_path=None):
        self.gw = gw
        self.dir = tempfile.mkdtemp(prefix="tsr-nginx-")
        ident = gw.proxy_identity("nginx")
        with open(os.path.join(gw.pki, "proxy-nginx.pem"), "wb") as f:
            f.write(ident.chain_pem)
        fd = os.open(os.path.join(gw.pki, "proxy-nginx.key"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, ident.key_pem)
        os.close(fd)
        for attempt in range(5):
            self.port = free_port()
            conf = (open(UNIX_TEMPLATE if socket_path else TEMPLATE).read()
                    .replace("@LISTEN@", f"127.0.0.1:{self.port}")
                    .replace("@SOCKET@", socket_path or "")
                    .replace("@GATEWAY@", f"127.0.0.1:{gw.port}")
                    .replace("@PKI@", gw.pki)
                    .replace("@TEMP@", self.dir))
            assert not re.search(r"@[A-Z]+@", re.sub(r"#.*", "", conf)), "placeholder left"
            path = os.path.join(self.dir, "nginx.conf")
            with open(path, "w") as f:
                f.write(conf)
            # As root nginx would hand its workers to "nobody", who cannot read
            # the PKI: one process does everything here.
            self.proc = subprocess.Popen(
                [NGINX, "-p", self.dir, "-c", path, "-e", "stderr", "-g",
                 f"daemon off; master_process off; pid {self.dir}/nginx.pid; "
                 f"error_log stderr info;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if self._wait_ready():
                return
            err = self.proc.stderr.read()
            if "Address already in use" not in err:
                raise RuntimeError("nginx did not start:\n" + err)
        raise RuntimeError("nginx: no free port")

    def _wait_ready(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def channel(self, ident=None):
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.gw.bundle,
            private_key=ident.key_pem if ident else None,
            certificate_chain=ident.chain_pem if ident else None)
        return grpc.secure_channel(f"localhost:{self.port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])

    def stub(self, ident=None):
        return pb_grpc.GatewayStub(self.channel(ident))


def proxy_world(gw, nginx):
    """Two sandboxes a and b, and the identities the matrix forwards besides
    theirs: a revoked (renewed, then revoked by an admin) certificate, one
    from a foreign CA, and an expired one."""
    a, b, c = gw.create_sandbox(), gw.create_sandbox(), gw.create_sandbox()
    w = {"gw": gw, "nginx": nginx, "a": a.sandbox, "b": b.sandbox,
         "a_ident": gw.placed_identity(a.sandbox.id)}
    der, key = gwtest.csr_der()
    r = gw.stub(gw.placed_identity(c.sandbox.id)).RenewCertificate(
        pb.RenewCertificateRequest(csr=der), timeout=10)
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=r.serial, reason="test"), timeout=10)
    w["revoked"] = gwtest.Identity((r.certificate_pem + r.chain_pem).encode(),
                                   gwtest.key_pem(key))
    ca_cert, ca_key = gwtest.make_ca("Foreign CA")
    leaf, leaf_key = gwtest.make_leaf(f"spiffe://{TD}/user/admin", ca_cert, ca_key)
    w["wrong_ca"] = gwtest.Identity(gwtest.pem(leaf) + gwtest.pem(ca_cert),
                                    gwtest.key_pem(leaf_key))
    past = gwtest.now() - datetime.timedelta(hours=2)
    w["expired"] = gw.sandbox_identity(a.sandbox.id, not_before=past,
                                       not_after=past + datetime.timedelta(hours=1))
    return w


@pytest.fixture(scope="module")
def world():
    build = nginx_build()
    if build is None:
        pytest.skip("nginx is not installed (scripts/deps.sh installs nginx-light)")
    gw = gwtest.Gateway(extra_config=f"proxy:\n  trusted: [nginx]\n  header: {HEADER}\n",
                        metrics=True)
    nginx = None
    try:
        nginx = Nginx(gw)
        yield proxy_world(gw, nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        rc = gw.stop()
        assert rc == 0, "gateway exited with %s:\n%s" % (rc, gw.sanitizer_report())


def test_nginx_has_the_modules_we_use():
    build = nginx_build()
    if build is None:
        pytest.skip("nginx is not installed")
    assert "--with-http_ssl_module" in build
    assert "--with-http_v2_module" in build
    assert "--without-http_grpc_module" not in build   # grpc is built in by default


def test_operations_doc_shows_the_tested_config():
    doc = open(os.path.join(ROOT, "docs/operations.md")).read()
    assert open(TEMPLATE).read().strip() in doc
    assert open(UNIX_TEMPLATE).read().strip() in doc


# ---- the authorization matrix, direct and through nginx --------------------

def calls(w):
    """name -> invoke(stub)."""
    a, b = w["a"], w["b"]

    def push(stub):
        batch = pb.PushSandboxLogsRequest(sandbox_id=a.id, lines=[
            pb.LogLine(timestamp_ms=1, stream="stdout", text=b"via proxy")])
        return stub.PushSandboxLogs(iter([batch]), timeout=10)

    def renew(stub):
        der, _ = gwtest.csr_der()
        return stub.RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)

    return {
        "GetSandboxConfig(own)": lambda s: s.GetSandboxConfig(
            pb.GetSandboxConfigRequest(sandbox_id=a.id), timeout=10),
        "GetSandboxConfig(other)": lambda s: s.GetSandboxConfig(
            pb.GetSandboxConfigRequest(sandbox_id=b.id), timeout=10),
        "GetSandboxProviderEnvironment": lambda s: s.GetSandboxProviderEnvironment(
            pb.GetSandboxProviderEnvironmentRequest(sandbox_id=a.id), timeout=10),
        "CreateSandbox": lambda s: s.CreateSandbox(pb.CreateSandboxRequest(
            name="p-" + uuid.uuid4().hex[:12], policy=gwtest.POLICY), timeout=10),
        "ListSandboxes": lambda s: s.ListSandboxes(pb.ListSandboxesRequest(), timeout=10),
        "RevokeCertificate": lambda s: s.RevokeCertificate(pb.RevokeCertificateRequest(
            serial="0123456789abcdef0123456789abcdef", reason="matrix"), timeout=10),
        "GetTrustBundle": lambda s: s.GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10),
        "PushSandboxLogs": push,
        "RenewCertificate": renew,
    }


IDENTITIES = ["own_sandbox", "admin", "operator", "viewer", "no_role", "no_cert", "wrong_ca",
              "expired", "revoked"]
USERS = {"admin": "admin", "operator": "alice", "viewer": "bob", "no_role": "mallory"}


def identity(w, who):
    gw = w["gw"]
    if who == "own_sandbox":
        return w["a_ident"]
    if who in USERS:
        return gw.user(USERS[who])
    return None if who == "no_cert" else w[who]


@pytest.mark.parametrize("rpc", list(calls({"a": None, "b": None}).keys()))
@pytest.mark.parametrize("who", IDENTITIES)
def test_same_answer_through_nginx(world, who, rpc):
    gw, nginx = world["gw"], world["nginx"]
    invoke = calls(world)[rpc]
    ident = identity(world, who)
    direct, direct_msg = code_of(lambda: invoke(gw.stub(ident)))
    proxied, proxied_msg = code_of(lambda: invoke(nginx.stub(ident)))
    if who == "no_cert":
        # Without a client certificate nginx forwards nothing: the request is
        # the proxy's own, and a proxy may call nothing itself.
        assert direct == S.UNAUTHENTICATED
        assert proxied == S.PERMISSION_DENIED, proxied_msg
        assert proxied_msg == "a proxy identity may not call methods itself"
        return
    assert proxied == direct, (direct_msg, proxied_msg)
    if direct != S.UNAUTHENTICATED:   # (those say "forwarded certificate: ..." via nginx)
        assert proxied_msg == direct_msg
    if who == "own_sandbox" and "other" in rpc:
        assert proxied_msg == "cross-sandbox access denied"


def test_expected_answers(world):
    """The matrix is not vacuous: a few of its cells, spelt out."""
    gw, nginx = world["gw"], world["nginx"]
    c = calls(world)
    assert code_of(lambda: c["CreateSandbox"](nginx.stub(gw.user("alice"))))[0] == S.OK
    assert code_of(lambda: c["CreateSandbox"](nginx.stub(gw.user("bob"))))[0] == \
        S.PERMISSION_DENIED
    assert code_of(lambda: c["GetSandboxConfig(own)"](nginx.stub(world["a_ident"])))[0] == S.OK
    assert code_of(lambda: c["RenewCertificate"](nginx.stub(world["a_ident"])))[0] == S.OK
    assert code_of(lambda: c["PushSandboxLogs"](nginx.stub(world["a_ident"])))[0] == S.OK
    for who in ("wrong_ca", "expired", "revoked"):
        code, msg = code_of(lambda: c["GetTrustBundle"](nginx.stub(world[who])))
        assert code == S.UNAUTHENTICATED, (who, msg)
    code, msg = code_of(lambda: c["GetTrustBundle"](nginx.stub(world["revoked"])))
    assert msg == "forwarded certificate: certificate revoked"
    # The logs pushed through nginx were stored for sandbox a.
    logs = gw.stub(gw.user("admin")).GetSandboxLogs(
        pb.GetSandboxLogsRequest(sandbox_id=world["a"].id), timeout=10)
    assert any(l.text == b"via proxy" for l in logs.lines)


def test_health_through_nginx(world):
    for ident in (None, world["gw"].user("bob"), world["wrong_ca"]):
        resp = gwtest.HealthStub(world["nginx"].channel(ident)).Check(
            gwtest.health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == gwtest.health_pb2.HealthCheckResponse.SERVING


def test_client_supplied_header_is_replaced_by_nginx(world):
    gw, nginx = world["gw"], world["nginx"]
    admin_header = [(HEADER, escape_pem(gw.user("admin").chain_pem))]
    req = pb.CreateSandboxRequest(name="forged-" + uuid.uuid4().hex[:8], policy=gwtest.POLICY)
    # bob naming admin's certificate: nginx replaces the header with bob's.
    code, _ = code_of(lambda: nginx.stub(gw.user("bob")).CreateSandbox(
        req, metadata=admin_header, timeout=10))
    assert code == S.PERMISSION_DENIED
    # No certificate at all: nginx sends no header, the client's is dropped.
    code, msg = code_of(lambda: nginx.stub(None).CreateSandbox(
        req, metadata=admin_header, timeout=10))
    assert code == S.PERMISSION_DENIED
    assert msg == "a proxy identity may not call methods itself"


# ---- the header from anyone else: ignored and logged -----------------------

def test_forged_header_from_non_proxy_is_ignored_and_logged(world):
    gw = world["gw"]
    forged = [(HEADER, escape_pem(gw.user("admin").chain_pem))]
    before = gwtest.metric(gw.scrape(), "tessera_forwarded_certificates_total", result="ignored")
    name = "forged-" + uuid.uuid4().hex[:8]
    req = pb.CreateSandboxRequest(name=name, policy=gwtest.POLICY)
    # A viewer naming the admin: still the viewer.
    code, _ = code_of(lambda: gw.stub(gw.user("bob")).CreateSandbox(
        req, metadata=forged, timeout=10))
    assert code == S.PERMISSION_DENIED
    assert code_of(lambda: gw.stub(gw.user("bob")).ListSandboxes(
        pb.ListSandboxesRequest(), metadata=forged, timeout=10))[0] == S.OK
    # A sandbox naming the admin: still itself (cross-sandbox denied).
    code, msg = code_of(lambda: gw.stub(world["a_ident"]).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=world["b"].id), metadata=forged, timeout=10))
    assert (code, msg) == (S.PERMISSION_DENIED, "cross-sandbox access denied")
    # Nobody naming the admin: still nobody.
    assert code_of(lambda: gw.stub(None).ListSandboxes(
        pb.ListSandboxesRequest(), metadata=forged, timeout=10))[0] == S.UNAUTHENTICATED
    # A proxy that is not in proxy.trusted: the proxy itself.
    code, msg = code_of(lambda: gw.stub(gw.proxy_identity("envoy")).CreateSandbox(
        req, metadata=forged, timeout=10))
    assert (code, msg) == (S.PERMISSION_DENIED, "a proxy identity may not call methods itself")
    assert not any(s.name == name for s in gw.stub(gw.user("admin")).ListSandboxes(
        pb.ListSandboxesRequest(), timeout=10).sandboxes)

    # Logged by the transport and audited, once per request.
    deadline = time.time() + 5
    while time.time() < deadline and gw.log_text().count("header x-client-cert ignored") < 5:
        time.sleep(0.05)
    log = gw.log_text()
    assert log.count("header x-client-cert ignored") == 5, log[-2000:]
    assert re.search(r"/tessera.v1.Gateway/CreateSandbox: header x-client-cert ignored: user bob "
                     r"serial [0-9a-f]+ is not a trusted proxy", log)
    assert "ignored: proxy envoy serial" in log
    assert "ignored: anonymous" in log
    ignored = [l for l in gw.audit_lines() if '"event":"forward"' in l and
               '"decision":"ignore"' in l]
    assert len(ignored) == 5
    assert any(f'"peer":"spiffe://{TD}/user/bob"' in l for l in ignored)
    after = gwtest.metric(gw.scrape(), "tessera_forwarded_certificates_total", result="ignored")
    assert after - before == 5


# ---- the proxy itself, and what a trusted proxy may forward ------------------

def test_proxy_without_forwarded_certificate_is_denied(world):
    gw = world["gw"]
    proxy = gw.proxy_identity("nginx")
    for call in (lambda s: s.ListSandboxes(pb.ListSandboxesRequest(), timeout=10),
                 lambda s: s.GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10),
                 lambda s: s.GetSandboxConfig(pb.GetSandboxConfigRequest(
                     sandbox_id=world["a"].id), timeout=10)):
        code, msg = code_of(lambda: call(gw.stub(proxy)))
        assert (code, msg) == (S.PERMISSION_DENIED,
                               "a proxy identity may not call methods itself")
    resp = gw.health(proxy).Check(gwtest.health_pb2.HealthCheckRequest(), timeout=10)
    assert resp.status == gwtest.health_pb2.HealthCheckResponse.SERVING


def forwarding(gw, cert_pem):
    return [(HEADER, escape_pem(cert_pem))]


def leaf_only(chain_pem):
    return re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", chain_pem,
                     re.S).group(0)


def test_trusted_proxy_forwarding(world):
    """What nginx would do, done by hand with the proxy's certificate."""
    gw = world["gw"]
    proxy = gw.stub(gw.proxy_identity("nginx"))
    before = gw.scrape()
    list_req = pb.ListSandboxesRequest()
    # Accepted: a user (leaf alone, or with its chain), a sandbox.
    for pem in (leaf_only(gw.user("bob").chain_pem), gw.user("bob").chain_pem):
        assert code_of(lambda: proxy.ListSandboxes(
            list_req, metadata=forwarding(gw, pem), timeout=10))[0] == S.OK
    assert code_of(lambda: proxy.CreateSandbox(pb.CreateSandboxRequest(
        name="p-" + uuid.uuid4().hex[:12], policy=gwtest.POLICY),
        metadata=forwarding(gw, gw.user("bob").chain_pem), timeout=10))[0] == S.PERMISSION_DENIED
    assert code_of(lambda: proxy.GetSandboxConfig(pb.GetSandboxConfigRequest(
        sandbox_id=world["a"].id), metadata=forwarding(gw, world["a_ident"].chain_pem),
        timeout=10))[0] == S.OK

    # Identifies nobody: UNAUTHENTICATED, with the reason.
    cases = {
        "revoked": (world["revoked"].chain_pem, "forwarded certificate: certificate revoked"),
        "wrong_ca": (world["wrong_ca"].chain_pem, "forwarded certificate: "),
        "expired": (world["expired"].chain_pem, "forwarded certificate: "),
        "proxy": (gw.proxy_identity("other").chain_pem,
                  "forwarded certificate: a proxy identity, not a sandbox or a user"),
        "garbage": (b"hello", "forwarded certificate: "),
        "truncated": (gw.user("admin").chain_pem[:300], "forwarded certificate: "),
    }
    for label, (pem, why) in cases.items():
        code, msg = code_of(lambda: proxy.ListSandboxes(
            list_req, metadata=forwarding(gw, pem), timeout=10))
        assert code == S.UNAUTHENTICATED and msg.startswith(why), (label, code, msg)
    code, msg = code_of(lambda: proxy.ListSandboxes(list_req, metadata=[
        (HEADER, escape_pem(gw.user("bob").chain_pem)),
        (HEADER, escape_pem(gw.user("admin").chain_pem))], timeout=10))
    assert (code, msg) == (S.UNAUTHENTICATED,
                           "forwarded certificate: the header appears more than once")
    code, msg = code_of(lambda: proxy.ListSandboxes(list_req, metadata=[(HEADER, "")],
                                                    timeout=10))
    assert (code, msg) == (S.UNAUTHENTICATED, "forwarded certificate: empty certificate")
    # Larger than the request header limit (16 KiB): refused, never admitted.
    code, msg = code_of(lambda: proxy.ListSandboxes(
        list_req, metadata=[(HEADER, "A" * 17000)], timeout=10))
    assert code != S.OK

    after = gw.scrape()
    delta = {r: gwtest.metric(after, "tessera_forwarded_certificates_total", result=r) -
             gwtest.metric(before, "tessera_forwarded_certificates_total", result=r)
             for r in ("accepted", "rejected", "ignored")}
    assert delta == {"accepted": 4, "rejected": 8, "ignored": 0}, delta
    rejected = [l for l in gw.audit_lines() if '"event":"forward"' in l and
                '"decision":"deny"' in l]
    assert any("certificate revoked" in l and f'"peer":"spiffe://{TD}/proxy/nginx"' in l
               for l in rejected)


def assert_revocation_ends_forwarded_stream(gw, make_stub):
    """A forwarded identity is re-checked every tick, like a connection's:
    revoking it ends its open stream with UNAUTHENTICATED within ~1 s.
    make_stub() gives the stub that forwards (through a proxy identity or on
    the unix socket)."""
    s = gw.create_sandbox()
    der, key = gwtest.csr_der()
    r = gw.stub(gw.placed_identity(s.sandbox.id)).RenewCertificate(
        pb.RenewCertificateRequest(csr=der), timeout=10)
    stub = make_stub()
    go_on = threading.Event()

    def batches():
        yield pb.PushSandboxLogsRequest(sandbox_id=s.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=1, stream="stdout", text=b"before")])
        go_on.wait(10)
        yield pb.PushSandboxLogsRequest(sandbox_id=s.sandbox.id, lines=[
            pb.LogLine(timestamp_ms=2, stream="stdout", text=b"after")])

    result = {}

    def run():
        result["code"] = code_of(lambda: stub.PushSandboxLogs(
            batches(), metadata=forwarding(gw, r.certificate_pem.encode()), timeout=20))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=r.serial, reason="mid-stream"), timeout=10)
    t.join(5)
    elapsed = time.time() - t0
    go_on.set()
    t.join(10)
    assert result["code"] == (S.UNAUTHENTICATED,
                              "forwarded credentials no longer valid: certificate revoked")
    assert elapsed < 2.0


def test_forwarded_identity_revoked_mid_stream(world):
    gw = world["gw"]
    assert_revocation_ends_forwarded_stream(gw, lambda: gw.stub(gw.proxy_identity("nginx")))


def test_proxy_no_longer_trusted_ends_its_forwarded_calls():
    """A reload that removes a proxy from proxy.trusted ends the calls
    already forwarded through it at the next tick, each answered
    UNAUTHENTICATED, as a retired root ends its connections; a call forwarded
    by a proxy still trusted runs on. (The test plays both proxies.)"""
    gw = gwtest.Gateway(extra_config=f"proxy:\n  trusted: [edge, other]\n  header: {HEADER}\n")
    try:
        sid = gw.create_sandbox().sandbox.id
        ident = gw.placed_identity(sid)
        go_on = threading.Event()
        results = {}

        def forward_through(proxy):
            def batches():
                yield pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[
                    pb.LogLine(timestamp_ms=1, stream="stdout", text=proxy.encode())])
                go_on.wait(10)
                yield pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[
                    pb.LogLine(timestamp_ms=2, stream="stdout", text=b"after")])
            stub = gw.stub(gw.proxy_identity(proxy))
            results[proxy] = code_of(lambda: stub.PushSandboxLogs(
                batches(), metadata=forwarding(gw, leaf_only(ident.chain_pem)), timeout=20))

        threads = [threading.Thread(target=forward_through, args=(p,)) for p in ("edge", "other")]
        for t in threads:
            t.start()
        admin = gw.stub(gw.user("admin"))
        end = time.monotonic() + 10
        while len(admin.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid),
                                       timeout=10).lines) < 2:
            assert time.monotonic() < end, "the forwarded streams did not start"
            time.sleep(0.05)
        text = open(gw.config).read()
        open(gw.config, "w").write(text.replace("trusted: [edge, other]", "trusted: [other]"))
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGHUP)
        threads[0].join(5)
        elapsed = time.monotonic() - t0
        go_on.set()
        for t in threads:
            t.join(10)
        assert results["edge"] == (S.UNAUTHENTICATED, "forwarded credentials no longer valid: "
                                                      "forwarding proxy no longer trusted")
        assert elapsed < 2.0, elapsed
        assert results["other"] == (S.OK, "")
    finally:
        assert gw.stop() == 0, gw.sanitizer_report()


def test_documented_proxy_cert_script(world, tmp_path):
    """docs/examples/proxy-cert.sh makes identities the gateway takes for proxies."""
    gw = world["gw"]
    for f in ("issuing.pem", "issuing.key"):
        shutil.copy(os.path.join(gw.pki, f), tmp_path / f)
    script = os.path.join(ROOT, "docs/examples/proxy-cert.sh")
    bad = subprocess.run([script, str(tmp_path), "Nginx"], capture_output=True, text=True)
    assert bad.returncode == 2 and "bad proxy name" in bad.stderr
    out = subprocess.run([script, str(tmp_path), "nginx", TD, "7"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert os.stat(tmp_path / "proxy-nginx.key").st_mode & 0o777 == 0o600
    ident = gwtest.Identity((tmp_path / "proxy-nginx.pem").read_bytes(),
                            (tmp_path / "proxy-nginx.key").read_bytes())
    stub = gw.stub(ident)
    # Recognized as the trusted proxy "nginx": nothing by itself, a forwarder for others.
    code, msg = code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), timeout=10))
    assert (code, msg) == (S.PERMISSION_DENIED, "a proxy identity may not call methods itself")
    assert code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=forwarding(
        gw, gw.user("bob").chain_pem), timeout=10))[0] == S.OK


# ---- nginx on the gateway's unix socket (h2c) --------------------------------

UNIX_NO_CERT = "unix socket: every call needs a forwarded client certificate"


@pytest.fixture(scope="module")
def uworld():
    if nginx_build() is None:
        pytest.skip("nginx is not installed (scripts/deps.sh installs nginx-light)")
    sock_dir = tempfile.mkdtemp(prefix="tsr-sock-")
    path = os.path.join(sock_dir, "gateway.sock")
    # No proxy.trusted: on the socket, position is the trust.
    gw = gwtest.Gateway(extra_config=f"proxy:\n  header: {HEADER}\n  unix_socket:\n"
                                     f"    path: {path}\n", metrics=True)
    nginx = None
    try:
        nginx = Nginx(gw, socket_path=path)
        w = proxy_world(gw, nginx)
        w["path"] = path
        yield w
    finally:
        if nginx is not None:
            nginx.stop()
        rc = gw.stop()
        assert rc == 0, "gateway exited with %s:\n%s" % (rc, gw.sanitizer_report())
        assert not os.path.exists(path), "the socket file outlived the gateway"
        shutil.rmtree(sock_dir, ignore_errors=True)


def h2c_stub(path):
    return pb_grpc.GatewayStub(grpc.insecure_channel(f"unix:{path}"))


@pytest.mark.parametrize("rpc", list(calls({"a": None, "b": None}).keys()))
@pytest.mark.parametrize("who", IDENTITIES)
def test_same_answer_through_nginx_on_unix_socket(uworld, who, rpc):
    gw, nginx = uworld["gw"], uworld["nginx"]
    invoke = calls(uworld)[rpc]
    ident = identity(uworld, who)
    direct, direct_msg = code_of(lambda: invoke(gw.stub(ident)))
    proxied, proxied_msg = code_of(lambda: invoke(nginx.stub(ident)))
    if who == "no_cert":
        # No certificate: nginx forwards no header, and a call on the socket
        # without one is nobody's (never the proxy's own).
        assert direct == S.UNAUTHENTICATED
        assert (proxied, proxied_msg) == (S.UNAUTHENTICATED, UNIX_NO_CERT)
        return
    assert proxied == direct, (direct_msg, proxied_msg)
    if direct != S.UNAUTHENTICATED:
        assert proxied_msg == direct_msg
    if who == "own_sandbox" and "other" in rpc:
        assert proxied_msg == "cross-sandbox access denied"


def test_unix_socket_expected_answers(uworld):
    gw, nginx = uworld["gw"], uworld["nginx"]
    c = calls(uworld)
    assert code_of(lambda: c["CreateSandbox"](nginx.stub(gw.user("alice"))))[0] == S.OK
    assert code_of(lambda: c["CreateSandbox"](nginx.stub(gw.user("bob"))))[0] == \
        S.PERMISSION_DENIED
    assert code_of(lambda: c["GetSandboxConfig(own)"](nginx.stub(uworld["a_ident"])))[0] == S.OK
    assert code_of(lambda: c["RenewCertificate"](nginx.stub(uworld["a_ident"])))[0] == S.OK
    assert code_of(lambda: c["PushSandboxLogs"](nginx.stub(uworld["a_ident"])))[0] == S.OK
    code, msg = code_of(lambda: c["GetTrustBundle"](nginx.stub(uworld["revoked"])))
    assert (code, msg) == (S.UNAUTHENTICATED, "forwarded certificate: certificate revoked")
    for ident in (None, gw.user("bob")):
        resp = gwtest.HealthStub(nginx.channel(ident)).Check(
            gwtest.health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == gwtest.health_pb2.HealthCheckResponse.SERVING


def test_unix_socket_file_mode(uworld):
    st = os.stat(uworld["path"])
    import stat
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_mode & 0o777 == 0o600
    assert st.st_uid == os.getuid()


def test_direct_h2c_on_unix_socket(uworld):
    """Anyone who can open the socket is a trusted proxy: without the header
    a call is UNAUTHENTICATED; with it, it runs as the forwarded certificate,
    re-verified in full; the audit line names the socket peer's uid and pid."""
    gw = uworld["gw"]
    stub = h2c_stub(uworld["path"])
    for call in (lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), timeout=10),
                 lambda: stub.GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10),
                 lambda: stub.GetSandboxConfig(pb.GetSandboxConfigRequest(
                     sandbox_id=uworld["a"].id), timeout=10)):
        assert code_of(call) == (S.UNAUTHENTICATED, UNIX_NO_CERT)
    # An empty header is no certificate either.
    assert code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=[
        (HEADER, "")], timeout=10)) == (S.UNAUTHENTICATED,
                                        "forwarded certificate: empty certificate")
    bob = forwarding(gw, gw.user("bob").chain_pem)
    assert code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=bob,
                                              timeout=10))[0] == S.OK
    assert code_of(lambda: stub.CreateSandbox(pb.CreateSandboxRequest(
        name="u-" + uuid.uuid4().hex[:10], policy=gwtest.POLICY), metadata=bob,
        timeout=10))[0] == S.PERMISSION_DENIED
    for who in ("revoked", "wrong_ca", "expired"):
        code, msg = code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=[
            (HEADER, escape_pem(uworld[who].chain_pem))], timeout=10))
        assert code == S.UNAUTHENTICATED and msg.startswith("forwarded certificate: "), (who, msg)
    # A proxy certificate forwarded is nobody, even from the socket.
    code, msg = code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=forwarding(
        gw, gw.proxy_identity("nginx").chain_pem), timeout=10))
    assert (code, msg) == (S.UNAUTHENTICATED,
                           "forwarded certificate: a proxy identity, not a sandbox or a user")
    peer = f"unix:uid={os.getuid()},pid={os.getpid()}"
    deadline = time.time() + 5
    while time.time() < deadline and not any(peer in l for l in gw.audit_lines()):
        time.sleep(0.05)
    lines = [l for l in gw.audit_lines() if f'"peer_addr":"{peer}"' in l]
    assert any('"decision":"deny"' in l and "certificate revoked" in l for l in lines), lines[-5:]
    assert any(f'"peer":"spiffe://{TD}/user/bob"' in l for l in lines)


def test_tls_listener_refuses_plaintext(uworld):
    gw = uworld["gw"]
    stub = pb_grpc.GatewayStub(grpc.insecure_channel(f"127.0.0.1:{gw.port}"))
    code, _ = code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=forwarding(
        gw, gw.user("admin").chain_pem), timeout=5))
    assert code == S.UNAVAILABLE
    # And the unix socket speaks no TLS.
    creds = grpc.ssl_channel_credentials(root_certificates=gw.bundle)
    stub = pb_grpc.GatewayStub(grpc.secure_channel(f"unix:{uworld['path']}", creds))
    code, _ = code_of(lambda: stub.ListSandboxes(pb.ListSandboxesRequest(), timeout=5))
    assert code == S.UNAVAILABLE


def test_unix_forwarded_identity_revoked_mid_stream(uworld):
    assert_revocation_ends_forwarded_stream(uworld["gw"], lambda: h2c_stub(uworld["path"]))



# ---- the socket file: configuration, stale files ---------------------------------

def start_fails(gw):
    with pytest.raises(RuntimeError) as e:
        gw.start()
    return str(e.value)


def test_unix_socket_stale_live_and_foreign_files(tmp_path):
    path = str(tmp_path / "gw.sock")
    gw = gwtest.Gateway(extra_config=f"proxy:\n  unix_socket:\n    path: {path}\n"
                                     f"    mode: \"0660\"\n    group: \"{os.getgid()}\"\n")
    try:
        st = os.stat(path)
        assert st.st_mode & 0o777 == 0o660 and st.st_gid == os.getgid()
        # A second gateway on the same socket: refused, the first unharmed.
        gw2 = gwtest.Gateway.__new__(gwtest.Gateway)
        gw2.__dict__.update({k: v for k, v in gw.__dict__.items() if k != "proc"})
        gw2.args = ["--listen", "127.0.0.1:0"]
        # Its own data dir (one gateway per data dir: test_ops.py), the same socket.
        gw2.config = str(tmp_path / "gw2.yaml")
        with open(gw.config) as f, open(gw2.config, "w") as out:
            out.write(f.read().replace(f"data_dir: {gw.data_dir}\n",
                                       f"data_dir: {tmp_path / 'data2'}\n"))
        assert "in use by another process" in start_fails(gw2)
        assert os.path.exists(path)
        assert gw.stop() == 0
        assert not os.path.exists(path)
        # A stale socket (a crash left it): replaced.
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        gw.start()
        assert code_of(lambda: h2c_stub(path).ListSandboxes(pb.ListSandboxesRequest(),
                                                            timeout=10)) == \
            (S.UNAUTHENTICATED, UNIX_NO_CERT)
        # SIGKILL leaves the file; the next start replaces it.
        gw.kill9()
        assert os.path.exists(path)
        gw.start()
        assert code_of(lambda: h2c_stub(path).ListSandboxes(pb.ListSandboxesRequest(),
                                                            timeout=10))[0] == S.UNAUTHENTICATED
        assert gw.stop() == 0
        # Anything else at the path is never removed.
        with open(path, "w") as f:
            f.write("not a socket")
        assert "is not a socket" in start_fails(gw)
        assert open(path).read() == "not a socket"
    finally:
        gw.stop()


@pytest.mark.parametrize("snippet,message", [
    ("unix_socket: {}", "needs a path"),
    ("unix_socket: {path: \"\"}", "must not be empty"),
    ("unix_socket: {path: /tmp/" + "x" * 120 + "}", "longer than 107 bytes"),
    ("unix_socket: {path: /tmp/a.sock, mode: \"0666\"}", "allowed are 0600"),
    ("unix_socket: {path: /tmp/a.sock, mode: \"0400\"}", "allowed are 0600"),
    ("unix_socket: {path: /tmp/a.sock, mode: \"0700\"}", "allowed are 0600"),
    ("unix_socket: {path: /tmp/a.sock, mode: 660}", "octal string"),
    ("unix_socket: {path: /tmp/a.sock, mode: \"06x0\"}", "octal string"),
    ("unix_socket: {path: /tmp/a.sock, group: no-such-group-tsr}", "does not exist"),
    ("unix_socket: {path: /tmp/a.sock, group: \"Bad Group\"}", "bad group"),
    ("unix_socket: {path: /tmp/a.sock, owner: root}", "owner"),
])
def test_unix_socket_config_validation(tmp_path, snippet, message):
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("proxy:\n  " + snippet + "\n")
    r = subprocess.run([os.path.join(gwtest.BIN, "tessera-gateway"), "--config", str(cfg),
                        "--check"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and message in r.stderr, r.stderr
