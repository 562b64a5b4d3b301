#!/usr/bin/python3
"""Writes the seed inputs of fuzz/corpus/<name>/seed-* (run from the repo
root after `make`, under Debian's /usr/bin/python3: it needs
python3-cryptography, python3-h2 and the generated protobuf modules in
build/py). Keys are fresh on every run, so the seeds differ byte for byte
between runs but not in what they exercise. Crash reproducers
(fuzz/corpus/<name>/crash-*) are never touched.

    fuzz/mkcorpus.py [NAME...]   only the seeds of these harnesses (their old
                                 seed-* files are removed first); all without"""
import datetime
import glob
import os
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.environ.get("TSR_PY", "build/py"))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
import h2.config
import hpack
import h2.connection
import hyperframe.frame as hf

from tessera.v1 import gateway_pb2 as pb

OUT = "fuzz/corpus"
TD = "tessera.local"
UUID = "0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c"
SANDBOX_ID = f"spiffe://{TD}/sandbox/{UUID}"
NOW = datetime.datetime.fromtimestamp(1750000000, tz=datetime.timezone.utc)  # FUZZ_NOW


ONLY = set(sys.argv[1:])
for _name in ONLY:
    for _old in glob.glob(os.path.join(OUT, _name, "seed-*")):
        os.remove(_old)


def write(name, label, data):
    if ONLY and name not in ONLY:
        return
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + label), "wb") as f:
        f.write(data)


def lp16(b):
    return struct.pack(">H", len(b)) + b


# ---- spiffe: the raw URI ----------------------------------------------------
write("spiffe", "sandbox", SANDBOX_ID)
write("spiffe", "user", f"spiffe://{TD}/user/alice")
write("spiffe", "gateway", f"spiffe://{TD}/gateway")
write("spiffe", "proxy", f"spiffe://{TD}/proxy/egress-1")
write("spiffe", "bad", "spiffe://Tessera.local:8443/a/%2e/b?x#y")
write("spiffe", "root", "spiffe://example.org")


# ---- certificates -------------------------------------------------------

def p256():
    return ec.generate_private_key(ec.SECP256R1())


def ca_cert(key, subject, issuer, issuer_key, pathlen, constraint=None):
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(days=10))
         .not_valid_after(NOW + datetime.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=True, path_length=pathlen), critical=True)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                        critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    if issuer != subject:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), False)
    if constraint:
        b = b.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.UniformResourceIdentifier(constraint)],
            excluded_subtrees=None), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def leaf(uris, issuer, issuer_key, ca=False, ku=True, eku=True, extra_dns=None, years=0):
    """Valid for an hour around FUZZ_NOW, or `years` from then (for harnesses
    that verify at the current time: the fixed PKI lasts until 2045)."""
    key = p256()
    sans = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in (extra_dns or [])]
    until = datetime.timedelta(days=365 * years) if years else datetime.timedelta(hours=1)
    b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(issuer.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(minutes=1))
         .not_valid_after(NOW + until)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=True)
    if ku:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                          False), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
        issuer_key.public_key()), False)
    return b.sign(issuer_key, hashes.SHA256()), key


def der(c):
    return c.public_bytes(serialization.Encoding.DER)


def pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


root_key = p256()
root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tessera"),
                       x509.NameAttribute(NameOID.COMMON_NAME, f"Tessera Root CA {TD}")])
root = ca_cert(root_key, root_name, root_name, root_key, 1)
iss_key = p256()
iss_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tessera"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Tessera Issuing CA")])
issuing = ca_cert(iss_key, iss_name, root_name, root_key, 0, constraint=TD)
noncon = ca_cert(iss_key, iss_name, root_name, root_key, 0)

# x509_peer: [flags][now offset][lp16 leaf][lp16 intermediate]*
def peer(label, flags, leaf_der, *inter, offset=0):
    write("x509_peer", label, bytes([flags]) + struct.pack(">i", offset) + lp16(leaf_der) +
          b"".join(lp16(i) for i in inter))

sb, _ = leaf([SANDBOX_ID], issuing, iss_key)
peer("sandbox-resign", 1, der(sb))
peer("sandbox-expect-sandbox", 1 | (1 << 3), der(sb))
peer("sandbox-with-issuing", 1 | 64, der(sb))
peer("sandbox-as-is", 0, der(sb), der(issuing))
peer("sandbox-expired", 1, der(sb), offset=7200)
u, _ = leaf([f"spiffe://{TD}/user/alice"], issuing, iss_key)
peer("user-resign", 1, der(u))
peer("user-server-purpose", 1 | 4, der(u))
g, _ = leaf([f"spiffe://{TD}/gateway"], issuing, iss_key, extra_dns=["localhost"])
peer("gateway", 1, der(g))
px, _ = leaf([f"spiffe://{TD}/proxy/egress"], issuing, iss_key)
peer("proxy", 1, der(px))
two, _ = leaf([SANDBOX_ID, f"spiffe://{TD}/user/alice"], issuing, iss_key)
peer("two-uris", 1, der(two))
foreign, _ = leaf(["spiffe://example.org/user/alice"], issuing, iss_key)
peer("foreign", 1, der(foreign))
peer("forge-unconstrained", 2, der(foreign), der(noncon))
peer("forge-constrained", 2, der(sb), der(issuing))
caleaf, _ = leaf([SANDBOX_ID], issuing, iss_key, ca=True)
peer("leaf-is-ca", 1, der(caleaf))
noku, _ = leaf([SANDBOX_ID], issuing, iss_key, ku=False, eku=False)
peer("no-ku", 1, der(noku))
nosan, _ = leaf([], issuing, iss_key)
peer("no-san", 1, der(nosan))

# pem_bundle
write("pem_bundle", "root", pem(root))
write("pem_bundle", "chain", pem(sb) + pem(issuing))
write("pem_bundle", "bundle-two-roots", pem(root) + b"\n" + pem(ca_cert(p256(), root_name,
                                                                          root_name, root_key, 1)))
