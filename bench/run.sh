#!/bin/sh
# `make bench`: Tessera side by side with its peers (docs/performance.md).
#   bench/run.sh install   install the Debian peer packages when missing
#                          (golang-cfssl; libgrpc++-dev, protobuf-compiler-grpc)
#   bench/run.sh           run (TSR_BUILD_DIR, TSR_ROOT set by `make bench`)
set -eu
if [ "${1:-}" = install ]; then
    need=""
    command -v cfssl >/dev/null 2>&1 || need="$need golang-cfssl"
    pkg-config --exists grpc++ 2>/dev/null || need="$need libgrpc++-dev"
    command -v grpc_cpp_plugin >/dev/null 2>&1 || need="$need protobuf-compiler-grpc"
    command -v protoc >/dev/null 2>&1 || need="$need protobuf-compiler"
    [ -z "$need" ] && exit 0
    if [ "$(id -u)" != 0 ]; then
        echo "bench: not root, cannot install$need; those peers are skipped" >&2
        exit 0
    fi
    echo "bench: apt-get install$need" >&2
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y $need >/dev/null 2>&1 ||
        echo "bench: apt-get install$need failed; those peers are skipped" >&2
    exit 0
fi
: "${TSR_BUILD_DIR:?}" "${TSR_ROOT:?}"
command -v openssl >/dev/null 2>&1 || { echo "bench: openssl(1) is required" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$TSR_ROOT"
PYTHONPATH="$TSR_BUILD_DIR/py" exec /usr/bin/python3 bench/bench.py
