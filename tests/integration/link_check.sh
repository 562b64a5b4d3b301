#!/usr/bin/env bash
# The link lists hold (docs/architecture.md, "Link lists"): each binary and
# driver plugin carries only the layers it links. A binary that pulls code of a
# layer it must not (a gateway symbol in the supervisor, libsqlite3 outside the
# gateway, a client symbol in certgen...) fails this test.
#   symbols:   the global symbols a binary defines or needs (nm), by the
#              prefix of each layer: gw_ gateway/, cl_ client/, grpc_ grpc/,
#              pol_ policy/, ca_ ca/, drv_ drivers/lib/, sqlite3_ libsqlite3
#   libraries: the shared libraries it names itself (DT_NEEDED; not ldd, which
#              also lists what libcurl pulls in for the docker driver)
# Positive controls (the gateway has gw_ symbols, the supervisor cl_ ones, a
# plugin its entry point) make sure an empty nm output cannot pass.
set -uo pipefail

B=${TSR_BUILD_DIR:?TSR_BUILD_DIR not set}
bad=0
fail() { echo "FAIL: $*"; bad=1; }

# Global symbols, defined or undefined, of a binary or shared object;
# grpc__ (protobuf-c's generated grpc.health.v1 code) is not grpc/.
syms() { nm -g "$1" 2>/dev/null | awk '{print $NF}' | sed 's/@.*//' | sort -u; }
needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

forbid_syms() { # FILE PREFIX...
  local f=$1 p hits all; shift
  all=$(syms "$f")
  for p in "$@"; do
    hits=$(grep -E "^${p}" <<<"$all" | grep -v '^grpc__' | head -5 | tr '\n' ' ')
    [[ -z $hits ]] || fail "$(basename "$f") links ${p}* code it must not: $hits"
  done
}
forbid_libs() { # FILE LIBPREFIX...
  local f=$1 l libs; shift
  libs=$(needed "$f")
  for l in "$@"; do
    if grep -q "^${l}" <<<"$libs"; then fail "$(basename "$f") needs ${l}"; fi
  done
}
require_syms() { # FILE PREFIX (positive control)
  local all; all=$(syms "$1")
  grep -qE "^$2" <<<"$all" || fail "$(basename "$1") has no $2 symbol (control)"
}

for f in tessera-gateway tessera-supervisor tessera certgen tessera-vm-relay; do
  [[ -x $B/bin/$f ]] || fail "no $B/bin/$f"
done
[[ $bad -eq 0 ]] || exit 1

GW=$B/bin/tessera-gateway SUP=$B/bin/tessera-supervisor CLI=$B/bin/tessera
CG=$B/bin/certgen RELAY=$B/bin/tessera-vm-relay

require_syms "$GW" gw_
# Positive control: the gateway is the one binary that needs libpq (its store).
grep -q '^libpq' <<<"$(needed "$GW")" || fail "tessera-gateway does not need libpq (control)"
require_syms "$SUP" cl_
require_syms "$SUP" pol_
require_syms "$CLI" cl_
require_syms "$CG" ca_

# The gateway: no client, supervisor, CLI or certgen code.
forbid_syms "$GW" cl_ sup_ cli_ cg_
# The supervisor: common, ca, grpc, policy, client; no gateway, no sqlite.
forbid_syms "$SUP" gw_ sqlite3_ cli_ cg_ drv_
forbid_libs "$SUP" libsqlite3 libpq
# The CLI: common, ca, grpc, client; no policy validator, no libyaml.
forbid_syms "$CLI" gw_ pol_ sup_ sqlite3_ cg_ drv_ yaml_
forbid_libs "$CLI" libsqlite3 libpq libyaml
# certgen: common, ca and the gateway's store (it records the proxy and
# gateway certificates it issues, docs/operations.md); no other gateway layer.
require_syms "$CG" gw_store_
forbid_syms "$CG" gw_h2 gw_server gw_authz gw_principal gw_metrics gw_app gw_svc_ gw_config \
  cl_ grpc_ pol_ sup_ nghttp2_ protobuf_c_ drv_
forbid_libs "$CG" libnghttp2 libprotobuf-c
# The vm relay: its own file and libc.
forbid_syms "$RELAY" gw_ cl_ ca_ tsr_ sqlite3_ SSL_
forbid_libs "$RELAY" libsqlite3 libpq libssl libcrypto

# Driver plugins: drivers/lib and a few common modules, hidden; one export.
n=0
for so in "$B"/drivers/*.so; do
  [[ -f $so ]] || continue
  n=$((n + 1))
  exports=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort -u | tr '\n' ' ')
  [[ $exports == "tessera_driver_entry " ]] ||
    fail "$(basename "$so") exports more than tessera_driver_entry: $exports"
  forbid_syms "$so" gw_ cl_ grpc_ pol_ sup_ cli_ cg_ sqlite3_ nghttp2_ protobuf_c_
  forbid_libs "$so" libsqlite3 libpq libnghttp2 libprotobuf-c libyaml
done
[[ $n -ge 3 ]] || fail "found $n driver plugins in $B/drivers, want process, docker and vm"

[[ $bad -eq 0 ]] && echo "link lists hold for 5 binaries and $n plugins"
exit $bad