write("pem_bundle", "key-p256-pkcs8", root_key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
write("pem_bundle", "key-p256-sec1", root_key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption()))
write("pem_bundle", "key-ed25519", ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
write("pem_bundle", "key-rsa2048", rsa.generate_private_key(65537, 2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption()))
write("pem_bundle", "cert-then-key", pem(root) + root_key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
# pem_bundle, wrapped DER: [0x00][flags] ([u16 len][DER])*
def pem_der(label, flags, *ders):
    write("pem_bundle", label, bytes([0, flags]) + b"".join(lp16(d) for d in ders))

def key_der(key, fmt):
    return key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())

pem_der("der-root", 0, der(root))
pem_der("der-chain-76-crlf-blank", 4 | 8 | 16, der(sb), der(issuing))
pem_der("der-key-pkcs8", 0, key_der(root_key, serialization.PrivateFormat.PKCS8))
pem_der("der-key-sec1", 1, key_der(root_key, serialization.PrivateFormat.TraditionalOpenSSL))
pem_der("der-key-rsa", 2, key_der(rsa.generate_private_key(65537, 2048),
                                  serialization.PrivateFormat.TraditionalOpenSSL))
pem_der("der-key-ed25519", 0, key_der(ed25519.Ed25519PrivateKey.generate(),
                                      serialization.PrivateFormat.PKCS8))

# csr: [flags][DER]; the fixed keys of fuzz/fuzz_keys.h
def csr(key, uris=(), dns=(), algo=hashes.SHA256()):
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox")]))
    names = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(key, algo).public_bytes(serialization.Encoding.DER)


def fixed_keys():
    text = open("fuzz/fuzz_keys.h").read()
    keys = {}
    for name, body in re.findall(r'FUZZ_KEY_(\w+)\[\] =((?:\s*"[^"]*")+);', text):
        pem_text = "".join(re.findall(r'"([^"]*)"', body)).replace("\\n", "\n")
        keys[name] = serialization.load_pem_private_key(pem_text.encode(), None)
    return keys


def tlv(tag, body):
    n = len(body)
    if n < 128:
        return bytes([tag, n]) + body
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + body


def seq(*parts):
    return tlv(0x30, b"".join(parts))


def oid(dotted):
    a = [int(x) for x in dotted.split(".")]
    out = bytes([40 * a[0] + a[1]])
    for v in a[2:]:
        enc = [v & 0x7F]
        v >>= 7
        while v:
            enc.insert(0, 0x80 | (v & 0x7F))
            v >>= 7
        out += bytes(enc)
    return tlv(0x06, out)


def ext_request(uris, attr_oid="1.2.840.113549.1.9.14"):
    san = seq(oid("2.5.29.17"), tlv(0x04, seq(*[tlv(0x86, u.encode()) for u in uris])))
    return seq(oid(attr_oid), tlv(0x31, seq(san)))


def raw_csr(spki, attrs=b""):
    """A request whose signature is garbage: for flags that re-sign it."""
    info = seq(tlv(0x02, b"\x00"), seq(), spki, tlv(0xA0, attrs))
    return seq(info, seq(oid("1.2.840.10045.4.3.2")), tlv(0x03, b"\x00" + b"\x01" * 64))


def spki_openssl(key, *args):
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return subprocess.run(["openssl", "ec", "-pubout", "-outform", "DER", *args],
                          input=pem_key, capture_output=True, check=True).stdout


def spki_of(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


FK = fixed_keys()
AS_IS, RESIGN, REPLACE = 0, 1, 2
K256, K384, KED, KRSA = 0, 4, 8, 12
SHA384, SHA512, SHA1 = 16, 32, 48
UNPARSED = 64

def csr_seed(label, flags, der_bytes):
    write("csr", label, bytes([flags]) + der_bytes)

csr_seed("p256", AS_IS, csr(FK["P256"]))
csr_seed("p256-own-uri", AS_IS, csr(FK["P256"], uris=[SANDBOX_ID]))
csr_seed("p256-other-uri", AS_IS, csr(FK["P256"], uris=[f"spiffe://{TD}/user/admin"]))
csr_seed("p256-dns-unparsed", AS_IS | UNPARSED, csr(FK["P256"], dns=["example.com"]))
csr_seed("p384", AS_IS, csr(FK["P384"], algo=hashes.SHA384()))
csr_seed("ed25519", AS_IS, csr(FK["ED25519"], algo=None))
csr_seed("rsa2048", AS_IS, csr(FK["RSA2048"]))
csr_seed("rsa1024-refused", AS_IS, csr(rsa.generate_private_key(65537, 1024)))
csr_seed("p256-resign", RESIGN, raw_csr(spki_of(FK["P256"])))
csr_seed("p256-compressed-resign", RESIGN,
         raw_csr(spki_openssl(FK["P256"], "-conv_form", "compressed")))
csr_seed("p256-explicit-resign", RESIGN | SHA512,
         raw_csr(spki_openssl(FK["P256"], "-param_enc", "explicit")))
csr_seed("p384-resign-own-uri", RESIGN | SHA384, raw_csr(spki_of(FK["P384"]),
                                                         ext_request([SANDBOX_ID])))
csr_seed("p384-compressed-resign", RESIGN,
         raw_csr(spki_openssl(FK["P384"], "-conv_form", "compressed")))
csr_seed("ed25519-resign-unparsed", RESIGN | UNPARSED, raw_csr(spki_of(FK["ED25519"])))
csr_seed("rsa-resign-sha1", RESIGN | SHA1, raw_csr(spki_of(FK["RSA2048"])))
csr_seed("replace-p384", REPLACE | K384, raw_csr(spki_of(FK["P256"]), ext_request([SANDBOX_ID])))
csr_seed("replace-ed25519-other-uri", REPLACE | KED,
         raw_csr(spki_of(FK["P256"]), ext_request([SANDBOX_ID, f"spiffe://{TD}/gateway"])))
csr_seed("replace-p256-ms-ext-req", REPLACE | K256,
         raw_csr(spki_of(FK["P256"]), ext_request([SANDBOX_ID], "1.3.6.1.4.1.311.2.1.14")))
csr_seed("replace-p256-two-ext-reqs", REPLACE | K256,
         raw_csr(spki_of(FK["P256"]), ext_request([SANDBOX_ID]) + ext_request(["spiffe://x/y"])))
csr_seed("resign-trailing-bytes", RESIGN, raw_csr(spki_of(FK["P256"])) + b"\x00\x00")

# ---- forward: [flags][header value] ------------------------------------------
# The leaves are signed by this script's CA; flag 16 has the harness re-sign
# them with its own issuing CA. Valid from FUZZ_NOW for 19 years: the
# decision verifies at the current time.
F_XFCC, F_LOCAL, F_OTHER, F_SANDBOX, F_TWICE, F_RESIGN, F_KEEP_AKI, F_ISSUING, F_CERT_ONLY = (
    1, 2, 4, 6, 8, 16, 32, 64, 128)

def esc(b):
    return "".join(chr(c) if chr(c).isalnum() or chr(c) in "-._~" else "%%%02X" % c
                   for c in b).encode()

def fwd(label, flags, value):
    write("forward", label, bytes([flags]) + value)

fsb, _ = leaf([SANDBOX_ID], issuing, iss_key, years=19)
fuser, _ = leaf([f"spiffe://{TD}/user/alice"], issuing, iss_key, years=19)
fproxy, _ = leaf([f"spiffe://{TD}/proxy/egress"], issuing, iss_key, years=19)
fforeign, _ = leaf(["spiffe://example.org/user/alice"], issuing, iss_key, years=19)
fwd("pem-sandbox-resign", F_RESIGN, esc(pem(fsb)))
fwd("pem-user-resign-issuing", F_RESIGN | F_ISSUING, esc(pem(fuser)))
fwd("pem-sandbox-as-is", 0, esc(pem(fsb) + pem(issuing)))
fwd("pem-proxy-leaf", F_RESIGN, esc(pem(fproxy)))
fwd("pem-foreign", F_RESIGN, esc(pem(fforeign)))
fwd("pem-local-proxy", F_LOCAL | F_RESIGN, esc(pem(fuser)))
fwd("pem-untrusted-proxy", F_OTHER | F_RESIGN, esc(pem(fsb)))
fwd("pem-sandbox-caller", F_SANDBOX | F_RESIGN, esc(pem(fsb)))
fwd("pem-twice", F_TWICE | F_RESIGN, esc(pem(fsb)))
fwd("pem-keep-aki", F_RESIGN | F_KEEP_AKI, esc(pem(fsb)))
fwd("pem-lowercase-escapes", F_RESIGN, esc(pem(fsb)).replace(b"%0A", b"%0a"))
fwd("xfcc-chain-resign", F_XFCC | F_RESIGN, b'By=spiffe://tessera.local/gateway;Hash=ab;Chain="'
    + esc(pem(fsb) + pem(issuing)) + b'";Subject="";URI=')
fwd("xfcc-cert-and-chain", F_XFCC | F_RESIGN | F_ISSUING,
    b'Cert="' + esc(pem(fuser)) + b'";Chain="' + esc(pem(fuser) + pem(issuing)) + b'"')
fwd("xfcc-cert-only", F_XFCC | F_RESIGN | F_CERT_ONLY, b"cert=" + esc(pem(fsb)))
fwd("xfcc-quoted-escapes", F_XFCC | F_RESIGN,
    b'By="spiffe://x\\"y";Subject="CN=a,b;c";Cert="' + esc(pem(fsb)) + b'"')
fwd("xfcc-two-elements", F_XFCC | F_RESIGN, b"Cert=" + esc(pem(fsb)) + b",Cert=" + esc(pem(fuser)))
fwd("xfcc-chain-not-starting-with-cert", F_XFCC,
    b"Cert=" + esc(pem(fsb)) + b";Chain=" + esc(pem(fuser)))

# ---- protobuf: [request index][message] -----------------------------------
REQUESTS = ["CreateSandboxRequest", "GetSandboxRequest", "ListSandboxesRequest",
            "DeleteSandboxRequest", "GetSandboxLogsRequest", "ListCertificatesRequest",
            "RevokeCertificateRequest", "GetSandboxConfigRequest",
            "GetSandboxProviderEnvironmentRequest", "ReportPolicyStatusRequest",
            "SubmitPolicyAnalysisRequest", "GetDraftPolicyRequest", "UpdateConfigRequest",
            "PushSandboxLogsRequest", "RenewCertificateRequest", "GetTrustBundleRequest"]
POLICY = open("docs/policy.md").read().split("```yaml\n")[1].split("```")[0]

def proto(label, msg):
    i = REQUESTS.index(type(msg).__name__)
    write("protobuf", label, bytes([i]) + msg.SerializeToString())

proto("create", pb.CreateSandboxRequest(name="dev-1", policy=POLICY,
                                        provider_env={"OPENAI_API_KEY": "sk-1", "X_2": ""},
                                        driver="process"))
proto("get", pb.GetSandboxRequest(id=UUID))
proto("list", pb.ListSandboxesRequest(page_size=10, page_token=UUID))
proto("logs", pb.GetSandboxLogsRequest(sandbox_id=UUID, since=5, limit=100))
proto("revoke", pb.RevokeCertificateRequest(serial="0a1b2c", reason="key compromise"))
proto("report", pb.ReportPolicyStatusRequest(sandbox_id=UUID, version=1, status=2,
                                             message="mount failed"))
proto("submit", pb.SubmitPolicyAnalysisRequest(sandbox_name="dev-1", chunks=[
    pb.PolicyChunk(domain="network", content="default: deny\nallow:\n  - host: a.example\n"),
    pb.PolicyChunk(domain="filesystem", content="read_only: [/usr]\n")]))
proto("update", pb.UpdateConfigRequest(name="dev-1", policy="version: 1\n",
                                       provider_env={"A": "b"}))
proto("push", pb.PushSandboxLogsRequest(sandbox_id=UUID, lines=[
    pb.LogLine(timestamp_ms=1, stream="stdout", text=b"hello\n"),
    pb.LogLine(timestamp_ms=2, stream="stderr", text=b"\xff\xfe")], dropped_lines=3))
proto("renew", pb.RenewCertificateRequest(csr=csr(p256(), uris=[SANDBOX_ID])))
proto("trust-bundle", pb.GetTrustBundleRequest())
write("protobuf", "health", bytes([16]) + b"\x0a\x12tessera.v1.Gateway")

# ---- rpc: [principal][method] request (PushSandboxLogs: [u16 len][msg]*) ----
ADMIN, OPERATOR, VIEWER, NOROLE, SB_A, SB_B, GHOST, PROXY, ANON, UNAUTH = range(10)
ID_A = "00000000-0000-4000-8000-00000000000a"
ID_B = "00000000-0000-4000-8000-00000000000b"
METHODS = ["CreateSandbox", "GetSandbox", "ListSandboxes", "DeleteSandbox", "GetSandboxLogs",
           "ListCertificates", "RevokeCertificate", "GetSandboxConfig",
           "GetSandboxProviderEnvironment", "ReportPolicyStatus", "SubmitPolicyAnalysis",
           "GetDraftPolicy", "UpdateConfig", "PushSandboxLogs", "RenewCertificate",
           "GetTrustBundle", "Health"]

def rpc(label, who, method, *msgs):
    i = METHODS.index(method)
    if method == "PushSandboxLogs":
        body = b"".join(lp16(m.SerializeToString()) for m in msgs)
    else:
        body = msgs[0].SerializeToString() if msgs else b""
    write("rpc", label, bytes([who, i]) + body)

rpc("admin-create", ADMIN, "CreateSandbox",
    pb.CreateSandboxRequest(name="dev-1", policy="version: 1\n", provider_env={"K": "v"}))
# Through the mem driver plugin: its injected failures (rollback), an
# unknown driver, the driver named explicitly.
rpc("admin-create-fail-create", ADMIN, "CreateSandbox",
    pb.CreateSandboxRequest(name="fail-create-1", policy="version: 1\n"))
rpc("operator-create-fail-start", OPERATOR, "CreateSandbox",
    pb.CreateSandboxRequest(name="fail-start-1", policy="version: 1\n", provider_env={"K": "v"}))
rpc("admin-create-unknown-driver", ADMIN, "CreateSandbox",
    pb.CreateSandboxRequest(name="dev-3", policy="version: 1\n", driver="process"))
rpc("operator-create-mem", OPERATOR, "CreateSandbox",
    pb.CreateSandboxRequest(name="dev-2", policy="version: 1\n", driver="mem"))
rpc("operator-create-bad-policy", OPERATOR, "CreateSandbox",
    pb.CreateSandboxRequest(name="dev-2", policy="version: 2\n"))
rpc("viewer-get-a", VIEWER, "GetSandbox", pb.GetSandboxRequest(id=ID_A))
rpc("viewer-list", VIEWER, "ListSandboxes", pb.ListSandboxesRequest(page_size=1))
rpc("admin-delete-b", ADMIN, "DeleteSandbox", pb.DeleteSandboxRequest(name="sb-b"))
rpc("viewer-logs-a", VIEWER, "GetSandboxLogs", pb.GetSandboxLogsRequest(sandbox_id=ID_A))
rpc("admin-list-certs", ADMIN, "ListCertificates", pb.ListCertificatesRequest())
rpc("admin-revoke", ADMIN, "RevokeCertificate",
    pb.RevokeCertificateRequest(serial="0A1b", reason="test"))
rpc("a-get-own-config", SB_A, "GetSandboxConfig", pb.GetSandboxConfigRequest(sandbox_id=ID_A))
rpc("a-get-b-config", SB_A, "GetSandboxConfig", pb.GetSandboxConfigRequest(sandbox_id=ID_B))
rpc("a-get-own-env", SB_A, "GetSandboxProviderEnvironment",
    pb.GetSandboxProviderEnvironmentRequest(sandbox_id=ID_A))
rpc("admin-get-env-b", ADMIN, "GetSandboxProviderEnvironment",
    pb.GetSandboxProviderEnvironmentRequest(sandbox_id=ID_B))
rpc("a-report", SB_A, "ReportPolicyStatus",
    pb.ReportPolicyStatusRequest(sandbox_id=ID_A, version=1, status=1, message="ok"))
rpc("a-submit", SB_A, "SubmitPolicyAnalysis", pb.SubmitPolicyAnalysisRequest(
    sandbox_name="sb-a", chunks=[pb.PolicyChunk(domain="network", content="default: deny\n")]))
rpc("b-submit-as-a", SB_B, "SubmitPolicyAnalysis", pb.SubmitPolicyAnalysisRequest(
    sandbox_name="sb-a", chunks=[pb.PolicyChunk(domain="process", content="max_processes: 1\n")]))
rpc("viewer-draft-a", VIEWER, "GetDraftPolicy", pb.GetDraftPolicyRequest(name="sb-a"))
rpc("a-update-own-policy", SB_A, "UpdateConfig",
    pb.UpdateConfigRequest(name="sb-a", policy="version: 1\nprocess:\n  max_processes: 4\n"))
rpc("a-update-own-env", SB_A, "UpdateConfig",
    pb.UpdateConfigRequest(name="sb-a", provider_env={"K": "v"}))
rpc("op-update-b", OPERATOR, "UpdateConfig",
    pb.UpdateConfigRequest(name="sb-b", provider_env={"K2": "v2"}))
rpc("a-push", SB_A, "PushSandboxLogs",
    pb.PushSandboxLogsRequest(sandbox_id=ID_A, lines=[pb.LogLine(stream="stdout", text=b"hi")]),
    pb.PushSandboxLogsRequest(sandbox_id=ID_A, dropped_lines=2))
rpc("a-push-switch-to-b", SB_A, "PushSandboxLogs",
    pb.PushSandboxLogsRequest(sandbox_id=ID_A, lines=[pb.LogLine(text=b"x")]),
    pb.PushSandboxLogsRequest(sandbox_id=ID_B, lines=[pb.LogLine(text=b"y")]))
rpc("a-renew", SB_A, "RenewCertificate", pb.RenewCertificateRequest(csr=csr(p256())))
rpc("a-renew-asks-admin", SB_A, "RenewCertificate",
    pb.RenewCertificateRequest(csr=csr(p256(), uris=[f"spiffe://{TD}/user/admin"])))
rpc("ghost-renew", GHOST, "RenewCertificate", pb.RenewCertificateRequest(csr=csr(p256())))
rpc("proxy-bundle", PROXY, "GetTrustBundle", pb.GetTrustBundleRequest())
rpc("anon-health", ANON, "Health")
rpc("unauth-list", UNAUTH, "ListSandboxes", pb.ListSandboxesRequest())
rpc("norole-create", NOROLE, "CreateSandbox", pb.CreateSandboxRequest(name="x", policy="version: 1\n"))

# ---- policy: [domain selector][yaml] ---------------------------------------
write("policy", "example", b"\x00" + POLICY.encode())
write("policy", "minimal", b"\x00version: 1\n")
write("policy", "network-chunk", b"\x01default: deny\nallow:\n  - host: \"*.pypi.org\"\n"
      b"    ports: [443]\ndeny:\n  - host: 10.0.0.0/8\n  - host: \"fd00::/8\"\n")
write("policy", "filesystem-chunk", b"\x00read_only: [/usr, /lib]\nread_write: [/tmp]\n"
      b"deny: [/tmp/x]\n")
write("policy", "process-chunk", b"\x02allow_exec: [/usr/bin/git]\nmax_processes: 16\n"
      b"allow_privilege_escalation: false\n")
write("policy", "inference-chunk", b"\x03providers:\n  - name: openai\n    models: [gpt-4o]\n"
      b"    env: [OPENAI_API_KEY]\n")

# ---- config ------------------------------------------------------------------
write("config", "gateway-yaml", open("config/gateway.yaml", "rb").read())
write("config", "empty", b"")
write("config", "small", b"trust_domain: example.org\nlisten: \"[::1]:0\"\nworkers: 2\n"
      b"users:\n  alice: admin\n  bob: viewer\nlimits:\n  idle_timeout: 1h30m\n"
      b"audit:\n  path: \"-\"\n")

# ---- keyring -----------------------------------------------------------------
k1 = os.urandom(32).hex()
k2 = os.urandom(32).hex()
write("keyring", "one", f"1 {k1}\n")
write("keyring", "two-comments", f"# Tessera keyring\n1 {k1}\n\n  2\t{k2}  \r\n# end\n")
write("keyring", "rotated", f"7 {k1}\n3 {k2}\n")

# ---- grpc_deframe: [max][budget][seed][take] frames... ------------------------
def frame(body, flag=0):
    return bytes([flag]) + struct.pack(">I", len(body)) + body

write("grpc_deframe", "two-messages", b"\x06\x0d\x01\xff" + frame(b"hello") + frame(b""))
write("grpc_deframe", "big", b"\x07\x0e\x02\x00" + frame(b"x" * 30000) + frame(b"y" * 3))
write("grpc_deframe", "compressed", b"\x06\x08\x03\x01" + frame(b"abc", 1))
write("grpc_deframe", "truncated", b"\x04\x00\x04\x00" + frame(b"a" * 100)[:50])
write("grpc_deframe", "timeout", b"99999999H")
write("grpc_deframe", "percent", b"%41%zz%\xff\x00caf\xc3\xa9")

# ---- client: [mode][options] then the server's HTTP/2 bytes ------------------
GRPC_CT = (b"content-type", b"application/grpc")

def answer(*events, sid=1, settings=True):
    """Server frames for stream `sid`: ("h", [headers], end), ("d", bytes, end),
    ("rst", code), ("goaway", code), ("raw", bytes)."""
    enc = hpack.Encoder()
    out = hf.SettingsFrame(0).serialize() if settings else b""
    for ev in events:
        if ev[0] == "h":
            f = hf.HeadersFrame(sid)
            f.data = enc.encode(ev[1])
            f.flags.add("END_HEADERS")
            if ev[2]:
                f.flags.add("END_STREAM")
        elif ev[0] == "d":
            f = hf.DataFrame(sid)
            f.data = ev[1]
            if ev[2]:
                f.flags.add("END_STREAM")
        elif ev[0] == "rst":
            f = hf.RstStreamFrame(sid)
            f.error_code = ev[1]
        elif ev[0] == "goaway":
            f = hf.GoAwayFrame(0)
            f.last_stream_id = 0
            f.error_code = ev[1]
        else:
            out += ev[1]
            continue
        out += f.serialize()
    return out

def ok(msg, extra=(), status=b"0", message=None):
    trailers = [(b"grpc-status", status)] + ([(b"grpc-message", message)] if message else [])
    return [("h", [(b":status", b"200"), GRPC_CT] + list(extra), False), ("d", frame(msg), False),
            ("h", trailers, True)]

def only_status(code, message=b"", http=b"200"):
    return [("h", [(b":status", http), GRPC_CT, (b"grpc-status", code),
                   (b"grpc-message", message)], True)]

def client_seed(label, mode, opts, data):
    write("client", label, bytes([mode, opts]) + data)

UNARY, CALL, STREAM, CONFIG, ENV, REPORT, RENEW, RENEWAL = range(8)
client_seed("unary-ok", UNARY, 0, answer(*ok(b"pong")))
client_seed("unary-denied-escapes", UNARY, 0,
            answer(*only_status(b"7", b"denied%0A%1b%5B31m%E2%9C%93%zz")))
client_seed("unary-http-503", UNARY, 0, answer(("h", [(b":status", b"503")], True)))
client_seed("unary-two-messages", UNARY, 0, answer(
    ("h", [(b":status", b"200"), GRPC_CT], False), ("d", frame(b"a") + frame(b"b"), False),
    ("h", [(b"grpc-status", b"0")], True)))
client_seed("unary-too-large", UNARY, 1, answer(*ok(b"x" * 100)))
client_seed("unary-compressed", UNARY, 0, answer(
    ("h", [(b":status", b"200"), GRPC_CT], False), ("d", frame(b"abc", 1), False),
    ("h", [(b"grpc-status", b"0")], True)))
client_seed("unary-refused-goaway", UNARY, 0, answer(("goaway", 0), ("rst", 7)))
client_seed("unary-truncated", UNARY, 0, answer(
    ("h", [(b":status", b"200"), GRPC_CT], False), ("d", frame(b"abcdef")[:7], False),
    ("h", [(b"grpc-status", b"0")], True)))
client_seed("unary-bad-status", UNARY, 0, answer(*only_status(b"1x")))
client_seed("unary-text-plain", UNARY, 0, answer(
    ("h", [(b":status", b"200"), (b"content-type", b"text/plain")], False),
    ("d", b"hello", True)))
sbx = pb.Sandbox(id=UUID, name="dev-1")
client_seed("call-get-sandbox", CALL, 0, answer(*ok(pb.GetSandboxResponse(
    sandbox=sbx).SerializeToString())))
client_seed("call-garbage", CALL, 0, answer(*ok(b"\xff\xff\xff")))
# The gateway resets a stream it answered while the client was still sending.
client_seed("stream-early-denied", STREAM, 2 << 2, answer(*only_status(b"7", b"cross"), ("rst", 0)))
client_seed("stream-ok", STREAM, 3 << 2, answer(*ok(pb.PushSandboxLogsResponse(
    accepted_lines=3).SerializeToString()), ("rst", 0)))
client_seed("stream-reset", STREAM, 1 << 2, answer(("rst", 8)))
client_seed("config-own", CONFIG, 0, answer(*ok(pb.GetSandboxConfigResponse(
    sandbox_id=UUID, name="dev-1", policy="version: 1\n", policy_version=2).SerializeToString())))
client_seed("config-other-sandbox", CONFIG, 0, answer(*ok(pb.GetSandboxConfigResponse(
    sandbox_id="00000000-0000-4000-8000-00000000000b", policy="").SerializeToString())))
client_seed("env", ENV, 0, answer(*ok(pb.GetSandboxProviderEnvironmentResponse(environment={
    "OPENAI_API_KEY": "sk-1", "HOME": "/h", "PATH": "/p", "BAD NAME": "x", "LD_PRELOAD": "/x.so",
    "TESSERA_X": "y", "9LIVES": "", "": "empty"})
    .SerializeToString())))
client_seed("env-denied", ENV, 0, answer(*only_status(b"16", b"revoked")))
client_seed("report-ok", REPORT, 0, answer(*ok(b"")))
client_seed("renew-answer", RENEW, 0, answer(*ok(pb.RenewCertificateResponse(
    certificate_pem=pem(sb).decode(), chain_pem=pem(issuing).decode(),
    bundle_pem=pem(root).decode(), serial="0a").SerializeToString())))

def renewal(label, opts, leaf_pem, chain_pem=b"", bundle_pem=b""):
    client_seed(label, RENEWAL, opts, lp16(leaf_pem) + lp16(chain_pem) + lp16(bundle_pem))

renewal("renewal-resigned", 1 | 2 | 4, pem(sb))
renewal("renewal-resigned-keep-bundle", 1 | 4, pem(sb))
renewal("renewal-user-leaf", 1 | 2 | 4, pem(u))
renewal("renewal-as-is", 0, pem(sb), pem(issuing), pem(root))
renewal("renewal-two-leaves", 1 | 2 | 4, pem(sb) + pem(sb))

# ---- docker: [which][HTTP status u16] the engine's answer body ---------------
import json
def dk(label, which, status, body):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    write("docker", label, bytes([which]) + struct.pack(">H", status) +
          (body.encode() if isinstance(body, str) else body))

VERSION, CREATE, INSPECT, ERROR = range(4)
dk("version-podman", VERSION, 200, {"Version": "4.3.1", "ApiVersion": "1.41",
                                    "MinAPIVersion": "1.24", "Os": "linux"})
dk("version-docker", VERSION, 200, {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41",
                                    "MinAPIVersion": "1.12"})
dk("version-newer", VERSION, 200, {"Version": "27.0", "ApiVersion": "1.46", "MinAPIVersion": "1.24"})
dk("version-too-old", VERSION, 200, {"Version": "19.03", "ApiVersion": "1.40"})
dk("version-min-too-new", VERSION, 200, {"ApiVersion": "1.50", "MinAPIVersion": "1.44"})
dk("version-error", VERSION, 500, {"message": "server error\u001b[2J"})
dk("create", CREATE, 201, {"Id": "ab" * 32, "Warnings": ["Your kernel does not support swap"]})
dk("create-warnings-odd", CREATE, 201, {"Id": "0" * 64, "Warnings": [1, None, "a\nb", "x" * 300]})
dk("create-no-id", CREATE, 201, {"Warnings": []})
dk("create-id-upper", CREATE, 201, {"Id": "AB" * 32})
dk("inspect-running", INSPECT, 200, {"Id": "ab" * 32, "Config": {"Labels": {
    "tessera.sandbox-id": UUID, "tessera.managed-by": "tessera-gateway"}},
    "State": {"Status": "running", "Running": True}})
dk("inspect-exited", INSPECT, 200, {"Config": {"Labels": {"tessera.sandbox-id": UUID}},
                                    "State": {"Status": "exited"}})
dk("inspect-other-label", INSPECT, 200, {"Config": {"Labels": {"tessera.sandbox-id": "x"}},
                                         "State": {"Status": "running"}})
dk("inspect-not-json", INSPECT, 200, b"{\"State\": running}")
dk("inspect-duplicate-keys", INSPECT, 200, b'{"Config":{"Labels":{"tessera.sandbox-id":"x"}},'
   b'"Config":{"Labels":{"tessera.sandbox-id":"' + UUID.encode() + b'"}},'
   b'"State":{"Status":"created"}}')
dk("error-404", ERROR, 404, {"message": "No such container: tessera-" + UUID})
dk("error-409", ERROR, 409, {"message": "Conflict. The container name is already in use"})
dk("error-500-escapes", ERROR, 500, {"message": "\u001b]0;x\u0007boom\u00e9\u007f"})
dk("error-empty", ERROR, 400, b"")

# ---- qmp: [u16 len][greeting] then QEMU's answer ----------------------------
QMP_GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                b'"package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}\r\n')

def qmp(label, answer, greeting=QMP_GREETING):
    write("qmp", label, lp16(greeting) + answer)

qmp("return", b'{"return": {}}\r\n')
qmp("events-then-return", b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}'
    b'\r\n{"event": "RESET", "data": {"guest": true}}\r\n{"return": {}}\r\n')
