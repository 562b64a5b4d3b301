"""`make install` (docs/operations.md, "Installing"): PREFIX and DESTDIR,
binaries, driver plugins in PREFIX/lib/tessera/drivers, the systemd unit
with this install's paths (systemd-analyze verify clean), the tessera user
(sysusers.d), an example configuration; the installed gateway runs from
there, tells systemd it is ready, reloading and stopping (Type=notify,
sd_notify); every binary's --help options are documented in docs/."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import gwtest

ROOT = os.environ.get("TSR_ROOT", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("TSR_BUILD_DIR", os.path.join(ROOT, "build"))
O = os.path.relpath(BUILD, ROOT)
BINS = ["certgen", "tessera", "tessera-gateway", "tessera-supervisor", "tessera-vm-relay"]


def make_install(*args):
    r = subprocess.run(["make", "--no-print-directory", "-s", "-C", ROOT, f"O={O}",
                        f"BUILD={os.environ.get('BUILD', 'release')}", "install", *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_destdir_layout(tmp_path):
    dest = tmp_path / "dest"
    make_install(f"DESTDIR={dest}", "PREFIX=/opt/tessera")
    p = lambda rel: dest / rel.lstrip("/")
    for b in BINS:
        assert os.access(p(f"/opt/tessera/bin/{b}"), os.X_OK), b
    assert sorted(os.listdir(p("/opt/tessera/lib/tessera/drivers"))) == \
        sorted(f for f in os.listdir(os.path.join(BUILD, "drivers")) if f.endswith(".so"))
    unit = p("/opt/tessera/lib/systemd/system/tessera-gateway.service").read_text()
    assert "ExecStart=/opt/tessera/bin/tessera-gateway --config /etc/tessera/gateway.yaml\n" in unit
    assert "ExecStartPre=/opt/tessera/bin/tessera-gateway --config /etc/tessera/gateway.yaml " \
           "--check\n" in unit
    assert "\nType=notify\n" in unit and "\nUser=tessera\n" in unit
    assert not [l for l in unit.splitlines() if "/usr/local" in l and not l.startswith("#")]
    assert p("/etc/sysusers.d/tessera.conf").read_text().splitlines()[-1] == \
        'u tessera - "Tessera gateway" /var/lib/tessera'
    example = p("/etc/tessera/gateway.yaml.example").read_text()
    assert "  dir: /opt/tessera/lib/tessera/drivers\n" in example
    assert "  supervisor: /opt/tessera/bin/tessera-supervisor\n" in example
    assert not p("/etc/tessera/gateway.yaml").exists()
    assert p("/opt/tessera/share/doc/tessera/operations.md").exists()


def test_installed_gateway_runs_and_notifies(tmp_path):
    prefix, etc = tmp_path / "prefix", tmp_path / "etc"
    make_install(f"PREFIX={prefix}", f"SYSCONFDIR={etc}")
    unit = prefix / "lib/systemd/system/tessera-gateway.service"
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    assert f"ExecStart={prefix}/bin/tessera-gateway --config {etc}/tessera/gateway.yaml" in \
        unit.read_text()

    bin_dir = prefix / "bin"
    pki = tmp_path / "pki"
    subprocess.run([bin_dir / "certgen", "init", "--out", pki], check=True, capture_output=True)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"""listen: 127.0.0.1:0
data_dir: {tmp_path}/data
pki:
  bundle: {pki}/bundle.pem
  issuing_cert: {pki}/issuing.pem
  issuing_key: {pki}/issuing.key
  server_cert: {pki}/gateway.pem
  server_key: {pki}/gateway.key
users:
  admin: admin
""")
    sock_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    proc = subprocess.Popen([bin_dir / "tessera-gateway", "--config", cfg], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        msg = ns.recv(4096).decode()
        assert msg == f"READY=1\nSTATUS=serving on 127.0.0.1:{port} (trust domain tessera.local)"
        # The plugins came from PREFIX/lib/tessera/drivers (no drivers.dir).
        r = subprocess.run([bin_dir / "tessera", "--addr", f"127.0.0.1:{port}", "--pki", pki,
                            "health"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout == f"SERVING (spiffe://tessera.local/gateway at 127.0.0.1:{port})\n"
        os.kill(proc.pid, signal.SIGHUP)
        assert ns.recv(4096).decode() == "RELOADING=1\nSTATUS=reloading"
        assert ns.recv(4096).decode().startswith("READY=1\nSTATUS=serving on")
        proc.send_signal(signal.SIGTERM)
        assert ns.recv(4096).decode().startswith("STOPPING=1\n")
        assert proc.wait(timeout=20) == 0
        err = proc.stderr.read()
        assert f"driver process: process: sandboxes under {tmp_path}/data/sandboxes" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()
        gwtest.kill_sandboxes(str(tmp_path / "data"))


DOCS = {
    "certgen": ["docs/certgen.md"],
    "tessera": ["docs/cli.md"],
    "tessera-gateway": ["docs/operations.md", "docs/config.md"],
    "tessera-supervisor": ["docs/supervisor.md"],
}


def help_text(argv):
    r = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (argv, r.stderr)
    return r.stdout


@pytest.mark.parametrize("name", sorted(DOCS))
def test_help_matches_docs(name):
    """Every option and command a --help names is in the binary's docs."""
    exe = os.path.join(gwtest.BIN, name)
    docs = "".join(open(os.path.join(ROOT, d)).read() for d in DOCS[name])
    texts = [help_text([exe])]
    if name == "certgen":
        cmds = re.findall(r"^  ([a-z-]+) {2,}", texts[0], re.M)
        assert "renew-gateway" in cmds and "issue-proxy" in cmds
        for c in cmds:
            assert f"certgen {c}" in docs or f"**{c}**" in docs, c
            texts.append(help_text([exe, c]))
    missing = sorted({o for t in texts for o in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", t)}
                     - {"--help"} - {o for o in re.findall(r"(--[a-z][a-z-]*)", docs)})
    assert missing == [], f"{name}: options in --help but not in {DOCS[name]}: {missing}"
