"""Helpers for the driver integration tests: sandbox identities as the
gateway hands them to a driver, and tests/bin/drv_run, which loads a driver
.so and runs operations on it."""
import os
import subprocess
import uuid

import gwtest

ROOT = os.environ.get("TSR_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TSR_BUILD_DIR", os.path.join(ROOT, "build"))
DRV_RUN = os.path.join(BUILD, "tests", "bin", "drv_run")
TD = "tessera.local"


def driver_so(name):
    return os.path.join(BUILD, "drivers", name + ".so")


def new_id():
    return str(uuid.uuid4())


class SandboxIdentity:
    """Leaf (with the issuing CA) for spiffe://TD/sandbox/<id>, its key and
    the bundle, written to a directory for drv_run --identity."""

    def __init__(self, sandbox_id, directory, td=TD, not_before=None, not_after=None):
        ca, ca_key = gwtest.make_ca("Tessera Test CA")
        leaf, key = gwtest.make_leaf("spiffe://%s/sandbox/%s" % (td, sandbox_id), ca, ca_key,
                                     not_before=not_before, not_after=not_after)
        self.cert = gwtest.pem(leaf) + gwtest.pem(ca)
        self.key = gwtest.key_pem(key)
        self.bundle = gwtest.pem(ca)
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for name, data in (("cert.pem", self.cert), ("key.pem", self.key),
                           ("bundle.pem", self.bundle)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)

    def key_fragments(self):
        """The bytes that must never leave the archive: the PEM key header
        and every base64 line of the key."""
        lines = [ln for ln in self.key.split(b"\n") if ln and not ln.startswith(b"-----")]
        return [b"PRIVATE KEY"] + [ln for ln in lines if len(ln) >= 16]


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("init:")]

    def __repr__(self):
        return "rc=%d\nstdout:\n%s\nstderr:\n%s" % (self.rc, self.out, self.err)


def run(driver, ops, options=(), identity=None, data_dir=None, supervisor=None,
        gateway="127.0.0.1:8443", spiffe_id=None, timeout=60, mint=None, env=None, image=None,
        command=()):
    """image and command: the sandbox's workload for check and create."""
    args = [DRV_RUN, driver_so(driver), "--gateway", gateway, "--trust-domain", TD]
    if image is not None:
        args += ["--image", image]
    for arg in command:
        args += ["--arg", arg]
    if data_dir:
        args += ["--data-dir", data_dir]
    if supervisor:
        args += ["--supervisor", supervisor]
    if identity is not None:
        args += ["--identity", identity.dir]
    if spiffe_id:
        args += ["--spiffe-id", spiffe_id]
    if mint:
        args += ["--mint", mint]
    for k, v in options:
        args += ["--opt", "%s=%s" % (k, v)]
    args += list(ops)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **env) if env else None)
    return Result(proc)


def sanitizer_clean(result):
    """No ASan/UBSan/LSan report in drv_run's stderr."""
    return "Sanitizer" not in result.err and "runtime error:" not in result.err