qmp("error", b'{"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}'
    b'\r\n')
qmp("status", b'{"return": {"status": "running", "singlestep": false, "running": true}}\n')
qmp("truncated", b'{"return": {}')
qmp("no-greeting", b'{"return": {}}\n', greeting=b'{"hello": 1}\n')
qmp("data-after-greeting", b'{"return": {}}\n', greeting=QMP_GREETING + b'{"event": "X"}\n')

# ---- sup_logs: [queue lines][queue bytes] operations ------------------------
OUT_, ERR_, END_OUT, END_ERR, TAKE, SUPLINE = range(6)
def op_bytes(op, b):
    return bytes([op]) + lp16(b)

write("sup_logs", "lines", b"\x04\x00" + op_bytes(OUT_, b"hello\nworld\n\npartial")
      + op_bytes(ERR_, b"oops\x00nul\r\n") + bytes([TAKE, 10, 40]) + bytes([END_OUT])
      + op_bytes(SUPLINE, b"supervisor: started") + bytes([TAKE, 0, 0]))
write("sup_logs", "long-line-split", b"\x08\x02" + op_bytes(OUT_, b"a" * 16383 + b"\x00b")
      + op_bytes(OUT_, b"c" * 20000 + b"\n") + bytes([TAKE, 3, 255]))
