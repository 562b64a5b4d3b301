"""`make bench` driver (run by bench/run.sh under /usr/bin/python3): Tessera
and its peers on loopback, each measurement for a fixed short time, a table
of Tessera / peer / ratio, and build/bench/results.json.

Everything is started here and stopped here: a PKI from certgen, the real
tessera-gateway (2 workers; the process driver runs a supervisor that only
sleeps, so sandboxes add no load), the bare OpenSSL peer, `cfssl serve`."""
import glob
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tessera.v1 import gateway_pb2 as pb
from tessera.v1 import gateway_pb2_grpc as pb_grpc

BUILD = os.environ["TSR_BUILD_DIR"]
BIN = os.path.join(BUILD, "bin")
OUT = os.path.join(BUILD, "bench")
LOAD = os.path.join(OUT, "bn_load")
TD = "tessera.local"
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
# 96: renew_limit is 1000 per sandbox per hour, and the renew row alone can
# ask for ~20k renewals; fewer sandboxes would hit the limit, not the CPU.
N_SANDBOXES = int(os.environ.get("BENCH_SANDBOXES", "96"))
# Renewals (and cfssl signs) in flight: one outstanding request on each of
# this many connections, for both, so that the comparison stays fair.
RENEW_INFLIGHT = int(os.environ.get("BENCH_RENEW_INFLIGHT", "32"))
# Handshake clients (each: connect, full handshake, wait for the server's
# first bytes, close), the same for the gateway and the bare OpenSSL peer.
HS_THREADS = int(os.environ.get("BENCH_HS_THREADS", "2"))
# BENCH_ONLY=handshake,unary,tail,renew,logs,conns,scale,postgres runs only those rows.
ONLY = set(os.environ.get("BENCH_ONLY", "").split(",")) - {""}
# The idle-connection rows: RSS at these counts of open connections, then one
# call on each of CONN_WAKE of them. BENCH_QUICK=1: 1000 only.
CONN_COUNTS = [1000] if os.environ.get("BENCH_QUICK") else [
    int(n) for n in os.environ.get("BENCH_CONNS", "10000,50000").split(",")]
CONN_WAKE = int(os.environ.get("BENCH_CONN_WAKE", "200"))
# BENCH_CONN_HOLD=S: keep the idle connections open S seconds after the wake
# test (time to inspect the gateway: gdb, malloc_info; docs/performance.md).
CONN_HOLD = int(os.environ.get("BENCH_CONN_HOLD", "0"))
# The unary tail row: calls in flight, over this many connections (gRPC C++ client).
TAIL_STREAMS = int(os.environ.get("BENCH_TAIL_STREAMS", "64"))
TAIL_CONNS = int(os.environ.get("BENCH_TAIL_CONNS", "4"))
# The "large store" row: this many (deleted) sandboxes and revoked serials.
SCALE_N = int(os.environ.get("BENCH_SCALE_N", "100000"))


def want(what):
    return not ONLY or what in ONLY
POLICY = """version: 1
filesystem:
  read_only: [/usr, /lib]
  read_write: [/workspace]
network:
  default: deny
process:
  max_processes: 64
"""

procs = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


PROFILE = {"pid": None, "addr": None, "metrics": None}


