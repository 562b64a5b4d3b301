"""What a sandbox runs, and its state as its driver reports it, through the
real gateway, the `tessera` CLI, the real supervisor and the process driver
(docs/drivers.md, "The workload"; docs/architecture.md, "Sandbox state"):

- a sandbox runs its own command, as the workload uid, with the env it was
  given (under its provider credentials) and nothing of the supervisor's;
  the env never becomes the supervisor's own environment;
- a command that exits 3 shows `stopped` with exit status 3 and the
  supervisor's last lines within 5 s; a supervisor killed from outside shows
  `stopped` too;
- a supervisor that refuses to start fails the create with its reason, and
  leaves no live sandbox, no valid certificate and no process or files;
- a malformed image, command or env is INVALID_ARGUMENT naming the field,
  before anything is minted; the process driver refuses an image;
- errors that point at the fix: a docker engine that is not there; a driver
  whose options are wrong stops the gateway, and `tessera-gateway --check`
  says so.

The docker and vm drivers run their workloads in test_docker_engines.py and
test_vm_e2e.py."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid

import grpc
import pytest

import gwtest
from gwtest import code_of, pb, wait_for
from test_cli import ok_json, run as cli

S = grpc.StatusCode
MISSING_SOCKET = "/nonexistent/tessera-test/docker.sock"


@pytest.fixture(scope="module")
def down_socket():
    """A unix socket file nobody listens on: an engine that is down."""
    import socket as so
    import tempfile
    d = tempfile.mkdtemp(prefix="tsr-down-")
    path = os.path.join(d, "docker.sock")
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.bind(path)
    yield path
    s.close()
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def g(down_socket):
    gw = gwtest.Gateway(real_supervisor=True,
                        driver_options={"docker": {"socket": down_socket}})
    yield gw
    rc = gw.stop()
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, gw.sanitizer_report())


def uniq(prefix="wl"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def log_texts(g, name, stream=None):
    return [ln["text"] for ln in ok_json(g, "logs", name, "--limit", "10000")["lines"]
            if stream is None or ln["stream"] == stream]


def supervisor_pid(g, sid):
    """The sandbox's tessera-supervisor (in bubblewrap a grandchild of the
    recorded process)."""
    with open(os.path.join(g.data_dir, "sandboxes", sid, "pid")) as f:
        root = int(f.read().split()[0])
    for pid in gwtest._descendants(root):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"tessera-supervisor"):
            return pid
    raise AssertionError("no supervisor under pid %d" % root)


def alive(pid):
    """pid is a process that has not ended (a zombie has)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)


def sandbox_row(g, name):
    db = sqlite3.connect("file:%s?mode=ro" % g.db_path, uri=True)
    try:
        return db.execute("SELECT id, deleted_at FROM sandboxes WHERE name = ? "
                          "ORDER BY created_at DESC LIMIT 1", (name,)).fetchone()
    finally:
        db.close()