write("sup_logs", "overflow-drops-oldest", b"\x02\x00" + b"".join(
    op_bytes(OUT_, b"line %d\n" % i) for i in range(6)) + bytes([TAKE, 1, 1, TAKE, 5, 9]))
write("sup_logs", "bytes-bound", b"\x0f\x00" + op_bytes(ERR_, b"x" * 9000 + b"\n")
      + op_bytes(ERR_, b"y" * 9000 + b"\n") + bytes([TAKE, 2, 40, END_ERR]))

# ---- cli: the arguments, NUL-separated ---------------------------------------
def cli(label, *args):
    write("cli", label, b"\0".join(a.encode() for a in args))

cli("revoke-reason-then-json", "cert", "revoke", "--reason", "key compromise", "0A:1b", "--json")
cli("create-env-driver", "--json", "sandbox", "create", "dev-1", "--env", "A=b", "--env",
    "FUZZ_ENV_VALUE", "--driver", "mem", "--no-host-check")
cli("create-driver-is-addr", "sandbox", "create", "dev-1", "--driver", "--addr",
    "--addr", "127.0.0.1:9", "--timeout", "30s")
cli("create-env-twice", "sandbox", "create", "dev", "--env", "A=1", "--env", "A=2")
cli("create-policy-stdin", "sandbox", "create", "dev", "--policy", "-")
cli("logs-limit-json", "logs", UUID, "--since", "5", "--limit", "--json")
cli("logs-follow", "--trust-domain", "example.org", "logs", UUID, "--follow", "--json")
cli("bundle-crl", "bundle", "--crl", "--user", "--user=bob")
cli("get-by-id", "--timeout", "2m", "sandbox", "get", UUID, "--pki", "pki")
cli("delete-after-dashes", "sandbox", "delete", "--", UUID, "--json")
cli("list-options", "sandbox", "list", "--addr=unix:sock", "--cert", "c.pem", "--key", "k.pem")
cli("health", "health", "--json=1")
cli("help", "cert", "revoke", "-h")