def cpu_s(pid):
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(mode, addr, *args, timeout=None, pid=None, binary=None):
    """Run one bn_load measurement. BENCH_PERF=<mode> records the gateway
    with `perf record -g` during that mode (build/bench/perf-<mode>.data).
    With pid (default: the gateway's, when addr is its address), the result
    also carries that server's CPU time per operation (cpu_us_per_op): on a
    shared machine that is steadier than the rate."""
    if pid is None and addr == PROFILE["addr"]:
        pid = PROFILE["pid"]
    cmd = ([binary] if binary else [LOAD, mode]) + ["--addr", addr] + [str(a) for a in args]
    cpu0 = cpu_s(pid) if pid else None
    perf = None
    if os.environ.get("BENCH_PERF") == mode and PROFILE["pid"] and addr == PROFILE["addr"]:
        perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p",
                                 str(PROFILE["pid"]), "-o",
                                 os.path.join(OUT, f"perf-{mode}.data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout or SECONDS * 4 + 120)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    if r.stderr.strip():
        log(f"  {mode}: {r.stderr.strip()}")
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if cpu0 is not None and res.get("ops"):
        res["cpu_us_per_op"] = round((cpu_s(pid) - cpu0) / res["ops"] * 1e6, 1)
    if res.get("ops") and not perf:
        # The load generator's own CPU per operation: on 2 shared cores the
        # rate is what is left of them after the client and the server.
        client = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        res["client_cpu_us_per_op"] = round(client / res["ops"] * 1e6, 1)
    log(f"  {mode} {addr}: {json.dumps(res)}")
    return res


def start(args, ready_re, env=None):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    procs.append(p)
    line = p.stdout.readline()
    m = re.search(ready_re, line)
    if not m:
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return p, int(m.group(1))


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def openssl_speed():
    r = subprocess.run(["openssl", "speed", "-seconds", "3", "ecdsap256"],
                       capture_output=True, text=True, timeout=60)
    for line in r.stdout.splitlines():
        m = re.match(r"\s*256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            return float(m.group(1)), float(m.group(2))
    raise RuntimeError("no ecdsap256 line in openssl speed output:\n" + r.stdout)


def raise_fd_limit():
    """Open-file limit for the bench's processes (the gateway, bn_load):
    enough for the largest connection count. Root may raise the hard limit
    too; the product's own defaults are not touched."""
    want = max(CONN_COUNTS) * 2 + 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    os.makedirs(OUT, exist_ok=True)
    raise_fd_limit()
    work = tempfile.mkdtemp(prefix="tsr-bench-")
    pki = os.path.join(work, "pki")
    subprocess.run([os.path.join(BIN, "certgen"), "init", "--trust-domain", TD, "--out", pki,
                    "--user", "admin"], check=True, capture_output=True)
    bundle = os.path.join(pki, "bundle.pem")
    issuing_pem = open(os.path.join(pki, "issuing.pem"), "rb").read()
    issuing_cert = x509.load_pem_x509_certificate(issuing_pem)

    # A supervisor that only sleeps: sandboxes exist, nothing calls the gateway.
    sleeper = os.path.join(work, "sleeper")
    with open(sleeper, "w") as f:
        f.write("#!/bin/sh\nexec sleep 100000\n")
    os.chmod(sleeper, 0o755)
    data = os.path.join(work, "data")
    config = os.path.join(work, "gateway.yaml")
    with open(config, "w") as f:
        f.write(f"""trust_domain: {TD}
listen: 127.0.0.1:0
workers: 2
data_dir: {data}
pki:
  bundle: {bundle}
  issuing_cert: {pki}/issuing.pem
  issuing_key: {pki}/issuing.key
  server_cert: {pki}/gateway.pem
  server_key: {pki}/gateway.key
audit:
  path: {work}/audit.log
certificates:
  sandbox_ttl: 1h
  renew_limit: 1000
  renew_window: 1h
limits:
  max_connections: {max(CONN_COUNTS) + 10000}
  max_concurrent_streams: 100
  idle_timeout: 1h
users:
  admin: admin
metrics:
  listen: 127.0.0.1:0
drivers:
  supervisor: {sleeper}
""")
    results = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
               "seconds_per_run": SECONDS, "rows": []}
    rows = results["rows"]

    def row(name, tessera, peer, unit, peer_name, note=""):
        ratio = (tessera / peer) if (tessera is not None and peer) else None
        rows.append({"row": name, "unit": unit, "tessera": tessera, "peer": peer,
                     "peer_name": peer_name, "ratio": ratio, "note": note})

    gw, port = start_gateway(config)
    addr = f"127.0.0.1:{port}"
    sandbox_ids = []
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(bundle, "rb").read(),
        private_key=open(os.path.join(pki, "users", "admin.key"), "rb").read(),
        certificate_chain=open(os.path.join(pki, "users", "admin.pem"), "rb").read())
    try:
        rss_start = rss_kib(gw.pid)
        # Sandboxes, created through the gateway as admin.
        lines = []
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            stub = pb_grpc.GatewayStub(ch)
            for i in range(N_SANDBOXES):
                r = stub.CreateSandbox(pb.CreateSandboxRequest(
                    name=f"bench-{i}", policy=POLICY, provider_env={"K": "v"}), timeout=30)
                sid = r.sandbox.id
                sandbox_ids.append(sid)
                # The identity the process driver placed: its first
                # certificate, recorded (a renewal must start from one).
                placed = os.path.join(data, "sandboxes", sid, "identity")
                lines.append(f"{sid} {placed}/cert.pem {placed}/key.pem\n")
        ids_file = os.path.join(work, "ids.txt")
        with open(ids_file, "w") as f:
            f.writelines(lines)
        first_sid, first_cert, first_key = lines[0].split()
        time.sleep(1)
        rss_idle = rss_kib(gw.pid)
        log(f"gateway RSS: {rss_start} KiB at start, {rss_idle} KiB idle with "
            f"{N_SANDBOXES} sandboxes")
        results["gateway_rss_idle_kib"] = rss_idle

        # Each row: Tessera, then its peer, back to back.
        if want("handshake"):
            handshakes(addr, pki, bundle, first_cert, first_key, row)
        if want("unary"):
            unary(addr, pki, bundle, ids_file, work, results, row)
        if want("tail"):
            tail(addr, pki, bundle, ids_file, work, results, row)
        if want("renew"):
            renew(addr, pki, bundle, ids_file, work, issuing_cert, results, row)
        if want("logs"):
            logs(addr, bundle, ids_file, row)
        if want("conns"):
            conns(addr, bundle, ids_file, gw, results, row)
        results["gateway_rss_end_kib"] = rss_kib(gw.pid)
        if want("postgres"):
            postgres(config, work, bundle, results, row)
        if want("scale"):
            gw, port = scale(gw, config, data, bundle, first_cert, first_key, ids_file,
                             results, row)
    finally:
        cleanup(port, creds, sandbox_ids, data)
        shutil.rmtree(work, ignore_errors=True)
    report(results, rows)


