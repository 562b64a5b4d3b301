#!/usr/bin/python3
"""Build the vm driver's guest, a kernel and an initramfs, from Debian
packages and the build, without a registry (docs/drivers.md, "The guest
image").

    vm_image.py --out DIR --supervisor BIN [--busybox FILE] [--cache DIR]
                [--kernel-deb FILE]

Writes DIR/vmlinuz, DIR/initrd.img and DIR/image.txt (what went in).

The kernel is Debian's: the package the `linux-image-amd64` metapackage
depends on, fetched with `apt-get download` (no root needed) and unpacked
(dpkg-deb -x, never installed) into the cache once per package version; only
vmlinuz and the modules the guest needs are kept. --kernel-deb uses a given
.deb instead. Debian's package has no modules.dep, so the load order is
worked out here from each module's `depends=` (.modinfo).

The initramfs (an uncompressed newc cpio: the guest unpacks it faster than
it would decompress it under TCG) holds busybox-static with a link per
applet, tessera-supervisor and the shared libraries it loads (found with
ldd), the modules and their order, busybox init's inittab,
/bin/tessera-init (drivers/vm/guest/tessera-init), acpid's power-button
action, /etc/passwd and /etc/group. Every byte is deterministic (sorted
entries, owner 0:0, mtime 0): the same inputs give the same image, and an
output that would not change is not rewritten (make sees nothing new).

Also a library for the tests' overlays: `Cpio` writes an archive that the
kernel unpacks after the image's own (a later entry replaces an earlier one).

Exit status: 0 built or up to date, 1 failure (reason on stderr)."""
import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import image_libs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT_SCRIPT = os.path.join(ROOT, "drivers", "vm", "guest", "tessera-init")
SUPERVISOR = "/usr/local/bin/tessera-supervisor"
# What the guest needs of the kernel's modules: fw_cfg (the identity),
# virtio networking and entropy, the ACPI power button and its input events.
MODULES = ["qemu_fw_cfg", "virtio_pci", "virtio_net", "virtio_rng", "button", "evdev"]
INITTAB = """\
::sysinit:/bin/tessera-init sysinit
::once:/bin/tessera-init supervisor
::shutdown:/bin/tessera-init shutdown
"""
# acpid (busybox) runs /etc/acpi/PWRF/00000080 on the power button.
POWER_BUTTON = "#!/bin/sh\nexec poweroff\n"
PASSWD = ("root:x:0:0:tessera-supervisor:/root:/bin/false\n"
          "nobody:x:65534:65534:workload:/workspace:/bin/false\n")
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def fail(msg):
    print("vm-image: " + msg, file=sys.stderr)
    sys.exit(1)


