"""The docker driver against live engines: rootful podman's Docker API
(podman 4.3, Engine API 1.41) and Debian's own Docker engine (docker.io
20.10, API 1.41), each started by tests/integration/engines.py in a temp dir
and removed with everything it made. Every case runs on both engines, one
engine at a time; the image is built once per engine by
scripts/sandbox_image.py (what `make sandbox-image` runs).

Through the driver alone (drv_run): the version negotiation, what the
engine was asked to create (user, capabilities, no-new-privileges, labels,
the identity volume) and that no key byte is in the container's inspect
output, its image or a commit of it; a graceful stop; a destroy that leaves
no container and no volume.

Through the real gateway and the `tessera` CLI: create -> running -> the
supervisor validated its identity and reported its policy (saying what the
driver enforces) -> a hostile workload inside cannot read the key, the
supervisor's /proc entries or ptrace it -> rotation by CSR with a new key ->
a cross-sandbox call from inside the container is denied -> delete revokes
and removes the container, its volume and identity -> a gateway restart
re-attaches without minting. Then what a sandbox runs (docs/drivers.md, "The
workload"): `sh -c 'id; echo hello; sleep 600'` as the workload uid with the
env it was given and nothing of the supervisor's, a command exiting 3 shown
`stopped` with exit 3 within 5 s, an image the engine does not have, and a
supervisor that refuses to start (nothing left behind)."""
import json
import os
import re
import shutil
import sqlite3
import stat
import struct
import subprocess
import time
import urllib.parse
import uuid

import grpc
import pytest

import drvtest
import engines
import gwtest
from gwtest import TD, code_of, pb, wait_for

S = grpc.StatusCode
ROOT = drvtest.ROOT
BUILD = drvtest.BUILD
BIN = os.environ.get("TSR_BIN", os.path.join(BUILD, "bin"))
TESSERA = os.path.join(BIN, "tessera")
SUPERVISOR = os.path.join(BIN, "tessera-supervisor")
IMAGE_SCRIPT = os.path.join(ROOT, "scripts", "sandbox_image.py")
PROBE_IMAGE = "tessera-sandbox-probe:test"
ROTATE = 10  # seconds: each 5 min certificate is rotated this long after its issue
ENFORCEMENT = ("enforced by the docker driver: none; recorded only, not enforced: "
               "filesystem, network, process")