def start_gateway(config):
    # BENCH_GATEWAY=PATH runs another build of the gateway (before/after
    # comparisons in docs/performance.md) with the same load and peers.
    gw, port = start([os.environ.get("BENCH_GATEWAY", os.path.join(BIN, "tessera-gateway")),
                      "--config", config],
                     r"listening on .*:(\d+)")
    PROFILE["pid"], PROFILE["addr"] = gw.pid, f"127.0.0.1:{port}"
    m = re.search(r"metrics on (http://\S+)", gw.stdout.readline())
    PROFILE["metrics"] = m.group(1) if m else None
    return gw, port


def handler_histogram(method):
    """The gateway's tessera_rpc_duration_seconds buckets of one method
    (cumulative counts by upper bound, seconds): time inside the handler."""
    if not PROFILE["metrics"]:
        return None
    import urllib.request
    with urllib.request.urlopen(PROFILE["metrics"], timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'tessera_rpc_duration_seconds_bucket\{method="([^"]+)",le="([^"]+)"\} (\d+)',
                     line)
        if m and m.group(1) == method:
            out[m.group(2)] = int(m.group(3))
    return out


def handler_share(before, after, bound):
    """Fraction of the calls between two histograms whose handler time was
    at most `bound` (a bucket bound as printed, e.g. "0.00025")."""
    if not before or not after or bound not in after:
        return None
    total = after["+Inf"] - before.get("+Inf", 0)
    if total <= 0:
        return None
    return (after[bound] - before.get(bound, 0)) / total


def populate(db_path, n):
    """n deleted sandboxes, each with one revoked, still unexpired
    certificate (what DeleteSandbox leaves behind), written straight into
    the gateway's sqlite file while the gateway is stopped."""
    now = int(time.time())
    ids = [str(uuid.uuid4()) for _ in range(n)]
    db = sqlite3.connect(db_path, timeout=30)
    try:
        with db:
            db.executemany(
                "INSERT INTO sandboxes(id, name, driver, state, created_at, deleted_at) "
                "VALUES (?, ?, 'process', 'deleted', ?, ?)",
                ((sid, f"scale-{i}", now - 3600, now - 60) for i, sid in enumerate(ids)))
            db.executemany(
                "INSERT INTO certificates(serial, spiffe_id, sandbox_id, not_before, not_after, "
                "issued_at, revoked_at, revocation_reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'sandbox deleted')",
                ((secrets.token_hex(16), f"spiffe://{TD}/sandbox/{sid}", sid, now - 3600,
                  now + 7200, now - 3600, now - 60) for sid in ids))
        counts = (db.execute("SELECT count(*) FROM sandboxes").fetchone()[0],
                  db.execute("SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL")
                  .fetchone()[0])
    finally:
        db.close()
    return counts


