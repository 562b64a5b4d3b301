/* The caller's identity, decided once per connection at the TLS handshake
 * from the verified peer certificate and never from a request body. */
#ifndef GW_PRINCIPAL_H
#define GW_PRINCIPAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ca_spiffe.h"

enum gw_principal_kind {
    GW_PRINCIPAL_ANONYMOUS = 0,   /* no client certificate */
    GW_PRINCIPAL_UNAUTHENTICATED, /* a certificate that identifies nobody (see reason) */
    GW_PRINCIPAL_SANDBOX,
    GW_PRINCIPAL_USER,
    GW_PRINCIPAL_PROXY,
};

enum gw_role { GW_ROLE_NONE = 0, GW_ROLE_VIEWER, GW_ROLE_OPERATOR, GW_ROLE_ADMIN };

typedef struct gw_principal {
    enum gw_principal_kind kind;
    enum gw_role role;                      /* users only */
    char name[CA_NAME_MAX + 1];             /* sandbox id, user or proxy name */
    char spiffe_id[CA_SPIFFE_ID_MAX + 1];
    char serial_hex[41];                    /* the leaf's serial */
    int64_t not_after;                      /* earliest notAfter of the chain */
    char reason[160];                       /* why UNAUTHENTICATED */
    /* A connection on the configured unix socket: a trusted proxy by
     * position, never anyone by itself (the principal is UNAUTHENTICATED);
     * each call runs as the client certificate it forwards. Set only by
     * gw_identity_authenticate_local. */
    bool local_proxy;
    /* For re-evaluation after a reload (gw_identity_recheck): the PKI
     * snapshot the certificate was verified against, and the SHA-256 of the
     * bundle root its verified chain ends in (ca_peer.anchor_sha256). */
    uint64_t pki_generation;
    unsigned char anchor[32];
    /* A forwarded identity: the trusted proxy (proxy.trusted) whose
     * connection carried it, "" on the unix socket or for a direct peer.
     * A reload that stops trusting that proxy ends the call. */
    char via_proxy[CA_NAME_MAX + 1];
} gw_principal;

const char *gw_principal_kind_name(enum gw_principal_kind kind);
const char *gw_role_name(enum gw_role role);

#endif