# ---- crl_number: the number file's bytes -------------------------------------
write("crl_number", "clock-ms", b"1750000000123\n")
write("crl_number", "no-newline", b"42")
write("crl_number", "largest", b"18446744073709551614\n")
write("crl_number", "leading-zeros", b"000000000000000000000000000007\n")
write("crl_number", "garbage", b"12x\n")

# ---- h2_session: [flags][chunk seed] HTTP/2 client bytes ---------------------
def conn():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    return c

def call(c, sid, path, msgs, extra=(), end=True, method=b"POST",
         ctype=b"application/grpc"):
    hdrs = [(b":method", method), (b":scheme", b"https"), (b":path", path),
            (b":authority", b"localhost"), (b"content-type", ctype), (b"te", b"trailers")]
    c.send_headers(sid, hdrs + list(extra), end_stream=not msgs and end)
    for i, m in enumerate(msgs):
        c.send_data(sid, m, end_stream=end and i == len(msgs) - 1)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

def h2seed(label, c, flags=1, seed=0, raw=b"", fwd=None):
    data = c.data_to_send() + raw
    if flags & 1:
        assert data.startswith(PREFACE)
        data = data[len(PREFACE):]
    write("h2_session", label, bytes([flags, seed]) + (bytes([fwd]) if fwd is not None else b"")
          + data)

