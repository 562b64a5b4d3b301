"""Shared helpers for the gateway integration tests: a PKI made by the real
certgen, the real tessera-gateway on a loopback port, and stock grpcio
channels for every kind of caller."""
import atexit
import datetime
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tessera.v1 import gateway_pb2 as pb
from tessera.v1 import gateway_pb2_grpc as pb_grpc


def _load_health_pb2():
    """The generated grpc/health/v1/health_pb2.py cannot be imported by its
    package name (grpcio owns the `grpc` package), so load it by path."""
    import importlib.util
    for entry in os.environ.get("PYTHONPATH", "").split(":"):
        path = os.path.join(entry, "grpc", "health", "v1", "health_pb2.py")
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("tsr_health_pb2", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise ImportError("generated health_pb2.py not found on PYTHONPATH")


health_pb2 = _load_health_pb2()


class HealthStub:
    def __init__(self, channel):
        self.Check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

BIN = os.environ.get("TSR_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
TD = "tessera.local"
# Tests that watch the real supervisor rotate: sandbox certificates as short
# as the gateway's config allows (certificates.sandbox_ttl, 5 min) and the
# supervisor's --renew-before that rotates each one `every` seconds after it
# was issued (docs/supervisor.md, "Rotation").
SHORT_TTL = "5m"
SHORT_TTL_S = 300


def renew_before(every):
    """Supervisor arguments: rotate every `every` seconds a 5 min certificate."""
    assert 0 < every < SHORT_TTL_S
    return f"--renew-before {SHORT_TTL_S - every}s"

POLICY = """version: 1
filesystem:
  read_only: [/usr, /lib]
  read_write: [/workspace]
network:
  default: deny
  allow:
    - host: api.example.com
      ports: [443]
process:
  allow_exec: [/usr/bin/python3]
  max_processes: 64
inference:
  providers:
    - name: example
      models: [small-model]
      env: [EXAMPLE_API_KEY]
"""


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_chain(path):
    data = open(path, "rb").read()
    return x509.load_pem_x509_certificates(data) if hasattr(x509, "load_pem_x509_certificates") \
        else [x509.load_pem_x509_certificate(b) for b in re.findall(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)]


def sign_alg(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


class Identity:
    """A client certificate chain and its key, as PEM bytes."""

    def __init__(self, chain_pem, key_bytes, serial=None):
        self.chain_pem = chain_pem
        self.key_pem = key_bytes
        self.serial = serial


def make_leaf(spiffe_id, issuer_cert, issuer_key, not_before=None, not_after=None, key=None,
              extra_uris=(), dns=(), ips=()):
    """A leaf following the X509-SVID profile (what the gateway's CA issues);
    dns and ips: the DNS and IP SANs of a gateway certificate."""
    import ipaddress
    key = key or ec.generate_private_key(ec.SECP256R1())
    nb = not_before or now() - datetime.timedelta(minutes=1)
    na = not_after or now() + datetime.timedelta(hours=1)
    uris = [x509.UniformResourceIdentifier(spiffe_id)] + [
        x509.UniformResourceIdentifier(u) for u in extra_uris] + [
        x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([]))
               .issuer_name(issuer_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(nb)
               .not_valid_after(na)
               .add_extension(x509.SubjectAlternativeName(uris), critical=True)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                            False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    cert = builder.sign(issuer_key, sign_alg(issuer_key))
    return cert, key


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - datetime.timedelta(days=1))
            .not_valid_after(now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def csr_der(key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, sign_alg(key))
    return csr.public_bytes(serialization.Encoding.DER), key


def escape_pem(pem_bytes):
    """URL-encoded PEM, as nginx's $ssl_client_escaped_cert."""
    return urllib.parse.quote(pem_bytes, safe="")


_GATEWAYS = []


def _descendants(root):
    """root and every process below it (bwrap's namespace init is a child of
    the recorded pid, the supervisor a grandchild)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def kill_sandboxes(data_dir):
    """SIGKILL every process sandbox of the data dir (its supervisor tree)."""
    import glob
    import signal
    for pidfile in glob.glob(os.path.join(data_dir, "sandboxes", "*", "pid")):
        try:
            pid = int(open(pidfile).read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        for victim in _descendants(pid):
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass


def _clean_up():
    """Sandboxes outlive their gateway by design (a restart re-attaches), so
    whatever a test gateway started is stopped when the test process ends;
    then the gateway's own directory (PKI, config, data, logs) is removed:
    a test run leaves nothing behind."""
    import shutil
    for g in _GATEWAYS:
        if g.proc is not None and g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
        kill_sandboxes(g.data_dir)
        shutil.rmtree(g.dir, ignore_errors=True)


atexit.register(_clean_up)


class Gateway:
    """A PKI from certgen and a running tessera-gateway. metrics=True adds a
    metrics listener on an ephemeral loopback port (self.metrics_port)."""

    def __init__(self, renew_limit=5, extra_config="", metrics=False, args=(), data_dir=None,
                 limits="", env=None, real_supervisor=False, drivers_dir=None,
                 driver_options=None, workers=2, store_dsn=None, replica_of=None,
                 sandbox_ttl="1h", nofile=None):
        """args: extra tessera-gateway arguments; data_dir: where the database
        and keyring live (default <dir>/data); limits: extra YAML lines for the
        limits: section, e.g. "max_concurrent_streams: 10"; env: extra
        environment variables of the gateway process; real_supervisor: run
        tessera-supervisor in each sandbox (the end-to-end tests) instead of
        the quiet stand-in that API tests use so that no sandbox calls the
        gateway behind their back. store_dsn: the PostgreSQL store (libpq DSN)
        instead of sqlite; replica_of: another Gateway whose PKI and keyring
        this one serves with (a replica on the same database). sandbox_ttl:
        certificates.sandbox_ttl (5m..24h; SHORT_TTL with renew_before() for
        rotation tests); nofile: the gateway's RLIMIT_NOFILE (soft and hard)."""
        self.args = list(args)
        self.nofile = nofile
        self.metrics = metrics
        if metrics:
            extra_config += '\nmetrics:\n  listen: "127.0.0.1:0"\n'
        self.env = env
        self.dir = tempfile.mkdtemp(prefix="tsr-gw-")
        _GATEWAYS.append(self)
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.db_path = os.path.join(self.data_dir, "tessera.db")
        self.pki = os.path.join(self.dir, "pki")
        if replica_of is not None:
            self.pki = replica_of.pki
            extra_config += f"\nsecrets:\n  key_file: {replica_of.data_dir}/secrets.key\n"
        else:
            users = ["admin", "alice", "bob", "mallory"]
            args = [os.path.join(BIN, "certgen"), "init", "--trust-domain", TD, "--out",
                    self.pki]
            for u in users:
                args += ["--user", u]
            subprocess.run(args, check=True, capture_output=True)
        if store_dsn is not None:
            extra_config += f'\nstore:\n  backend: postgres\n  dsn: "{store_dsn}"\n'
        self.bundle = open(os.path.join(self.pki, "bundle.pem"), "rb").read()
        issuing = load_chain(os.path.join(self.pki, "issuing.pem"))[0]
        self.issuing_cert = issuing
        self.issuing_key = serialization.load_pem_private_key(
            open(os.path.join(self.pki, "issuing.key"), "rb").read(), None)
        self.audit = os.path.join(self.dir, "audit.log")
        self.config = os.path.join(self.dir, "gateway.yaml")
        with open(self.config, "w") as f:
            f.write(f"""trust_domain: {TD}
listen: 127.0.0.1:0
workers: {workers}
data_dir: {self.data_dir}
pki:
  bundle: {self.pki}/bundle.pem
  issuing_cert: {self.pki}/issuing.pem
  issuing_key: {self.pki}/issuing.key
  server_cert: {self.pki}/gateway.pem
  server_key: {self.pki}/gateway.key
audit:
  path: {self.audit}
certificates:
  sandbox_ttl: {sandbox_ttl}
  renew_limit: {renew_limit}
  renew_window: 1h
limits:
  max_message_bytes: 1048576
{"".join("  " + l.strip() + chr(10) for l in limits.splitlines() if l.strip())}users:
  admin: admin
  alice: operator
  bob: viewer
{self._drivers_section(real_supervisor, drivers_dir, driver_options)}
{extra_config}""")
        self.proc = None
        self.start()

    @staticmethod
    def _drivers_section(real_supervisor, drivers_dir, driver_options):
        build = os.environ.get("TSR_BUILD_DIR", os.path.join(BIN, ".."))
        lines = ["drivers:"]
        if drivers_dir:
            lines.append(f"  dir: {drivers_dir}")
        if not real_supervisor:
            lines.append(f"  supervisor: {os.path.join(build, 'tests', 'bin', 'fake_supervisor')}")
        if driver_options:
            lines.append("  options:")
            for driver, opts in driver_options.items():
                lines.append(f"    {driver}:")
                lines += [f"      {k}: \"{v}\"" for k, v in opts.items()]
        return "\n".join(lines) + "\n"

    def start(self, reuse_port=False):
        """Start the gateway; reuse_port=True listens on the port of the
        previous start (for clients that must find it again after a restart)."""
        env = dict(os.environ, **self.env) if getattr(self, "env", None) else None
        args = [os.path.join(BIN, "tessera-gateway"), "--config", self.config] + self.args
        if reuse_port and getattr(self, "port", None):
            args += ["--listen", f"127.0.0.1:{self.port}"]
        if getattr(self, "nofile", None):
            # prlimit(1) sets the limit of the exec'd gateway only (no
            # preexec_fn: it can deadlock the fork under grpc's threads).
            args = ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--"] + args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on .*:(\d+)", line)
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("gateway did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
        self.metrics_port = None
        if self.metrics:
            line = self.proc.stdout.readline()
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
            if not m:
                self.proc.kill()
                raise RuntimeError("no metrics listener: %r" % line)
            self.metrics_port = int(m.group(1))
        self.stderr_lines = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def sanitizer_report(self):
        """The sanitizer's own report (its first lines) or the last log lines."""
        text = "".join(self.stderr_lines)
        for marker in ("==ERROR", "runtime error", "LeakSanitizer"):
            at = text.find(marker)
            if at >= 0:
                return text[max(0, at - 200):at + 4000]
        return "".join(self.stderr_lines[-20:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    # ---- process inspection (faults and hostile-peer tests) -----------------

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL: no cleanup of any kind, as a crash or an OOM kill."""
        self.proc.kill()
        self.proc.wait()

    def rss_kib(self):
        """Resident set size of the gateway (VmRSS), in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        """Open descriptors of the gateway."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def assert_serving(self, ident=None, timeout=10):
        """The gateway is up: an anonymous health check and (if `ident` is
        given) an authenticated GetTrustBundle on fresh connections both
        succeed."""
        assert self.alive(), "gateway died:\n" + self.sanitizer_report()
        opts = [("grpc.ssl_target_name_override", "localhost"),
                ("grpc.use_local_subchannel_pool", 1)]
        for who in (None, ident) if ident is not None else (None,):
            creds = grpc.ssl_channel_credentials(
                root_certificates=self.bundle,
                private_key=who.key_pem if who else None,
                certificate_chain=who.chain_pem if who else None)
            with grpc.secure_channel(f"localhost:{self.port}", creds, options=opts) as ch:
                if who is None:
                    r = HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
                    assert r.status == health_pb2.HealthCheckResponse.SERVING
                else:
                    r = pb_grpc.GatewayStub(ch).GetTrustBundle(pb.GetTrustBundleRequest(),
                                                               timeout=timeout)
                    assert r.trust_domain == TD

    def user(self, name):
        chain = open(os.path.join(self.pki, "users", name + ".pem"), "rb").read()
        key = open(os.path.join(self.pki, "users", name + ".key"), "rb").read()
        return Identity(chain, key)

    def sandbox_identity(self, sandbox_id, **kw):
        """A leaf for the sandbox's SPIFFE ID from the gateway's issuing CA,
        with its chain, recorded in the gateway's store as the gateway records
        what it issues (a renewal must start from a recorded certificate).
        kw shapes the leaf (validity, key), e.g. a short lifetime."""
        cert, key = make_leaf(f"spiffe://{TD}/sandbox/{sandbox_id}", self.issuing_cert,
                              self.issuing_key, **kw)
        self._record(cert, sandbox_id)
        return Identity(pem(cert) + pem(self.issuing_cert), key_pem(key),
                        format(cert.serial_number, "x"))

    def _record(self, cert, sandbox_id):
        import sqlite3
        utc = datetime.timezone.utc
        db = sqlite3.connect(self.db_path, timeout=10)
        try:
            with db:
                db.execute("INSERT INTO certificates(serial, spiffe_id, sandbox_id, not_before, "
                           "not_after, issued_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (serial_hex(cert), f"spiffe://{TD}/sandbox/{sandbox_id}", sandbox_id,
                            int(cert.not_valid_before.replace(tzinfo=utc).timestamp()),
                            int(cert.not_valid_after.replace(tzinfo=utc).timestamp()),
                            int(time.time())))
        finally:
            db.close()

    def placed_identity(self, sandbox_id):
        """The identity the process driver placed in the sandbox at
        CreateSandbox: its first certificate, minted and recorded by the
        gateway. A renewal has to start from a recorded certificate (the
        lineage of docs/security.md), so this, not sandbox_identity(), is
        what RenewCertificate callers use."""
        d = os.path.join(self.data_dir, "sandboxes", sandbox_id, "identity")
        chain = open(os.path.join(d, "cert.pem"), "rb").read()
        key = open(os.path.join(d, "key.pem"), "rb").read()
        return Identity(chain, key, serial_hex(x509.load_pem_x509_certificate(chain)))

    def renewed_identity(self, ident):
        """Renew ident (a recorded identity) by CSR: a new recorded identity
        of the same sandbox, renewed from ident."""
        der, key = csr_der()
        r = self.stub(ident).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
        return Identity((r.certificate_pem + r.chain_pem).encode(), key_pem(key), r.serial)

    def proxy_identity(self, name, **kw):
        """A leaf for spiffe://TD/proxy/<name> from the issuing CA, with its chain."""
        cert, key = make_leaf(f"spiffe://{TD}/proxy/{name}", self.issuing_cert,
                              self.issuing_key, **kw)
        return Identity(pem(cert) + pem(self.issuing_cert), key_pem(key),
                        format(cert.serial_number, "x"))

    def log_text(self):
        return "".join(self.stderr_lines)

    def scrape(self):
        """GET /metrics -> {(name, frozenset(labels.items())): value}; checks the format."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        assert resp.status == 200, (resp.status, body)
        assert resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        return parse_metrics(body)

    def channel(self, ident=None):
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.bundle,
            private_key=ident.key_pem if ident else None,
            certificate_chain=ident.chain_pem if ident else None)
        return grpc.secure_channel(f"localhost:{self.port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])

    def stub(self, ident=None):
        return pb_grpc.GatewayStub(self.channel(ident))

    def health(self, ident=None):
        return HealthStub(self.channel(ident))

    def create_sandbox(self, name=None, env=None):
        name = name or "sb-" + uuid.uuid4().hex[:10]
        resp = self.stub(self.user("admin")).CreateSandbox(
            pb.CreateSandboxRequest(name=name, policy=POLICY,
                                    provider_env=env or {"EXAMPLE_API_KEY": "secret-" + name}),
            timeout=10)
        return resp

    def audit_lines(self):
        try:
            return open(self.audit).read().splitlines()
        except FileNotFoundError:
            return []


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """A strict parser of the Prometheus text format (0.0.4): every sample
    belongs to a family announced by # TYPE, labels are name="value" pairs,
    histogram buckets are cumulative and end at _count."""
    families, samples = {}, {}
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, typ = line[7:].split(" ")
            assert typ in ("counter", "gauge", "histogram"), line
            assert name not in families, line
            families[name] = typ
            continue
        m = _SAMPLE.match(line)
        assert m, "bad sample line %r" % line
        name, labels_text, value = m.groups()
        labels, pos = {}, 0
        while labels_text and pos < len(labels_text):
            lm = _LABEL.match(labels_text, pos)
            assert lm, "bad labels in %r" % line
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in families or families.get(base) == "histogram", "untyped %r" % line
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate %r" % line
        samples[key] = float(value)
    for (name, labels), count in samples.items():
        if name.endswith("_count") and families.get(name[:-6]) == "histogram":
            base = dict(labels)
            buckets = sorted(((float(dict(l)["le"]), v) for (n, l), v in samples.items()
                              if n == name[:-6] + "_bucket" and
                              {k: x for k, x in dict(l).items() if k != "le"} == base))
            assert buckets and buckets[-1][0] == float("inf")
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets
            assert buckets[-1][1] == count
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def free_port():
    """A loopback TCP port nobody listens on (now)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, fn, timeout=90.0, every=0.25):
    """fn's first true value, polled every `every` s; fails after `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting for " + what)


def code_of(fn):
    """Run a call; return its grpc.StatusCode (OK when it succeeds) and details."""
    try:
        fn()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def serial_hex(cert):
    """A certificate's serial as the gateway writes it (ca_cert_serial_hex):
    lowercase hex of the whole bytes, no leading zero byte."""
    n = cert.serial_number
    return n.to_bytes((n.bit_length() + 7) // 8, "big").hex()