def test_process_sandbox_runs_its_command(g):
    name = uniq()
    script = "id -u; echo \"greeting=$GREETING\"; env | sort; echo hello; exec sleep 600"
    doc = ok_json(g, "sandbox", "create", name, "--env", "GREETING=hello world", "--env",
                  "EMPTY=", "--secret", "EXAMPLE_API_KEY=k", "--", "sh", "-c", script)
    sb = doc["sandbox"]
    sid = sb["id"]
    assert sb["state"] == "running" and sb["command"] == ["sh", "-c", script], doc
    assert sb["env"] == {"EMPTY": "", "GREETING": "hello world"}
    out = wait_for("the workload's output", lambda: (
        lambda ls: ls if "hello" in ls else None)(log_texts(g, name, "stdout")), timeout=30)
    assert out[0] == "65534", out              # the workload uid, not the supervisor's
    assert out[1] == "greeting=hello world"
    env = dict(ln.split("=", 1) for ln in out[2:out.index("hello")])
    # Exactly the env given, the provider credential, and what every
    # workload gets (PATH, HOME; PWD from the shell): no TESSERA_* variable,
    # nothing else of the supervisor's environment.
    assert sorted(env) == ["EMPTY", "EXAMPLE_API_KEY", "GREETING", "HOME", "PATH", "PWD"], env
    assert env["GREETING"] == "hello world" and env["EMPTY"] == ""
    assert env["HOME"] == "/workspace" or env["HOME"].endswith("/workspace"), env
    # The env is the workload's, never the supervisor's own environment.
    sup_env = environ(supervisor_pid(g, sid))
    assert b"GREETING" not in sup_env and b"EXAMPLE_API_KEY" not in sup_env, sup_env
    got = ok_json(g, "sandbox", "get", name)["sandbox"]
    assert got["state"] == "running" and got["exited"] is False and got["state_detail"] == ""

    # Killed from outside: the gateway's state follows within seconds, and
    # the workload dies with its supervisor (its parent-death signal: the
    # supervisor in bubblewrap keeps CAP_KILL to send it to the workload uid).
    t0 = time.monotonic()
    sup = supervisor_pid(g, sid)
    below = [p for p in gwtest._descendants(sup) if p != sup]
    assert below, "no workload under the supervisor"
    os.kill(sup, signal.SIGKILL)
    got = wait_for("stopped", lambda: (lambda s: s if s["state"] == "stopped" else None)(
        ok_json(g, "sandbox", "get", name)["sandbox"]), timeout=10, every=0.2)
    assert time.monotonic() - t0 < 5
    assert got["exited"] is False, got  # it said nothing of its end
    assert "exit_code" not in got
    assert "workload started: pid" in got["state_detail"], got
    wait_for("the gateway's log line", lambda: any(
        "sandbox %s: running -> stopped" % sid in ln for ln in g.stderr_lines), timeout=5)
    wait_for("the workload gone with its supervisor",
             lambda: not any(alive(p) for p in below), timeout=5)
    ok_json(g, "sandbox", "delete", name)


def test_command_exiting_3_shows_stopped_with_exit_3(g):
    name = uniq()
    # The sleep outlasts the driver's start check (a sandbox gone at once
    # would fail its create instead).
    doc = ok_json(g, "sandbox", "create", name, "--", "sh", "-c", "sleep 1; echo bye; exit 3")
    t0 = time.monotonic()
    assert doc["sandbox"]["state"] == "running"
    got = wait_for("stopped", lambda: (lambda s: s if s["state"] == "stopped" else None)(
        ok_json(g, "sandbox", "get", name)["sandbox"]), timeout=15, every=0.2)
    took = time.monotonic() - t0
    assert took < 1 + 5, took  # its second of sleep, then within 5 s
    assert got["exited"] is True and got["exit_code"] == 3, got
    lines = got["state_detail"].split("\n")
    assert lines[-1].endswith(" tessera-supervisor: exiting with code 3"), lines
    assert lines[-2].endswith(" tessera-supervisor: workload exited with status 3"), lines
    assert "bye" in log_texts(g, name, "stdout")
    # list says it too, and the human form of get shows how it ended.
    mine = [s for s in ok_json(g, "sandbox", "list")["sandboxes"] if s["name"] == name]
    assert mine[0]["state"] == "stopped" and mine[0]["exit_code"] == 3, mine
    assert mine[0]["state_detail"] == ""  # list leaves the last lines to get
    r = cli(g, "sandbox", "get", name)
    assert r.returncode == 0, r.stderr
    assert "state           stopped\n" in r.stdout and "exit status     3\n" in r.stdout, r.stdout
    assert re.search(r"\nlast lines      \S+Z tessera-supervisor: ", r.stdout), r.stdout
    ok_json(g, "sandbox", "delete", name)


