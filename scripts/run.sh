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

  # health check (no client certificate needed)
  /usr/bin/python3 docs/examples/client.py health

  # as the admin operator (var/pki/users/admin.pem): create and list sandboxes
  /usr/bin/python3 docs/examples/client.py create demo
  /usr/bin/python3 docs/examples/client.py list

  # inspect the certificates certgen made
  $O/bin/certgen inspect $PKI/users/admin.pem

MSG
exec "$O/bin/tessera-gateway" --config config/gateway.yaml
