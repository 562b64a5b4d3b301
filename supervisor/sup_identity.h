/* The supervisor's identity files (docs/supervisor.md, "The identity
 * directory"): cert.pem (leaf + chain), key.pem and bundle.pem in a
 * directory only the supervisor's uid can enter.
 *
 * Loading refuses, with a message naming the file and the fix, a directory
 * that is not a real directory owned by us with mode 0700 (no group/other
 * bits), files that are not regular files owned by us (symlinks included),
 * a key.pem with any group/other permission bit, a key that does not match
 * the certificate, and a certificate that is not a valid X509-SVID of a
 * sandbox in the trust domain (verified against bundle.pem, the same
 * ca_verify_peer the gateway uses). The sandbox id and SPIFFE ID come from
 * that verified certificate alone.
 *
 * Storing a renewed pair is crash-safe: both files are first written in
 * full under staging names (key.pem.new, cert.pem.new; each written with
 * tsr_write_file_atomic, so 0600 from the start and fsync'ed), then renamed
 * key first, cert second, and the directory fsync'ed. A crash leaves one of:
 *   - the old pair (+ complete or partial staging files)  -> old pair used,
 *     staging files removed;
 *   - the new key.pem with the old cert.pem and cert.pem.new -> the pair
 *     (key.pem, cert.pem.new) matches: the cert rename is rolled forward;
 *   - the new pair                                         -> nothing to do.
 * sup_identity_recover() applies these rules at start-up, before loading,
 * and also removes leftover tsr_write_file_atomic temp files
 * (<name>.tmp.XXXXXX) of our file names. */
#ifndef SUP_IDENTITY_H
#define SUP_IDENTITY_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca_verify.h"
#include "tsr_err.h"

#define SUP_IDENTITY_DEFAULT_DIR "/run/tessera/identity"
#define SUP_CERT_FILE "cert.pem"
#define SUP_KEY_FILE "key.pem"
#define SUP_BUNDLE_FILE "bundle.pem"
#define SUP_STAGE_SUFFIX ".new"
#define SUP_IDENTITY_FILE_MODE 0600

/* A loaded, verified identity. */
typedef struct sup_identity {
    X509 *leaf;
    STACK_OF(X509) *chain;      /* certificates after the leaf in cert.pem (may be empty) */
    EVP_PKEY *key;
    ca_trust *trust;            /* from bundle.pem, for our trust domain */
    uint8_t *cert_pem;          /* file contents, for the TLS client */
    size_t cert_pem_len;
    uint8_t *key_pem;           /* secret: cleansed on free, never logged */
    size_t key_pem_len;
    uint8_t *bundle_pem;
    size_t bundle_pem_len;
    ca_peer peer;               /* verified leaf: SPIFFE ID, sandbox id, serial, validity */
} sup_identity;

/* The directory itself: a real directory (not a symlink), owned by our
 * effective uid, no group/other permission bits. */
TSR_WUR int sup_identity_check_dir(const char *dir);

/* Finish or discard an interrupted sup_identity_store (rules above).
 * `note` (may be NULL) receives what was done, "" if nothing. */
TSR_WUR int sup_identity_recover(const char *dir, char *note, size_t note_cap);

/* Clock skew (docs/security.md "Clock skew"). The gateway backdates a
 * leaf's notBefore by SUP_GATEWAY_BACKDATE_S (docs/identity.md,
 * "Certificate profile"); a supervisor whose clock is up to
 * SUP_MAX_CLOCK_SKEW_S behind the gateway's still takes a certificate the
 * gateway has just issued: it is judged at its notBefore instead of at `now`
 * when that lies at most SUP_MAX_CLOCK_SKEW_S ahead. */
#define SUP_GATEWAY_BACKDATE_S 60
#define SUP_MAX_CLOCK_SKEW_S 300
/* The time to verify `leaf` at: `now` (0 = current time), or its notBefore
 * when that is in now's future by at most SUP_MAX_CLOCK_SKEW_S. */
int64_t sup_judge_time(const X509 *leaf, int64_t now);
/* How many seconds our clock (`now`) seems behind the gateway's, judging
 * by a notBefore the gateway wrote at its now − SUP_GATEWAY_BACKDATE_S:
 * 0..SUP_MAX_CLOCK_SKEW_S (never negative: a clock ahead only makes us
 * rotate early, and an old certificate says nothing about the skew). */
int64_t sup_clock_behind_s(int64_t not_before, int64_t now);

/* Check and load the three files and verify the leaf at `now` (Unix seconds,
 * 0 = current time), or at sup_judge_time(leaf, now). A verification
 * failure is TSR_E_UNAUTH with the reason in *reason (CA_VERIFY_EXPIRED when
 * the certificate has expired). */
TSR_WUR int sup_identity_load(const char *dir, const char *trust_domain, int64_t now,
                              enum ca_verify_reason *reason, sup_identity **out);
void sup_identity_free(sup_identity *id);

/* Store a renewed identity: bundle.pem (atomically, first: the new chain may
 * need it), then the key/cert pair by the staged protocol above. */
TSR_WUR int sup_identity_store(const char *dir, const uint8_t *cert_pem, size_t cert_len,
                               const uint8_t *key_pem, size_t key_len,
                               const uint8_t *bundle_pem, size_t bundle_len);

/* The steps of sup_identity_store, public so tests can stop between them
 * (a simulated crash). */
TSR_WUR int sup_identity_stage_pair(const char *dir, const uint8_t *cert_pem, size_t cert_len,
                                    const uint8_t *key_pem, size_t key_len);
TSR_WUR int sup_identity_commit_key(const char *dir);
TSR_WUR int sup_identity_commit_cert(const char *dir);

/* 1 if the private key matches the certificate's public key, else 0. */
int sup_key_matches_cert(EVP_PKEY *key, X509 *cert);

#endif
