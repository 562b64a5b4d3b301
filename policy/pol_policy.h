/* Sandbox policy documents (docs/policy.md): validation only.
 *
 * A policy is a YAML mapping with `version: 1` and up to four domains,
 * `filesystem`, `network`, `process` and `inference`; anything a policy
 * does not allow is denied. Validation is strict: unknown keys, wrong types,
 * relative or non-canonical paths, bad hosts/CIDRs/ports, bad names and
 * lists over their caps are refused with TSR_E_INPUT "policy:<line>: reason"
 * (or "policy: reason" for the document as a whole, e.g. "policy: empty
 * document"). */
#ifndef POL_POLICY_H
#define POL_POLICY_H

#include <stddef.h>

#include "tsr_err.h"

#define POL_MAX_BYTES (64 * 1024)

/* A whole policy document (CreateSandbox, UpdateConfig). */
TSR_WUR int pol_validate(const char *yaml, size_t len);

/* One chunk (SubmitPolicyAnalysis): the body of domain `domain`, i.e. what
 * would follow "network:" in a whole policy, e.g. "default: deny\nallow: []".
 * An unknown domain or an empty chunk is TSR_E_INPUT. */
TSR_WUR int pol_validate_domain(const char *domain, const char *yaml, size_t len);

/* 1 if `name` is one of filesystem, network, process, inference. */
int pol_is_domain(const char *name);

#endif
