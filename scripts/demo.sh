#!/usr/bin/env bash
# `make demo`: a scripted tour on a throwaway PKI and gateway (nothing in var/
# is touched). Two sandboxes with their own identities, one rotating its
# certificate by itself, a cross-sandbox call refused, a deletion that
# revokes every certificate of the sandbox.
set -euo pipefail
O=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN="$ROOT/$O/bin"
DIR=$(mktemp -d /tmp/tessera-demo.XXXXXX)
GW_PID="" ADDR=""
# Processes started for this demo: their command line names $DIR (the
# sandboxes' bubblewrap), and everything below them.
demo_procs() {
  local p pids=()
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} == "$$" ]] && continue
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$DIR" && pids+=("${p#/proc/}")
  done
  [[ ${#pids[@]} -gt 0 ]] || return 0
  # and their descendants
  ps -eo pid=,ppid= | awk -v roots="${pids[*]}" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END { do { changed = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } while (changed)
          for (p in keep) print p }'
}
cleanup() {
  # Sandboxes outlive a gateway by design; the demo's are deleted through
  # it first (the driver stops them and waits), then the gateway stops
  # (waiting for those teardowns), then anything left is killed.
  if [[ -n "$GW_PID" ]] && kill -0 "$GW_PID" 2>/dev/null && [[ -n "$ADDR" ]]; then
    for id in $("$BIN/tessera" --addr "$ADDR" --pki "$DIR/pki" --json sandbox list 2>/dev/null |
                /usr/bin/python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin).get("sandboxes", [])]' 2>/dev/null); do
      "$BIN/tessera" --addr "$ADDR" --pki "$DIR/pki" sandbox delete "$id" >/dev/null 2>&1 || true
    done
  fi
  [[ -n "$GW_PID" ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null || true
  local left
  for _ in $(seq 50); do
    left=$(demo_procs)
    [[ -z "$left" ]] && break
    kill -9 $left 2>/dev/null || true
    sleep 0.1
  done
  left=$(demo_procs)
  [[ -z "$left" ]] || echo "demo: processes left behind: $left" >&2
  rm -rf "$DIR"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A PKI for trust domain tessera.local (root, issuing CA, gateway and operator certificates)"
"$BIN/certgen" init --trust-domain tessera.local --out "$DIR/pki" >/dev/null
ls -l "$DIR/pki" | sed 's/^/  /'

step "The gateway, with the process driver (supervisors in bubblewrap)"
echo "  For the demo sandbox certificates live 5 min (the shortest sandbox_ttl) and each supervisor"
echo "  renews its certificate 15 s after it was issued (--renew-before 285s)."
cat >"$DIR/gateway.yaml" <<YAML
trust_domain: tessera.local
listen: 127.0.0.1:0
data_dir: $DIR/data
pki:
  bundle: $DIR/pki/bundle.pem
  issuing_cert: $DIR/pki/issuing.pem
  issuing_key: $DIR/pki/issuing.key
  server_cert: $DIR/pki/gateway.pem
  server_key: $DIR/pki/gateway.key
certificates: {sandbox_ttl: 5m, renew_limit: 100}
users: {admin: admin}
drivers:
  options:
    process: {supervisor_args: "--min-rotate-seconds 1 --renew-before 285s -- /bin/sleep 3600"}
YAML
"$BIN/tessera-gateway" --config "$DIR/gateway.yaml" \
  >"$DIR/gateway.out" 2>"$DIR/gateway.err" &
GW_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$DIR/gateway.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$DIR/gateway.out")
[[ -n "$ADDR" ]] || { cat "$DIR/gateway.err"; exit 1; }
echo "  listening on $ADDR"
T() { "$BIN/tessera" --addr "$ADDR" --pki "$DIR/pki" "$@"; }

step "Two sandboxes, each with its own SPIFFE identity"
run T sandbox create alpha
run T sandbox create beta
ALPHA=$(T --json sandbox get alpha | sed -n 's/.*"id": *"\([0-9a-f-]*\)".*/\1/p' | head -1)
BETA=$(T --json sandbox get beta | sed -n 's/.*"id": *"\([0-9a-f-]*\)".*/\1/p' | head -1)
run T sandbox list
IDENT="$DIR/data/sandboxes/$ALPHA/identity"
echo "  alpha's identity lives in a supervisor-only directory:"
ls -ld "$IDENT" "$IDENT"/* | sed 's/^/    /'
"$BIN/certgen" inspect "$IDENT/cert.pem" | sed -n '1,4p' | sed 's/^/    /'
cp "$IDENT/cert.pem" "$DIR/alpha-first.pem"; cp "$IDENT/key.pem" "$DIR/alpha-first.key"

step "alpha's supervisor rotates its own certificate (new key made inside, CSR, 15 s after issue)"
for _ in $(seq 60); do
  n=$(T --json cert list alpha | grep -o '"serial"' | wc -l)
  [[ "$n" -ge 2 ]] && break; sleep 1
done
run T cert list alpha
cmp -s "$DIR/alpha-first.key" "$IDENT/key.pem" && echo "  (key unchanged?)" || echo "  key.pem was replaced by a key the supervisor made itself"

step "alpha's identity asking for beta's config: refused, whatever the request says"
PYTHONPATH="$ROOT/$O/py" /usr/bin/python3 - "$ADDR" "$DIR/pki/bundle.pem" "$IDENT" "$ALPHA" "$BETA" <<'PY'
import sys, grpc
from tessera.v1 import gateway_pb2 as pb, gateway_pb2_grpc as rpc
addr, bundle, ident, alpha, beta = sys.argv[1:]
read = lambda p: open(p, "rb").read()
creds = grpc.ssl_channel_credentials(read(bundle), read(ident + "/key.pem"), read(ident + "/cert.pem"))
stub = rpc.GatewayStub(grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")]))
for who, sid in (("its own", alpha), ("beta's", beta)):
    try:
        r = stub.GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=sid), timeout=10)
        print(f"  alpha reads {who} config: OK (policy version {r.policy_version})")
    except grpc.RpcError as e:
        print(f"  alpha reads {who} config: {e.code().name}: {e.details()}")
PY

step "Delete alpha: every certificate revoked, its supervisor stopped"
run T sandbox delete alpha
run T cert list "$ALPHA"
PYTHONPATH="$ROOT/$O/py" /usr/bin/python3 - "$ADDR" "$DIR/pki/bundle.pem" "$DIR/alpha-first" "$ALPHA" <<'PY'
import sys, grpc
from tessera.v1 import gateway_pb2 as pb, gateway_pb2_grpc as rpc
addr, bundle, first, alpha = sys.argv[1:]
read = lambda p: open(p, "rb").read()
creds = grpc.ssl_channel_credentials(read(bundle), read(first + ".key"), read(first + ".pem"))
stub = rpc.GatewayStub(grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")]))
try:
    stub.GetSandboxConfig(pb.GetSandboxConfigRequest(sandbox_id=alpha), timeout=10)
    print("  alpha's old certificate: accepted (unexpected!)")
    sys.exit(1)
except grpc.RpcError as e:
    print(f"  alpha's old certificate: {e.code().name}: {e.details()}")
PY
echo
echo "demo: done (the gateway's audit log was $DIR/data/audit.log)"
tail -3 "$DIR/data/audit.log" | sed 's/^/  /'
