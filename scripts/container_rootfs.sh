#!/usr/bin/env bash
# The root filesystem of the gateway's container image (Containerfile,
# docs/operations.md "Containers"): this build's binaries and driver plugins
# and exactly the Debian shared libraries they link (read with ldd, copied
# from this host's packages), a passwd/group with the tessera user (uid and
# gid 10001), /etc/hosts and nsswitch.conf. No registry, no base image: the
# Containerfile starts FROM scratch.
#   scripts/container_rootfs.sh BUILD_DIR OUT_DIR   (OUT_DIR/rootfs, OUT_DIR/Containerfile)
set -euo pipefail
B=$1 OUT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R="$OUT/rootfs"
rm -rf "$R"
mkdir -p "$R/usr/bin" "$R/usr/lib/tessera/drivers" "$R/etc/tessera" "$R/var/lib/tessera" "$R/tmp"
chmod 1777 "$R/tmp"
bins=(tessera-gateway tessera certgen tessera-supervisor tessera-vm-relay)
for b in "${bins[@]}"; do install -m 0755 "$B/bin/$b" "$R/usr/bin/"; done
install -m 0644 "$B"/drivers/*.so "$R/usr/lib/tessera/drivers/"
# Every library any of them links, by the path the loader resolved, and the
# loader itself.
files=("${bins[@]/#/$B/bin/}" "$B"/drivers/*.so)
ldd "${files[@]}" 2>/dev/null |
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(0x/ {print $1}' | sort -u |
  while read -r lib; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done
cat > "$R/etc/passwd" <<'P'
root:x:0:0:root:/root:/usr/sbin/nologin
tessera:x:10001:10001:Tessera gateway:/var/lib/tessera:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
P
cat > "$R/etc/group" <<'G'
root:x:0:
tessera:x:10001:
nogroup:x:65534:
G
printf '127.0.0.1 localhost\n::1 localhost\n' > "$R/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$R/etc/nsswitch.conf"
cp "$ROOT/Containerfile" "$OUT/Containerfile"
echo "container rootfs: $R ($(du -sh "$R" | cut -f1))"
