#!/bin/sh
# `make bench`: Tessera side by side with its peers (docs/performance.md).
# Needs TSR_BUILD_DIR (build/) and TSR_ROOT (the repository); `make bench`
# sets both. Installs the Debian peer packages it uses when missing.
set -eu
: "${TSR_BUILD_DIR:?}" "${TSR_ROOT:?}"
if ! command -v cfssl >/dev/null 2>&1; then
    echo "bench: installing golang-cfssl (Debian) for the issuance peer" >&2
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y golang-cfssl >/dev/null 2>&1 ||
            echo "bench: cannot install golang-cfssl; the issuance peer is skipped" >&2
    else
        echo "bench: not root; the issuance peer (cfssl) is skipped" >&2
    fi
fi
command -v openssl >/dev/null 2>&1 || { echo "bench: openssl(1) is required" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$TSR_ROOT"
PYTHONPATH="$TSR_BUILD_DIR/py" exec /usr/bin/python3 bench/bench.py