def scale(gw, config, data, bundle, first_cert, first_key, ids_file, results, row):
    """Handshakes and unary calls with the bench's small store, then with
    SCALE_N more sandboxes and SCALE_N revoked serials: the gateway is
    stopped (its sandboxes survive it, by design), the rows are written into
    its sqlite file, and it is started again on the same data (so it loads
    the revoked serials into its in-memory set, as after any restart)."""
    def measure():
        addr = PROFILE["addr"]
        hs = load("handshake", addr, "--bundle", bundle, "--cert", first_cert, "--key",
                  first_key, "--threads", HS_THREADS, "--seconds", SECONDS)
        un = load("unary", addr, "--bundle", bundle, "--ids", ids_file, "--conns", 4,
                  "--seconds", SECONDS)
        return hs, un
    log(f"store scale: handshakes and unary calls, small store then +{SCALE_N} sandboxes "
        f"and {SCALE_N} revoked serials")
    small = measure()
    stop(gw)
    t0 = time.time()
    n_sb, n_rev = populate(os.path.join(data, "tessera.db"), SCALE_N)
    log(f"  populated in {time.time() - t0:.1f} s: {n_sb} sandboxes, {n_rev} revoked serials")
    t0 = time.time()
    gw, port = start_gateway(config)
    log(f"  gateway restarted in {time.time() - t0:.1f} s, RSS {rss_kib(gw.pid)} KiB")
    large = measure()
    results["scale"] = {"n": SCALE_N, "sandboxes": n_sb, "revoked": n_rev,
                        "small": {"handshake": small[0], "unary": small[1]},
                        "large": {"handshake": large[0], "unary": large[1]}}
    row(f"handshakes/s, {n_sb} sandboxes + {n_rev} revoked", large[0]["rate"], small[0]["rate"],
        "1/s", f"same gateway, {N_SANDBOXES}-sandbox store", "target ratio >= 0.90; gateway "
        f"CPU us/handshake {large[0].get('cpu_us_per_op')} vs {small[0].get('cpu_us_per_op')}")
    row(f"unary RPC/s, {n_sb} sandboxes + {n_rev} revoked", large[1]["rate"], small[1]["rate"],
        "1/s", f"same gateway, {N_SANDBOXES}-sandbox store", "target ratio >= 0.90; p99 "
        f"{large[1]['p99_us']} vs {small[1]['p99_us']} us; gateway CPU us/call "
        f"{large[1].get('cpu_us_per_op')} vs {small[1].get('cpu_us_per_op')}")
    return gw, port


def handshakes(addr, pki, bundle, first_cert, first_key, row):
    log(f"handshakes/s ({HS_THREADS} client threads, a new connection each)")
    hs_t = load("handshake", addr, "--bundle", bundle, "--cert", first_cert,
                "--key", first_key, "--threads", HS_THREADS, "--seconds", SECONDS)
    bare, bport = start([os.path.join(OUT, "bare_tls"), os.path.join(pki, "gateway.pem"),
                         os.path.join(pki, "gateway.key"), bundle, "2"],
                        r"listening on .*:(\d+)")
    hs_b = load("handshake", f"127.0.0.1:{bport}", "--bundle", bundle, "--cert",
                first_cert, "--key", first_key, "--threads", HS_THREADS, "--seconds", SECONDS,
                pid=bare.pid)
    stop(bare)
    row("mTLS handshakes/s", hs_t["rate"], hs_b["rate"], "1/s", "bare OpenSSL (C)",
        f"errors {hs_t['errors']}/{hs_b['errors']}; server CPU us/handshake "
        f"{hs_t.get('cpu_us_per_op')} vs {hs_b.get('cpu_us_per_op')}")
    return hs_t


def fmt_share(v):
    return "-" if v is None else f"{v * 100:.2f}%"


