"""The docker driver (build/drivers/docker.so, loaded by tests/bin/drv_run)
against a fake engine replaying recorded Engine API exchanges
(tests/data/docker/*.json): the requests the driver sends, how it reads the
answers, and how it negotiates the API version. The fast half; the driver
against live engines (podman, Docker) is test_docker_engines.py."""
import os
import secrets
import tempfile

import pytest

import drvtest
import fake_docker

TD = drvtest.TD


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="tsr-dk-")
    sid = drvtest.new_id()
    ident = drvtest.SandboxIdentity(sid, os.path.join(d, "identity"))
    e = {"dir": d, "id": sid, "ident": ident, "sock": os.path.join(d, "docker.sock"),
         "cid": secrets.token_hex(32)}
    yield e
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def subst(e, gateway="127.0.0.1:8443", api="v1.43"):
    i = e["ident"]
    return {"id": e["id"], "cid": e["cid"], "cid12": e["cid"][:12], "gateway": gateway, "td": TD,
            "api": api,
            "spiffe": "spiffe://%s/sandbox/%s" % (TD, e["id"]), "cert": i.cert.decode(),
            "key": i.key.decode(), "bundle": i.bundle.decode()}


def run(e, recording, ops, options=(), gateway="127.0.0.1:8443", api="v1.43", version=None,
        **kw):
    """Run drv_run against the fake engine; the engine's checks must pass.
    The start check is off unless options set start_check_ms (the
    recordings of the other operations hold no inspect after a start)."""
    rec = fake_docker.load(recording) if recording else {"exchanges": []}
    engine = fake_docker.FakeEngine(e["sock"], rec, subst(e, gateway, api),
                                    secrets=e["ident"].key_fragments(), version=version)
    options = list(options)
    if not any(k == "start_check_ms" for k, _ in options):
        options.append(("start_check_ms", "0"))
    with engine:
        res = drvtest.run("docker", ops, options=[("socket", e["sock"])] + options,
                          identity=e["ident"], gateway=gateway, **kw)
    problems = engine.check()
    assert not problems, "\n".join(problems) + "\n" + repr(res)
    assert drvtest.sanitizer_clean(res), repr(res)
    return res, engine


def op(name, e):
    return "%s:%s" % (name, e["id"])


# ---- failures first ----------------------------------------------------------------

def test_init_refuses_bad_options(env):
    bad = [("bogus", "1"), ("socket", "relative.sock"), ("socket", "/" + "x" * 200),
           ("image", "has space:latest"), ("image", ""), ("supervisor_path", "relative/sup"),
           ("network", "bad/name"), ("supervisor_uid", "-1"), ("supervisor_uid", "root"),
           ("stop_timeout_s", "3601"), ("request_timeout_ms", "5"), ("gateway", "no-port"),
           ("supervisor_args", " ".join(["-x"] * 33))]
    for k, v in bad:
        res = drvtest.run("docker", [op("status", env)], options=[(k, v)])
        assert res.rc == 1, (k, v, res)
        assert "init: error: docker: init:" in res.out, (k, v, res)
        assert "status" not in res.out


def test_socket_missing(env):
    """No socket at all: the driver cannot work, so its init fails with the
    fix (the gateway then reports it unavailable, docs/drivers.md)."""
    missing = os.path.join(env["dir"], "no-such.sock")
    res = drvtest.run("docker", [op(o, env) for o in ("create", "status")],
                      options=[("socket", missing)], identity=env["ident"])
    assert res.rc == 1
    assert ("init: error: docker: init: no Docker engine socket at %s: No such file or "
            "directory (start the engine, or set drivers.options.docker.socket to its socket)"
            % missing) in res.out, res
    assert res.lines == [], res
    not_sock = os.path.join(env["dir"], "plain-file")
    open(not_sock, "w").close()
    res = drvtest.run("docker", [op("status", env)], options=[("socket", not_sock)])
    assert res.rc == 1
    assert ("init: error: docker: init: %s is not a socket (set drivers.options.docker.socket "
            "to the engine's socket)" % not_sock) in res.out, res


