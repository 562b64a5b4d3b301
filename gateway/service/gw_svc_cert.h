/* Certificates as the service layer sees them (no protobuf). */
#ifndef GW_SVC_CERT_H
#define GW_SVC_CERT_H

#include <openssl/x509.h>

#include "gw_store.h"
#include "tsr_err.h"

/* A certificate record for the store, from an issued certificate. */
TSR_WUR int gw_cert_rec_from_x509(X509 *cert, const char *spiffe_id, const char *sandbox_id,
                                  gw_cert_rec *out);

#endif
