"""The whole loop with real processes: the gateway creates sandboxes through
the process driver, each supervisor (in bubblewrap when available) rotates its
own identity by CSR, cannot reach another sandbox, and is stopped when its
sandbox is deleted. A gateway restart re-attaches without minting anything."""
import os
import stat

import grpc
import pytest

import gwtest
from gwtest import code_of, pb, wait_for

S = grpc.StatusCode
ROTATE = 15  # seconds: each 5 min certificate is rotated this long after its issue


def certs_of(g, sid):
    return g.stub(g.user("admin")).ListCertificates(
        pb.ListCertificatesRequest(sandbox_id=sid), timeout=10).certificates


def pids_of(sandbox_dir):
    """The supervisor's process and its descendants, from the driver's pid file."""
    with open(os.path.join(sandbox_dir, "pid")) as f:
        root = int(f.read().split()[0])
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and int(entry) not in found:
                found.add(int(entry))
                frontier.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def g():
    gw = gwtest.Gateway(
        sandbox_ttl=gwtest.SHORT_TTL, real_supervisor=True, renew_limit=1000,
        driver_options={"process": {
            "supervisor_args": "--min-rotate-seconds 1 %s -- /bin/sleep 1000"
                               % gwtest.renew_before(ROTATE)}})
    yield gw
    gw.stop()


def test_whole_loop(g):
    admin = g.stub(g.user("admin"))
    a = g.create_sandbox("e2e-a").sandbox
    b = g.create_sandbox("e2e-b").sandbox
    assert a.state == "running" and b.state == "running"

    sdir = os.path.join(g.data_dir, "sandboxes", a.id)
    ident = os.path.join(sdir, "identity")
    assert stat.S_IMODE(os.stat(ident).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(ident, "key.pem")).st_mode) == 0o600
    first_key = open(os.path.join(ident, "key.pem"), "rb").read()
    first_serial = certs_of(g, a.id)[0].serial

    # The supervisor rotates by itself: a new certificate, a new key made inside.
    wait_for("a renewal", lambda: len(certs_of(g, a.id)) >= 2)
    wait_for("the new key on disk",
             lambda: open(os.path.join(ident, "key.pem"), "rb").read() != first_key)
    cert = gwtest.load_chain(os.path.join(ident, "cert.pem"))[0]
    serial = format(cert.serial_number, "x")
    assert serial != first_serial.lstrip("0")
    assert serial in [c.serial.lstrip("0") for c in certs_of(g, a.id)]
    assert sorted(os.listdir(ident)) == ["bundle.pem", "cert.pem", "key.pem"]
    assert stat.S_IMODE(os.stat(os.path.join(ident, "key.pem")).st_mode) == 0o600

    # No process of the sandbox carries key material in its environment or argv.
    pids = pids_of(sdir)
    assert pids
    for pid in pids:
        for name in ("environ", "cmdline"):
            try:
                blob = open(f"/proc/{pid}/{name}", "rb").read()
            except OSError:
                continue
            assert b"PRIVATE KEY" not in blob and b"BEGIN CERTIFICATE" not in blob, (pid, name)
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0") \
            if os.path.exists(f"/proc/{pid}/environ") else []
        if b"sleep" in open(f"/proc/{pid}/cmdline", "rb").read():
            assert not any(e.startswith(b"TESSERA_") for e in env)

    # A's own identity, as it is on disk now, cannot read B.
    mine = gwtest.Identity(open(os.path.join(ident, "cert.pem"), "rb").read(),
                           open(os.path.join(ident, "key.pem"), "rb").read())
    code, details = code_of(lambda: g.stub(mine).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=b.id), timeout=10))
    assert code == S.PERMISSION_DENIED and details == "cross-sandbox access denied"
    assert g.stub(mine).GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=a.id),
                                         timeout=10).policy_version == 1

    # Delete: every certificate revoked, the supervisor gone, the files removed.
    d = admin.DeleteSandbox(pb.DeleteSandboxRequest(id=a.id), timeout=30)
    assert d.revoked_certificates >= 2
    wait_for("the supervisor to stop", lambda: not any(alive(p) for p in pids), timeout=30)
    # The driver tears down in the background, after the revocation answered.
    wait_for("the sandbox's files to go", lambda: not os.path.exists(sdir), timeout=30)
    code, _ = code_of(lambda: g.stub(mine).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=a.id), timeout=10))
    assert code == S.UNAUTHENTICATED

    # Restart: B's supervisor keeps running and nothing is minted for it.
    bdir = os.path.join(g.data_dir, "sandboxes", b.id)
    b_pids = pids_of(bdir)
    issued_before = sum('"event":"issue"' in l for l in g.audit_lines())
    assert g.stop() == 0
    g.start(reuse_port=True)
    got = g.stub(g.user("admin")).GetSandbox(pb.GetSandboxRequest(id=b.id), timeout=10).sandbox
    assert got.state == "running"
    assert all(alive(p) for p in b_pids)
    assert sum('"event":"issue"' in l for l in g.audit_lines()) == issued_before
    # ... and it keeps rotating against the restarted gateway.
    n = len(certs_of(g, b.id))
    wait_for("a renewal after the restart", lambda: len(certs_of(g, b.id)) > n)
