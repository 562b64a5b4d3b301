/* The gateway's CRL (served by GetTrustBundle): built by ca_crl from the
 * in-memory revocation set, signed by the current snapshot's issuing CA, and
 * cached. It is signed again only when
 *   - the PKI snapshot changed (a reload: perhaps another issuing CA),
 *   - a serial was added to the revocation set (gw_revocations_generation),
 *   - or half of its validity (certificates.crl_validity) has passed,
 * never per request. Entries: every revoked serial whose certificate has not
 * yet expired (RFC 5280 §3.3 allows dropping expired ones; it keeps the CRL
 * bounded), with its revocation time and reason from the store (read once
 * per serial and remembered). Reason text "sandbox deleted" becomes
 * cessationOfOperation; an RFC 5280 reason name given to RevokeCertificate
 * becomes that reasonCode; any other text has no reasonCode.
 *
 * cRLNumber: max(last + 1, now in milliseconds), the last one persisted in
 * `number_path` (0600, written atomically) before the CRL is served, so it
 * grows across restarts even if the file is lost (the clock floor). When the
 * number is the clock floor itself, a failed write (a full disk) does not
 * stop the CRL from being served; when it is ahead of the clock, it does. */
#ifndef GW_CRL_H
#define GW_CRL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_app.h"
#include "tsr_err.h"

struct gw_store;
struct gw_revocations;

typedef struct gw_crl {
    atomic_int refs;
    char *pem;           /* one "X509 CRL" PEM block */
    size_t len;
    uint64_t number;
    int64_t this_update, next_update;
    size_t entries;
} gw_crl;

typedef struct gw_crl_cache gw_crl_cache;

TSR_WUR int gw_crl_cache_new(const char *number_path, gw_crl_cache **out);

/* The number file's contents (gw_crl_cache_new reads number_path with
 * it): the last cRLNumber, in decimal digits only, with one newline after
 * it or not, below UINT64_MAX (the next number must fit). Anything else is
 * TSR_E_INPUT. */
#define GW_CRL_NUMBER_MAX 64   /* bytes of the file */
TSR_WUR int gw_crl_number_parse(const uint8_t *text, size_t len, uint64_t *out);
void gw_crl_cache_free(gw_crl_cache *c);

/* A reference to the current CRL for `pki` (rebuilt first if stale, see
 * above; the store is read only for serials not seen before). now = 0: the
 * current time. Release with gw_crl_release. */
TSR_WUR int gw_crl_current(gw_crl_cache *c, const gw_pki *pki, struct gw_revocations *rev,
                           struct gw_store *store, int64_t now, gw_crl **out);
void gw_crl_release(gw_crl *crl);

#endif
