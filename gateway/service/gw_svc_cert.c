#include "gw_svc_cert.h"

#include <stdio.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "tsr_time.h"

int gw_cert_rec_from_x509(X509 *cert, const char *spiffe_id, const char *sandbox_id,
                          gw_cert_rec *out)
{
    memset(out, 0, sizeof *out);
    TSR_GUARD(ca_cert_serial_hex(cert, out->serial));
    TSR_GUARD(ca_cert_validity(cert, &out->not_before, &out->not_after));
    TSR_ENSURE(strlen(spiffe_id) < sizeof out->spiffe_id, TSR_E_INTERNAL, "SPIFFE ID too long");
    strcpy(out->spiffe_id, spiffe_id);
    snprintf(out->sandbox_id, sizeof out->sandbox_id, "%s", sandbox_id ? sandbox_id : "");
    out->issued_at = tsr_now_unix();
    return 0;
}