def test_engine_down(env):
    """A socket nobody answers on (the engine stopped): each operation says
    so with the socket's errno; the driver stays ready for when it is back."""
    import socket as so
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.bind(env["sock"])   # bound, never listening: connect() is refused
    try:
        res = drvtest.run("docker", [op(o, env) for o in ("create", "start", "stop", "status",
                                                           "destroy")],
                          options=[("socket", env["sock"])], identity=env["ident"])
    finally:
        s.close()
    assert res.rc == 1
    assert len(res.lines) == 5, res
    for line in res.lines:
        assert ": error: docker: " in line or ": error (precondition): docker: " in line, line
        assert line.endswith(": cannot reach the engine at %s: Connection refused"
                             % env["sock"]), line


def test_bad_identity_never_reaches_the_engine(env):
    other = drvtest.new_id()
    rec = {"exchanges": []}
    engine = fake_docker.FakeEngine(env["sock"], rec, subst(env))
    with engine:
        res = drvtest.run("docker", [op("create", env)], options=[("socket", env["sock"])],
                          identity=env["ident"],
                          spiffe_id="spiffe://%s/sandbox/%s" % (TD, other))
    assert res.rc == 1
    assert "is not spiffe://%s/sandbox/%s" % (TD, env["id"]) in res.out
    assert engine.requests == []
    # A certificate naming another sandbox is refused the same way.
    ident2 = drvtest.SandboxIdentity(other, os.path.join(env["dir"], "other"))
    with engine:
        res = drvtest.run("docker", [op("create", env)], options=[("socket", env["sock"])],
                          identity=ident2)
    assert res.rc == 1 and "URI SAN" in res.out, res
    assert engine.requests == []


def test_create_conflict(env):
    res, _ = run(env, "create_conflict", [op("create", env)])
    assert res.rc == 1
    assert res.lines == ["create %s: error: docker: create %s: create the container: the engine "
                         "answered 409: Conflict. The container name \"/tessera-%s\" is already "
                         "in use by container \"%s\". You have to remove (or rename) that "
                         "container to be able to reuse that name." % (
                             env["id"], env["id"], env["id"], env["cid"])]


def test_create_no_image(env):
    """An image the engine does not have: what to do, not "unavailable"."""
    res, _ = run(env, "create_no_image", [op("create", env)])
    assert res.rc == 1
    assert res.lines == ["create %s: error (precondition): docker: create %s: image "
                         "tessera-sandbox:latest not found in the engine at %s (make "
                         "sandbox-image, or pull it)" % (env["id"], env["id"], env["sock"])]


def test_start_check_status_and_last_lines(env):
    """A container gone within start_check_ms fails its start with its last
    log lines (the engine's multiplexed stream, a line split across frames);
    one that runs passes; an ended one's status has its exit status and last
    lines, read only when asked for."""
    sid = env["id"]
    ops = [op("start", env), op("start", env), op("detail", env), op("status", env)]
    res, engine = run(env, "start_check", ops, options=[("start_check_ms", "50")])
    assert res.rc == 1, res
    assert res.lines == [
        "start %s: error (precondition): docker: start %s: the container exited at once "
        "(exit status 2): 2026-01-02T03:04:05.678Z tessera-supervisor: refusing to start: the "
        "workload would run as our own uid 1000 | 2026-01-02T03:04:05.679Z tessera-supervisor: "
        "exiting with code 2" % (sid, sid),
        "start %s: ok" % sid,
        "detail %s: STOPPED exit 3" % sid,
        "detail | hello from the workload?[31m",
        "detail | 2026-01-02T03:05:00.000Z tessera-supervisor: workload exited with status 3",
        "detail | 2026-01-02T03:05:00.001Z tessera-supervisor: exiting with code 3",
        "status %s: STOPPED" % sid,
    ], res


def test_archive_failure_removes_the_container(env):
    res, engine = run(env, "archive_failure", [op("create", env)])
    assert res.rc == 1
    line = res.lines[0]
    assert "upload the identity: the engine answered 500: failed to extract archive" in line
    assert "(container removed)" in line
    assert "engine warning: Your kernel does not support memory limit" in res.err
    assert [m for m, _, _ in engine.requests] == ["POST", "PUT", "DELETE"]


