#!/usr/bin/python3
"""Build the docker driver's sandbox image, tessera-sandbox:latest, without a
registry, and load it into a Docker Engine API (docs/drivers.md, "The sandbox
image").

    sandbox_image.py --supervisor BIN [--socket SOCK] [--tag NAME:TAG]
                     [--add SRC=DEST]... [--out FILE]

The image has one layer, made from files of this host:
  /usr/local/bin/tessera-supervisor   the supervisor (BIN)
  the shared libraries it needs       found with ldd, at the paths its loader asks for
  /usr/bin/busybox                    busybox-static, with a link per applet (sh, cat, ls, ...)
  /etc/passwd, /etc/group             root (the supervisor) and nobody (65534, the workload)
  /run/tessera                        0755, where the driver mounts the identity volume
  /workspace, /tmp                    1777
and the config: Entrypoint the supervisor, User 0:0, PATH. `--add SRC=DEST`
puts extra host files (and any library they need that the first layer lacks)
in a second layer: the tests' probe image shares the first layer byte for byte.

The archive is the `docker save` format (manifest.json, the config, one tar
per layer), posted to POST /images/load, which Docker and podman both serve.
Every byte is deterministic (sorted entries, owner 0:0, mtime 0, a fixed
creation time): the same inputs give the same image ID, and an engine that
already has that ID under the tag is left alone.

Exit status: 0 built (and loaded, or already there), 1 failure (reason on
stderr)."""
import argparse
import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile

import image_libs

SUPERVISOR = "/usr/local/bin/tessera-supervisor"
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# The image's own layout is Debian's merged /usr: these are links.
MERGED = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}
PASSWD = ("root:x:0:0:tessera-supervisor:/root:/sbin/nologin\n"
          "nobody:x:65534:65534:workload:/workspace:/sbin/nologin\n")
GROUP = "root:x:0:\nnogroup:x:65534:\n"
API_TIMEOUT = 120


def fail(msg):
    print("sandbox-image: " + msg, file=sys.stderr)
    sys.exit(1)


def in_image(path):
    """Where a host path lands in the image (through the merged-/usr links)."""
    for link, target in MERGED.items():
        if path == link or path.startswith(link + "/"):
            return "/" + target + path[len(link):]
    return path


