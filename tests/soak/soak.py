#!/usr/bin/python3
"""The bounded soak of `make soak` (docs/security.md, "Soak"); never part of
`make test` (tests/run.sh only collects tests/integration/).

N sandboxes (default 200) are created through the real gateway
(CreateSandbox as admin) with the process driver in bubblewrap, each running
the real tessera-supervisor with a workload that prints one numbered line
every SOAK_LINE_INTERVAL seconds. Their certificates live 5 min (the
shortest certificates.sandbox_ttl) and each supervisor's --renew-before
rotates every one SOAK_ROTATE seconds (default 30) after its issue. While
they run, a client loop makes
sandbox-scoped calls with the sandboxes' own identities as they are on disk
(own sandbox: OK; another or a missing one: PERMISSION_DENIED "cross-sandbox
access denied"; an admin RPC: PERMISSION_DENIED) and user calls (viewer,
admin). The gateway's RSS, descriptors, open connections and zombie
children are sampled every SOAK_SAMPLE_EVERY seconds.

Phases: pre-flight (root, bwrap, limits), creation (staggered), warm-up
(SOAK_WARMUP s, default two rotations), the measured soak (SOAK_SECONDS, default
600), the checks, teardown (DeleteSandbox for all, the gateway stopped) and
the leftover-process check. Asserted:

* rotations: every supervisor alive at the end, its cert.pem unexpired,
  issued within the last two rotations, recorded and not revoked; no "rotation
  failed" in any supervisor.log; RenewCertificate never answered with
  anything but OK (metrics), no audit "deny" of a renewal; every sandbox
  rotated at least ROTATION_FLOOR of what its lifetime allows;
* denials: every denial the gateway counted (tessera_denials_total by
  reason) is one the client loop provoked, and every client call got
  exactly the status docs/identity.md gives;
* logs: per sandbox the stored workload lines are 1..max without a gap,
  nothing was counted as dropped, and the pipeline caught up: a line
  written after the end of the soak is stored (so every line written
  before it is);
* the gateway: RSS at the end within max(RSS_SLACK_KIB, 20 %) of the start
  (after warm-up), descriptors within max(FD_SLACK, 10 %), no zombie child
  at the end, exit status 0 after SIGTERM (LeakSanitizer in ASan builds);
* teardown: no process of any sandbox left (tracked pid + start time),
  nothing under the data dir's sandboxes/.

Prints a table and writes build/soak/results.json (SOAK_OUT)."""
import datetime
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

import gwtest  # noqa: E402
from gwtest import code_of, pb  # noqa: E402

S = grpc.StatusCode


def env_num(name, default, cast=int):
    v = os.environ.get(name, "")
    return cast(v) if v.strip() else default


N = env_num("SOAK_SANDBOXES", 200)
SECONDS = env_num("SOAK_SECONDS", 600)
ROTATE = env_num("SOAK_ROTATE", 30)
WARMUP = env_num("SOAK_WARMUP", 2 * ROTATE)
LINE_INTERVAL = env_num("SOAK_LINE_INTERVAL", 1.0, float)
SAMPLE_EVERY = env_num("SOAK_SAMPLE_EVERY", 10)
CLIENT_PAUSE = env_num("SOAK_CLIENT_PAUSE", 0.5, float)
OUT = os.environ.get("SOAK_OUT") or os.path.join(
    os.environ.get("TSR_BUILD_DIR", os.path.join(ROOT, "build")), "soak", "results.json")
# Bounds (documented in docs/security.md): growth from the start sample
# (after warm-up) to the end sample.
RSS_SLACK_KIB = 16 * 1024
RSS_SLACK_FRACTION = 0.20
FD_SLACK = 32
FD_SLACK_FRACTION = 0.10
ROTATION_FLOOR = 0.6       # of lifetime / ROTATE: the schedule is ROTATE after each issue
LOG_CATCH_UP_S = 15        # after the end, lines must arrive within this

failures = []


def fail(msg):
    failures.append(msg)
    print("SOAK FAIL: " + msg, flush=True)


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


# ---- processes ----------------------------------------------------------------


