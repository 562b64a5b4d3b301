"""The `tessera` operator CLI (build/bin/tessera) against the real gateway
(the `gw` fixture): every command in human and --json form, the error
messages operators see, and the exit codes (0 ok, 1 RPC error, 2 usage)."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

import gwtest
from gwtest import TD, pb

BIN = os.environ.get("TSR_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
TESSERA = os.path.join(BIN, "tessera")


def run(gw, *args, user=None, env=None, stdin=None, addr=None, pki=None):
    cmd = [TESSERA, "--addr", addr or f"127.0.0.1:{gw.port}", "--pki", pki or gw.pki]
    if user:
        cmd += ["--user", user]
    e = dict(os.environ)
    for k in ("TESSERA_ADDR", "TESSERA_PKI", "TESSERA_USER"):
        e.pop(k, None)
    e.update(env or {})
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, env=e, input=stdin,
                       timeout=60)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r


def ok_json(gw, *args, **kw):
    r = run(gw, "--json", *args, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def uniq(prefix="cli"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(gw):
    return gw.stub(gw.user("admin"))


# ---------------------------------------------------------------------------
# sandboxes


def test_sandbox_create_list_get_delete(gw, tmp_path):
    name = uniq()
    policy = tmp_path / "policy.yaml"
    policy.write_text(gwtest.POLICY)
    r = run(gw, "sandbox", "create", name, "--policy", str(policy), "--secret",
            "EXAMPLE_API_KEY=s3cr=t", "--secret", "FROM_SHELL", env={"FROM_SHELL": "shell-value"})
    assert r.returncode == 0, r.stderr
    assert f"Created sandbox {name}" in r.stdout
    got = admin(gw).GetSandbox(pb.GetSandboxRequest(name=name), timeout=10).sandbox
    assert got.id in r.stdout and got.spiffe_id == f"spiffe://{TD}/sandbox/{got.id}"
    # The secrets went to the gateway (encrypted there) and nowhere else.
    envr = admin(gw).GetSandboxProviderEnvironment(
        pb.GetSandboxProviderEnvironmentRequest(sandbox_id=got.id), timeout=10)
    assert dict(envr.environment) == {"EXAMPLE_API_KEY": "s3cr=t", "FROM_SHELL": "shell-value"}
    assert "s3cr=t" not in r.stdout + r.stderr and "shell-value" not in r.stdout + r.stderr
    cfg = admin(gw).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=got.id), timeout=10)
    assert cfg.policy == gwtest.POLICY

    # list: human table and JSON
    r = run(gw, "sandbox", "list")
    assert r.returncode == 0 and name in r.stdout and got.id in r.stdout
    assert r.stdout.splitlines()[0].split()[:3] == ["ID", "NAME", "STATE"]
    doc = ok_json(gw, "sandbox", "list")
    mine = [s for s in doc["sandboxes"] if s["name"] == name]
    assert len(mine) == 1 and mine[0]["id"] == got.id and mine[0]["spiffe_id"] == got.spiffe_id
    assert isinstance(mine[0]["created_at"], int) and mine[0]["policy_version"] >= 1

    # get by name and by id
    assert ok_json(gw, "sandbox", "get", name)["sandbox"]["id"] == got.id
    assert ok_json(gw, "sandbox", "get", got.id)["sandbox"]["name"] == name
    r = run(gw, "sandbox", "get", got.id)
    assert r.returncode == 0 and f"spiffe id       {got.spiffe_id}" in r.stdout

    # delete by id (JSON), then it is gone
    doc = ok_json(gw, "sandbox", "delete", got.id)
    assert doc["sandbox"]["id"] == got.id and doc["revoked_certificates"] >= 1
    r = run(gw, "sandbox", "get", name)
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


def test_sandbox_create_with_a_workload(gw):
    """--image, --env and -- COMMAND reach the gateway as they were typed:
    the command as an argv (never one string), the env as plain variables
    (GetSandboxConfig gives them to the supervisor), the secrets apart. get
    shows what it runs; the process driver hands the supervisor its flags
    and the workload after -- (the test double prints them)."""
    name = uniq()
    r = run(gw, "sandbox", "create", name, "--env", "GREETING=hello world", "--env", "EMPTY=",
            "--secret", "EXAMPLE_API_KEY=k", "--", "/bin/echo", "a b", "it's", "--not-a-flag",
            "")
    assert r.returncode == 0, r.stderr
    doc = ok_json(gw, "sandbox", "get", name)["sandbox"]
    assert doc["command"] == ["/bin/echo", "a b", "it's", "--not-a-flag", ""]
    assert doc["env"] == {"EMPTY": "", "GREETING": "hello world"}
    assert doc["image"] == "" and doc["exited"] is False and doc["state_detail"] == ""
    r = run(gw, "sandbox", "get", name)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "command         /bin/echo 'a b' 'it'\\''s' --not-a-flag ''\n" in out, out
    assert "env             EMPTY=\n                GREETING=hello world\n" in out, out
    assert "image           (the driver's default)\n" in out, out
    sid = doc["id"]
    cfg = admin(gw).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10)
    assert dict(cfg.env) == {"EMPTY": "", "GREETING": "hello world"}
    envr = admin(gw).GetSandboxProviderEnvironment(
        pb.GetSandboxProviderEnvironmentRequest(sandbox_id=sid), timeout=10)
    assert dict(envr.environment) == {"EXAMPLE_API_KEY": "k"}
    log = os.path.join(gw.data_dir, "sandboxes", sid, "supervisor.log")
    text = gwtest.wait_for("the supervisor's report", lambda: (
        lambda t: t if "ready\n" in t else None)(open(log).read()), timeout=10)
    assert "driver=process\nenforced=none\n" in text, text
    assert "command[0]=/bin/echo\ncommand[1]=a b\ncommand[2]=it's\n" \
           "command[3]=--not-a-flag\ncommand[4]=\n" in text, text
    assert "GREETING" not in text  # the env is not the supervisor's
    # Not a credential in plain sight; not the same name twice; not NAME
    # alone (that was the secret-from-the-shell form).
    for args, why in ((["--env", "GITHUB_TOKEN=x"], "--env GITHUB_TOKEN: the name looks like a "
                       "credential; pass it with --secret"),
                      (["--env", "A=1", "--secret", "A=2"], "A is given twice"),
                      (["--env", "HOME"], "--env HOME: give NAME=VALUE (a secret from this "
                       "shell's environment: --secret HOME)"),
                      (["--"], "nothing after --"),
                      (["x"], "unexpected argument 'x' (put the workload after --)")):
        r = run(gw, "sandbox", "create", uniq(), *args)
        assert r.returncode == 2 and why in r.stderr, (args, r.stderr)
    r = run(gw, "sandbox", "create", "--", "x")
    assert r.returncode == 2 and "missing NAME (it comes before --)" in r.stderr, r.stderr
    # The gateway's checks, with the field named.
    r = run(gw, "sandbox", "create", uniq(), "--image", "Bad:Image")
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and \
        "image \"Bad:Image\" is not an image reference" in r.stderr, r.stderr
    r = run(gw, "sandbox", "create", uniq(), "--image", "debian:12")
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and \
        "image: the process driver runs no images" in r.stderr, r.stderr


def test_sandbox_create_defaults_and_json(gw):
    name = uniq()
    doc = ok_json(gw, "sandbox", "create", name)
    assert doc["sandbox"]["name"] == name and len(doc["certificate_serial"]) >= 16
    cfg = admin(gw).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=doc["sandbox"]["id"]), timeout=10)
    assert cfg.policy == "version: 1\n"
    # The policy from stdin; a duplicate name.
    r = run(gw, "sandbox", "create", uniq(), "--policy", "-", stdin=gwtest.POLICY)
    assert r.returncode == 0, r.stderr
    r = run(gw, "sandbox", "create", name)
    assert r.returncode == 1 and "ALREADY_EXISTS" in r.stderr and name in r.stderr
    r = run(gw, "--json", "sandbox", "create", name)
    assert r.returncode == 1
    err = json.loads(r.stdout)["error"]
    assert err["status"] == "ALREADY_EXISTS" and err["code"] == 6 and name in err["message"]
    # A bad policy is the server's INVALID_ARGUMENT, with its reason.
    r = run(gw, "sandbox", "create", uniq(), "--policy", "-", stdin="version: 99\n")
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr


def test_sandbox_missing(gw):
    r = run(gw, "sandbox", "get", "no-such-sandbox")
    assert r.returncode == 1
    assert "NOT_FOUND" in r.stderr and "no-such-sandbox" in r.stderr
    assert "tessera sandbox list" in r.stderr
    r = run(gw, "sandbox", "delete", str(uuid.uuid4()))
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


# ---------------------------------------------------------------------------
# logs


def push(gw, sid, texts, start_ts=1000):
    me = gw.stub(gw.sandbox_identity(sid))
    batch = pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[
        pb.LogLine(timestamp_ms=start_ts + i, stream="stdout", text=t)
        for i, t in enumerate(texts)])
    assert me.PushSandboxLogs(iter([batch]), timeout=10).accepted_lines == len(texts)


def test_logs(gw):
    sb = gw.create_sandbox().sandbox
    texts = [b"hello world", b"quote \" backslash \\ tab\t", b"\x1b[31mred\x1b[0m bell\x07",
             b"bad utf8 \xff\xfe", "caf\u00e9 \u2603".encode(), b"trailing newline\n"]
    push(gw, sb.id, texts, start_ts=1700000000000)

    r = run(gw, "logs", sb.name)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == len(texts)
    assert out[0].endswith("hello world") and "2023-11-14T22:13:20.000Z" in out[0]
    # Terminal escapes never reach the terminal raw.
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\\x1b[31mred" in out[2] and "\\xff\\xfe" in out[3]
    assert "caf\u00e9 \u2603" in out[4]

    doc = ok_json(gw, "logs", sb.id)
    assert doc["sandbox_id"] == sb.id
    lines = doc["lines"]
    assert [bytes.fromhex(l["text_hex"]) for l in lines] == texts
    assert [l["text"] for l in lines[:3]] == [t.decode() for t in texts[:3]]
    assert lines[3]["text"] == "bad utf8 \ufffd\ufffd"
    assert lines[0]["stream"] == "stdout" and lines[0]["timestamp_ms"] == 1700000000000
    seqs = [l["seq"] for l in lines]
    assert seqs == sorted(seqs) and doc["next_since"] == seqs[-1]

    # --since and --limit
    doc = ok_json(gw, "logs", sb.name, "--since", str(seqs[1]), "--limit", "2")
    assert [l["seq"] for l in doc["lines"]] == seqs[2:4]
    assert ok_json(gw, "logs", sb.name, "--since", str(seqs[-1]))["lines"] == []


def test_logs_paging_over_server_page(gw):
    sb = gw.create_sandbox().sandbox
    for b in range(3):
        push(gw, sb.id, [b"line %d" % i for i in range(b * 500, b * 500 + 500)])
    doc = ok_json(gw, "logs", sb.name)
    assert [l["text"] for l in doc["lines"]] == ["line %d" % i for i in range(1500)]
    assert len(ok_json(gw, "logs", sb.name, "--limit", "1200")["lines"]) == 1200


def test_logs_follow(gw):
    sb = gw.create_sandbox().sandbox
    push(gw, sb.id, [b"before"])
    p = subprocess.Popen([TESSERA, "--addr", f"127.0.0.1:{gw.port}", "--pki", gw.pki, "--json",
                          "logs", sb.name, "--follow"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        assert first["line"]["text"] == "before"
        push(gw, sb.id, [b"after-1", b"after-2"])
        got = [json.loads(p.stdout.readline())["line"]["text"] for _ in range(2)]
        assert got == ["after-1", "after-2"]
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
    err = p.stderr.read()
    assert rc == 0, err
    assert "Sanitizer" not in err


# ---------------------------------------------------------------------------
# certificates, bundle, health


def test_cert_list_and_revoke(gw):
    made = gw.create_sandbox()
    sb = made.sandbox
    doc = ok_json(gw, "cert", "list", sb.name)
    assert doc["sandbox_id"] == sb.id
    certs = doc["certificates"]
    assert [c["serial"] for c in certs] == [made.certificate_serial]
    assert certs[0]["state"] == "valid" and certs[0]["spiffe_id"] == sb.spiffe_id
    r = run(gw, "cert", "list", sb.id)
    assert r.returncode == 0 and made.certificate_serial in r.stdout and "valid" in r.stdout

    # An operator may not revoke; the hint says who may.
    r = run(gw, "cert", "revoke", made.certificate_serial, user="alice")
    assert r.returncode == 1
    assert "PERMISSION_DENIED: role does not allow this method" in r.stderr
    assert "admin certificate (--user)" in r.stderr

    # Uppercase with colons, as openssl prints serials, is accepted.
    pretty = ":".join(made.certificate_serial[i:i + 2].upper()
                      for i in range(0, len(made.certificate_serial), 2))
    doc = ok_json(gw, "cert", "revoke", pretty, "--reason", "key \"compromise\"")
    assert doc["certificate"]["serial"] == made.certificate_serial
    assert doc["certificate"]["state"] == "revoked"
    assert doc["certificate"]["revocation_reason"] == 'key "compromise"'
    r = run(gw, "cert", "list", sb.name)
    assert "revoked" in r.stdout and 'key "compromise"' in r.stdout
    r = run(gw, "cert", "revoke", "abcdef0123")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


def test_bundle(gw):
    r = run(gw, "bundle")
    assert r.returncode == 0 and r.stdout.encode() == gw.bundle
    doc = ok_json(gw, "bundle")
    assert doc["trust_domain"] == TD and doc["bundle_pem"].encode() == gw.bundle
    assert doc["crl_pem"].startswith("-----BEGIN X509 CRL-----")


def test_bundle_crl_file(gw, tmp_path):
    from cryptography import x509
    crl_file = tmp_path / "crl.pem"
    r = run(gw, "bundle", "--crl", str(crl_file))
    assert r.returncode == 0 and r.stdout.encode() == gw.bundle, r.stderr
    assert os.stat(crl_file).st_mode & 0o777 == 0o644
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    assert crl.issuer == gw.issuing_cert.subject
    assert crl.is_signature_valid(gw.issuing_cert.public_key())
    before = {c.serial_number for c in crl}
    # After a revocation the file written next lists it.
    sb = gw.create_sandbox()
    serial = int(sb.certificate_serial, 16)
    assert serial not in before
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=sb.certificate_serial), timeout=10)
    assert run(gw, "bundle", "--crl", str(crl_file)).returncode == 0
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    assert {c.serial_number for c in crl} == before | {serial}
    r = run(gw, "bundle", "--crl", str(tmp_path / "missing" / "crl.pem"))
    assert r.returncode == 1 and "cannot write" in r.stderr


def test_health_needs_no_certificate(gw):
    r = run(gw, "health", user="nobody-has-this-cert")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("SERVING") and f"spiffe://{TD}/gateway" in r.stdout
    doc = ok_json(gw, "health")
    assert doc == {"status": "SERVING", "gateway": f"spiffe://{TD}/gateway"}


def test_environment_defaults(gw):
    env = {"TESSERA_ADDR": f"localhost:{gw.port}", "TESSERA_PKI": gw.pki, "TESSERA_USER": "bob"}
    r = subprocess.run([TESSERA, "--json", "sandbox", "list"], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "sandboxes" in json.loads(r.stdout)
    r = subprocess.run([TESSERA, "sandbox", "create", uniq()], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=30)
    assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr  # bob is a viewer


# ---------------------------------------------------------------------------
# errors operators see


def test_viewer_gets_permission_denied_with_hint(gw):
    r = run(gw, "sandbox", "create", uniq(), user="bob")
    assert r.returncode == 1
    assert r.stderr.strip() == ("tessera: PERMISSION_DENIED: role does not allow this method — "
                                "use an admin or operator certificate (--user)")
    r = run(gw, "--json", "sandbox", "delete", uniq(), user="bob")
    assert r.returncode == 1
    err = json.loads(r.stdout)["error"]
    assert err["status"] == "PERMISSION_DENIED" and err["code"] == 7
    assert err["method"] == "DeleteSandbox" and "--user" in err["hint"]
    # A viewer may read.
    assert "sandboxes" in ok_json(gw, "sandbox", "list", user="bob")
    # A user without any role.
    r = run(gw, "sandbox", "list", user="mallory")
    assert r.returncode == 1 and "no role" in r.stderr and "mallory" in r.stderr


def test_unreachable_gateway(gw):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run(gw, "sandbox", "list", addr=f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert (f"UNAVAILABLE: cannot reach the gateway at 127.0.0.1:{port} — is it running and "
            "listening there? (--addr HOST:PORT)") in r.stderr
    assert "refused" in r.stderr.lower()
    r = run(gw, "--json", "health", addr=f"127.0.0.1:{port}")
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == 14


def test_gateway_identity_checked(gw):
    r = run(gw, "--trust-domain", "example.org", "sandbox", "list")
    assert r.returncode == 1
    assert "UNAUTHENTICATED" in r.stderr and "server identity refused" in r.stderr
    assert "--trust-domain" in r.stderr


def test_missing_pki(gw, tmp_path):
    r = run(gw, "sandbox", "list", pki=str(tmp_path))
    assert r.returncode == 1
    assert (f"cannot read the trust bundle {tmp_path}/bundle.pem: No such file or directory — "
            "pass --pki DIR (the directory of certgen init) or --bundle FILE") in r.stderr
    assert "make run" not in r.stderr


def test_missing_user_certificate(gw):
    """A user without a certificate is told the certgen command that makes one."""
    r = run(gw, "sandbox", "list", user="carol")
    assert r.returncode == 1
    assert (f"cannot read the certificate {gw.pki}/users/carol.pem: No such file or directory — "
            f"no certificate for user carol in {gw.pki}: issue one with `certgen issue-user "
            f"carol --pki {gw.pki}` (and give carol a role in the gateway's users:), or pass "
            "--user NAME or --cert FILE --key FILE") in r.stderr, r.stderr
    assert "make run" not in r.stderr


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["sandbox"],
    ["sandbox", "explode"],
    ["sandbox", "get"],
    ["sandbox", "get", "a", "b"],
    ["sandbox", "list", "extra"],
    ["sandbox", "create"],
    ["sandbox", "create", "x", "--env", "=v"],
    ["sandbox", "create", "x", "--env", "1BAD=v"],
    ["sandbox", "create", "x", "--env", "PLAIN"],
    ["sandbox", "create", "x", "--env", "A=1", "--env", "A=2"],
    ["sandbox", "create", "x", "--env", "DB_PASSWORD=x"],
    ["sandbox", "create", "x", "--secret", "=v"],
    ["sandbox", "create", "x", "--secret", "NOT_IN_ENV_XYZ"],
    ["sandbox", "create", "x", "--secret", "A=1", "--secret", "A=2"],
    ["sandbox", "create", "x", "--image"],
    ["sandbox", "create", "x", "--"],
    ["sandbox", "create", "--", "x"],
    ["sandbox", "create", "x", "--policy"],
    ["sandbox", "create", "x", "--bogus"],
    ["logs"],
    ["logs", "x", "--limit", "0"],
    ["logs", "x", "--since", "-1"],
    ["logs", "x", "--follow=yes"],
    ["cert"],
    ["cert", "list"],
    ["cert", "revoke"],
    ["cert", "revoke", "xyz"],
    ["cert", "revoke", "a" * 41],
    ["bundle", "extra"],
    ["bundle", "--crl"],
    ["bundle", "--crl", ""],
    ["health", "-x"],
    ["--addr", "bad host:1", "health"],
    ["--addr", "127.0.0.1:99999", "health"],
    ["--user", "../etc", "health"],
    ["--timeout", "soon", "health"],
    ["--cert", "only-cert.pem", "health"],
    ["--json"],
])
def test_usage_errors_exit_2(gw, args):
    r = run(gw, *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr and r.stdout == ""


@pytest.mark.parametrize("args", [
    ["--help"], ["help"], ["sandbox", "--help"], ["sandbox", "create", "--help"],
    ["sandbox", "list", "--help"], ["sandbox", "get", "-h"], ["sandbox", "delete", "--help"],
    ["logs", "--help"], ["cert", "--help"], ["cert", "list", "--help"],
    ["cert", "revoke", "--help"], ["bundle", "--help"], ["health", "--help"],
])
def test_help_everywhere(gw, args):
    r = run(gw, *args, addr="127.0.0.1:1")  # no gateway needed
    assert r.returncode == 0 and r.stdout.startswith("usage: tessera"), (args, r.stderr)
