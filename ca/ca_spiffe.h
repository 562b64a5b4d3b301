/* SPIFFE IDs: parsing exactly per the SPIFFE-ID standard, and the mapping of
 * an ID to one of Tessera's principal kinds (docs/identity.md). */
#ifndef CA_SPIFFE_H
#define CA_SPIFFE_H

#include <stddef.h>

#include "tsr_err.h"

#define CA_SPIFFE_ID_MAX 2048      /* bytes, whole URI */
#define CA_TRUST_DOMAIN_MAX 255
#define CA_NAME_MAX 64             /* user / proxy names */
#define CA_UUID_LEN 36

typedef struct ca_spiffe_id {
    char text[CA_SPIFFE_ID_MAX + 1];               /* the whole ID */
    char trust_domain[CA_TRUST_DOMAIN_MAX + 1];
    char path[CA_SPIFFE_ID_MAX + 1];               /* "" or "/seg/seg" */
} ca_spiffe_id;

/* Parse `len` bytes (not NUL-terminated; an embedded NUL is an error).
 * On failure: TSR_E_INPUT with a reason such as "uppercase letter in trust
 * domain", "port not allowed", "empty path segment", "percent-encoding not
 * allowed", "trailing slash", "longer than 2048 bytes". */
TSR_WUR int ca_spiffe_parse(const char *s, size_t len, ca_spiffe_id *out);

/* Trust domain alone: [a-z0-9._-]+, 1..255 bytes. */
TSR_WUR int ca_trust_domain_validate(const char *td, size_t len);

enum ca_kind {
    CA_KIND_NONE = 0,
    CA_KIND_SANDBOX,   /* /sandbox/<lowercase uuid>          */
    CA_KIND_USER,      /* /user/<[a-z0-9._-]{1,64}>          */
    CA_KIND_GATEWAY,   /* /gateway                           */
    CA_KIND_PROXY,     /* /proxy/<[a-z0-9._-]{1,64}>         */
};
const char *ca_kind_name(enum ca_kind kind); /* "sandbox", "user", ... */

typedef struct ca_identity {
    enum ca_kind kind;
    char name[CA_NAME_MAX + 1];  /* sandbox uuid, user or proxy name; "" for gateway */
    ca_spiffe_id id;
} ca_identity;

/* Map a parsed ID to a principal kind. A foreign trust domain, or a path of
 * no known kind, or a bad name in a known kind, is TSR_E_UNAUTH with the
 * reason ("foreign trust domain example.org", "unknown identity kind"). */
TSR_WUR int ca_identity_classify(const ca_spiffe_id *id, const char *trust_domain,
                                 ca_identity *out);

/* Build "spiffe://<td>/<kind>/<name>" (gateway: "spiffe://<td>/gateway") and
 * validate the result with ca_spiffe_parse. */
TSR_WUR int ca_spiffe_format(enum ca_kind kind, const char *trust_domain, const char *name,
                             char *out, size_t cap);

/* Lowercase canonical 8-4-4-4-12 UUID text, exactly 36 bytes. */
TSR_WUR int ca_uuid_validate(const char *s, size_t len);
/* A random (version 4) UUID from the OpenSSL CSPRNG, lowercase, NUL-terminated. */
TSR_WUR int ca_uuid_generate(char out[CA_UUID_LEN + 1]);
/* [a-z0-9._-]{1,64} */
TSR_WUR int ca_name_validate(const char *s, size_t len);

#endif