HEALTH = b"/grpc.health.v1.Health/Check"
c = conn()
call(c, 1, HEALTH, [frame(b"")], extra=[(b"grpc-timeout", b"5S")])
h2seed("health", c)
c = conn()
call(c, 1, HEALTH, [frame(b"\x0a\x03foo")])
call(c, 3, b"/fuzz.Test/Echo", [frame(b"\xefbig")])
c.increment_flow_control_window(1 << 20)
c.increment_flow_control_window(1 << 20, stream_id=3)
call(c, 5, b"/fuzz.Test/Echo", [frame(b"\xee\x01bad\xffmessage%")])
call(c, 7, b"/fuzz.Test/Echo", [frame(b"\xedsecret")])
h2seed("echo-concurrent", c, seed=3)
c = conn()
call(c, 1, b"/fuzz.Test/Stream", [frame(b"a") + frame(b"bb"), frame(b"c" * 100)])
call(c, 3, b"/fuzz.Test/Stream", [frame(b"x"), frame(b"\xeeabort"), frame(b"y")])
call(c, 5, b"/fuzz.Test/Stream", [frame(b"half")], end=False)
c.reset_stream(5)
h2seed("stream", c, seed=9)
c = conn()
call(c, 1, b"/tessera.v1.Gateway/CreateSandbox", [frame(b"\x0a\x03dev")])
call(c, 3, b"/tessera.v1.Gateway/PushSandboxLogs", [frame(b""), frame(b"")])
call(c, 5, b"/tessera.v1.Gateway/GetTrustBundle", [frame(b"")])
h2seed("real-methods-anonymous", c)
h2seed("real-methods-proxy", conn(), flags=1 | 4, raw=b"")
c = conn()
call(c, 1, HEALTH, [], method=b"GET")
call(c, 3, HEALTH, [frame(b"")], ctype=b"text/plain")
call(c, 5, b"/no.Such/Method", [frame(b"")])
call(c, 7, HEALTH, [frame(b"")], extra=[(b"grpc-encoding", b"gzip")])
call(c, 9, HEALTH, [frame(b"abc", 1)])
call(c, 11, HEALTH, [frame(b"")], extra=[(b"grpc-timeout", b"1n")])
call(c, 13, HEALTH, [frame(b"")], extra=[(b"grpc-timeout", b"-1S")])
call(c, 15, b"/fuzz.Test/Echo", [frame(b"a"), frame(b"b")])
call(c, 17, b"/fuzz.Test/Echo", [])
call(c, 19, b"/fuzz.Test/Echo", [frame(b"a" * 10)[:8]])
c.ping(b"12345678")
h2seed("errors", c, seed=77)
c = conn()
c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10,
                   h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384})