def build_image(engine, *extra):
    r = subprocess.run(["/usr/bin/python3", IMAGE_SCRIPT, "--supervisor", SUPERVISOR,
                        "--socket", engine.sock] + list(extra),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module", params=["podman", "dockerd"])
def engine(request):
    e = {"podman": engines.Podman, "dockerd": engines.Dockerd}[request.param]()
    try:
        e.start()
    except engines.EngineUnavailable as ex:
        pytest.skip("%s cannot run here: %s" % (request.param, ex))
    try:
        assert "loaded tessera-sandbox:latest" in build_image(e)
        build_image(e, "--tag", PROBE_IMAGE,
                    "--add", os.path.join(BUILD, "tests", "bin", "sandbox_probe") +
                    "=/usr/local/bin/sandbox-probe",
                    "--add", os.path.join(BUILD, "tests", "bin", "cl_probe") +
                    "=/usr/local/bin/cl-probe")
        yield e
    finally:
        e.stop()


def exec_in(engine, container, cmd, user):
    """Run cmd in the container as user; (exit code, stdout, stderr)."""
    ex = engine.json("POST", "/containers/%s/exec" % container,
                     {"Cmd": cmd, "User": user, "AttachStdout": True, "AttachStderr": True},
                     want=201)
    status, raw = engine.api("POST", "/exec/%s/start" % ex["Id"], {"Detach": False, "Tty": False})
    assert status == 200, (status, raw[:300])
    out = {1: b"", 2: b""}
    while len(raw) >= 8:  # the engine's multiplexed stream: 8-byte frame headers
        kind, size = raw[0], struct.unpack(">I", raw[4:8])[0]
        out[kind] = out.get(kind, b"") + raw[8:8 + size]
        raw = raw[8 + size:]
    code = engine.json("GET", "/exec/%s/json" % ex["Id"])["ExitCode"]
    return code, out[1].decode(errors="replace"), out[2].decode(errors="replace")


def no_key_bytes(blob, keys, where):
    """No line of the keys' base64 in blob (not the PEM header: libcrypto in
    every image holds the text "PRIVATE KEY")."""
    for key in keys:
        frags = [ln for ln in key.split(b"\n") if len(ln) >= 16 and not ln.startswith(b"-----")]
        assert len(frags) >= 3, key
        for f in frags:
            assert f not in blob, "key material in %s" % where


def committed_image_bytes(engine, container):
    """`docker commit` of the container, exported as `docker save` would."""
    repo = "tsr-commit-" + uuid.uuid4().hex[:8]
    img = engine.json("POST", "/commit?container=%s&repo=%s&tag=t" % (container, repo), {},
                      want=201)
    status, data = engine.api("GET", "/images/%s:t/get" % repo)
    assert status == 200, status
    engine.json("DELETE", "/images/%s:t?force=true" % repo)
    return img["Id"], data


def exit_codes(engine, name, since):
    """Exit codes of the container's `die` events since `since` (Unix s)."""
    q = urllib.parse.urlencode({"since": str(int(since)), "until": str(int(time.time()) + 1),
                                "filters": json.dumps({"container": [name]})})
    status, body = engine.api("GET", "/events?" + q)
    assert status == 200, status
    events = [json.loads(ln) for ln in body.decode().splitlines() if ln.strip()]
    return [ev["Actor"]["Attributes"]["exitCode"] for ev in events
            if (ev.get("Action") or ev.get("status")) == "die" and ev["timeNano"] >= since * 1e9]


def volume_dir(engine, info):
    """The host directory of the container's /run/tessera volume."""
    mounts = [m for m in info["Mounts"] if m["Destination"] == "/run/tessera"]
    assert len(mounts) == 1 and mounts[0]["Type"] == "volume", info["Mounts"]
    return mounts[0]["Name"], mounts[0]["Source"]


# ---- the driver alone ----------------------------------------------------------------------

def drv(engine, ops, ident=None, **opts):
    options = [("socket", engine.sock), ("network", "host"), ("stop_timeout_s", "10")]
    options += list(opts.items())
    res = drvtest.run("docker", ops, options=options, identity=ident, timeout=120)
    assert drvtest.sanitizer_clean(res), res
    return res


def test_version_negotiated(engine):
    sid = drvtest.new_id()
    res = drv(engine, ["status:" + sid])
    assert res.rc == 0 and res.lines == ["status %s: UNKNOWN" % sid], res
    v = engine.version
    assert v["ApiVersion"] == "1.41", v
    assert ("docker: Docker engine at %s: version %s, Engine API 1.41; using 1.41"
            % (engine.sock, v["Version"])) in res.err


def test_image_is_deterministic(engine, tmp_path):
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    for out in (a, b):
        subprocess.run(["/usr/bin/python3", IMAGE_SCRIPT, "--supervisor", SUPERVISOR,
                        "--out", str(out)], check=True, capture_output=True, timeout=300)
    assert a.read_bytes() == b.read_bytes()
    assert "tessera-sandbox:latest is up to date" in build_image(engine)
    base = engine.json("GET", "/images/tessera-sandbox:latest/json")
    probe = engine.json("GET", "/images/%s/json" % PROBE_IMAGE)
    assert base["Config"]["User"] == "0:0"
    assert base["Config"]["Entrypoint"] == ["/usr/local/bin/tessera-supervisor"]
    # The tests' image is the shipped one plus a layer.
    assert probe["RootFS"]["Layers"][:1] == base["RootFS"]["Layers"]
    assert len(probe["RootFS"]["Layers"]) == 2


def test_lifecycle_through_the_driver(engine, tmp_path):
    sid = drvtest.new_id()
    name = "tessera-" + sid
    ident = drvtest.SandboxIdentity(sid, str(tmp_path / "identity"))
    res = drv(engine, ["create:" + sid, "status:" + sid], ident)
    assert res.rc == 0 and res.lines == ["create %s: ok" % sid, "status %s: CREATED" % sid], res

    info = engine.inspect(name)
    cfg, hc = info["Config"], info["HostConfig"]
    assert cfg["User"] == "0:0"
    assert cfg["Cmd"] == ["--identity-dir", "/run/tessera/identity", "--gateway",
                          "127.0.0.1:8443", "--trust-domain", TD, "--sandbox-id", sid,
                          "--driver", "docker", "--enforced", "none"]
    assert cfg["Labels"]["tessera.sandbox-id"] == sid
    assert cfg["Labels"]["tessera.spiffe-id"] == "spiffe://%s/sandbox/%s" % (TD, sid)
    # (CapAdd/CapDrop as inspect shows them differ between engines: podman
    # reports them against its own default set. The supervisor's real
    # capabilities are checked below, once it runs.)
    assert hc["NetworkMode"] == "host"

    # The identity is in the volume: 0700 / 0600, owned by the supervisor's uid 0.
    vol, src = volume_dir(engine, info)
    idir = os.path.join(src, "identity")
    st = os.lstat(idir)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    assert sorted(os.listdir(idir)) == ["bundle.pem", "cert.pem", "key.pem"]
    for f, want in (("cert.pem", ident.cert), ("key.pem", ident.key),
                    ("bundle.pem", ident.bundle)):
        st = os.lstat(os.path.join(idir, f))
        assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (0, 0)
        assert open(os.path.join(idir, f), "rb").read() == want

    # No key byte in the engine's inspect output, the image, or a commit.
    no_key_bytes(json.dumps(info).encode(), [ident.key], "inspect")
    _, image = committed_image_bytes(engine, name)
    no_key_bytes(image, [ident.key], "a commit of the container")
    status, image = engine.api("GET", "/images/tessera-sandbox:latest/get")
    assert status == 200
    no_key_bytes(image, [ident.key], "the image")

    # Start: the supervisor checks its identity and dials a gateway that is
    # not there; a graceful stop reaches it (SIGTERM, handled: exit 143, not
    # the 137 of a SIGKILL after the grace).
    res = drv(engine, ["start:" + sid, "status:" + sid, "start:" + sid], ident)
    assert res.lines == ["start %s: ok" % sid, "status %s: RUNNING" % sid,
                         "start %s: ok" % sid], res
    assert "already running: %s" % name in res.err
    # The supervisor runs as uid 0 with CAP_KILL, CAP_SETGID and CAP_SETUID
    # only (0xe0), in every set, and no_new_privs.
    with open("/proc/%d/status" % engine.inspect(name)["State"]["Pid"]) as f:
        status = dict(ln.split(":\t", 1) for ln in f.read().splitlines() if ":\t" in ln)
    assert status["Uid"].split() == ["0"] * 4 and status["Gid"].split() == ["0"] * 4, status
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert status[k] == "00000000000000e0", (k, status[k])
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    deadline = time.monotonic() + 30
    while b"retrying in" not in engine.api("GET", "/containers/%s/logs?stderr=true" % name)[1]:
        assert time.monotonic() < deadline, "the supervisor never tried the gateway"
        time.sleep(0.2)
    t0 = time.monotonic()
    res = drv(engine, ["stop:" + sid, "status:" + sid, "stop:" + sid], ident)
    assert res.lines == ["stop %s: ok" % sid, "status %s: STOPPED" % sid, "stop %s: ok" % sid]
    assert time.monotonic() - t0 < 8, "stop waited for the grace: SIGTERM was not handled"
    assert engine.inspect(name)["State"]["ExitCode"] == 143
    logs = engine.api("GET", "/containers/%s/logs?stderr=true&stdout=true" % name)[1]
    assert b"stopped by signal 15 during start-up" in logs
    assert b"identity spiffe://%s/sandbox/%s" % (TD.encode(), sid.encode()) in logs
    no_key_bytes(logs, [ident.key], "the container's log")

    # Destroy of a running sandbox: a graceful stop first, then the
    # container and its volume (the identity) are gone.
    res = drv(engine, ["start:" + sid, "status:" + sid], ident)
    assert res.lines == ["start %s: ok" % sid, "status %s: RUNNING" % sid], res
    t0 = time.time()
    res = drv(engine, ["destroy:" + sid, "status:" + sid, "destroy:" + sid], ident)
    assert res.lines == ["destroy %s: ok" % sid, "status %s: UNKNOWN" % sid,
                         "destroy %s: ok" % sid], res
    assert time.time() - t0 < 8
    assert exit_codes(engine, name, t0) == ["143"]
    assert engine.inspect(name) is None
    assert vol not in [v["Name"] for v in engine.volumes()]
    assert not os.path.exists(src)


# ---- through the gateway and the CLI -------------------------------------------------------

def cli(g, *args):
    r = subprocess.run([TESSERA, "--addr", "127.0.0.1:%d" % g.port, "--pki", g.pki, "--json"] +
                       list(args), capture_output=True, text=True, timeout=120)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert r.returncode == 0, (args, r.stderr)
    return json.loads(r.stdout)


def log_texts(g, sid, stream=None):
    return [ln["text"] for ln in cli(g, "logs", sid, "--limit", "10000")["lines"]
            if stream is None or ln["stream"] == stream]


PROBE_LINES = [
    "probe: opendir /run/tessera/identity: EACCES",
    "probe: open /run/tessera/identity/key.pem: EACCES",
    "probe: open /run/tessera/identity/cert.pem: EACCES",
    "probe: open /proc/1/environ: EACCES",
    "probe: open /proc/1/mem: EACCES",
    "probe: open /proc/1/maps: EACCES",
    "probe: open /proc/1/root/run/tessera/identity/key.pem: EACCES",
    "probe: opendir /proc/1/fd: EACCES",
    "probe: ptrace attach <supervisor>: EPERM",
    "probe: ptrace seize <supervisor>: EPERM",
    "probe: process_vm_readv <supervisor>: EPERM",
    "probe: kill -0 <supervisor>: EPERM",
    "probe: setuid 0: EPERM",
    "probe: setgid 0: EPERM",
    "probe: done",
]


def test_sandbox_through_the_gateway(engine, tmp_path):
    g = gwtest.Gateway(
        sandbox_ttl=gwtest.SHORT_TTL, real_supervisor=True, renew_limit=1000,
        driver_options={"docker": {
            "socket": engine.sock, "network": "host", "image": PROBE_IMAGE, "stop_timeout_s": "5",
            "supervisor_args": "--min-rotate-seconds 1 " + gwtest.renew_before(ROTATE) +
                               " --poll-seconds 2 -- /usr/local/bin/sandbox-probe --sleep"}})
    try:
        run_gateway_case(engine, g, tmp_path)
        run_workload_case(engine, g)
    finally:
        g.stop()
        for c in engine.containers():
            engine.api("DELETE", "/containers/%s?force=true&v=true" % c["Id"])
        shutil.rmtree(g.dir, ignore_errors=True)


def workload_env(engine, container):
    """The environment the supervisor gave its workload: the first process
    the supervisor (the container's first) started, read on the host."""
    sup = engine.inspect(container)["State"]["Pid"]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != sup:
                continue
            with open("/proc/%s/environ" % entry, "rb") as f:
                raw = f.read()
        except (OSError, ValueError, IndexError):
            continue
        return dict(kv.decode().split("=", 1) for kv in raw.split(b"\0") if b"=" in kv)
    raise AssertionError("no workload under the supervisor (pid %d)" % sup)


def sandbox_json(g, name):
    return cli(g, "sandbox", "get", name)["sandbox"]


def run_workload_case(engine, g):
    """A sandbox's own image and command through the gateway and the CLI."""
    t_start = time.monotonic()
    # `sh -c 'id; echo hello; sleep 600'`, as the workload uid, with its env:
    # the env given, the credential from provider_env, the image's PATH, HOME
    # set to the workspace; nothing else, and the given env is not the
    # supervisor's own (nor in the container's config).
    doc = cli(g, "sandbox", "create", "dk-cmd", "--driver", "docker", "--env",
              "GREETING=hello world", "--secret", "EXAMPLE_API_KEY=k", "--",
              "sh", "-c", "id; echo hello; sleep 600")
    sid = doc["sandbox"]["id"]
    name = "tessera-" + sid
    assert doc["sandbox"]["state"] == "running", doc
    out = wait_for("the workload's output", lambda: (
        lambda ls: ls if "hello" in ls else None)(log_texts(g, sid, "stdout")), timeout=60)
    assert out[0] == "uid=65534(nobody) gid=65534(nogroup)", out  # no supplementary group
    assert out[1:] == ["hello"], out
    env = workload_env(engine, name)
    # (sh runs its last command with exec: PWD and SHLVL are the shell's own.)
    # Not the engine's HOSTNAME, TERM or container=podman: those are the
    # supervisor's environment, and none of it but PATH reaches the workload.
    assert sorted(set(env) - {"PWD", "SHLVL"}) == \
        ["EXAMPLE_API_KEY", "GREETING", "HOME", "PATH"], env
    assert (env["GREETING"], env["EXAMPLE_API_KEY"], env["HOME"]) == \
        ("hello world", "k", "/workspace"), env
    info = engine.inspect(name)
    sup_env = open("/proc/%d/environ" % info["State"]["Pid"], "rb").read()
    assert b"GREETING" not in sup_env and b"EXAMPLE_API_KEY" not in sup_env
    assert not [e for e in info["Config"]["Env"] or [] if "GREETING" in e or "EXAMPLE" in e]
    # The command is the supervisor's -- COMMAND, one Cmd entry per argument,
    # replacing supervisor_args' default workload.
    assert info["Config"]["Cmd"][-5:] == ["2", "--", "sh", "-c", "id; echo hello; sleep 600"]
    assert info["Config"]["Image"] in (PROBE_IMAGE, "localhost/" + PROBE_IMAGE)  # podman's
    got = sandbox_json(g, "dk-cmd")
    assert (got["image"], got["command"], got["env"]) == (
        "", ["sh", "-c", "id; echo hello; sleep 600"], {"GREETING": "hello world"}), got

    # Its own image, and a command that exits 3: stopped, exit 3, the
    # supervisor's last lines, within 5 s of its end.
    doc = cli(g, "sandbox", "create", "dk-exit", "--driver", "docker", "--image",
              "tessera-sandbox:latest", "--", "sh", "-c", "sleep 1; echo bye; exit 3")
    t0 = time.monotonic()
    eid = doc["sandbox"]["id"]
    assert engine.inspect("tessera-" + eid)["Config"]["Image"] in (
        "tessera-sandbox:latest", "localhost/tessera-sandbox:latest")
    got = wait_for("stopped", lambda: (lambda s: s if s["state"] == "stopped" else None)(
        sandbox_json(g, "dk-exit")), timeout=30, every=0.2)
    assert time.monotonic() - t0 < 1 + 5
    assert got["exited"] is True and got["exit_code"] == 3, got
    assert got["state_detail"].split("\n")[-1].endswith(
        " tessera-supervisor: exiting with code 3"), got
    assert "bye" in log_texts(g, eid, "stdout")

    # An image the engine does not have: what to do about it, nothing left.
    before = [c["Id"] for c in engine.containers()]
    r = subprocess.run([TESSERA, "--addr", "127.0.0.1:%d" % g.port, "--pki", g.pki, "sandbox",
                        "create", "dk-noimage", "--driver", "docker", "--image",
                        "tessera-nope:1", "--", "true"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r
    assert re.search(r"^tessera: FAILED_PRECONDITION: driver docker: create failed: docker: "
                     r"create [0-9a-f-]{36}: image tessera-nope:1 not found in the engine at "
                     r"%s \(make sandbox-image, or pull it\) — fix what the message names"
                     % re.escape(engine.sock), r.stderr), r.stderr
    assert [c["Id"] for c in engine.containers()] == before

    for n, i in (("dk-cmd", sid), ("dk-exit", eid)):
        cli(g, "sandbox", "delete", n)
        wait_for("the container to go", lambda: engine.inspect("tessera-" + i) is None,
                 timeout=30)
    print("\n%s workload: %.1f s" % (engine.name, time.monotonic() - t_start))


def test_supervisor_that_refuses_to_start(engine):
    """A supervisor that refuses (run as uid 1000, its workload would share
    that uid): the create fails with its reason from the container's log, and
    leaves no container, volume, live sandbox or valid certificate."""
    g = gwtest.Gateway(real_supervisor=True, driver_options={"docker": {
        "socket": engine.sock, "network": "host", "supervisor_uid": "1000",
        "start_check_ms": "3000"}})
    try:
        code, msg = code_of(lambda: g.stub(g.user("admin")).CreateSandbox(
            pb.CreateSandboxRequest(name="dk-refused", policy="version: 1\n", driver="docker",
                                    command=["sleep", "600"]), timeout=120))
        assert code == S.FAILED_PRECONDITION, (code, msg)
        assert re.match(r"driver docker: start failed: docker: start [0-9a-f-]{36}: the "
                        r"container exited at once \(exit status 2\): ", msg), msg
        assert "tessera-supervisor: refusing to start: the workload would run as our own uid " \
               "1000" in msg, msg
        assert [c for c in engine.containers() if c["Names"][0].startswith("/tessera-")] == []
        assert engine.volumes() == []
        assert cli(g, "sandbox", "list")["sandboxes"] == []
        db = sqlite3.connect("file:%s?mode=ro" % g.db_path, uri=True)
        try:
            rows = db.execute("SELECT s.deleted_at IS NOT NULL, c.revoked_at IS NOT NULL FROM "
                              "sandboxes s JOIN certificates c ON c.sandbox_id = s.id WHERE "
                              "s.name = 'dk-refused'").fetchall()
        finally:
            db.close()
        assert rows == [(1, 1)], rows
    finally:
        g.stop()
        shutil.rmtree(g.dir, ignore_errors=True)


def run_gateway_case(engine, g, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(gwtest.POLICY)
    a = cli(g, "sandbox", "create", "dk-a", "--driver", "docker", "--policy", str(policy))
    b = cli(g, "sandbox", "create", "dk-b", "--driver", "docker")
    aid, bid = a["sandbox"]["id"], b["sandbox"]["id"]
    assert a["sandbox"]["state"] == "running" and b["sandbox"]["state"] == "running"
    assert cli(g, "sandbox", "get", aid)["sandbox"]["state"] == "running"
    info = engine.inspect("tessera-" + aid)
    assert info["State"]["Status"] == "running"
    vol, src = volume_dir(engine, info)
    idir = os.path.join(src, "identity")
    first_key = open(os.path.join(idir, "key.pem"), "rb").read()
    first_serial = a["certificate_serial"]

    # The supervisor validated its identity and reported the policy, saying
    # what the docker driver enforces of it: nothing yet.
    sup = wait_for("the supervisor's report", lambda: [
        t for t in log_texts(g, aid, "supervisor") if "reported APPLIED" in t])
    assert sup == ["policy version 1 validated and reported APPLIED (%s)" % ENFORCEMENT]
    sup_lines = log_texts(g, aid, "supervisor")
    assert any(t.startswith("identity spiffe://%s/sandbox/%s (serial " % (TD, aid))
               for t in sup_lines), sup_lines
    db = sqlite3.connect("file:%s?mode=ro" % g.db_path, uri=True)
    try:
        rows = db.execute("SELECT status, message FROM policy_status WHERE sandbox_id = ?",
                          (aid,)).fetchall()
    finally:
        db.close()
    assert rows == [(pb.POLICY_STATUS_APPLIED, "validated by tessera-supervisor; " + ENFORCEMENT)]

    # The workload (uid 65534, no capability) cannot reach the identity.
    probe = wait_for("the probe's report", lambda: (
        lambda ls: ls if "probe: done" in ls else None)(log_texts(g, aid, "stdout")))
    assert probe[0] == "probe: ids uid=65534 euid=65534 suid=65534 gid=65534 groups=0", probe
    caps = dict(kv.split("=") for kv in probe[1][len("probe: status "):].split())
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapInh"] == caps["CapAmb"] == \
        "0000000000000000", caps
    assert int(caps["CapBnd"], 16) & ~0xe0 == 0, caps  # at most KILL, SETGID, SETUID
    assert caps["NoNewPrivs"] == "1"
    assert probe[2:] == PROBE_LINES, probe

    # Rotation by CSR: a new certificate, and a new key made inside.
    wait_for("a renewal", lambda: len(cli(g, "cert", "list", aid)["certificates"]) >= 2)
    wait_for("the new key in the volume",
             lambda: open(os.path.join(idir, "key.pem"), "rb").read() != first_key)
    cert = gwtest.load_chain(os.path.join(idir, "cert.pem"))[0]
    serial = format(cert.serial_number, "x")
    listed = [c["serial"].lstrip("0") for c in cli(g, "cert", "list", aid)["certificates"]]
    assert serial != first_serial.lstrip("0") and serial in listed
    assert sorted(os.listdir(idir)) == ["bundle.pem", "cert.pem", "key.pem"]
    assert stat.S_IMODE(os.stat(os.path.join(idir, "key.pem")).st_mode) == 0o600
    key_now = open(os.path.join(idir, "key.pem"), "rb").read()

    # From inside the container, with the sandbox's own (rotated) identity:
    # its own config is readable, the other sandbox's is not.
    def config_call(sandbox_id, user):
        msg = (b"\x0a" + bytes([len(sandbox_id)]) + sandbox_id.encode()).hex()
        return exec_in(engine, "tessera-" + aid, [
            "/usr/local/bin/cl-probe", "--addr", "127.0.0.1:%d" % g.port,
            "--bundle", "/run/tessera/identity/bundle.pem",
            "--cert", "/run/tessera/identity/cert.pem", "--key", "/run/tessera/identity/key.pem",
            "call", "/tessera.v1.Gateway/GetSandboxConfig", msg], user)
    code, out, err = config_call(bid, "0:0")
    assert code == 0, err
    got = json.loads(out.splitlines()[-1])
    assert (got["name"], got["message"]) == ("PERMISSION_DENIED", "cross-sandbox access denied")
    code, out, err = config_call(aid, "0:0")
    assert code == 0 and json.loads(out.splitlines()[-1])["name"] == "OK", (out, err)
    # ... and the workload's uid cannot even load that identity.
    code, out, err = config_call(aid, "65534:65534")
    assert code == 1 and "Permission denied" in err, (code, out, err)

    # No key byte (the first or the current) in the engine's view of the
    # container, its image, or a commit of it.
    keys = [first_key, key_now]
    info = engine.inspect("tessera-" + aid)
    no_key_bytes(json.dumps(info).encode(), keys, "inspect")
    no_key_bytes(json.dumps(info["Config"]["Env"]).encode(), keys, "Env")
    _, image = committed_image_bytes(engine, "tessera-" + aid)
    no_key_bytes(image, keys, "a commit of the container")
    status, image = engine.api("GET", "/images/%s/get" % PROBE_IMAGE)
    assert status == 200
    no_key_bytes(image, keys, "the image")

    # Delete: every certificate revoked, the container, its volume and the
    # identity gone.
    mine = gwtest.Identity(open(os.path.join(idir, "cert.pem"), "rb").read(), key_now)
    t0 = time.time()
    d = cli(g, "sandbox", "delete", aid)
    assert d["revoked_certificates"] >= 2, d
    wait_for("the container to go", lambda: engine.inspect("tessera-" + aid) is None, timeout=30)
    # It was stopped, not killed: the supervisor ended on the SIGTERM (its
    # workload's status 0), or on the revocation it saw first (4).
    assert exit_codes(engine, "tessera-" + aid, t0) in (["0"], ["4"])
    assert vol not in [v["Name"] for v in engine.volumes()]
    assert not os.path.exists(src)
    code, _ = code_of(lambda: g.stub(mine).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=aid), timeout=10))
    assert code == S.UNAUTHENTICATED

    # Restart: B's container keeps running, nothing is minted for it, and it
    # keeps rotating against the restarted gateway.
    started = engine.inspect("tessera-" + bid)["State"]["StartedAt"]
    issued_before = sum('"event":"issue"' in ln for ln in g.audit_lines())
    assert g.stop() == 0
    g.start(reuse_port=True)
    assert cli(g, "sandbox", "get", bid)["sandbox"]["state"] == "running"
    state = engine.inspect("tessera-" + bid)["State"]
    assert state["Status"] == "running" and state["StartedAt"] == started
    assert sum('"event":"issue"' in ln for ln in g.audit_lines()) == issued_before
    n = len(cli(g, "cert", "list", bid)["certificates"])
    wait_for("a renewal after the restart",
             lambda: len(cli(g, "cert", "list", bid)["certificates"]) > n)

    # Stop and start B as the driver does: the stop is graceful (its workload
    # hears SIGTERM, its last lines arrive, the supervisor exits with the
    # workload's 0), and the supervisor comes back on the rotated identity
    # from the volume.
    bname = "tessera-" + bid
    _, bsrc = volume_dir(engine, engine.inspect(bname))
    t0 = time.time()
    assert engine.api("POST", "/containers/%s/stop?t=5" % bname)[0] == 204
    assert time.time() - t0 < 4
    assert exit_codes(engine, bname, t0) == ["0"]
    # Read once it is stopped: the supervisor rotates while it runs.
    current = gwtest.serial_hex(gwtest.load_chain(os.path.join(bsrc, "identity",
                                                               "cert.pem"))[0])
    assert current.lstrip("0") in [c["serial"].lstrip("0")
                                   for c in cli(g, "cert", "list", bid)["certificates"]]
    assert current.lstrip("0") != b["certificate_serial"].lstrip("0")
    wait_for("B's last lines", lambda: "probe: SIGTERM, exiting" in log_texts(g, bid, "stdout"))
    assert engine.api("POST", "/containers/%s/start" % bname)[0] == 204
    wait_for("B's supervisor back on its current identity", lambda: [
        t for t in log_texts(g, bid, "supervisor")
        if t.startswith("identity spiffe://%s/sandbox/%s (serial %s," % (TD, bid, current))])

    # Deleting B leaves nothing of it either.
    bvol, bsrc = volume_dir(engine, engine.inspect("tessera-" + bid))
    cli(g, "sandbox", "delete", bid)
    wait_for("B's container to go", lambda: engine.inspect("tessera-" + bid) is None,
             timeout=30)
    wait_for("B's volume to go", lambda: not os.path.exists(bsrc), timeout=10)
    assert [c for c in engine.containers() if c["Names"][0].startswith("/tessera-")] == []
    assert engine.volumes() == []