def run(args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0 and check:
        fail("%s: %s" % (" ".join(args), (r.stderr or r.stdout).strip()[-500:]))
    return r.stdout if r.returncode == 0 else None


class Cpio:
    """The entries of a newc ("070701") cpio archive: path -> (mode, data,
    rdev). Directories are added for every parent."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p and p not in self.entries:
                self.entries[p] = (0o040000 | 0o755, b"", 0)
        if parts[-1]:
            self.entries["/".join(parts)] = (0o040000 | mode, b"", 0)

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path.strip("/")) or "/")
        self.entries[path.strip("/")] = (0o100000 | mode, data, 0)

    def link(self, path, target):
        self.dir(os.path.dirname(path.strip("/")) or "/")
        self.entries[path.strip("/")] = (0o120000 | 0o777, target.encode(), 0)

    def chardev(self, path, major, minor, mode=0o600):
        self.dir(os.path.dirname(path.strip("/")) or "/")
        self.entries[path.strip("/")] = (0o020000 | mode, b"", (major, minor))

    def host_file(self, src, dest, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
        self.file(dest, data, mode)

    def bytes(self):
        out = bytearray()

        def entry(ino, name, mode, data, rdev):
            nb = name.encode() + b"\0"
            major, minor = rdev if rdev else (0, 0)
            fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0)
            out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + nb)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[name]
            entry(ino, name, mode, data, rdev)
        entry(0, "TRAILER!!!", 0, b"", None)
        return bytes(out)


def libraries(binary):
    try:
        return image_libs.libraries(binary)
    except image_libs.LibsError as e:
        fail(str(e))


def add_binary(cpio, src, dest):
    """src at dest, and every library it loads at the loader's path."""
    cpio.host_file(src, dest, 0o755)
    for lib in libraries(src):
        if lib.strip("/") not in cpio.entries:
            cpio.host_file(lib, lib, 0o755)


# ---- the kernel -------------------------------------------------------------------

def kernel_package():
    """The image package linux-image-amd64 depends on, and its candidate
    version; None (with the reason) when the package lists do not say."""
    out = run(["apt-cache", "depends", "linux-image-amd64"], check=False) or ""
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", out)
    if not m:
        return None, "apt-cache depends linux-image-amd64 names no kernel image"
    pkg = m.group(1)
    m = re.search(r"Candidate: (\S+)", run(["apt-cache", "policy", pkg], check=False) or "")
    if not m or m.group(1) == "(none)":
        return None, "no candidate version of %s" % pkg
    return pkg, m.group(1)


def cached_deb(cache, why):
    """The kernel fetched last time, when apt cannot give this one."""
    cached = sorted(glob.glob(os.path.join(cache, "linux-image-*.deb")), key=os.path.getmtime)
    if not cached:
        fail("%s (run `apt-get update`), and no kernel in %s" % (why, cache))
    print("vm-image: %s (run `apt-get update`); using %s" % (why, os.path.basename(cached[-1])),
          file=sys.stderr)
    return cached[-1]


def fetch_deb(cache):
    pkg, version = kernel_package()
    if pkg is None:
        return cached_deb(cache, version)
    safe = re.sub(r"[^A-Za-z0-9.+~-]", "_", version)
    deb = os.path.join(cache, "%s_%s.deb" % (pkg, safe))
    if os.path.exists(deb):
        return deb
    tmp = tempfile.mkdtemp(prefix=".download-", dir=cache)
    try:
        os.chmod(tmp, 0o755)  # apt's unprivileged _apt user writes here when it can
        print("vm-image: apt-get download %s=%s" % (pkg, version), file=sys.stderr)
        args = ["apt-get", "download", "-q", "%s=%s" % (pkg, version)]
        if run(args, check=False, cwd=tmp) is None:
            # Stale package lists name a version the archive no longer has.
            if not glob.glob(os.path.join(cache, "linux-image-*.deb")):
                run(args, cwd=tmp)  # fails with apt's own message
            return cached_deb(cache, "apt-get download %s=%s failed" % (pkg, version))
        got = glob.glob(os.path.join(tmp, "*.deb"))
        if len(got) != 1:
            fail("apt-get download %s left %d files" % (pkg, len(got)))
        os.rename(got[0], deb)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return deb


def modinfo_depends(path):
    """The `depends=` of a module's .modinfo section (names, may be empty)."""
    with open(path, "rb") as f:
        data = f.read()
    m = re.search(rb"(?:^|\0)depends=([A-Za-z0-9_,-]*)\0", data)
    if m is None:
        fail("%s has no depends= in its .modinfo" % path)
    return [d for d in m.group(1).decode().split(",") if d]


def unpack_kernel(deb, cache):
    """vmlinuz and the guest's modules in load order, unpacked once per
    package version into <cache>/<deb name>/."""
    kdir = os.path.join(cache, os.path.basename(deb)[:-4])
    if os.path.exists(os.path.join(kdir, "done")):
        return kdir
    shutil.rmtree(kdir, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=cache)
    try:
        run(["dpkg-deb", "-x", deb, tmp])
        kernels = glob.glob(os.path.join(tmp, "boot", "vmlinuz-*"))
        if len(kernels) != 1:
            fail("%s holds %d kernels" % (deb, len(kernels)))
        mdirs = glob.glob(os.path.join(tmp, "lib", "modules", "*"))
        if len(mdirs) != 1:
            fail("%s holds %d module trees" % (deb, len(mdirs)))
        builtin = set()
        with open(os.path.join(mdirs[0], "modules.builtin")) as f:
            for line in f:
                builtin.add(os.path.basename(line.strip())[:-3].replace("-", "_"))
        files = {}
        for path in glob.glob(os.path.join(mdirs[0], "kernel", "**", "*.ko"), recursive=True):
            files[os.path.basename(path)[:-3].replace("-", "_")] = path
        order = []

        def visit(name, chain):
            if name in order or name in builtin:
                return
            if name in chain:
                fail("module dependency loop: %s" % " -> ".join(chain + [name]))
            if name not in files:
                fail("module %s is neither built in nor in %s" % (name, deb))
            for dep in modinfo_depends(files[name]):
                visit(dep.replace("-", "_"), chain + [name])
            order.append(name)

        for name in MODULES:
            visit(name, [])
        os.makedirs(os.path.join(tmp, "out", "modules"))
        shutil.copyfile(kernels[0], os.path.join(tmp, "out", "vmlinuz"))
        for name in order:
            shutil.copyfile(files[name], os.path.join(tmp, "out", "modules", name + ".ko"))
        with open(os.path.join(tmp, "out", "modules", "load-order"), "w") as f:
            f.write("".join(n + "\n" for n in order))
        with open(os.path.join(tmp, "out", "release"), "w") as f:
            f.write(os.path.basename(mdirs[0]) + "\n")
        with open(os.path.join(tmp, "out", "done"), "w") as f:
            f.write("%s\n" % os.path.basename(deb))
        os.rename(os.path.join(tmp, "out"), kdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return kdir


# ---- the initramfs -------------------------------------------------------------------

def initramfs(kdir, supervisor, busybox):
    c = Cpio()
    for d, mode in (("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755),
                    ("tmp", 0o1777), ("workspace", 0o1777), ("root", 0o700),
                    ("etc/tessera", 0o755), ("usr/local/bin", 0o755)):
        c.dir(d, mode)
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    c.chardev("dev/console", 5, 1)
    add_binary(c, busybox, "/bin/busybox")
    applets = run([busybox, "--list"]).split()
    for applet in sorted(set(applets)):
        if applet != "busybox":
            c.link("/bin/" + applet, "busybox")
    c.link("/sbin", "bin")
    c.link("/init", "bin/busybox")   # busybox init (it reaps every orphan)
    add_binary(c, supervisor, SUPERVISOR)
    c.host_file(INIT_SCRIPT, "/bin/tessera-init", 0o755)
    with open(os.path.join(kdir, "modules", "load-order")) as f:
        order = f.read().split()
    for name in order:
        c.host_file(os.path.join(kdir, "modules", name + ".ko"), "/lib/modules/%s.ko" % name,
                    0o644)
    c.file("/lib/modules/load-order", "".join(n + "\n" for n in order).encode())
    c.file("/etc/inittab", INITTAB.encode())
    c.file("/etc/acpi/PWRF/00000080", POWER_BUTTON.encode(), 0o755)
    c.file("/etc/passwd", PASSWD.encode())
    c.file("/etc/group", GROUP.encode())
    return c


def write_if_changed(path, data):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--supervisor", required=True)
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--cache", help="where kernel packages are kept (default OUT/cache)")
    ap.add_argument("--kernel-deb", help="this linux-image .deb instead of apt-get download")
    a = ap.parse_args()
    if libraries(a.busybox):
        fail("%s is not static (install busybox-static)" % a.busybox)
    os.makedirs(a.out, exist_ok=True)
    cache = a.cache or os.path.join(a.out, "cache")
    os.makedirs(cache, exist_ok=True)
    deb = os.path.abspath(a.kernel_deb) if a.kernel_deb else fetch_deb(cache)
    kdir = unpack_kernel(deb, cache)
    c = initramfs(kdir, a.supervisor, a.busybox)
    image = c.bytes()
    with open(os.path.join(kdir, "vmlinuz"), "rb") as f:
        kernel = f.read()
    with open(os.path.join(kdir, "release")) as f:
        release = f.read().strip()
    changed = write_if_changed(os.path.join(a.out, "vmlinuz"), kernel)
    changed |= write_if_changed(os.path.join(a.out, "initrd.img"), image)
    manifest = "kernel %s (%s) sha256 %s\ninitrd sha256 %s\nmodules %s\n" % (
        release, os.path.basename(deb), hashlib.sha256(kernel).hexdigest(),
        hashlib.sha256(image).hexdigest(), " ".join(open(os.path.join(
            kdir, "modules", "load-order")).read().split()))
    write_if_changed(os.path.join(a.out, "image.txt"), manifest.encode())
    print("vm-image: %s %s/vmlinuz, %s/initrd.img (%d KiB), kernel %s" % (
        "built" if changed else "up to date:", a.out, a.out, len(image) // 1024, release))


if __name__ == "__main__":
    main()
