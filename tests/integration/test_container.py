"""The gateway's container image (Containerfile, docs/operations.md
"Containers"), built without a registry: scripts/container_rootfs.sh makes
the root filesystem from this build and the Debian libraries it links, and
`podman build` (rootful, in the temp dir of engines.Podman) builds it FROM
scratch; the image answers --version and serves a real PKI as uid 10001
(health and an authenticated call from the host), and stops on SIGTERM."""
import os
import re
import shutil
import subprocess
import time

import pytest

import engines
import gwtest
from gwtest import BIN, TD, pb

ROOT = os.environ.get("TSR_ROOT", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("TSR_BUILD_DIR", os.path.join(ROOT, "build"))


def test_container_image(tmp_path):
    e = engines.Podman()
    try:
        e.start()
    except engines.EngineUnavailable as ex:
        pytest.skip("podman cannot run here: %s" % ex)
    ctx = tmp_path / "ctx"
    name = "tsr-gw-%d" % os.getpid()
    try:
        env = dict(os.environ, CONTAINERS_CONF=os.path.join(e.dir, "containers.conf"),
                   CONTAINERS_STORAGE_CONF=os.path.join(e.dir, "storage.conf"),
                   TMPDIR=os.path.join(e.dir, "tmp"))
        podman = lambda *a, **kw: subprocess.run(["podman", *a], env=env, capture_output=True,
                                                 text=True, timeout=kw.get("timeout", 300))
        r = subprocess.run([os.path.join(ROOT, "scripts", "container_rootfs.sh"), BUILD, ctx],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        r = podman("build", "-t", "tessera-gateway:test", str(ctx))
        assert r.returncode == 0, r.stdout + r.stderr
        r = podman("image", "inspect", "--format", "{{.Config.User}} {{.Config.Entrypoint}}",
                   "tessera-gateway:test")
        assert r.stdout.strip() == "10001:10001 [/usr/bin/tessera-gateway]", r.stdout
        r = podman("run", "--rm", "tessera-gateway:test", "--version")
        assert r.returncode == 0, r.stderr
        want = subprocess.run([os.path.join(BIN, "tessera-gateway"), "--version"],
                              capture_output=True, text=True).stdout
        assert r.stdout == want

        # A real PKI and configuration, mounted read-only; the data dir writable by 10001.
        etc = tmp_path / "etc"
        subprocess.run([os.path.join(BIN, "certgen"), "init", "--out", etc / "pki"], check=True,
                       capture_output=True)
        data = tmp_path / "data"
        data.mkdir()
        os.chown(data, 10001, 10001)
        port = gwtest.free_port()
        (etc / "gateway.yaml").write_text(f"""trust_domain: {TD}
listen: 127.0.0.1:{port}
data_dir: /var/lib/tessera
pki:
  bundle: /etc/tessera/pki/bundle.pem
  issuing_cert: /etc/tessera/pki/issuing.pem
  issuing_key: /etc/tessera/pki/issuing.key
  server_cert: /etc/tessera/pki/gateway.pem
  server_key: /etc/tessera/pki/gateway.key
users:
  admin: admin
""")
        os.chmod(tmp_path, 0o755)
        os.chown(etc, 10001, 10001)   # the gateway's, as /etc/tessera is in the unit's layout
        for dirpath, dirs, files in os.walk(etc):
            for n in dirs + files:
                os.chown(os.path.join(dirpath, n), 10001, 10001)
        r = podman("run", "-d", "--name", name, "-v", f"{etc}:/etc/tessera",
                   "-v", f"{data}:/var/lib/tessera", "tessera-gateway:test")
        assert r.returncode == 0, r.stderr
        pki = str(etc / "pki")

        class G:   # what gwtest's helpers need of a gateway
            pass
        g = G()
        g.port = port
        g.bundle = open(os.path.join(pki, "bundle.pem"), "rb").read()
        admin = gwtest.Identity(open(os.path.join(pki, "users", "admin.pem"), "rb").read(),
                                open(os.path.join(pki, "users", "admin.key"), "rb").read())

        def serving():
            try:
                return gwtest.Gateway.stub(g, admin).GetTrustBundle(
                    pb.GetTrustBundleRequest(), timeout=2).trust_domain == TD
            except Exception:
                return False
        g.channel = lambda ident=None: gwtest.Gateway.channel(g, ident)
        end = time.monotonic() + 60
        while not serving():
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running" and time.monotonic() < end, \
                (state, podman("logs", name).stdout + podman("logs", name).stderr)
            time.sleep(0.25)
        logs = podman("logs", name).stderr
        assert re.search(r"^\d{4}-\d\d-\d\dT\S+ info tessera-gateway: created secrets keyring "
                         r"/var/lib/tessera/secrets\.key$", logs, re.M), logs
        assert os.stat(data / "tessera.db").st_uid == 10001
        r = podman("stop", "-t", "20", name, timeout=60)
        assert r.returncode == 0, r.stderr
        r = podman("inspect", "--format", "{{.State.ExitCode}}", name)
        assert r.stdout.strip() == "0", r.stdout + podman("logs", name).stderr
        assert "tessera-gateway: stopped" in podman("logs", name).stderr
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=env, capture_output=True, timeout=120) \
            if e.dir else None
        e.stop()
        shutil.rmtree(ctx, ignore_errors=True)
