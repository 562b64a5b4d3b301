#!/usr/bin/env bash
# Issue a proxy identity (spiffe://<trust domain>/proxy/<name>) from the
# gateway's issuing CA with the openssl CLI, following the X509-SVID leaf
# profile of docs/identity.md. certgen issues gateway and user certificates only.
#
#   docs/examples/proxy-cert.sh PKI_DIR NAME [TRUST_DOMAIN] [DAYS]
#
# Reads PKI_DIR/issuing.pem and PKI_DIR/issuing.key; writes
# PKI_DIR/proxy-NAME.key (0600) and PKI_DIR/proxy-NAME.pem (leaf, then the
# issuing CA). Defaults: trust domain tessera.local, 30 days (never past the
# issuing CA). Then add NAME to proxy.trusted in the gateway configuration.
set -euo pipefail

usage() { echo "usage: $0 PKI_DIR NAME [TRUST_DOMAIN] [DAYS]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 4 ]] || usage
pki=$1 name=$2 td=${3:-tessera.local} days=${4:-30}
[[ $name =~ ^[a-z0-9._-]{1,64}$ && $name != "." && $name != ".." ]] ||
  { echo "bad proxy name '$name' (expected [a-z0-9._-]{1,64})" >&2; exit 2; }
[[ $td =~ ^[a-z0-9._-]{1,255}$ ]] || { echo "bad trust domain '$td'" >&2; exit 2; }
[[ $days =~ ^[1-9][0-9]{0,3}$ ]] || { echo "bad number of days '$days'" >&2; exit 2; }
[[ -r $pki/issuing.pem && -r $pki/issuing.key ]] ||
  { echo "$pki/issuing.pem and issuing.key are needed" >&2; exit 1; }

# A leaf never outlives its issuer.
openssl x509 -in "$pki/issuing.pem" -noout -checkend $((days * 86400)) >/dev/null ||
  { echo "the issuing CA expires within $days days: choose fewer days" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077
cat >"$tmp/ext.cnf" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = critical, URI:spiffe://$td/proxy/$name
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key.pem" 2>/dev/null
openssl req -new -key "$tmp/key.pem" -subj "/O=Tessera/CN=proxy $name" -out "$tmp/req.pem"
# 128 random bits, positive: the leading hex digit is kept below 8.
serial=$(printf '%x%s' $((RANDOM % 7 + 1)) "$(openssl rand -hex 15)")
openssl x509 -req -in "$tmp/req.pem" -CA "$pki/issuing.pem" -CAkey "$pki/issuing.key" \
  -set_serial "0x$serial" -days "$days" -sha256 -extfile "$tmp/ext.cnf" \
  -out "$tmp/leaf.pem" 2>/dev/null
# The issuing CA certificate alone (issuing.pem may hold more than one).
openssl x509 -in "$pki/issuing.pem" -out "$tmp/issuing.pem"
cat "$tmp/leaf.pem" "$tmp/issuing.pem" >"$tmp/chain.pem"
install -m 0600 "$tmp/key.pem" "$pki/proxy-$name.key"
install -m 0644 "$tmp/chain.pem" "$pki/proxy-$name.pem"
echo "wrote $pki/proxy-$name.pem and $pki/proxy-$name.key (spiffe://$td/proxy/$name)"
