/* The name rules every layer checks against, written once (docs/config.md,
 * "users"; docs/policy.md; docs/architecture.md, "One source per rule"):
 *
 *  - a name (trust domain, user, proxy, policy entry): [a-z0-9._-], and a
 *    name of a SPIFFE path segment is 1..max bytes and not "." or "..";
 *  - a DNS host name: dot-separated labels [A-Za-z0-9-]{1,63} without a
 *    hyphen at either end, 1..253 bytes, no trailing dot; the flags add what
 *    a caller also needs (a leading "*." wildcard, no all-digit name).
 *
 * Pure functions of their bytes; callers say why a name is refused. */
#ifndef TSR_NAME_H
#define TSR_NAME_H

#include <stdbool.h>
#include <stddef.h>

/* [a-z0-9._-] */
bool tsr_name_char(char c);
/* Every one of the len bytes is a name character (true for len 0). */
bool tsr_name_chars(const char *s, size_t len);
/* 1..max name characters, not "." or "..". */
bool tsr_name_valid(const char *s, size_t len, size_t max);

#define TSR_DNS_NAME_MAX 253
enum {
    TSR_DNS_WILDCARD = 1,        /* one leading "*." label is allowed (and not counted) */
    TSR_DNS_LAST_NOT_DIGITS = 2, /* the last label is not all digits ("1.2.3" is no name) */
    TSR_DNS_NOT_DIGITS = 4,      /* the name is not all digits and dots */
};
bool tsr_dns_name_valid(const char *s, size_t len, unsigned flags);

#endif
