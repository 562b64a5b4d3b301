"""The docker driver (build/drivers/docker.so, loaded by tests/bin/drv_run)
against a fake engine replaying recorded Engine API v1.43 exchanges
(tests/data/docker/*.json). No real Docker engine runs here: these tests
check the requests the driver sends and how it reads the answers."""
import os
import secrets
import tempfile

import pytest

import drvtest
import fake_docker

TD = drvtest.TD


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="tsr-dk-", dir="/tmp")
    sid = drvtest.new_id()
    ident = drvtest.SandboxIdentity(sid, os.path.join(d, "identity"))
    e = {"dir": d, "id": sid, "ident": ident, "sock": os.path.join(d, "docker.sock"),
         "cid": secrets.token_hex(32)}
    yield e
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def subst(e, gateway="127.0.0.1:8443"):
    i = e["ident"]
    return {"id": e["id"], "cid": e["cid"], "cid12": e["cid"][:12], "gateway": gateway, "td": TD,
            "spiffe": "spiffe://%s/sandbox/%s" % (TD, e["id"]), "cert": i.cert.decode(),
            "key": i.key.decode(), "bundle": i.bundle.decode()}


def run(e, recording, ops, options=(), gateway="127.0.0.1:8443", **kw):
    """Run drv_run against the fake engine; the engine's checks must pass."""
    rec = fake_docker.load(recording)
    engine = fake_docker.FakeEngine(e["sock"], rec, subst(e, gateway),
                                    secrets=e["ident"].key_fragments())
    with engine:
        res = drvtest.run("docker", ops, options=[("socket", e["sock"])] + list(options),
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
           ("stop_timeout_s", "3601"), ("request_timeout_ms", "5"), ("gateway", "no-port")]
    for k, v in bad:
        res = drvtest.run("docker", [op("status", env)], options=[(k, v)])
        assert res.rc == 1, (k, v, res)
        assert "init: error: docker: init:" in res.out, (k, v, res)
        assert "status" not in res.out


def test_socket_missing(env):
    missing = os.path.join(env["dir"], "no-such.sock")
    res = drvtest.run("docker", [op(o, env) for o in ("create", "start", "stop", "status",
                                                       "destroy")],
                      options=[("socket", missing)], identity=env["ident"])
    assert res.rc == 1
    assert len(res.lines) == 5, res
    for line in res.lines:
        assert ": error: docker: " in line, line
        assert "cannot reach the Docker engine at %s" % missing in line, line


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
    res, _ = run(env, "create_no_image", [op("create", env)])
    assert res.rc == 1
    assert "the engine answered 404: No such image: tessera-sandbox:latest" in res.lines[0]


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


def test_not_modified_and_already_gone(env):
    ops = [op(o, env) for o in ("start", "stop", "destroy", "status")]
    res, _ = run(env, "not_modified", ops)
    assert res.rc == 0, res
    assert res.lines[-1] == "status %s: UNKNOWN" % env["id"]
    assert "already running: tessera-%s" % env["id"] in res.err
    assert "already stopped: tessera-%s" % env["id"] in res.err


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
            assert ex["request"]["path"].startswith("/v1.43/"), name
            assert ex["request"]["method"] in ("GET", "POST", "PUT", "DELETE"), name
            assert 100 <= ex["response"]["status"] < 600, name
