#!/usr/bin/env bash
# Install the Debian packages Tessera builds and tests with.
# Idempotent and silent when everything is already there.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libssl-dev openssl
  libnghttp2-dev
  libprotobuf-c-dev protobuf-c-compiler
  libyaml-dev
  libsqlite3-dev sqlite3
  libpq-dev        # the PostgreSQL store backend (gateway only)
  postgresql       # its server, for the tests' own clusters (tests/pg/cluster.sh)
  libcmocka-dev
  zlib1g-dev       # gzip message compression (grpc-encoding: gzip)
  libsystemd-dev   # sd_notify: Type=notify under systemd
  # integration tests: stock gRPC client, pytest, certificate tooling
  python3 python3-grpcio python3-grpc-tools python3-pytest python3-cryptography
  python3-h2   # raw HTTP/2 frames for the transport's hostile-client tests
  # sandboxes and the proxy tests
  bubblewrap nginx-light
  curl libcurl4-openssl-dev
  valgrind
  libjansson-dev   # the docker driver's Engine API JSON
  # ---- docker driver: the live engines its tests start, the image's sh ----
  podman runc      # podman's Docker API service (runc: crun 1.8 refuses hybrid cgroups)
  docker.io        # Debian's Docker engine (dockerd, containerd)
  busybox-static   # the sandbox image's sh and tools (scripts/sandbox_image.py)
  # ---- end docker driver ----
  # make fuzz: clang with libFuzzer (-fsanitize=fuzzer)
  clang libclang-rt-dev
  # ---- vm driver: QEMU, and the guest image's busybox (make vm-image) ----
  qemu-system-x86 busybox-static
  # ---- end vm driver ----
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Installed daemons (docker.io's dockerd) must not start: the tests start
# their own. policy-rc.d is Debian's switch for that; a temporary one is
# used where the host has none.
policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