class Layer:
    """Entries of one layer: path -> (kind, mode, data or link target)."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755):
        if path.strip("/") == "":
            return
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            if p not in self.entries:
                self.entries[p] = ("dir", 0o755, None)
        self.entries["/" + "/".join(parts)] = ("dir", mode, None)

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path))
        self.entries[path] = ("file", mode, data)

    def link(self, path, target):
        self.dir(os.path.dirname(path))
        self.entries[path] = ("link", 0o777, target)

    def host_file(self, src, dest, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
        self.file(dest, data, mode)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            for path in sorted(self.entries):
                kind, mode, data = self.entries[path]
                ti = tarfile.TarInfo(path.lstrip("/"))
                ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mode, 0, 0, 0, "", ""
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    t.addfile(ti)
                elif kind == "link":
                    ti.type, ti.linkname = tarfile.SYMTYPE, data
                    t.addfile(ti)
                else:
                    ti.size = len(data)
                    t.addfile(ti, io.BytesIO(data))
        return buf.getvalue()


def libraries(binary):
    try:
        return image_libs.libraries(binary)
    except image_libs.LibsError as e:
        fail(str(e))


def add_binary(layer, src, dest, have=()):
    layer.host_file(src, dest, 0o755)
    for lib in libraries(src):
        where = in_image(lib)
        if where not in have:
            layer.host_file(lib, where, 0o755)


def base_layer(supervisor, busybox):
    layer = Layer()
    for d, mode in (("/etc", 0o755), ("/root", 0o700), ("/run/tessera", 0o755),
                    ("/workspace", 0o1777), ("/tmp", 0o1777), ("/proc", 0o755),
                    ("/sys", 0o755), ("/dev", 0o755), ("/usr/local/bin", 0o755)):
        layer.dir(d, mode)
    for link, target in MERGED.items():
        layer.dir("/" + target)
        layer.link(link, target)
    add_binary(layer, supervisor, SUPERVISOR)
    add_binary(layer, busybox, "/usr/bin/busybox")
    r = subprocess.run([busybox, "--list-full"], capture_output=True, text=True)
    if r.returncode != 0:
        fail("%s --list-full failed" % busybox)
    for applet in sorted(r.stdout.split()):
        where = in_image("/" + applet)
        if where not in ("/usr/bin/busybox", "/linuxrc") and where not in layer.entries:
            layer.link(where, os.path.relpath("/usr/bin/busybox", os.path.dirname(where)))
    layer.file("/etc/passwd", PASSWD.encode())
    layer.file("/etc/group", GROUP.encode())
    return layer


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def archive(tag, layers):
    """The `docker save` archive of an image made of these layer tars."""
    diff_ids = ["sha256:" + sha256(t) for t in layers]
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": [SUPERVISOR], "User": "0:0", "Env": ["PATH=" + PATH],
                   "WorkingDir": "/", "Labels": {"org.opencontainers.image.title":
                                                 "tessera-sandbox"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "scripts/sandbox_image.py"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = sha256(config_bytes)
    manifest = [{"Config": image_id + ".json", "RepoTags": [tag],
                 "Layers": ["%s/layer.tar" % d[7:] for d in diff_ids]}]
    out = Layer()
    out.file("/manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    out.file("/" + image_id + ".json", config_bytes)
    for d, t in zip(diff_ids, layers):
        out.file("/%s/layer.tar" % d[7:], t)
    return "sha256:" + image_id, out.tar()


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=API_TIMEOUT)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(API_TIMEOUT)
        self.sock.connect(self.path)


def api(sock, method, path, body=None, ctype=None):
    conn = UnixHTTP(sock)
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as e:
        fail("cannot reach the engine at %s: %s" % (sock, e))
    finally:
        conn.close()


def image_id(sock, tag):
    status, body = api(sock, "GET", "/images/%s/json" % tag)
    if status == 404:
        return None
    if status != 200:
        fail("inspect %s: the engine answered %d: %s" % (tag, status, body[:300]))
    return json.loads(body).get("Id")


def load(sock, tag, want_id, data):
    have = image_id(sock, tag)
    if have == want_id:
        print("sandbox-image: %s is up to date (%s)" % (tag, want_id[:19]))
        return
    status, body = api(sock, "POST", "/images/load?quiet=1", data, "application/x-tar")
    if status != 200:
        fail("load %s: the engine answered %d: %s" % (tag, status, body[:300]))
    got = image_id(sock, tag)
    if got != want_id:
        fail("load %s: the engine has %s under the tag, expected %s" % (tag, got, want_id))
    print("sandbox-image: loaded %s (%s, %d bytes)" % (tag, want_id[:19], len(data)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supervisor", required=True, help="the tessera-supervisor to put in")
    ap.add_argument("--busybox", default="/bin/busybox", help="a static busybox")
    ap.add_argument("--socket", help="the engine's unix socket (no socket: build only)")
    ap.add_argument("--tag", default="tessera-sandbox:latest")
    ap.add_argument("--add", action="append", default=[], metavar="SRC=DEST",
                    help="an extra host file in a second layer")
    ap.add_argument("--out", help="also write the archive here")
    a = ap.parse_args()
    for path, what in ((a.supervisor, "supervisor"), (a.busybox, "busybox")):
        if not os.path.isfile(path):
            fail("no %s at %s (make; apt-get install busybox-static)" % (what, path))
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*", a.tag):
        fail("bad tag %r (want name:tag)" % a.tag)
    base = base_layer(a.supervisor, a.busybox)
    layers = [base.tar()]
    if a.add:
        extra = Layer()
        for spec in a.add:
            src, sep, dest = spec.partition("=")
            if not sep or not dest.startswith("/"):
                fail("--add %r: want SRC=/absolute/DEST" % spec)
            add_binary(extra, src, dest, have=base.entries)
        layers.append(extra.tar())
    want_id, data = archive(a.tag, layers)
    if a.out:
        with open(a.out, "wb") as f:
            f.write(data)
    if a.socket:
        load(a.socket, a.tag, want_id, data)
    else:
        print("sandbox-image: built %s (%s), not loaded (no --socket)" % (a.tag, want_id[:19]))


if __name__ == "__main__":
    main()
