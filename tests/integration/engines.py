"""Live container engines for the docker driver's tests, each started in a
temp dir of its own and removed with everything it made.

    with engines.Podman() as e:      # rootful podman's Docker API service
        e.sock                       # the Engine API socket
        e.api("GET", "/version")     # (status, body bytes)
    with engines.Dockerd() as e:     # Debian's docker.io (dockerd + its containerd)

Both need root. `Engine.start()` raises EngineUnavailable with the reason
when the engine cannot run on this host (the caller skips with that
reason); anything else is a failure.

What this machine taught (docs/drivers.md, "Running podman"): crun 1.8
refuses a hybrid cgroup layout, so runc; no systemd, so cgroupfs and a file
event log; rootful podman asks for nofile/nproc limits above the hard ones
here unless default_ulimits stay under `ulimit -H`; exec sessions keep a
conmon alive for exit_command_delay (5 min by default). Storage (vfs: no
overlay mounts to leak), run, volume and temp dirs all live in the temp dir.

stop() removes every container and volume through the API, stops the
service, kills whatever process still names the temp dir, unmounts whatever
is mounted below it, deletes it, removes the few fixed host paths the
engines create (/run/runc, /run/docker, /run/containerd) when they did not
exist before and are empty, and then checks that no process, mount or file is left."""
import ctypes
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

API_TIMEOUT = 120
# Host paths an engine creates outside its temp dir (runc's default state
# root, dockerd's plugin socket dir, containerd's shim socket dir), children
# first: removed again if we made them and they are empty.
HOST_LEFTOVERS = ["/run/runc/docker", "/run/runc", "/run/docker/plugins", "/run/docker",
                  "/run/containerd/s", "/run/containerd"]


class EngineUnavailable(Exception):
    """The engine cannot run on this host; the message says why."""


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def _procs_naming(text):
    """PIDs whose command line or cwd names `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read()
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            continue
        if text.encode() in cmd or cwd.startswith(text):
            found.append(int(entry))
    return found


def _mounts_below(path):
    """Mount points at or below `path`, deepest first (from mountinfo)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                points.append(mp)
    return sorted(set(points), key=lambda p: -p.count("/"))


def _umount(path):
    libc = ctypes.CDLL(None, use_errno=True)
    MNT_DETACH = 2
    libc.umount2(path.encode(), MNT_DETACH)