def unary(addr, pki, bundle, ids_file, work, results, row):
    log("unary GetSandboxConfig (4 persistent connections, sequential calls)")
    un = load("unary", addr, "--bundle", bundle, "--ids", ids_file, "--conns", 4,
              "--seconds", SECONDS)
    meth = "/tessera.v1.Gateway/GetSandboxConfig"
    h0 = handler_histogram(meth)
    load0 = os.getloadavg()[0]
    half = load("unary", addr, "--bundle", bundle, "--ids", ids_file, "--conns", 4,
                "--seconds", SECONDS, "--rate", max(1.0, un["rate"] / 2))
    h1 = handler_histogram(meth)
    # Where the tail is: inside the handler, or outside (queueing and
    # scheduling on a shared machine)?
    half["handler_le_250us"] = handler_share(h0, h1, "0.00025")
    half["handler_le_1ms"] = handler_share(h0, h1, "0.001")
    half["loadavg_1m"] = [load0, os.getloadavg()[0]]
    results["unary_peak"] = un
    results["unary_half"] = half
    gun = ghalf = None
    gref = os.path.join(OUT, "grpc_ref")
    if os.path.exists(gref):
        policy_file = os.path.join(work, "policy.yaml")
        with open(policy_file, "w") as f:
            f.write(POLICY)
        gp, gport = start([gref, os.path.join(pki, "gateway.pem"),
                           os.path.join(pki, "gateway.key"), bundle, ids_file, policy_file,
                           "2"], r"listening on .*:(\d+)")
        gaddr = f"127.0.0.1:{gport}"
        gun = load("unary", gaddr, "--bundle", bundle, "--ids", ids_file, "--conns", 4,
                   "--seconds", SECONDS, pid=gp.pid)
        ghalf = load("unary", gaddr, "--bundle", bundle, "--ids", ids_file, "--conns", 4,
                     "--seconds", SECONDS, "--rate", max(1.0, gun["rate"] / 2))
        stop(gp)
        results["grpc_cpp_unary_peak"] = gun
        results["grpc_cpp_unary_half"] = ghalf
    peer = "gRPC C++ 1.51 (Debian)" if gun else "gRPC C++ (not built)"
    row("unary GetSandboxConfig RPC/s", un["rate"], gun["rate"] if gun else None, "1/s",
        peer, f"p50/p90/p99 {un['p50_us']}/{un['p90_us']}/{un['p99_us']} us" +
        (f" vs {gun['p50_us']}/{gun['p90_us']}/{gun['p99_us']}" if gun else ""))
    row("unary p99 at half of peak (us)", half["p99_us"], ghalf["p99_us"] if ghalf else None,
        "us", peer, (f"at {half['rate']:.0f}/s vs {ghalf['rate']:.0f}/s; p50 "
                     f"{half['p50_us']} vs {ghalf['p50_us']} us" if ghalf else
                     f"at {half['rate']:.0f}/s; p50 {half['p50_us']} us") +
        f"; gateway handler time <= 250 us for {fmt_share(half['handler_le_250us'])}, "
        f"<= 1 ms for {fmt_share(half['handler_le_1ms'])} of the calls; load average "
        f"{half['loadavg_1m'][0]:.1f}-{half['loadavg_1m'][1]:.1f}")
    return un


def tail(addr, pki, bundle, ids_file, work, results, row):
    """Unary tail latency under an independent client: Debian's gRPC C++
    async client (bench/peers/grpc_load.cc), TAIL_STREAMS calls in flight
    over TAIL_CONNS connections, the gateway and then the gRPC C++ server."""
    gload = os.path.join(OUT, "grpc_load")
    if not os.path.exists(gload):
        log("tail: grpc_load not built (libgrpc++-dev missing); row skipped")
        return
    log(f"unary tail ({TAIL_STREAMS} streams over {TAIL_CONNS} connections, gRPC C++ client)")
    args = ["--bundle", bundle, "--ids", ids_file, "--conns", TAIL_CONNS, "--streams",
            TAIL_STREAMS, "--seconds", SECONDS]
    tt = load("tail", addr, *args, binary=gload)
    gt = None
    gref = os.path.join(OUT, "grpc_ref")
    if os.path.exists(gref):
        policy_file = os.path.join(work, "policy.yaml")
        with open(policy_file, "w") as f:
            f.write(POLICY)
        gp, gport = start([gref, os.path.join(pki, "gateway.pem"),
                           os.path.join(pki, "gateway.key"), bundle, ids_file, policy_file,
                           "2"], r"listening on .*:(\d+)")
        gt = load("tail", f"127.0.0.1:{gport}", *args, binary=gload, pid=gp.pid)
        stop(gp)
    results["tail"] = {"tessera": tt, "grpc_cpp": gt}
    row(f"unary p99 us, {TAIL_STREAMS} streams / {TAIL_CONNS} conns (lower is better)",
        tt["p99_us"], gt["p99_us"] if gt else None, "us",
        "gRPC C++ 1.51 server" if gt else "gRPC C++ (not built)",
        f"gRPC C++ client; p50/p90/p99/p99.9 {tt['p50_us']}/{tt['p90_us']}/{tt['p99_us']}/"
        f"{tt['p999_us']} us at {tt['rate']:.0f}/s" +
        (f" vs {gt['p50_us']}/{gt['p90_us']}/{gt['p99_us']}/{gt['p999_us']} at "
         f"{gt['rate']:.0f}/s" if gt else "") +
        f"; server CPU us/call {tt.get('cpu_us_per_op')}" +
        (f" vs {gt.get('cpu_us_per_op')}" if gt else ""))