def test_create_without_container_id(env):
    res, engine = run(env, "create_bad_id", [op("create", env)])
    assert res.rc == 1
    assert "no valid Id" in res.lines[0] and "(container removed)" in res.lines[0]
    assert [m for m, _, _ in engine.requests] == ["POST", "DELETE"]


def test_engine_errors(env):
    ops = [op(o, env) for o in ("start", "start", "stop", "status", "destroy", "destroy")]
    res, _ = run(env, "engine_errors", ops)
    assert res.rc == 1
    sid = env["id"]
    assert res.lines == [
        "start %s: error: docker: start %s: start the container: the engine answered 404: "
        "No such container: tessera-%s" % (sid, sid, sid),
        "start %s: error: docker: start %s: start the container: the engine answered 500: "
        "failed to create task for container: failed to create shim task: OCI runtime create "
        "failed: runc create failed: unable to start container process: exec: "
        "\"/usr/local/bin/tessera-supervisor\": stat /usr/local/bin/tessera-supervisor: no such "
        "file or directory: unknown" % (sid, sid),
        "stop %s: error: docker: stop %s: stop the container: the engine answered 500: cannot "
        "stop container: tessera-%s: tried to kill container, but did not receive an exit "
        "event" % (sid, sid, sid),
        "status %s: error: docker: status %s: inspect the container: the engine answered 500: "
        "(no message)" % (sid, sid),
        "destroy %s: error: docker: destroy %s: remove the container: the engine answered 409: "
        "removal of container tessera-%s is already in progress" % (sid, sid, sid),
        "destroy %s: error: docker: destroy %s: remove the container: the engine answered 400: "
        "bad parameter" % (sid, sid),
    ]


def test_status_states_and_untrusted_answers(env):
    expect = ["CREATED", "RUNNING", "RUNNING", "RUNNING", "STOPPED", "STOPPED", "FAILED", "FAILED",
              "error: does not belong to this sandbox (label tessera.sandbox-id is different)",
              "error: does not belong to this sandbox (label tessera.sandbox-id is missing)",
              "error: inspect answer is not JSON",       # truncated
              "error: inspect answer is not JSON",       # trailing garbage
              "error: inspect answer is not JSON",       # NUL inside a string
              "error: inspect answer is not JSON",       # duplicate key
              "error: inspect answer is not JSON",       # not an object
              "error: has no State.Status",
              "error: larger than 1048576 bytes",
              "UNKNOWN"]
    res, _ = run(env, "status_states", [op("status", env)] * len(expect))
    assert res.rc == 1
    assert len(res.lines) == len(expect), res
    for line, want in zip(res.lines, expect):
        prefix = "status %s: " % env["id"]
        assert line.startswith(prefix), line
        got = line[len(prefix):]
        if want.startswith("error: "):
            assert got.startswith("error: docker: status %s: " % env["id"]), line
            assert want[len("error: "):] in got, (want, line)
        else:
            assert got == want, (want, line)


def test_engine_timeout(env):
    res, _ = run(env, "timeout", [op("status", env)], options=[("request_timeout_ms", "300")])
    assert res.rc == 1
    assert "no answer from the Docker engine within 300 ms" in res.lines[0]


# ---- the recorded lifecycle ----------------------------------------------------------------

def test_lifecycle(env):
    ops = [op(o, env) for o in ("create", "start", "status", "stop", "status", "start", "status",
                                "destroy", "status")]
    res, engine = run(env, "lifecycle", ops)
    assert res.rc == 0, res
    sid = env["id"]
    assert res.lines == ["create %s: ok" % sid, "start %s: ok" % sid, "status %s: RUNNING" % sid,
                         "stop %s: ok" % sid, "status %s: STOPPED" % sid, "start %s: ok" % sid,
                         "status %s: RUNNING" % sid, "destroy %s: ok" % sid,
                         "status %s: UNKNOWN" % sid]
    # The key went out once, inside the archive, and nowhere else.
    frags = env["ident"].key_fragments()
    carried = [(m, p) for m, p, body in engine.requests if any(f in body for f in frags)]
    assert carried == [("PUT", "/v1.43/containers/%s/archive?path=%%2Frun%%2Ftessera"
                               "&noOverwriteDirNonDir=true" % env["cid"])]
    assert not any(f.decode() in res.err + res.out for f in frags)
    # One version negotiation for the whole run, logged once.
    assert engine.version_requests == 1
    assert res.err.count("docker: Docker engine at %s: version 24.0.7, Engine API 1.43; using "
                         "1.43" % env["sock"]) == 1, res.err


