"""Shared helpers for the gateway integration tests: a PKI made by the real
certgen, the real tessera-gateway on a loopback port, and stock grpcio
channels for every kind of caller."""
import datetime
import os
import re
import subprocess
import tempfile
import threading
import time
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
              extra_uris=()):
    """A leaf following the X509-SVID profile (what the gateway's CA issues)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    nb = not_before or now() - datetime.timedelta(minutes=1)
    na = not_after or now() + datetime.timedelta(hours=1)
    uris = [x509.UniformResourceIdentifier(spiffe_id)] + [
        x509.UniformResourceIdentifier(u) for u in extra_uris]
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


class Gateway:
    """A PKI from certgen and a running tessera-gateway."""

    def __init__(self, renew_limit=5, extra_config=""):
        self.dir = tempfile.mkdtemp(prefix="tsr-gw-")
        self.pki = os.path.join(self.dir, "pki")
        users = ["admin", "alice", "bob", "mallory"]
        args = [os.path.join(BIN, "certgen"), "init", "--trust-domain", TD, "--out", self.pki]
        for u in users:
            args += ["--user", u]
        subprocess.run(args, check=True, capture_output=True)
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
workers: 2
data_dir: {self.dir}/data
pki:
  bundle: {self.pki}/bundle.pem
  issuing_cert: {self.pki}/issuing.pem
  issuing_key: {self.pki}/issuing.key
  server_cert: {self.pki}/gateway.pem
  server_key: {self.pki}/gateway.key
audit:
  path: {self.audit}
certificates:
  sandbox_ttl: 1h
  renew_limit: {renew_limit}
  renew_window: 1h
limits:
  max_message_bytes: 1048576
users:
  admin: admin
  alice: operator
  bob: viewer
{extra_config}""")
        self.proc = None
        self.start()

    def start(self, reuse_port=False):
        """Start the gateway; reuse_port=True listens on the port of the
        previous start (for clients that must find it again after a restart)."""
        args = [os.path.join(BIN, "tessera-gateway"), "--config", self.config]
        if reuse_port and getattr(self, "port", None):
            args += ["--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on .*:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("gateway did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
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

    def user(self, name):
        chain = open(os.path.join(self.pki, "users", name + ".pem"), "rb").read()
        key = open(os.path.join(self.pki, "users", name + ".key"), "rb").read()
        return Identity(chain, key)

    def sandbox_identity(self, sandbox_id, **kw):
        """What a driver would place in the sandbox: a leaf for the sandbox's
        SPIFFE ID from the gateway's issuing CA, with its chain."""
        cert, key = make_leaf(f"spiffe://{TD}/sandbox/{sandbox_id}", self.issuing_cert,
                              self.issuing_key, **kw)
        return Identity(pem(cert) + pem(self.issuing_cert), key_pem(key),
                        format(cert.serial_number, "x"))

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


def code_of(fn):
    """Run a call; return its grpc.StatusCode (OK when it succeeds) and details."""
    try:
        fn()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()