def renew(addr, pki, bundle, ids_file, work, issuing_cert, results, row):
    """RenewCertificate vs cfssl serve /api/v1/cfssl/sign, the same number
    of requests in flight (one per connection) for both."""
    log(f"issuance/s ({RENEW_INFLIGHT} connections, one request in flight on each, "
        "pre-generated P-256 CSRs)")
    rn = load("renew", addr, "--bundle", bundle, "--ids", ids_file, "--threads", RENEW_INFLIGHT,
              "--seconds", SECONDS)
    cf = None
    if subprocess.run(["sh", "-c", "command -v cfssl"], capture_output=True).returncode == 0:
        ca_file = os.path.join(work, "cfssl-ca.pem")
        with open(ca_file, "wb") as f:
            f.write(issuing_cert.public_bytes(serialization.Encoding.PEM))
        cfg = os.path.join(work, "cfssl.json")
        with open(cfg, "w") as f:
            json.dump({"signing": {"default": {"expiry": "1h"}, "profiles": {"tessera": {
                "usages": ["digital signature", "client auth"], "expiry": "1h"}}}}, f)
        cport = free_port()
        cfp = subprocess.Popen(["cfssl", "serve", "-address", "127.0.0.1", "-port",
                                str(cport), "-ca", ca_file, "-ca-key",
                                os.path.join(pki, "issuing.key"), "-config", cfg],
                               stdout=subprocess.DEVNULL, stderr=open(
                                   os.path.join(work, "cfssl.log"), "w"))
        procs.append(cfp)
        if wait_port(cport):
            cf = load("cfssl", f"127.0.0.1:{cport}", "--threads", RENEW_INFLIGHT, "--seconds",
                      SECONDS, "--profile", "tessera", pid=cfp.pid)
        else:
            log("cfssl serve did not start: " + open(os.path.join(work, "cfssl.log")).read())
        stop(cfp)
    results["renew"] = rn
    results["cfssl"] = cf
    row("issuance/s (RenewCertificate)", rn["rate"], cf["rate"] if cf else None, "1/s",
        "cfssl serve /api/v1/cfssl/sign", f"{RENEW_INFLIGHT} in flight each; errors "
        f"{rn['errors']}/{cf['errors'] if cf else '-'}; server CPU us/issuance "
        f"{rn.get('cpu_us_per_op')} vs {cf.get('cpu_us_per_op') if cf else '-'}")
    sign, verify = openssl_speed()
    # Issuance = one CSR signature check + one certificate signature.
    per_core = 1.0 / (1.0 / sign + 1.0 / verify)
    ceiling = per_core * (os.cpu_count() or 1)
    results["openssl_speed_ecdsap256"] = {"sign_per_s": sign, "verify_per_s": verify,
                                          "issuance_ceiling_per_s": ceiling}
    row("issuance/s vs crypto ceiling", rn["rate"], ceiling, "1/s",
        f"openssl speed: sign {sign:.0f}/s + verify {verify:.0f}/s per core, x{os.cpu_count()}")


def logs(addr, bundle, ids_file, row):
    log("log lines/s (2 streams, 100 lines of 85 bytes per message)")
    lg = load("logs", addr, "--bundle", bundle, "--ids", ids_file, "--threads", 2,
              "--seconds", SECONDS, "--batch", 100)
    row("log lines/s (PushSandboxLogs)", lg["rate"], None, "1/s", "-",
        f"errors {lg['errors']}")


