#!/usr/bin/env bash
# `make run`: bootstrap the PKI into var/pki on first run, then start the
# gateway in the foreground with config/gateway.yaml (sqlite, data in var/data).
set -euo pipefail
O=${1:-build}
PKI=${2:-var/pki}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [[ ! -e "$PKI/root.pem" && ! -e "$PKI/issuing.pem" ]]; then
  echo "run: no PKI in $PKI yet; bootstrapping one (trust domain tessera.local)"
  "$O/bin/certgen" init --trust-domain tessera.local --out "$PKI"
  echo
else
  echo "run: using the existing PKI in $PKI"
fi

port=$(sed -n 's/^listen: *[^ ]*:\([0-9]*\).*/\1/p' config/gateway.yaml | head -1)
cat <<MSG
run: starting tessera-gateway (Ctrl-C stops it). In another terminal, try:

  $O/bin/tessera health                    # no client certificate needed
  $O/bin/tessera sandbox create demo       # as the admin operator ($PKI/users/admin.*)
  $O/bin/tessera sandbox list
  $O/bin/tessera cert list demo            # its certificates (it rotates them itself)
  $O/bin/tessera logs demo
  $O/bin/tessera sandbox delete demo       # revokes every certificate of the sandbox

  # the same API from the stock Python gRPC client:
  /usr/bin/python3 docs/examples/client.py list

MSG
exec "$O/bin/tessera-gateway" --config config/gateway.yaml