def test_not_modified_and_already_gone(env):
    ops = [op(o, env) for o in ("start", "stop", "destroy", "status")]
    res, _ = run(env, "not_modified", ops)
    assert res.rc == 0, res
    assert res.lines[-1] == "status %s: UNKNOWN" % env["id"]
    assert "already running: tessera-%s" % env["id"] in res.err
    assert "already stopped: tessera-%s" % env["id"] in res.err


def test_gateway_option_lists_replicas(env):
    """gateway: "A,B" (replicas): one --gateway per address, in order, where
    the single one was."""
    rec = fake_docker.load("lifecycle")
    create = rec["exchanges"][0]
    cmd = create["request"]["json"]["Cmd"]
    at = cmd.index("--gateway")
    assert cmd[at + 1] == "{gateway}"
    cmd[at:at + 2] = ["--gateway", "10.0.0.1:8443", "--gateway", "gw-b.example:9443"]
    engine = fake_docker.FakeEngine(env["sock"], {"exchanges": rec["exchanges"][:2]}, subst(env),
                                    secrets=env["ident"].key_fragments())
    with engine:
        res = drvtest.run("docker", [op("create", env)],
                          options=[("socket", env["sock"]),
                                   ("gateway", "10.0.0.1:8443,gw-b.example:9443")],
                          identity=env["ident"])
    assert engine.check() == [], engine.check()
    assert res.rc == 0, res


def test_supervisor_args_follow_the_driver_flags(env):
    """supervisor_args (e.g. a workload after --) come last in Cmd."""
    rec = fake_docker.load("lifecycle")
    create = rec["exchanges"][0]
    create["request"]["json"]["Cmd"] += ["--min-rotate-seconds", "1", "--", "/bin/sh", "-c",
                                         "sleep"]
    engine = fake_docker.FakeEngine(env["sock"], {"exchanges": rec["exchanges"][:2]}, subst(env),
                                    secrets=env["ident"].key_fragments())
    with engine:
        res = drvtest.run("docker", [op("create", env)],
                          options=[("socket", env["sock"]),
                                   ("supervisor_args",
                                    " --min-rotate-seconds 1  -- /bin/sh -c sleep ")],
                          identity=env["ident"])
    assert engine.check() == [], engine.check()
    assert res.rc == 0, res


def test_options(env):
    opts = [("image", "registry.example.com/tessera/sandbox:1.2"),
            ("supervisor_path", "/opt/tessera/bin/tessera-supervisor"),
            ("network", "tessera-net"), ("gateway", "gateway.internal:9443"),
            ("supervisor_uid", "4242"), ("supervisor_gid", "4343"), ("stop_timeout_s", "3")]
    res, _ = run(env, "options", [op("create", env), op("stop", env)], options=opts)
    assert res.rc == 0, res


def test_recordings_are_consistent():
    """Every recording parses and every exchange has a request and a response."""
    for name in sorted(os.listdir(fake_docker.DATA)):
        rec = fake_docker.load(name[:-5])
        assert rec["exchanges"], name
        for ex in rec["exchanges"]:
            assert ex["request"]["path"].startswith("/{api}/"), name
            assert ex["request"]["method"] in ("GET", "POST", "PUT", "DELETE"), name
            assert 100 <= ex["response"]["status"] < 600, name


# ---- Engine API version negotiation --------------------------------------------------------

DEBIAN_DOCKER = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}


def test_negotiates_down_to_an_older_engine(env):
    """Debian 12's docker.io 20.10 speaks 1.41: every request goes to /v1.41/."""
    ops = [op(o, env) for o in ("create", "start", "status", "stop", "status", "start", "status",
                                "destroy", "status")]
    res, engine = run(env, "lifecycle", ops, api="v1.41", version=DEBIAN_DOCKER)
    assert res.rc == 0, res
    assert all(p.startswith("/v1.41/") for _, p, _ in engine.requests), engine.requests
    assert engine.version_requests == 1
    assert "docker: Docker engine at %s: version 20.10.24+dfsg1, Engine API 1.41; using 1.41" % (
        env["sock"]) in res.err