call(c, 1, b"/fuzz.Test/Echo", [frame(b"\xef")])
h2seed("tiny-window", c, seed=5)
c = conn()
call(c, 1, b"/fuzz.Test/Echo", [frame(b"a" * 100)], end=True)
h2seed("small-max-message", c, flags=1 | 32)
c = conn()
call(c, 1, b"/fuzz.Test/Echo", [frame(b"a")])
h2seed("revoked", c, flags=1 | 8)
c = conn()
call(c, 1, b"/fuzz.Test/Stream", [frame(b"a")], end=False)
h2seed("server-goaway", c, flags=1 | 16)
# Forwarded certificates (flags bit 6; forward flags: 1 xfcc, 2 re-sign, 4 + issuing CA):
# from the trusted proxy egress, from the proxy unix socket, from a caller
# that is not a proxy; a forwarded call to a test method, to real methods
# (the guard), the header twice, a value that does not decode.
PROXY_EGRESS, LOCAL_PROXY, FORWARD = 4, 6, 64
GET = b"/tessera.v1.Gateway/GetSandbox"
def fwd_conn(hdr, values):
    c = conn()
    call(c, 1, b"/fuzz.Test/Echo", [frame(b"hello")], extra=[(hdr, values[0])])
    call(c, 3, GET, [frame(b"\x0a\x03dev")], extra=[(hdr, values[1])])
    call(c, 5, b"/tessera.v1.Gateway/RenewCertificate", [frame(b"")], extra=[(hdr, values[0])])
    call(c, 7, b"/fuzz.Test/Stream", [frame(b"a"), frame(b"b")], extra=[(hdr, values[0])])
    call(c, 9, b"/fuzz.Test/Echo", [frame(b"x")], extra=[(hdr, values[0]), (hdr, values[1])])
    call(c, 11, b"/fuzz.Test/Echo", [frame(b"y")], extra=[(hdr, b"%zz")])
    call(c, 13, b"/fuzz.Test/Echo", [frame(b"z")])
    return c