class Engine:
    name = "engine"
    program = None   # the engine's binary
    package = None   # the Debian package that has it

    def __init__(self):
        self.dir = None
        self.proc = None
        self.sock = None
        self.version = None
        self._host_before = {}

    # ---- the Engine API -------------------------------------------------------------

    def api(self, method, path, body=None, ctype=None, timeout=API_TIMEOUT):
        conn = _UnixHTTP(self.sock, timeout)
        try:
            headers = {"Content-Type": ctype} if ctype else {}
            if isinstance(body, (dict, list)):
                body, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, want=200):
        status, data = self.api(method, path, body)
        assert status == want, "%s %s: %d %s" % (method, path, status, data[:500])
        return json.loads(data) if data else None

    def inspect(self, name):
        """The container's inspect document, or None when it does not exist
        (podman answers 500 "no such container" while it removes one)."""
        status, data = self.api("GET", "/containers/%s/json" % name)
        if status == 404 or (status == 500 and b"no such container" in data):
            return None
        assert status == 200, (status, data[:300])
        return json.loads(data)

    def containers(self):
        return self.json("GET", "/containers/json?all=true")

    def volumes(self):
        return self.json("GET", "/volumes").get("Volumes") or []

    # ---- life -----------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if os.geteuid() != 0:
            raise EngineUnavailable("%s needs root (running as uid %d)" % (self.name,
                                                                             os.geteuid()))
        for p in HOST_LEFTOVERS:
            self._host_before[p] = os.path.lexists(p)
        self.dir = tempfile.mkdtemp(prefix="tsr-%s-" % self.name)
        os.chmod(self.dir, 0o711)
        self.sock = os.path.join(self.dir, "engine.sock")
        exe = _which(self.program)
        if exe is None:
            self.stop()
            raise EngineUnavailable("%s is not installed (make deps installs %s)" % (
                self.program, self.package))
        argv, env = self._command(exe)
        self.log_path = os.path.join(self.dir, "engine.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                reason = "%s exited with %d at start: %s" % (argv[0], self.proc.returncode,
                                                             self.log_tail())
                self.stop()
                raise EngineUnavailable(reason)
            try:
                status, _ = self.api("GET", "/_ping", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                reason = "%s did not answer on %s within 60 s: %s" % (argv[0], self.sock,
                                                                       self.log_tail())
                self.stop()
                raise RuntimeError(reason)
            time.sleep(0.1)
        self.version = self.json("GET", "/version")

    def log_tail(self, n=8):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(line.strip() for line in f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        """Remove everything; raise if anything is left behind."""
        if self.dir is None:
            return
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                for c in self.containers():
                    status, body = self.api("DELETE", "/containers/%s?force=true&v=true" % c["Id"])
                    if status not in (204, 404):
                        problems.append("remove container %s: %d %s" % (c["Id"][:12], status,
                                                                        body[:200]))
                self.api("POST", "/volumes/prune")
            except OSError as e:
                problems.append("engine API at teardown: %s" % e)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                problems.append("%s ignored SIGTERM for 20 s" % self.name)
                self.proc.kill()
                self.proc.wait()
        # Helpers the engine started (conmon, containerd, shims) name the dir.
        for _ in range(50):
            left = _procs_naming(self.dir)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        for mp in _mounts_below(self.dir):
            _umount(mp)
        shutil.rmtree(self.dir, ignore_errors=True)
        for p in HOST_LEFTOVERS:
            if not self._host_before.get(p, True) and os.path.isdir(p) and not os.listdir(p):
                os.rmdir(p)
        # Nothing may be left: no process, no mount, no file.
        left = _procs_naming(self.dir)
        if left:
            problems.append("processes left: %s" % left)
        mounts = _mounts_below(self.dir)
        if mounts:
            problems.append("mounts left: %s" % mounts)
        if os.path.lexists(self.dir):
            problems.append("%s left" % self.dir)
        for p in HOST_LEFTOVERS:
            if not self._host_before.get(p, True) and os.path.lexists(p):
                problems.append("%s left (did not exist before)" % p)
        self.dir = None
        if problems:
            raise AssertionError("%s teardown: %s" % (self.name, "; ".join(problems)))


def _which(name):
    """A program on PATH or in the sbin dirs (root's daemons live there)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _ulimit(res, want):
    """`want`, or the hard limit when that is lower (no CAP_SYS_RESOURCE here)."""
    hard = resource.getrlimit(res)[1]
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


class Podman(Engine):
    """`podman system service` (rootful) serving the Docker Engine API."""
    name = program = package = "podman"

    def _command(self, podman):
        d = self.dir
        for sub in ("storage", "run", "tmp", "volumes", "cni"):
            os.makedirs(os.path.join(d, sub), mode=0o700)
        nofile = _ulimit(resource.RLIMIT_NOFILE, 1024)
        nproc = _ulimit(resource.RLIMIT_NPROC, 4096)
        with open(os.path.join(d, "containers.conf"), "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
netns = "host"
log_driver = "k8s-file"

[network]
network_config_dir = "{d}/cni"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
exit_command_delay = 2
tmp_dir = "{d}/tmp"
volume_path = "{d}/volumes"
static_dir = "{d}/storage/libpod"
image_copy_tmp_dir = "{d}/tmp"
lock_type = "file"
""")
        with open(os.path.join(d, "storage.conf"), "w") as f:
            f.write(f"""[storage]
driver = "vfs"
runroot = "{d}/run"
graphroot = "{d}/storage"
""")
        env = dict(os.environ, CONTAINERS_CONF=os.path.join(d, "containers.conf"),
                   CONTAINERS_STORAGE_CONF=os.path.join(d, "storage.conf"),
                   TMPDIR=os.path.join(d, "tmp"))
        return [podman, "system", "service", "--time=0", "unix://" + self.sock], env


class Dockerd(Engine):
    """Debian's docker.io: dockerd with the containerd it starts itself."""
    name = program = "dockerd"
    package = "docker.io"

    def _command(self, dockerd):
        d = self.dir
        nofile = _ulimit(resource.RLIMIT_NOFILE, 1024)
        nproc = _ulimit(resource.RLIMIT_NPROC, 4096)
        config = {
            "data-root": d + "/data", "exec-root": d + "/exec", "pidfile": d + "/dockerd.pid",
            "hosts": ["unix://" + self.sock], "deprecated-key-path": d + "/key.json",
            "storage-driver": "vfs", "exec-opts": ["native.cgroupdriver=cgroupfs"],
            "bridge": "none", "iptables": False, "ip-masq": False, "ip-forward": False,
            "userland-proxy": False,
            "default-ulimits": {"nofile": {"Name": "nofile", "Soft": nofile, "Hard": nofile},
                                "nproc": {"Name": "nproc", "Soft": nproc, "Hard": nproc}},
        }
        with open(os.path.join(d, "daemon.json"), "w") as f:
            json.dump(config, f)
        # dockerd finds containerd, runc and its shims on PATH.
        env = dict(os.environ, TMPDIR=d, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        return [dockerd, "--config-file", os.path.join(d, "daemon.json")], env
