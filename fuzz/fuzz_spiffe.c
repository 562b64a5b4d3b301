/* SPIFFE IDs as they arrive in a peer certificate's URI SAN: ca_spiffe_parse
 * on raw bytes, then ca_identity_classify against the gateway's trust domain
 * (and against the ID's own), plus the name / UUID / trust-domain validators.
 * Invariants: a parsed ID is exactly the input; a classified identity formats
 * back to exactly the same ID (identity is never wrong). */
#include <string.h>

#include "ca_spiffe.h"
#include "fuzz/fuzz.h"

static void check_classified(const ca_spiffe_id *id, const char *td, const ca_identity *ident)
{
    FUZZ_CHECK(ident->kind != CA_KIND_NONE);
    FUZZ_CHECK(strcmp(ident->id.text, id->text) == 0);
    FUZZ_CHECK(strcmp(ident->id.trust_domain, td) == 0);
    char again[CA_SPIFFE_ID_MAX + 1];
    FUZZ_CHECK(ca_spiffe_format(ident->kind, td, ident->name, again, sizeof again) == 0);
    FUZZ_CHECK(strcmp(again, id->text) == 0);
    switch (ident->kind) {
    case CA_KIND_SANDBOX:
        FUZZ_CHECK(ca_uuid_validate(ident->name, strlen(ident->name)) == 0);
        break;
    case CA_KIND_USER:
    case CA_KIND_PROXY:
        FUZZ_CHECK(ca_name_validate(ident->name, strlen(ident->name)) == 0);
        break;
    case CA_KIND_GATEWAY:
        FUZZ_CHECK(ident->name[0] == '\0');
        break;
    case CA_KIND_NONE:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    ca_spiffe_id id;
    if (ca_spiffe_parse(s, size, &id) == 0) {
        FUZZ_CHECK(size <= CA_SPIFFE_ID_MAX && strlen(id.text) == size &&
                   memcmp(id.text, data, size) == 0);
        FUZZ_CHECK(memchr(data, '\0', size) == NULL);
        FUZZ_CHECK(ca_trust_domain_validate(id.trust_domain, strlen(id.trust_domain)) == 0);
        FUZZ_CHECK(strlen("spiffe://") + strlen(id.trust_domain) + strlen(id.path) == size);

        ca_identity ident;
        if (ca_identity_classify(&id, "tessera.local", &ident) == 0)
            check_classified(&id, "tessera.local", &ident);
        if (ca_identity_classify(&id, id.trust_domain, &ident) == 0)
            check_classified(&id, id.trust_domain, &ident);

        /* A struct whose parts disagree with its text is refused. */
        ca_spiffe_id forged = id;
        if (forged.path[0] != '\0') {
            forged.path[0] = '\0';
            FUZZ_CHECK(ca_identity_classify(&forged, id.trust_domain, &ident) != 0);
        }
    }
    /* The validators also see raw bytes (names and ids from request bodies). */
    FUZZ_IGNORE(ca_trust_domain_validate(s, size));
    if (ca_uuid_validate(s, size) == 0) FUZZ_CHECK(size == CA_UUID_LEN);
    if (ca_name_validate(s, size) == 0) FUZZ_CHECK(size >= 1 && size <= CA_NAME_MAX);
    return 0;
}
