"""The shared objects a binary loads, for the images that carry our binaries
(scripts/sandbox_image.py: the container layer; scripts/vm_image.py: the
guest's initramfs). One reading of ldd's output for both."""
import re
import subprocess


class LibsError(Exception):
    pass


def libraries(binary):
    """The shared objects `binary` loads (the loader included), as the paths
    the loader asks for; [] for a static binary. A library ldd cannot find
    raises LibsError: an image without it would not start."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0:
        if "not a dynamic executable" in r.stdout + r.stderr:
            return []
        raise LibsError("ldd %s: %s" % (binary, (r.stderr or r.stdout).strip()))
    libs = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or \
            re.match(r"\s*(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            raise LibsError("ldd %s: %s" % (binary, line.strip()))
    return libs
