#!/usr/bin/env bash
# certgen end to end: init (files, modes, refusals, --force), chains checked by
# `openssl verify -x509_strict`, inspect against `openssl x509`, issue-user,
# rotate-issuing (old leaves keep verifying), usage errors, key types.
set -euo pipefail

CERTGEN=${TSR_BIN:?TSR_BIN not set}/certgen
[[ -x $CERTGEN ]] || { echo "no $CERTGEN"; exit 1; }
command -v openssl >/dev/null || { echo "openssl command not found"; exit 1; }

TMP=$(mktemp -d /tmp/tsr-certgen.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

step() { echo "--- $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
mode_is() { # PATH MODE
  local m; m=$(stat -c '%a' "$1")
  [[ $m == "$2" ]] || fail "$1 has mode $m, want $2"
}
expect_rc() { # RC CMD... : run CMD, its exit status must be RC; output in $TMP/out
  local want=$1; shift
  local rc=0
  "$@" >"$TMP/out" 2>&1 || rc=$?
  [[ $rc -eq $want ]] || { cat "$TMP/out"; fail "exit $rc, want $want: $*"; }
}
out_has() { grep -qF -- "$1" "$TMP/out" || { cat "$TMP/out"; fail "output lacks: $1"; }; }
out_match() { grep -qE -- "$1" "$TMP/out" || { cat "$TMP/out"; fail "output does not match: $1"; }; }
verify() { # PURPOSE UNTRUSTED LEAF -> must print "LEAF: OK"
  local o
  o=$(openssl verify -x509_strict -purpose "$1" -CAfile bundle.pem -untrusted "$2" "$3" 2>&1) ||
    fail "openssl verify $*: $o"
  [[ $o == "$3: OK" ]] || fail "openssl verify $*: $o"
}
verify_fails() {
  if openssl verify -x509_strict -purpose "$1" -CAfile bundle.pem -untrusted "$2" "$3" >/dev/null 2>&1; then
    fail "openssl verify $* succeeded, expected a failure"
  fi
}

FILES=(root.pem root.key issuing.pem issuing.key bundle.pem gateway.pem gateway.key
       users/admin.pem users/admin.key)

step "usage: --help exits 0, bad flags exit 2 with a message"
expect_rc 0 "$CERTGEN" --help; out_has "Usage: certgen COMMAND"
for c in init issue-user inspect rotate-issuing; do
  expect_rc 0 "$CERTGEN" "$c" --help; out_has "Usage: certgen $c"
done
expect_rc 2 "$CERTGEN"
expect_rc 2 "$CERTGEN" frobnicate; out_has 'unknown command "frobnicate"'
expect_rc 2 "$CERTGEN" init --bogus --out x; out_has "unknown option '--bogus'"
expect_rc 2 "$CERTGEN" init --out; out_has "option '--out' needs a value"
expect_rc 2 "$CERTGEN" init; out_has "--out DIR is required"
expect_rc 2 "$CERTGEN" init --out x --trust-domain Tessera.Local; out_has 'bad trust domain "Tessera.Local"'
expect_rc 2 "$CERTGEN" init --out x --trust-domain 'a/b'; out_has "bad trust domain"
expect_rc 2 "$CERTGEN" init --out x --user 'Bob'; out_has 'bad user name "Bob"'
expect_rc 2 "$CERTGEN" init --out x --user '..'; out_has "bad user name"
expect_rc 2 "$CERTGEN" init --out x --user "$(printf 'a%.0s' {1..65})"; out_has "bad user name"
expect_rc 2 "$CERTGEN" init --out x --gateway-ip 300.1.1.1; out_has 'bad IP address "300.1.1.1"'
expect_rc 2 "$CERTGEN" init --out x --gateway-ip localhost; out_has "bad IP address"
expect_rc 2 "$CERTGEN" init --out x --gateway-dns '*.example.com'; out_has "bad DNS name"
expect_rc 2 "$CERTGEN" init --out x --key-type rsa; out_has 'unknown key type "rsa"'
expect_rc 2 "$CERTGEN" init --out x --leaf-ttl 90; out_has "needs a unit"
expect_rc 2 "$CERTGEN" init --out x --root-ttl -5d; out_has "--root-ttl"
expect_rc 2 "$CERTGEN" init --out x extra; out_has 'unexpected argument "extra"'
expect_rc 2 "$CERTGEN" issue-user --pki x; out_has "missing the user NAME"
expect_rc 2 "$CERTGEN" issue-user bob; out_has "--pki DIR is required"
expect_rc 2 "$CERTGEN" issue-user 'B@d' --pki x; out_has "bad user name"
expect_rc 2 "$CERTGEN" inspect; out_has "missing the FILE"
expect_rc 2 "$CERTGEN" rotate-issuing; out_has "--pki DIR is required"
expect_rc 2 "$CERTGEN" rotate-issuing --pki x --issuing-ttl soon; out_has "--issuing-ttl"
[[ ! -e x ]] || fail "a usage error created files"

step "init into an empty directory (umask 000: modes must not depend on it)"
mkdir empty
( umask 000; "$CERTGEN" init --out empty/pki ) >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "init"; }
out_has "spiffe://tessera.local/gateway"
cd empty/pki
for f in "${FILES[@]}"; do [[ -f $f ]] || fail "missing $f"; done
mode_is . 700
mode_is users 700
for f in root.key issuing.key gateway.key users/admin.key; do mode_is "$f" 600; done
for f in root.pem issuing.pem bundle.pem gateway.pem users/admin.pem; do mode_is "$f" 644; done
[[ $(ls -A | sort | tr '\n' ' ') == "bundle.pem gateway.key gateway.pem issuing.key issuing.pem root.key root.pem users " ]] ||
  fail "unexpected files: $(ls -A)"
[[ $(grep -c 'BEGIN CERTIFICATE' gateway.pem) -eq 2 ]] || fail "gateway.pem is not leaf + issuing"
[[ $(grep -c 'BEGIN CERTIFICATE' users/admin.pem) -eq 2 ]] || fail "admin.pem is not leaf + issuing"
cmp -s bundle.pem root.pem || fail "bundle.pem is not the root"
cd "$TMP"

step "init into an existing directory open to others: warned about, left as it is"
mkdir open && chmod 755 open
expect_rc 0 "$CERTGEN" init --out open
out_has "open is mode 0755; a PKI directory should be 0700"
mode_is open 755
mode_is open/users 700
mode_is open/root.key 600
cd empty/pki

step "chains verify with openssl -x509_strict"
verify sslclient issuing.pem users/admin.pem
verify sslserver issuing.pem gateway.pem
verify sslclient users/admin.pem users/admin.pem   # the chain file alone suffices
openssl x509 -in gateway.pem -noout -ext subjectAltName | grep -q 'URI:spiffe://tessera.local/gateway, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1' ||
  fail "gateway SANs: $(openssl x509 -in gateway.pem -noout -ext subjectAltName)"
openssl x509 -in users/admin.pem -noout -ext subjectAltName | grep -q 'URI:spiffe://tessera.local/user/admin' ||
  fail "admin SAN"
openssl pkey -in root.key -noout 2>/dev/null || fail "root.key does not parse"
[[ $(openssl x509 -in root.pem -noout -pubkey) == $(openssl pkey -in root.key -pubout) ]] || fail "root key mismatch"
cd "$TMP"

step "re-init is refused, listing what exists, writing nothing"
before=$(cd empty/pki && find . -type f -exec sha256sum {} + | sort)
expect_rc 1 "$CERTGEN" init --out empty/pki
out_has "already holds a PKI"
for f in "${FILES[@]}"; do out_has "empty/pki/$f"; done
out_has "--force"
after=$(cd empty/pki && find . -type f -exec sha256sum {} + | sort)
[[ $before == "$after" ]] || fail "a refused init changed files"

step "a partial PKI is reported as such, never completed"
cp -a empty/pki partial
rm partial/issuing.key partial/gateway.pem
expect_rc 1 "$CERTGEN" init --out partial
out_has "partial PKI in partial: present root.key, root.pem, issuing.pem, bundle.pem, gateway.key, users/admin.key, users/admin.pem; missing issuing.key, gateway.pem"
[[ ! -e partial/issuing.key && ! -e partial/gateway.pem ]] || fail "partial PKI was completed"
mkdir -p lone/users && echo x > lone/users/old.pem
expect_rc 1 "$CERTGEN" init --out lone
out_has "partial PKI in lone: present users/old.pem; missing root.key"

step "--force replaces the PKI"
old_root=$(openssl x509 -in partial/root.pem -noout -fingerprint -sha256)
expect_rc 0 "$CERTGEN" init --out partial --force
new_root=$(openssl x509 -in partial/root.pem -noout -fingerprint -sha256)
[[ $old_root != "$new_root" ]] || fail "--force kept the old root"
(cd partial && verify sslclient issuing.pem users/admin.pem && verify sslserver issuing.pem gateway.pem)
for f in partial/*.key partial/users/*.key; do mode_is "$f" 600; done

step "inspect matches openssl x509"
cd empty/pki
expect_rc 0 "$CERTGEN" inspect users/admin.pem
out_has "spiffe://tessera.local/user/admin"
fp=$(openssl x509 -in users/admin.pem -noout -fingerprint -sha256 | cut -d= -f2 | tr 'A-F' 'a-f')
serial=$(openssl x509 -in users/admin.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
out_has "$fp"
out_has "serial:              $serial"
out_has "key:                 ECDSA P-256"
out_has "subject:             (empty)"
out_has "issuer:              O=Tessera, CN=Tessera Issuing CA tessera.local"
out_has "type:                leaf"
out_has "type:                CA (path length 0)"
out_has "Certificate 2 of 2"
out_match "remaining lifetime:  (90d|89d23h)"
na=$(date -u -d "$(openssl x509 -in users/admin.pem -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)
out_has "not after:           $na"
expect_rc 0 "$CERTGEN" inspect gateway.pem
out_has "DNS names:           localhost"
out_has "IP addresses:        127.0.0.1, ::1"
out_has "spiffe://tessera.local/gateway"
expect_rc 0 "$CERTGEN" inspect root.pem
out_has "CA (path length 1)"
out_has "subject:             O=Tessera, CN=Tessera Root CA tessera.local"
openssl x509 -in root.pem -outform DER -out "$TMP/root.der"
expect_rc 0 "$CERTGEN" inspect "$TMP/root.der"
out_has "$(openssl x509 -in root.pem -noout -fingerprint -sha256 | cut -d= -f2 | tr 'A-F' 'a-f')"
expect_rc 1 "$CERTGEN" inspect root.key; out_has "holds a private key"
# Text that is neither PEM nor DER: it must not start with 0x30 ('0'), the
# first byte of a DER SEQUENCE, or inspect rightly tries the DER path.
{ printf 'garbage:'; head -c 2000 /dev/urandom | base64; } >"$TMP/garbage"
expect_rc 1 "$CERTGEN" inspect "$TMP/garbage"; out_has "not a certificate file"
{ cat root.pem; echo "trailing junk"; } >"$TMP/trailing.pem"
expect_rc 1 "$CERTGEN" inspect "$TMP/trailing.pem"; out_has "expected a CERTIFICATE block"
head -c 300 root.pem >"$TMP/truncated.pem"
expect_rc 1 "$CERTGEN" inspect "$TMP/truncated.pem"; out_has "truncated"
: >"$TMP/empty.pem"
expect_rc 1 "$CERTGEN" inspect "$TMP/empty.pem"
expect_rc 1 "$CERTGEN" inspect "$TMP/does-not-exist"; out_has "No such file"
cd "$TMP"

step "issue-user"
expect_rc 0 "$CERTGEN" issue-user bob --pki empty/pki --ttl 2h
out_has "spiffe://tessera.local/user/bob"
mode_is empty/pki/users/bob.key 600
mode_is empty/pki/users/bob.pem 644
(cd empty/pki && verify sslclient issuing.pem users/bob.pem)
expect_rc 0 "$CERTGEN" inspect empty/pki/users/bob.pem
out_match "remaining lifetime:  (2h|1h59m)"
bob_fp=$(openssl x509 -in empty/pki/users/bob.pem -noout -fingerprint -sha256)
expect_rc 1 "$CERTGEN" issue-user bob --pki empty/pki
out_has "user bob already exists"; out_has "empty/pki/users/bob.pem"; out_has "--force"
[[ $(openssl x509 -in empty/pki/users/bob.pem -noout -fingerprint -sha256) == "$bob_fp" ]] || fail "bob was overwritten"
expect_rc 0 "$CERTGEN" issue-user bob --pki empty/pki --force
[[ $(openssl x509 -in empty/pki/users/bob.pem -noout -fingerprint -sha256) != "$bob_fp" ]] || fail "--force did not re-issue"
expect_rc 1 "$CERTGEN" issue-user carol --pki "$TMP/nowhere"; out_has "cannot load the issuing CA"

step "rotate-issuing"
cd empty/pki
old_serial=$(openssl x509 -in issuing.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
cp users/admin.pem "$TMP/admin-before.pem"
mv root.key "$TMP/root.key.offline"
expect_rc 1 "$CERTGEN" rotate-issuing --pki .
out_has "root.key not found"; out_has "copy it back"
mv "$TMP/root.key.offline" root.key
expect_rc 0 "$CERTGEN" rotate-issuing --pki .
new_serial=$(openssl x509 -in issuing.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
[[ $new_serial != "$old_serial" ]] || fail "issuing serial unchanged"
mode_is archive 700
mode_is "archive/issuing-$old_serial.key" 600
mode_is "archive/issuing-$old_serial.pem" 644
mode_is issuing.key 600
mode_is issuing.pem 644
# The old user certificate keeps verifying: with the archived issuing CA, and
# with its own chain file; not with the new issuing CA alone.
verify sslclient "archive/issuing-$old_serial.pem" users/admin.pem
verify sslclient users/admin.pem users/admin.pem
verify_fails sslclient issuing.pem users/admin.pem
cmp -s users/admin.pem "$TMP/admin-before.pem" || fail "rotate touched a user certificate"
# The new gateway certificate chains to the new issuing CA only.
verify sslserver issuing.pem gateway.pem
verify_fails sslserver "archive/issuing-$old_serial.pem" gateway.pem
[[ $(openssl x509 -in gateway.pem -noout -issuer) == "issuer=O = Tessera, CN = Tessera Issuing CA tessera.local" ]] || fail "gateway issuer"
second=$(sed -n '/END CERTIFICATE/,$p' gateway.pem | sed '1d')
[[ $(openssl x509 -noout -serial <<<"$second" | cut -d= -f2 | tr 'A-F' 'a-f') == "$new_serial" ]] || fail "gateway chain does not carry the new issuing CA"
[[ $(openssl x509 -in gateway.pem -noout -pubkey) == $(openssl pkey -in gateway.key -pubout) ]] || fail "gateway key mismatch"
openssl x509 -in gateway.pem -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1' || fail "gateway names lost"
# New users come from the new issuing CA.
expect_rc 0 "$CERTGEN" issue-user dave --pki .
verify sslclient issuing.pem users/dave.pem
cd "$TMP"

step "key types ed25519 and p384, custom trust domain and names"
for kt in ed25519 p384; do
  expect_rc 0 "$CERTGEN" init --out "kt-$kt" --key-type "$kt" --trust-domain example.org \
    --gateway-dns gw.example.org --gateway-dns localhost --gateway-ip 10.1.2.3 \
    --user alice --user bob --leaf-ttl 1d --issuing-ttl 30d --root-ttl 60d
  cd "kt-$kt"
  for u in alice bob; do verify sslclient issuing.pem "users/$u.pem"; done
  verify sslserver issuing.pem gateway.pem
  [[ ! -e users/admin.pem ]] || fail "admin issued although --user was given"
  want=$([[ $kt == ed25519 ]] && echo "Ed25519" || echo "ECDSA P-384")
  expect_rc 0 "$CERTGEN" inspect users/alice.pem
  out_has "spiffe://example.org/user/alice"; out_has "key:                 $want"
  out_match "remaining lifetime:  (1d|23h59m)"
  sig=$(openssl x509 -in issuing.pem -noout -text | grep -m1 'Signature Algorithm' | awk '{print $3}')
  [[ $sig == "$([[ $kt == ed25519 ]] && echo ED25519 || echo ecdsa-with-SHA384)" ]] || fail "$kt signature algorithm $sig"
  openssl x509 -in issuing.pem -noout -text | grep -q 'Permitted:' || fail "no name constraints"
  openssl x509 -in issuing.pem -noout -text | grep -q 'URI:example.org' || fail "name constraint not the trust domain"
  expect_rc 0 "$CERTGEN" rotate-issuing --pki . --key-type p256
  verify sslserver issuing.pem gateway.pem
  verify sslclient users/alice.pem users/alice.pem
  openssl x509 -in gateway.pem -noout -ext subjectAltName | grep -q 'DNS:gw.example.org, DNS:localhost, IP Address:10.1.2.3' || fail "gateway names after rotation"
  cd "$TMP"
done

echo "certgen: all checks passed"