def test_supervisor_that_refuses_to_start(tmp_path):
    """The supervisor refuses (a workload as uid 0): the create fails with its
    reason, and nothing of the sandbox is left but its deleted row and
    revoked certificate."""
    gw = gwtest.Gateway(real_supervisor=True, driver_options={"process": {
        "supervisor_args": "--workload-uid 0", "start_check_ms": "2000"}})
    try:
        name = uniq()
        code, msg = code_of(lambda: gw.stub(gw.user("admin")).CreateSandbox(
            pb.CreateSandboxRequest(name=name, policy="version: 1\n", command=["true"]),
            timeout=30))
        assert code == S.FAILED_PRECONDITION, (code, msg)
        assert msg.startswith("driver process: start failed: process: start "), msg
        assert "exited at once" in msg, msg
        assert "tessera-supervisor: refusing to start: the workload never runs as root (uid 0)" \
            in msg, msg
        assert msg.endswith(" tessera-supervisor: exiting with code 2)"), msg
        r = cli(gw, "sandbox", "get", name)
        assert r.returncode == 1 and "NOT_FOUND" in r.stderr
        assert ok_json(gw, "sandbox", "list")["sandboxes"] == []
        sid, deleted_at = sandbox_row(gw, name)
        assert deleted_at is not None
        certs = gw.stub(gw.user("admin")).ListCertificates(
            pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates
        assert len(certs) == 1 and certs[0].revoked_at > 0, certs
        assert not os.path.exists(os.path.join(gw.data_dir, "sandboxes", sid))
        assert not [p for p in os.listdir("/proc") if p.isdigit() and sid.encode() in
                    (open("/proc/%s/cmdline" % p, "rb").read() if os.path.exists(
                        "/proc/%s/cmdline" % p) else b"")]
        # The CLI says what to do about it.
        r = cli(gw, "sandbox", "create", uniq(), "--", "true")
        assert r.returncode == 1 and "FAILED_PRECONDITION" in r.stderr
        assert "fix what the message names" in r.stderr, r.stderr
    finally:
        assert gw.stop() == 0, gw.sanitizer_report()


def expect_invalid(g, want, name=None, **fields):
    """CreateSandbox with fields: INVALID_ARGUMENT, exactly `want`, and nothing
    minted or recorded."""
    name = name or uniq("bad")
    issued = sum('"event":"issue"' in ln for ln in g.audit_lines())
    code, msg = code_of(lambda: g.stub(g.user("admin")).CreateSandbox(
        pb.CreateSandboxRequest(name=name, policy="version: 1\n", **fields), timeout=10))
    assert (code, msg) == (S.INVALID_ARGUMENT, want), fields
    assert sum('"event":"issue"' in ln for ln in g.audit_lines()) == issued
    assert sandbox_row(g, name) is None


def test_malformed_workload_is_invalid_argument(g):
    expect_invalid(g, "image \"Ubuntu:22.04\" is not an image reference "
                      "([HOST[:PORT]/]NAME[:TAG][@DIGEST], NAME in lowercase)",
                   image="Ubuntu:22.04", driver="docker")
    expect_invalid(g, "image \"busybox:la test\" is not an image reference "
                      "([HOST[:PORT]/]NAME[:TAG][@DIGEST], NAME in lowercase)",
                   image="busybox:la test", driver="docker")
    expect_invalid(g, "image contains a NUL byte", image="busy\0box", driver="docker")
    expect_invalid(g, "driver process: process: image: the process driver runs no images (a "
                      "process sandbox runs this host's programs); leave image empty or use "
                      "the docker or vm driver", image="busybox")
    expect_invalid(g, "command[1] contains a NUL byte", command=["sh", "-c\0x"])
    expect_invalid(g, "command[0] (the program) is empty", command=["", "x"])
    expect_invalid(g, "command has 257 arguments (maximum 256)", command=["x"] * 257)
    expect_invalid(g, "command exceeds 16384 bytes (its arguments with a NUL each)",
                   command=["sh", "x" * 16381])
    expect_invalid(g, "env name \"1BAD\" must match [A-Za-z_][A-Za-z0-9_]*", env={"1BAD": "v"})
    expect_invalid(g, "env entry 0: its value contains a NUL byte", env={"A": "v\0w"})
    expect_invalid(g, "env value of BIG exceeds 4096 bytes", env={"BIG": "v" * 4097})
    expect_invalid(g, "env has 129 variables (maximum 128)",
                   env={"V%d" % i: "" for i in range(129)})


def test_engine_that_is_not_there(g, down_socket):
    """The docker driver configured with a socket where no engine listens:
    the reason names the socket and the errno, and the create leaves no live
    sandbox and no valid certificate."""
    name = uniq()
    code, msg = code_of(lambda: g.stub(g.user("admin")).CreateSandbox(
        pb.CreateSandboxRequest(name=name, policy="version: 1\n", driver="docker",
                                command=["sh", "-c", "true"]), timeout=30))
    assert code == S.UNAVAILABLE, (code, msg)
    assert re.fullmatch(r"driver docker: create failed: docker: create [0-9a-f-]{36}: cannot "
                        r"reach the engine at %s: Connection refused"
                        % re.escape(down_socket), msg), msg
    sid, deleted_at = sandbox_row(g, name)
    assert deleted_at is not None
    certs = g.stub(g.user("admin")).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates
    assert [c.revoked_at > 0 for c in certs] == [True]


def test_wrong_driver_options_stop_the_gateway(tmp_path, down_socket):
    gw = gwtest.Gateway(driver_options={"docker": {"socket": down_socket}})
    assert gw.stop() == 0
    check = [os.path.join(gwtest.BIN, "tessera-gateway"), "--config", gw.config, "--check"]
    r = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("configuration OK: "), (r.stdout, r.stderr)
    with open(gw.config) as f:
        text = f.read()
    with open(gw.config, "w") as f:
        f.write(text.replace('      socket: "%s"\n' % down_socket,
                             '      socket: "%s"\n      bogus: "1"\n' % down_socket))
    want = ("tessera-gateway: driver docker, configured under drivers.options, failed to start: "
            "docker: init: unknown option \"bogus\"\n")
    r = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.endswith(want), (r.stdout, r.stderr)
    with pytest.raises(RuntimeError) as err:
        gw.start()
    assert want in str(err.value)


def test_docker_socket_missing_is_reported(tmp_path):
    """A docker driver that cannot work is never reported ready: configured
    (options name it), the gateway refuses to start and says the fix; not
    configured, it is unavailable in the log at start and a CreateSandbox
    for it names the driver and the fix."""
    with pytest.raises(RuntimeError) as err:
        gwtest.Gateway(driver_options={"docker": {"socket": MISSING_SOCKET}})
    assert ("tessera-gateway: driver docker, configured under drivers.options, failed to start: "
            "docker: init: no Docker engine socket at %s: No such file or directory (start the "
            "engine, or set drivers.options.docker.socket to its socket)" % MISSING_SOCKET) \
        in str(err.value)
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("this host has /var/run/docker.sock: the unconfigured case needs its absence")
    gw = gwtest.Gateway()
    try:
        want = ("driver docker unavailable: docker: init: no Docker engine socket at "
                "/var/run/docker.sock: No such file or directory (start the engine, or set "
                "drivers.options.docker.socket to its socket)")
        wait_for("the unavailable line", lambda: any(want in l for l in gw.stderr_lines),
                 timeout=10)
        line = [l for l in gw.stderr_lines if want in l][0]
        assert " warning tessera-gateway: " in line, line
        assert not any("Docker engine at /var/run/docker.sock, image" in l
                       for l in gw.stderr_lines)
        code, msg = code_of(lambda: gw.stub(gw.user("admin")).CreateSandbox(
            pb.CreateSandboxRequest(name=uniq(), policy="version: 1\n", driver="docker"),
            timeout=30))
        assert code == S.FAILED_PRECONDITION, (code, msg)
        assert msg == "driver docker is unavailable: " + want[len("driver docker unavailable: "):]
    finally:
        gw.stop()
