"""`make demo` (scripts/demo.sh) runs its tour and leaves nothing behind:
no process (the sandboxes it created are deleted through the gateway,
then the gateway stops, then anything still naming its directory is
killed) and no directory."""
import os
import re
import subprocess

ROOT = os.environ.get("TSR_ROOT", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("TSR_BUILD_DIR", os.path.join(ROOT, "build"))


def procs_naming(text):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def test_demo_leaves_nothing_behind():
    r = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh"), os.path.relpath(BUILD, ROOT)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = re.search(r"\(the gateway's audit log was (/tmp/tessera-demo\.[A-Za-z0-9]+)/data/audit\.log\)",
                  r.stdout)
    assert m, r.stdout[-2000:]
    d = m.group(1)
    assert "alpha's identity asking for beta's config" in r.stdout
    assert "alpha reads beta's config: PERMISSION_DENIED: cross-sandbox access denied" in r.stdout
    assert "processes left behind" not in r.stderr, r.stderr
    assert procs_naming(d) == []
    assert not os.path.exists(d)