def conns(addr, bundle, ids_file, gw, results, row):
    """Gateway RSS per idle connection at CONN_COUNTS open connections (each
    made one call, then idle; the RSS is read once the gateway parked them),
    then the cost of waking CONN_WAKE of them for one call each."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    counts = [n for n in CONN_COUNTS if n + 1000 <= limit]
    if len(counts) < len(CONN_COUNTS):
        # Not allowed to raise the hard limit (no CAP_SYS_RESOURCE): the
        # most this machine allows instead, and say so.
        most = (limit - 2000) // 1000 * 1000
        if most > (max(counts) if counts else 0):
            counts.append(most)
        log(f"conns: the open-file limit is {limit} and cannot be raised here; "
            f"{', '.join(str(n) for n in CONN_COUNTS if n + 1000 > limit)} connections "
            f"cannot be opened, measuring at {', '.join(map(str, counts))} instead")
        results["conns_fd_limit"] = limit
    if not counts:
        return
    log(f"gateway RSS with {', '.join(map(str, counts))} open connections, then waking "
        f"{CONN_WAKE} of them")
    try:
        cn = load("conns", addr, "--bundle", bundle, "--ids", ids_file, "--count",
                  ",".join(map(str, counts)), "--threads", 2, "--pid", gw.pid, "--wake",
                  CONN_WAKE, "--hold", CONN_HOLD, timeout=3600 + CONN_HOLD)
    except RuntimeError as e:
        log(str(e))
        return
    results["conns"] = cn
    for st in cn["stages"]:
        row(f"RSS KiB per idle connection ({st['open']} open)", st["per_conn_kib"], 16.0, "KiB",
            "target 16 KiB", f"RSS {cn['rss_before_kib']} -> {st['rss_kib']} KiB; "
            f"{st['open']} set up in {st['setup_seconds']} s")
    w = cn["wake"]
    row("call on an idle connection, p50 us", w["idle_p50_us"], w["hot_p50_us"], "us",
        "the same call again at once",
        f"{w['n']} idle connections woken one after the other; p99 {w['idle_p99_us']} vs "
        f"{w['hot_p99_us']} us; gateway CPU {w['idle_cpu_us_per_call']} vs "
        f"{w['hot_cpu_us_per_call']} us/call (idle background subtracted); RSS after "
        f"{w['rss_after_wake_kib']} KiB")


def postgres(config, work, bundle, results, row):
    """The store on PostgreSQL (docs/operations.md, "Replicas on PostgreSQL"):
    issuance/s and unary RPC/s with one gateway, then with two replicas on
    the same database (the load split between them), beside the sqlite
    rows of this run; server CPU per operation summed over the replicas. A
    cluster of its own (tests/pg/cluster.sh), removed at the end."""
    cluster = os.path.join(os.environ.get("TSR_ROOT", "."), "tests", "pg", "cluster.sh")
    # Not under `work` (0700, root's): the server runs as the postgres user.
    pgdir = tempfile.mkdtemp(prefix="tsr-bench-pg-")
    dsn = subprocess.run([cluster, "start", pgdir], check=True, capture_output=True,
                         text=True).stdout.strip()
    gws, sids = [], []
    try:
        base = open(config).read()
        for i in range(2):
            d = os.path.join(work, f"pgdata{i}")
            text = base.replace(f"data_dir: {os.path.join(work, 'data')}", f"data_dir: {d}")
            text += f'store:\n  backend: postgres\n  dsn: "{dsn}"\n'
            if i == 1:
                text += f"secrets:\n  key_file: {os.path.join(work, 'pgdata0', 'secrets.key')}\n"
            cfg = os.path.join(work, f"gateway-pg{i}.yaml")
            with open(cfg, "w") as fh:
                fh.write(text)
            p, port = start([os.path.join(BIN, "tessera-gateway"), "--config", cfg],
                            r"listening on .*:(\d+)")
            gws.append((p, f"127.0.0.1:{port}", d))
        pki = os.path.dirname(bundle)
        creds = grpc.ssl_channel_credentials(
            root_certificates=open(bundle, "rb").read(),
            private_key=open(os.path.join(pki, "users", "admin.key"), "rb").read(),
            certificate_chain=open(os.path.join(pki, "users", "admin.pem"), "rb").read())
        lines = []
        with grpc.secure_channel(f"localhost:{gws[0][1].split(':')[1]}", creds) as ch:
            stub = pb_grpc.GatewayStub(ch)
            for i in range(N_SANDBOXES):
                sid = stub.CreateSandbox(pb.CreateSandboxRequest(
                    name=f"bench-pg-{i}", policy=POLICY), timeout=30).sandbox.id
                sids.append(sid)
                placed = os.path.join(gws[0][2], "sandboxes", sid, "identity")
                lines.append(f"{sid} {placed}/cert.pem {placed}/key.pem\n")
        ids_file = os.path.join(work, "ids-pg.txt")
        with open(ids_file, "w") as fh:
            fh.writelines(lines)

        def run(mode, replicas, extra):
            """One measurement split over the replicas, all at once."""
            out = [None] * replicas
            cpu0 = [cpu_s(gws[i][0].pid) for i in range(replicas)]

            def one(i):
                out[i] = load(mode, gws[i][1], "--bundle", bundle, "--ids", ids_file, *extra)
            ts = [threading.Thread(target=one, args=(i,)) for i in range(replicas)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            ops = sum(r["ops"] for r in out)
            cpu = sum(cpu_s(gws[i][0].pid) - cpu0[i] for i in range(replicas))
            return {"rate": sum(r["rate"] for r in out), "ops": ops,
                    "errors": sum(r.get("errors", 0) for r in out),
                    "cpu_us_per_op": round(cpu / ops * 1e6, 1) if ops else None}

        res = {}
        for n in (1, 2):
            log(f"postgres, {n} replica(s): issuance/s ({RENEW_INFLIGHT} in flight in all)")
            res[f"renew_{n}"] = run("renew", n, ["--threads", RENEW_INFLIGHT // n,
                                                 "--seconds", SECONDS])
            log(f"postgres, {n} replica(s): unary GetSandboxConfig (4 connections each)")
            res[f"unary_{n}"] = run("unary", n, ["--conns", 4, "--seconds", SECONDS])
        results["postgres"] = res
        sq_renew = results.get("renew", {}).get("rate")
        sq_unary = results.get("unary_peak", {}).get("rate")
        for n in (1, 2):
            rn, un = res[f"renew_{n}"], res[f"unary_{n}"]
            row(f"issuance/s, PostgreSQL store, {n} replica(s)", rn["rate"], sq_renew, "1/s",
                "sqlite store, 1 gateway (this run)",
                f"errors {rn['errors']}; server CPU us/issuance {rn['cpu_us_per_op']} "
                f"(all replicas)")
            row(f"unary RPC/s, PostgreSQL store, {n} replica(s)", un["rate"], sq_unary, "1/s",
                "sqlite store, 1 gateway (this run)",
                f"errors {un['errors']}; server CPU us/call {un['cpu_us_per_op']} "
                f"(all replicas)")
    finally:
        if gws:
            try:
                pki = os.path.dirname(bundle)
                creds = grpc.ssl_channel_credentials(
                    root_certificates=open(bundle, "rb").read(),
                    private_key=open(os.path.join(pki, "users", "admin.key"), "rb").read(),
                    certificate_chain=open(os.path.join(pki, "users", "admin.pem"),
                                           "rb").read())
                with grpc.secure_channel(f"localhost:{gws[0][1].split(':')[1]}", creds) as ch:
                    stub = pb_grpc.GatewayStub(ch)
                    for sid in sids:
                        stub.DeleteSandbox(pb.DeleteSandboxRequest(id=sid), timeout=30)
            except grpc.RpcError as e:
                log(f"postgres cleanup: {e.code()}")
        for p, _, _ in gws:
            stop(p)
        subprocess.run([cluster, "stop", pgdir], check=False)


def cleanup(port, creds, sandbox_ids, data):
    # Sandboxes outlive the gateway by design: delete them through it
    # (the driver stops their supervisors), then stop everything.
    try:
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            stub = pb_grpc.GatewayStub(ch)
            for sid in sandbox_ids:
                try:
                    stub.DeleteSandbox(pb.DeleteSandboxRequest(id=sid), timeout=30)
                except grpc.RpcError as e:
                    log(f"DeleteSandbox {sid}: {e.code()}")
    except Exception as e:  # noqa: BLE001 - cleanup must go on
        log(f"sandbox cleanup: {e}")
    for p in procs:
        stop(p)
    for pidfile in glob.glob(os.path.join(data, "sandboxes", "*", "pid")):
        try:
            pid = int(open(pidfile).read().split()[0])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def report(results, rows):
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    fmt = "{:<38} {:>12} {:>12} {:>8}  {}"
    print(fmt.format("row", "Tessera", "peer", "T/peer", "peer / note"))

    def num(v):
        return "-" if v is None else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}")
    for r in rows:
        print(fmt.format(r["row"], num(r["tessera"]), num(r["peer"]),
                         "-" if r["ratio"] is None else f"{r['ratio']:.2f}",
                         r["peer_name"] + ("; " + r["note"] if r["note"] else "")))
    print(f"gateway RSS idle: {results['gateway_rss_idle_kib']} KiB; "
          f"results: {os.path.join(OUT, 'results.json')}")


if __name__ == "__main__":
    main()
