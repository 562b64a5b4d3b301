/* Sandbox policy documents (CreateSandbox / UpdateConfig) and per-domain
 * chunks (SubmitPolicyAnalysis): pol_validate and
 * pol_validate_domain on untrusted YAML.
 * Input: [domain selector] yaml... The same bytes go to the whole-document
 * validator and to the chunk validator of the selected domain (an unknown
 * domain name for selector values past the four domains).
 * Invariants: embedded NULs and oversized documents are always refused; a
 * refusal says why; a document valid as a whole stays valid with trailing
 * whitespace and comments. */
#include <stdbool.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "pol_policy.h"

static const char *const DOMAINS[] = {"filesystem", "network", "process", "inference",
                                      "Network", "", "network ", "filesystem\n"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    const char *domain = DOMAINS[fuzz_u8(&in) % 8];
    const char *yaml = (const char *)in.p;
    bool has_nul = memchr(in.p, '\0', in.len) != NULL;

    int whole = pol_validate(yaml, in.len);
    if (whole != 0) FUZZ_CHECK(tsr_errcat() != TSR_E_NONE && tsr_errmsg()[0] != '\0');
    if (has_nul || in.len > POL_MAX_BYTES) FUZZ_CHECK(whole != 0);
    if (whole == 0 && in.len + 32 <= POL_MAX_BYTES) {
        /* As a handler would pass it on: NUL-terminated, then with a harmless tail. */
        char *copy = malloc(in.len + 32);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, in.p, in.len);
        strcpy(copy + in.len, "\n# trailing comment\n");
        FUZZ_CHECK(pol_validate(copy, strlen(copy)) == 0);
        free(copy);
    }

    int chunk = pol_validate_domain(domain, yaml, in.len);
    if (!pol_is_domain(domain) || has_nul) FUZZ_CHECK(chunk != 0);
    if (chunk != 0) FUZZ_CHECK(tsr_errmsg()[0] != '\0');
    return 0;
}