sb_pem, user_pem = esc(pem(fsb)), esc(pem(fuser))
h2seed("forward-pem-egress", fwd_conn(b"x-client-cert", [sb_pem, user_pem]),
       flags=1 | PROXY_EGRESS | FORWARD, fwd=2, seed=4)
h2seed("forward-xfcc-egress", fwd_conn(b"x-forwarded-client-cert",
                                       [b'Cert="' + user_pem + b'"', b"Chain=" + sb_pem]),
       flags=1 | PROXY_EGRESS | FORWARD, fwd=1 | 2 | 4, seed=6)
h2seed("forward-pem-local-proxy", fwd_conn(b"x-client-cert", [user_pem, sb_pem]),
       flags=1 | LOCAL_PROXY | FORWARD, fwd=2, seed=8)
h2seed("forward-pem-not-resigned", fwd_conn(b"x-client-cert", [sb_pem, user_pem]),
       flags=1 | PROXY_EGRESS | FORWARD, fwd=0, seed=10)
h2seed("forward-from-anonymous", fwd_conn(b"x-client-cert", [sb_pem, user_pem]),
       flags=1 | FORWARD, fwd=2, seed=12)
h2seed("forward-revoked-connection", fwd_conn(b"x-client-cert", [sb_pem, user_pem]),
       flags=1 | PROXY_EGRESS | FORWARD | 8, fwd=2, seed=14)
# Raw frames h2 would not send: CONTINUATION, a huge header block, a client GOAWAY.
c = conn()
raw = b""
hf_headers = hf.HeadersFrame(1)
enc = c.encoder
block = enc.encode([(b":method", b"POST"), (b":scheme", b"https"), (b":path", HEALTH),
                    (b":authority", b"x"), (b"content-type", b"application/grpc")])
hf_headers.data = block[:5]
raw += hf_headers.serialize()
cont = hf.ContinuationFrame(1)
cont.data = block[5:]
cont.flags.add("END_HEADERS")
raw += cont.serialize()
d = hf.DataFrame(1)
d.data = frame(b"")
d.flags.add("END_STREAM")
raw += d.serialize()
big = hf.HeadersFrame(3)
big.data = enc.encode([(b":method", b"POST"), (b":path", HEALTH), (b"x-pad", b"p" * 20000)])
big.flags.add("END_HEADERS")
big.flags.add("END_STREAM")
raw += big.serialize()
ga = hf.GoAwayFrame(0)
ga.last_stream_id = 1
raw += ga.serialize()
h2seed("raw-frames", c, raw=raw, seed=11)
print("seeds written")