def test_newer_engine_gets_our_newest_version(env):
    ver = {"Version": "27.3.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24"}
    res, engine = run(env, "not_modified", [op(o, env) for o in ("start", "stop", "destroy",
                                                                  "status")],
                      api="v1.43", version=ver)
    assert res.rc == 0, res
    assert "Engine API 1.47; using 1.43" in res.err


def refused(env, version, ops=("create", "start", "stop", "destroy", "status"), status=200):
    """Every operation fails with the same reason; nothing but GET /version is asked."""
    engine = fake_docker.FakeEngine(env["sock"], {"exchanges": []}, subst(env),
                                    secrets=env["ident"].key_fragments(), version=version,
                                    version_status=status)
    with engine:
        res = drvtest.run("docker", [op(o, env) for o in ops], options=[("socket", env["sock"])],
                          identity=env["ident"])
    assert engine.check() == [] and engine.requests == [], engine.requests
    # Not cached: each call asks again (the engine may have been upgraded);
    # destroy tries a graceful stop, then the removal.
    assert engine.version_requests == len(ops) + ops.count("destroy")
    assert res.rc == 1 and len(res.lines) == len(ops), res
    reasons = set()
    for o, line in zip(ops, res.lines):
        # create and start say when retrying as is will not help
        kind = " (precondition)" if o in ("create", "start") and status == 200 and \
            "Engine API" in line else ""
        prefix = "%s %s: error%s: docker: %s %s: " % (o, env["id"], kind, o, env["id"])
        assert line.startswith(prefix), line
        reasons.add(line[len(prefix):])
    assert len(reasons) == 1, reasons
    return reasons.pop()


def test_engine_too_old_is_refused(env):
    reason = refused(env, {"Version": "19.03.15", "ApiVersion": "1.40", "MinAPIVersion": "1.12"})
    assert reason == ("the Docker engine at %s (version 19.03.15) speaks Engine API up to 1.40; "
                      "this driver needs 1.41 or newer (it speaks 1.41 to 1.43)" % env["sock"])


def test_engine_that_dropped_our_versions_is_refused(env):
    reason = refused(env, {"Version": "99.0.0", "ApiVersion": "1.60", "MinAPIVersion": "1.44"})
    assert reason == ("the Docker engine at %s (version 99.0.0) accepts Engine API 1.44 and "
                      "newer; this driver speaks 1.41 to 1.43" % env["sock"])


def test_unusable_version_answers(env):
    sock = env["sock"]
    cases = [
        ({"Version": "1.0"}, "the Docker engine at %s (version 1.0) answered GET /version "
                             "without a usable ApiVersion ((none))" % sock),
        ({"ApiVersion": "2.0"}, "the Docker engine at %s (version unknown) answered GET /version "
                                "without a usable ApiVersion (2.0)" % sock),
        ({"ApiVersion": "1.4x", "Version": "x\ny"},
         "the Docker engine at %s (version x?y) answered GET /version without a usable "
         "ApiVersion (1.4x)" % sock),
        ({"ApiVersion": "1.1234"}, "without a usable ApiVersion (1.1234)"),
        ({"ApiVersion": 1.43}, "without a usable ApiVersion ((none))"),
        ({"ApiVersion": "1.43", "MinAPIVersion": "one"},
         "answered GET /version with an unusable MinAPIVersion (one)"),
        (b"not json", "the engine's GET /version answer is not a JSON object"),
        (b'{"ApiVersion":"1.43","ApiVersion":"1.41"}',
         "the engine's GET /version answer is not a JSON object"),
    ]
    for version, want in cases:
        reason = refused(env, version, ops=("status",))
        assert want in reason, (version, reason)
    reason = refused(env, {"message": "page not found"}, ops=("status",), status=404)
    assert reason == "read the engine's version (GET /version): the engine answered 404: " \
                     "page not found"