def proc_stat(pid):
    """(state, ppid, starttime) or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[1]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def all_procs():
    out = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            st = proc_stat(int(e))
            if st:
                out[int(e)] = st
    return out


def descendants(root, procs):
    kids = {}
    for pid, (_, ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += kids.get(p, [])
    return found


def preflight():
    info = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    if os.geteuid() != 0:
        print("soak: needs root (bubblewrap sandboxes with a separate workload uid)")
        sys.exit(77)
    if shutil.which("bwrap") is None:
        print("soak: bwrap not found")
        sys.exit(77)
    # Each sandbox: bwrap, its init, the supervisor, the workload; the
    # gateway: about 2 connections per supervisor plus the client loop's.
    need_fds = 4 * N + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need_fds:
        if hard != resource.RLIM_INFINITY and hard < need_fds:
            print(f"soak: RLIMIT_NOFILE hard limit {hard} < {need_fds} needed")
            sys.exit(1)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need_fds, hard))
    info["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    info["nproc"] = nproc
    if nproc != resource.RLIM_INFINITY and nproc < 6 * N + 256:
        print(f"soak: RLIMIT_NPROC {nproc} too low for {N} sandboxes")
        sys.exit(1)
    with open("/proc/sys/kernel/pid_max") as f:
        info["pid_max"] = int(f.read())
    with open("/proc/meminfo") as f:
        info["mem_available_kib"] = int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1))
    return info


# ---- the gateway and its sandboxes ----------------------------------------------


def workload_args():
    """A perl one-liner without spaces (supervisor_args splits on spaces),
    quotes or backslashes (it goes through YAML): line k is soak-line-k."""
    script = ("$|=1;for($i=1;;$i++){print(q(soak-line-).$i);select(undef,undef,undef,%s)}"
              % LINE_INTERVAL)
    return f"--min-rotate-seconds 1 {gwtest.renew_before(ROTATE)} -- /usr/bin/perl -le {script}"


class Sandbox:
    def __init__(self, sid, name, created):
        self.id = sid
        self.name = name
        self.created = created
        self.dir = None
        self.root_pid = None


def read_identity(sdir, tries=20):
    """cert.pem and key.pem as the supervisor has them, read consistently
    (a rotation renames key then cert: retry until the key matches)."""
    ident = os.path.join(sdir, "identity")
    for _ in range(tries):
        try:
            chain = open(os.path.join(ident, "cert.pem"), "rb").read()
            key = open(os.path.join(ident, "key.pem"), "rb").read()
            cert = gwtest.load_chain(os.path.join(ident, "cert.pem"))[0]
            k = serialization.load_pem_private_key(key, None)
            fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            if k.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt) and \
                    chain == open(os.path.join(ident, "cert.pem"), "rb").read():
                return gwtest.Identity(chain, key), cert
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    raise RuntimeError("no consistent identity in " + ident)


# ---- the client loop ------------------------------------------------------------


class ClientLoop(threading.Thread):
    def __init__(self, g, sandboxes):
        super().__init__(daemon=True)
        self.g = g
        self.sandboxes = sandboxes
        self.stop_flag = threading.Event()
        self.calls = 0
        self.expected_denials = {"cross_sandbox": 0, "permission": 0}
        self.unexpected = []
        self.rng = random.Random(1)

    def expect(self, what, fn, want, details=None):
        code, det = code_of(fn)
        self.calls += 1
        if code != want or (details is not None and det != details):
            self.unexpected.append(f"{what}: got {code.name} {det!r}, want {want.name}")

    def run(self):
        admin = self.g.stub(self.g.user("admin"))
        bob = self.g.stub(self.g.user("bob"))
        while not self.stop_flag.is_set():
            a, b = self.rng.sample(self.sandboxes, 2)
            ghost = str(uuid.uuid4())
            try:
                ident, _ = read_identity(a.dir)
            except RuntimeError as e:
                self.unexpected.append(str(e))
                continue
            ch = self.g.channel(ident)
            try:
                mine = gwtest.pb_grpc.GatewayStub(ch)
                self.expect("own GetSandboxConfig", lambda: mine.GetSandboxConfig(
                    pb.GetSandboxConfigRequest(sandbox_id=a.id), timeout=30), S.OK)
                self.expect("cross GetSandboxConfig", lambda: mine.GetSandboxConfig(
                    pb.GetSandboxConfigRequest(sandbox_id=b.id), timeout=30),
                    S.PERMISSION_DENIED, "cross-sandbox access denied")
                self.expect("missing GetSandboxConfig", lambda: mine.GetSandboxConfig(
                    pb.GetSandboxConfigRequest(sandbox_id=ghost), timeout=30),
                    S.PERMISSION_DENIED, "cross-sandbox access denied")
                self.expect("cross GetSandboxProviderEnvironment",
                            lambda: mine.GetSandboxProviderEnvironment(
                                pb.GetSandboxProviderEnvironmentRequest(sandbox_id=b.id),
                                timeout=30),
                            S.PERMISSION_DENIED, "cross-sandbox access denied")
                self.expect("sandbox ListSandboxes", lambda: mine.ListSandboxes(
                    pb.ListSandboxesRequest(), timeout=30), S.PERMISSION_DENIED)
                self.expected_denials["cross_sandbox"] += 3
                self.expected_denials["permission"] += 1
            finally:
                ch.close()
            self.expect("viewer GetSandbox", lambda: bob.GetSandbox(
                pb.GetSandboxRequest(id=a.id), timeout=30), S.OK)
            self.expect("viewer DeleteSandbox", lambda: bob.DeleteSandbox(
                pb.DeleteSandboxRequest(id=a.id), timeout=30), S.PERMISSION_DENIED)
            self.expected_denials["permission"] += 1
            self.expect("admin GetSandbox missing", lambda: admin.GetSandbox(
                pb.GetSandboxRequest(id=ghost), timeout=30), S.NOT_FOUND)
            self.stop_flag.wait(CLIENT_PAUSE)


# ---- sampling ------------------------------------------------------------------


class Sampler(threading.Thread):
    def __init__(self, g, sandboxes, t0):
        super().__init__(daemon=True)
        self.g = g
        self.sandboxes = sandboxes
        self.t0 = t0
        self.samples = []
        self.seen = {}          # pid -> starttime of every sandbox process ever seen
        self.dead = {}          # sandbox id -> first time found dead
        self.stop_flag = threading.Event()

    def sample(self):
        procs = all_procs()
        gw_pid = self.g.pid
        zombies = sum(1 for p, (st, pp, _) in procs.items() if pp == gw_pid and st == "Z")
        alive = 0
        for sb in self.sandboxes:
            st = procs.get(sb.root_pid)
            if st and st[0] != "Z":
                alive += 1
                for p in descendants(sb.root_pid, procs):
                    if p in procs:
                        self.seen[p] = procs[p][2]
            elif sb.id not in self.dead:
                self.dead[sb.id] = time.time()
        m = self.g.scrape()
        s = {"t": round(time.time() - self.t0, 1), "rss_kib": self.g.rss_kib(),
             "fds": self.g.fd_count(), "zombies": zombies, "sandboxes_alive": alive,
             "open_connections": int(gwtest.metric(m, "tessera_open_connections")),
             "threads": len(os.listdir(f"/proc/{gw_pid}/task")),
             "loadavg1": round(os.getloadavg()[0], 2)}
        self.samples.append(s)
        return s

    def run(self):
        while not self.stop_flag.wait(SAMPLE_EVERY):
            try:
                s = self.sample()
                log("sample " + json.dumps(s))
            except Exception as e:  # a failed scrape is a finding, not a crash
                fail(f"sampling failed: {e!r}")


# ---- checks --------------------------------------------------------------------


def all_logs(admin, sid):
    out, since = [], 0
    while True:
        lines = admin.GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid, since=since,
                                                              limit=10000), timeout=60).lines
        if not lines:
            return out
        out.extend(lines)
        since = lines[-1].seq


def dropped(g, sid):
    db = sqlite3.connect(f"file:{g.db_path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT COALESCE(SUM(dropped), 0) FROM log_drops WHERE sandbox_id = ?",
                          (sid,)).fetchone()[0]
    finally:
        db.close()


def check_logs(g, admin, sandboxes, t_end_ms):
    total = dup_total = 0
    max_lag = 0.0
    for sb in sandboxes:
        lines = [l for l in all_logs(admin, sb.id) if l.stream == "stdout"]
        nums, stamps = [], {}
        for l in lines:
            m = re.fullmatch(rb"soak-line-(\d+)", l.text)
            if not m:
                fail(f"{sb.id}: unexpected stdout line {l.text[:80]!r}")
                continue
            n = int(m.group(1))
            nums.append(n)
            stamps[n] = l.timestamp_ms
        got = set(nums)
        top = max(got) if got else 0
        missing = set(range(1, top + 1)) - got
        if missing:
            fail(f"{sb.id}: {len(missing)} workload lines missing below {top} "
                 f"(first {sorted(missing)[:5]})")
        d = dropped(g, sb.id)
        if d:
            fail(f"{sb.id}: {d} lines counted as dropped")
        if not got or stamps[top] < t_end_ms:
            fail(f"{sb.id}: no line written after the end of the soak was stored "
                 f"(last {top} at {stamps.get(top)})")
        written_by_end = sum(1 for n in got if stamps[n] <= t_end_ms)
        total += written_by_end
        dup_total += len(nums) - len(got)
        if got:
            first_after = min((stamps[n] for n in got if stamps[n] >= t_end_ms), default=None)
            if first_after is not None:
                max_lag = max(max_lag, (first_after - t_end_ms) / 1000.0)
    return {"lines_stored": total, "duplicates": dup_total,
            "gaps": sum(1 for f in failures if "lines missing" in f),
            "dropped": sum(dropped(g, sb.id) for sb in sandboxes)}


def check_rotations(g, admin, sandboxes, now):
    rotations = 0
    per = []
    renew_failures_logged = 0
    for sb in sandboxes:
        certs = admin.ListCertificates(pb.ListCertificatesRequest(sandbox_id=sb.id),
                                       timeout=60).certificates
        n = len(certs) - 1
        rotations += n
        per.append(n)
        lifetime = now - sb.created
        floor = int(ROTATION_FLOOR * lifetime / ROTATE)
        if n < floor:
            fail(f"{sb.id}: {n} rotations in {lifetime:.0f} s, expected at least {floor}")
        try:
            _, cert = read_identity(sb.dir)
        except RuntimeError as e:
            fail(str(e))
            continue
        serial = gwtest.serial_hex(cert)
        rec = [c for c in certs if c.serial.lstrip("0") == serial.lstrip("0")]
        na = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp()
        nb = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc).timestamp()
        if not rec:
            fail(f"{sb.id}: the certificate on disk ({serial}) is not in the store")
        elif rec[0].revoked_at:
            fail(f"{sb.id}: the certificate on disk is revoked")
        if na <= now:
            fail(f"{sb.id}: the certificate on disk expired at {na}")
        if nb + 60 < now - 2 * ROTATE:
            fail(f"{sb.id}: the certificate on disk is stale (notBefore {nb})")
        try:
            text = open(os.path.join(sb.dir, "supervisor.log"), errors="replace").read()
        except OSError as e:
            fail(f"{sb.id}: supervisor.log: {e}")
            continue
        bad = len(re.findall(r"rotation failed|rotation: cannot|kept its old", text))
        renew_failures_logged += bad
        if bad:
            fail(f"{sb.id}: {bad} rotation failures in supervisor.log: "
                 + re.findall(r".*rotation.*", text)[-1])
    return {"rotations": rotations, "rotations_min_per_sandbox": min(per),
            "rotations_max_per_sandbox": max(per),
            "renew_failures_in_supervisor_logs": renew_failures_logged}


def metric_sum(m, name, **match):
    total = 0.0
    for (n, labels), v in m.items():
        if n == name and all(dict(labels).get(k) == x for k, x in match.items()):
            total += v
    return total


def main():
    info = preflight()
    log(f"soak: {N} sandboxes, TTL {gwtest.SHORT_TTL}, rotation every {ROTATE} s, "
        f"warm-up {WARMUP} s, soak {SECONDS} s, "
        f"a line every {LINE_INTERVAL} s; {info}")
    g = gwtest.Gateway(
        sandbox_ttl=gwtest.SHORT_TTL, real_supervisor=True, renew_limit=1000,
        metrics=True, limits="max_connections: 20000",
        driver_options={"process": {"supervisor_args": workload_args(),
                                    "bubblewrap": "always", "stop_grace_ms": "5000"}})
    admin = g.stub(g.user("admin"))
    t0 = time.time()
    sandboxes = []
    results = {"config": {"sandboxes": N, "ttl_s": gwtest.SHORT_TTL_S, "rotate_s": ROTATE,
                          "warmup_s": WARMUP, "soak_s": SECONDS,
                          "line_interval_s": LINE_INTERVAL}, "machine": info}
    sampler = None
    try:
        # ---- creation, staggered over about half a rotation at least, so
        # that the rotations do not come in one wave.
        stagger = max(0.0, (ROTATE / 2.0) / N)
        for i in range(N):
            name = f"soak-{i:03d}"
            r = admin.CreateSandbox(pb.CreateSandboxRequest(
                name=name, policy=gwtest.POLICY, provider_env={"EXAMPLE_API_KEY": "k" + name}),
                timeout=120)
            if r.sandbox.state != "running":
                fail(f"{name}: state {r.sandbox.state}")
            sb = Sandbox(r.sandbox.id, name, time.time())
            sb.dir = os.path.join(g.data_dir, "sandboxes", sb.id)
            with open(os.path.join(sb.dir, "pid")) as f:
                sb.root_pid = int(f.read().split()[0])
            sandboxes.append(sb)
            if (i + 1) % 25 == 0:
                log(f"created {i + 1}/{N} (gateway RSS {g.rss_kib()} KiB, {g.fd_count()} fds, "
                    f"load {os.getloadavg()[0]:.1f})")
            time.sleep(stagger)
        results["creation_s"] = round(time.time() - t0, 1)
        sampler = Sampler(g, sandboxes, t0)
        sampler.sample()
        sampler.start()
        client = ClientLoop(g, sandboxes)
        client.start()
        log(f"all {N} created in {results['creation_s']} s; warm-up {WARMUP} s")
        time.sleep(WARMUP)
        start_sample = sampler.sample()
        m0 = g.scrape()
        denials0 = {dict(l)["reason"]: v for (n, l), v in m0.items()
                    if n == "tessera_denials_total"}
        expected0 = dict(client.expected_denials)
        log(f"soak starts: {json.dumps(start_sample)}")
        time.sleep(SECONDS)
        end_sample = sampler.sample()
        t_end = time.time()
        client.stop_flag.set()
        client.join(timeout=120)
        sampler.stop_flag.set()
        sampler.join(timeout=60)
        m1 = g.scrape()
        log(f"soak ends: {json.dumps(end_sample)}")

        # ---- denials: exactly the ones the client loop provoked
        denials1 = {dict(l)["reason"]: v for (n, l), v in m1.items()
                    if n == "tessera_denials_total"}
        delta = {r: int(denials1.get(r, 0) - denials0.get(r, 0)) for r in denials1}
        want = {r: client.expected_denials.get(r, 0) - expected0.get(r, 0) for r in delta}
        # The loop's iteration in flight at the start sample may count on
        # either side: allow one iteration's worth.
        for r in delta:
            if abs(delta[r] - want[r]) > 4 or (want[r] == 0 and delta[r] != 0):
                fail(f"denials {r}: gateway counted {delta[r]}, the client provoked {want[r]}")
        for u in client.unexpected[:20]:
            fail("client: " + u)
        if len(client.unexpected) > 20:
            fail(f"client: {len(client.unexpected) - 20} more unexpected answers")
        if client.calls == 0:
            fail("the client loop made no call")

        # ---- the supervisors: all alive, all rotating
        if sampler.dead:
            fail(f"{len(sampler.dead)} sandboxes died: " + ", ".join(list(sampler.dead)[:5]))
        renew_codes = {dict(l)["code"]: v for (n, l), v in m1.items()
                       if n == "tessera_rpcs_total"
                       and dict(l).get("method") == "/tessera.v1.Gateway/RenewCertificate"}
        renew_bad = sum(v for c, v in renew_codes.items() if c not in ("OK", "0"))
        if renew_bad:
            fail(f"RenewCertificate answered non-OK {renew_bad} times: {renew_codes}")
        audit_renew_deny = sum(1 for l in g.audit_lines()
                               if '"decision":"deny"' in l and "RenewCertificate" in l)
        if audit_renew_deny:
            fail(f"{audit_renew_deny} audited renewal denials")
        for name in ("tessera_store_errors_total", "tessera_connections_rejected_total"):
            if metric_sum(m1, name):
                fail(f"{name} = {metric_sum(m1, name)}")
        if metric_sum(m1, "tessera_handshake_failures_total", reason="tls"):
            fail("TLS handshake failures: %d" % metric_sum(m1, "tessera_handshake_failures_total",
                                                          reason="tls"))
        # Give the log pipeline time to deliver what was written before t_end.
        time.sleep(LOG_CATCH_UP_S)
        now = time.time()
        rot = check_rotations(g, admin, sandboxes, now)
        logs = check_logs(g, admin, sandboxes, int(t_end * 1000))
        m2 = g.scrape()   # issued counts as of the rotation check

        # ---- the gateway's resources
        samples = [s for s in sampler.samples if s["t"] >= start_sample["t"]]
        rss_max = max(s["rss_kib"] for s in samples)
        fds_max = max(s["fds"] for s in samples)
        rss_bound = start_sample["rss_kib"] + max(RSS_SLACK_KIB,
                                                  RSS_SLACK_FRACTION * start_sample["rss_kib"])
        fd_bound = start_sample["fds"] + max(FD_SLACK, FD_SLACK_FRACTION * start_sample["fds"])
        if end_sample["rss_kib"] > rss_bound:
            fail(f"gateway RSS grew from {start_sample['rss_kib']} to {end_sample['rss_kib']} KiB "
                 f"(bound {rss_bound:.0f})")
        if end_sample["fds"] > fd_bound:
            fail(f"gateway fds grew from {start_sample['fds']} to {end_sample['fds']} "
                 f"(bound {fd_bound:.0f})")

        results.update({
            "gateway": {
                "rss_kib": {"start": start_sample["rss_kib"], "end": end_sample["rss_kib"],
                            "max": rss_max, "bound": int(rss_bound)},
                "fds": {"start": start_sample["fds"], "end": end_sample["fds"], "max": fds_max,
                        "bound": int(fd_bound)},
                "threads": {"start": start_sample["threads"], "end": end_sample["threads"]},
                "open_connections": {"start": start_sample["open_connections"],
                                     "end": end_sample["open_connections"],
                                     "max": max(s["open_connections"] for s in samples)},
                "zombies_max": max(s["zombies"] for s in samples),
            },
            "rotations": rot,
            "certificates_issued": {k: int(metric_sum(m2, "tessera_certificates_issued_total",
                                                      kind=k)) for k in ("create", "renew")},
            "renew_codes": {c: int(v) for c, v in renew_codes.items()},
            "logs": logs,
            "denials": {"gateway": delta, "provoked": want,
                        "unexpected_answers": len(client.unexpected)},
            "client_calls": client.calls,
            "rpcs_total": int(metric_sum(m1, "tessera_rpcs_total")),
            "loadavg1": {"start": start_sample["loadavg1"], "end": end_sample["loadavg1"],
                         "max": max(s["loadavg1"] for s in samples)},
            "samples": sampler.samples,
        })
    finally:
        if sampler is not None:
            sampler.stop_flag.set()
        teardown(g, admin, sandboxes, sampler, results)
    results["failures"] = failures
    results["passed"] = not failures
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    table(results)
    print(f"results: {OUT}")
    print("soak: PASSED" if not failures else f"soak: FAILED ({len(failures)} findings)")
    return 0 if not failures else 1


def teardown(g, admin, sandboxes, sampler, results):
    t = time.time()
    deleted = 0
    if g.alive():
        for sb in sandboxes:
            code, det = code_of(lambda: admin.DeleteSandbox(pb.DeleteSandboxRequest(id=sb.id),
                                                            timeout=60))
            if code == S.OK:
                deleted += 1
            else:
                fail(f"DeleteSandbox {sb.id}: {code.name} {det}")
        end = time.time() + 180
        root = os.path.join(g.data_dir, "sandboxes")
        while time.time() < end and os.path.isdir(root) and os.listdir(root):
            time.sleep(1)
        left = os.listdir(root) if os.path.isdir(root) else []
        if left:
            fail(f"{len(left)} sandbox directories left after DeleteSandbox")
        procs = all_procs()
        zombies = [p for p, (st, pp, _) in procs.items() if pp == g.pid and st == "Z"]
        if zombies:
            fail(f"{len(zombies)} zombie children of the gateway after teardown")
        rc = g.stop()
        if rc != 0:
            fail(f"gateway exit status {rc}: {g.sanitizer_report()}")
    results["teardown"] = {"deleted": deleted, "seconds": round(time.time() - t, 1)}
    # No process of any sandbox survives (pid and start time, so a reused pid
    # is not mistaken for one of ours). Processes of a namespace whose init
    # died are killed and reaped by the kernel asynchronously: what is still
    # there at first is recorded, and a failure is what remains after 30 s.
    seen = dict(sampler.seen) if sampler else {}
    for sb in sandboxes:
        if sb.root_pid and sb.root_pid not in seen:
            st = proc_stat(sb.root_pid)
            if st:
                seen[sb.root_pid] = st[2]

    def leftovers():
        procs = all_procs()
        left = {p for p, start in seen.items() if p in procs and procs[p][2] == start}
        left |= {p for p in procs if g.dir in _cmdline(p)}
        return {p: (procs[p][0], procs[p][1], _comm(p)) for p in left if p in procs}
    first = leftovers()
    end = time.time() + 30
    left = first
    while left and time.time() < end:
        time.sleep(1)
        left = leftovers()
    results["teardown"]["processes_tracked"] = len(seen)
    results["teardown"]["still_exiting_at_gateway_stop"] = len(first)
    results["teardown"]["still_exiting_detail"] = {str(p): v for p, v in list(first.items())[:20]}
    results["teardown"]["leftover_processes"] = len(left)
    if left:
        fail(f"{len(left)} sandbox processes left 30 s after teardown: "
             + ", ".join(f"{p} state {st} ppid {pp} {comm}"
                         for p, (st, pp, comm) in sorted(left.items())[:5]))


def _comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def table(r):
    gw = r.get("gateway", {})
    rows = []

    def row(what, *vals):
        rows.append((what,) + tuple(str(v) for v in vals))
    row("", "start", "end", "max", "bound")
    if gw:
        row("gateway RSS (KiB)", gw["rss_kib"]["start"], gw["rss_kib"]["end"], gw["rss_kib"]["max"],
            gw["rss_kib"]["bound"])
        row("gateway fds", gw["fds"]["start"], gw["fds"]["end"], gw["fds"]["max"],
            gw["fds"]["bound"])
        row("gateway threads", gw["threads"]["start"], gw["threads"]["end"], "", "")
        row("open connections", gw["open_connections"]["start"], gw["open_connections"]["end"],
            gw["open_connections"]["max"], "")
        row("zombie children", "", "", gw["zombies_max"], "0 at end")
        row("load average (1 min)", r["loadavg1"]["start"], r["loadavg1"]["end"],
            r["loadavg1"]["max"], "")
    print()
    print(f"soak: {r['config']['sandboxes']} sandboxes, TTL {r['config']['ttl_s']} s, "
          f"{r['config']['soak_s']} s after {r['config']['warmup_s']} s warm-up "
          f"(creation {r.get('creation_s', '?')} s), {r['machine']['cpus']} CPUs")
    for w in rows:
        print(f"  {w[0]:<22}" + "".join(f"{v:>12}" for v in w[1:]))
    if "rotations" in r:
        ro = r["rotations"]
        print(f"  rotations              {ro['rotations']} (per sandbox {ro['rotations_min_per_sandbox']}"
              f"..{ro['rotations_max_per_sandbox']}), failed: RenewCertificate non-OK "
              f"{sum(v for c, v in r['renew_codes'].items() if c not in ('OK', '0'))}, "
              f"supervisor logs {ro['renew_failures_in_supervisor_logs']}")
        print(f"  certificates issued    {r['certificates_issued']}")
        lg = r["logs"]
        print(f"  log lines              {lg['lines_stored']} written by the end and stored, "
              f"{lg['gaps']} sandboxes with gaps, {lg['dropped']} dropped, "
              f"{lg['duplicates']} duplicates")
        d = r["denials"]
        print(f"  denials                gateway {d['gateway']}, provoked {d['provoked']}, "
              f"unexpected answers {d['unexpected_answers']}")
        print(f"  client calls           {r['client_calls']} (all RPCs: {r['rpcs_total']})")
    if "teardown" in r:
        t = r["teardown"]
        print(f"  teardown               {t['deleted']} deleted in {t['seconds']} s, "
              f"{t.get('leftover_processes', '?')} leftover of {t.get('processes_tracked', '?')} "
              f"tracked processes ({t.get('still_exiting_at_gateway_stop', '?')} still exiting "
              f"at the gateway's stop)")


if __name__ == "__main__":
    sys.exit(main())
