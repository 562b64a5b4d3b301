/* The gateway's answers as the client library and the supervisor decode
 * them: a gateway is trusted, but a man in the middle before verification
 * and a compromised gateway are not. The bytes after the input's first two
 * are what the server sends on the connection (HTTP/2 frames as they come
 * out of TLS: cl_conn_open_plain, the client's test seam, over a socket
 * pair), written once the connection is open and followed by the end of
 * the stream, so every call ends (there is no server to wait for).
 *
 * Input: [mode][options] then the server's bytes.
 * mode (mod 8):
 *   0 cl_unary on a test path: HTTP/2 headers, data and trailers, gRPC
 *     status and message decoding, the response message
 *   1 cl_call with GetSandboxResponse: the same, unpacked
 *   2 a client stream (cl_stream_open, options bits 2-3 messages sent,
 *     cl_stream_finish): an early answer, a reset, a refused stream
 *   3 sup_get_config (the supervisor's start-up)
 *   4 sup_get_provider_env, then the workload environment built from it
 *     (sup_env_build, as sup_main does) and the names it rejected
 *   5 sup_report_policy
 *   6 sup_rotate_renew: RenewCertificate's answer checked against the key
 *     the supervisor made (a fuzzed answer never carries it)
 *   7 sup_renewal_check on its own, without HTTP/2: options bit 0 re-signs
 *     the answer's first certificate for the fixed new key with the test
 *     issuing CA (so a mutated certificate reaches the identity checks),
 *     bit 1 answers with the real bundle, bit 2 with the issuing CA as
 *     chain; the rest is [u16 len][leaf PEM][u16 len][chain PEM][u16 len]
 *     [bundle PEM]
 * options bit 0 (modes 0-6): a 64-byte response limit instead of 4 MiB.
 *
 * Invariants: every call ends with one status: a gRPC code, a message that
 * is NUL-terminated and free of control characters whatever the server
 * sent, the tsr error of that code's category; an OK response fits the
 * limit. The supervisor's results: a configuration only for our own
 * sandbox; a provider environment of at most 256 variables, and a workload
 * environment in which every variable is NAME=VALUE with a valid,
 * unreserved name, each at most once, and the list of rejected names it
 * would log is printable ASCII; a renewed identity only for our own SPIFFE
 * ID and the key we made, verifying under the bundle it comes with. */
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cl_internal.h"
#include "fuzz/fuzz_keys.h"
#include "fuzz/fuzz_pki.h"
#include "supervisor/sup_gateway.h"
#include "supervisor/sup_identity.h"
#include "supervisor/sup_rotate.h"
#include "supervisor/sup_workload.h"
#include "tessera/v1/gateway.pb-c.h"

#define SANDBOX_UUID "0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c"
#define SANDBOX_ID "spiffe://" FUZZ_TD "/sandbox/" SANDBOX_UUID

/* A call's status; `lib`: the client library's own (its tsr error is the
 * status's category; the supervisor's checks set statuses of their own). */
static void check_status(int rc, const cl_status *st, bool lib)
{
    FUZZ_CHECK((unsigned)st->code <= GW_STATUS_UNAUTHENTICATED);
    FUZZ_CHECK(memchr(st->message, '\0', sizeof st->message) != NULL);
    for (const char *p = st->message; *p; p++)
        FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    if (st->code == GW_STATUS_OK) {
        FUZZ_CHECK(rc == 0);
    } else {
        FUZZ_CHECK(rc == -1);
        if (lib) FUZZ_CHECK(tsr_errcat() == cl_status_errcat(st->code));
    }
}

/* Our current identity: a sandbox leaf from the test PKI and its bundle. */
static sup_identity *current_identity(void)
{
    static sup_identity id;
    if (id.leaf != NULL) return &id;
    const fuzz_pki *pki = fuzz_pki_get();
    FUZZ_CHECK(ca_key_generate(CA_KEY_P256, &id.key) == 0);
    ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = id.key, .ttl_seconds = 3600,
                           .now = FUZZ_NOW};
    FUZZ_CHECK(ca_issue_leaf(pki->issuing, &req, &id.leaf) == 0);
    id.chain = sk_X509_new_null();
    FUZZ_CHECK(id.chain != NULL && sk_X509_push(id.chain, pki->issuing->cert) > 0);
    enum ca_verify_reason reason;
    FUZZ_CHECK(ca_verify_peer(pki->trust, id.leaf, id.chain, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                              FUZZ_NOW + 10, &reason, &id.peer) == 0);
    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_cert_to_pem(pki->root->cert, &pem, &len) == 0);
    id.bundle_pem = (uint8_t *)pem;
    id.bundle_pem_len = len;
    id.trust = pki->trust;
    return &id;
}

static void check_renewed(const sup_identity *cur, EVP_PKEY *key, sup_identity *got, int64_t now)
{
    FUZZ_CHECK(strcmp(got->peer.identity.id.text, cur->peer.identity.id.text) == 0);
    FUZZ_CHECK(got->peer.identity.kind == CA_KIND_SANDBOX);
    FUZZ_CHECK(sup_key_matches_cert(key, got->leaf));
    enum ca_verify_reason reason;
    ca_peer peer;
    FUZZ_CHECK(ca_verify_peer(got->trust, got->leaf, got->chain, CA_PURPOSE_CLIENT,
                              CA_KIND_SANDBOX, sup_judge_time(got->leaf, now), &reason,
                              &peer) == 0);
    FUZZ_CHECK(got->cert_pem != NULL && got->key_pem != NULL && got->bundle_pem != NULL);
}

/* ---- mode 7: sup_renewal_check ---------------------------------------------- */

static char *pem_field(fuzz_in *in)
{
    return fuzz_strdup(fuzz_lp16(in));
}

static void renewal_check(uint8_t opts, fuzz_in in)
{
    const fuzz_pki *pki = fuzz_pki_get();
    static EVP_PKEY *new_key;
    if (new_key == NULL)
        FUZZ_CHECK(ca_key_from_pem((const uint8_t *)FUZZ_KEY_P256, strlen(FUZZ_KEY_P256),
                                   &new_key) == 0);
    char *leaf = pem_field(&in), *chain = pem_field(&in), *bundle = pem_field(&in);
    if (opts & 1) {
        STACK_OF(X509) *certs = NULL;
        if (ca_certs_from_pem((const uint8_t *)leaf, strlen(leaf), &certs) == 0) {
            X509 *c = sk_X509_value(certs, 0);
            char *pem = NULL;
            size_t len = 0;
            if (X509_set_pubkey(c, new_key) == 1 && fuzz_resign_leaf(pki, c, false) &&
                ca_cert_to_pem(c, &pem, &len) == 0) {
                free(leaf);
                leaf = pem;
            }
            sk_X509_pop_free(certs, X509_free);
        }
        ERR_clear_error();
    }
    char *real = NULL;
    size_t real_len = 0;
    if (opts & 2) {
        FUZZ_CHECK(ca_cert_to_pem(pki->root->cert, &real, &real_len) == 0);
        free(bundle);
        bundle = real;
    }
    if (opts & 4) {
        FUZZ_CHECK(ca_cert_to_pem(pki->issuing->cert, &real, &real_len) == 0);
        free(chain);
        chain = real;
    }
    const sup_identity *cur = current_identity();
    sup_identity *got = NULL;
    if (sup_renewal_check(cur, new_key, FUZZ_TD, leaf, chain, bundle, FUZZ_NOW + 10, &got) == 0) {
        check_renewed(cur, new_key, got, FUZZ_NOW + 10);
        sup_identity_free(got);
    } else {
        FUZZ_CHECK(got == NULL && tsr_errcat() != TSR_E_INTERNAL);
    }
    free(leaf);
    free(chain);
    free(bundle);
}

/* ---- modes 0-6: over a connection --------------------------------------------- */

/* The workload environment from a provider environment, as sup_main builds
 * it, checked. */
static void check_env(const sup_env_list *provider)
{
    static char e0[] = "PATH=/usr/bin:/bin", e1[] = "HOME=/root", e2[] = "LANG=C.UTF-8",
                e3[] = "TESSERA_GATEWAY=127.0.0.1:8443", e4[] = "AWS_SECRET_KEY=x";
    static char *const parent[] = {e0, e1, e2, e3, e4, NULL};
    char **env = NULL;
    char rejected[512];
    FUZZ_CHECK(sup_env_build(parent, provider, "/home/workload", &env, rejected,
                             sizeof rejected) == 0);
    for (const char *p = rejected; *p; p++) FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
    for (size_t i = 0; env[i] != NULL; i++) {
        const char *eq = strchr(env[i], '=');
        FUZZ_CHECK(eq != NULL);
        char name[SUP_ENV_NAME_MAX + 2];
        size_t n = (size_t)(eq - env[i]);
        FUZZ_CHECK(n > 0 && n <= SUP_ENV_NAME_MAX);
        memcpy(name, env[i], n);
        name[n] = '\0';
        FUZZ_CHECK(sup_env_name_valid(name));
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strncmp(env[j], env[i], n + 1) != 0);
    }
    sup_env_free(env);
}

static void over_connection(int mode, uint8_t opts, fuzz_in server)
{
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    FUZZ_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    cl_conn *conn = NULL;
    cl_status st;
    int rc = cl_conn_open_plain(sv[0], 10000, &conn, &st);
    check_status(rc, &st, true);
    FUZZ_CHECK(rc == 0);
    /* Then the whole answer, and its end: every call finishes (the client
     * reads it after sending its request). */
    size_t off = 0;
    while (off < server.len) {
        ssize_t n = write(sv[1], server.p + off, server.len - off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    FUZZ_CHECK(shutdown(sv[1], SHUT_WR) == 0);
    uint32_t limit = (opts & 1) ? 64 : CL_DEFAULT_MAX_RESPONSE;
    FUZZ_CHECK(cl_conn_set_max_response(conn, limit) == 0);
    switch (mode) {
    case 0: {
        uint8_t *resp = NULL;
        size_t len = 0;
        rc = cl_unary(conn, "/fuzz.Test/Unary", (const uint8_t *)"ping", 4, 0, &resp, &len, &st);
        check_status(rc, &st, true);
        if (rc == 0) FUZZ_CHECK(len <= limit && (len == 0) == (resp == NULL));
        free(resp);
        break;
    }
    case 1: {
        Tessera__V1__GetSandboxRequest req;
        tessera__v1__get_sandbox_request__init(&req);
        req.name = (char *)(uintptr_t)"dev-1";
        ProtobufCMessage *resp = NULL;
        rc = cl_call(conn, "/tessera.v1.Gateway/GetSandbox", &req.base,
                     &tessera__v1__get_sandbox_response__descriptor, 0, &resp, &st);
        check_status(rc, &st, true);
        FUZZ_CHECK((rc == 0) == (resp != NULL));
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
        break;
    }
    case 2: {
        cl_stream *s = NULL;
        rc = cl_stream_open(conn, "/tessera.v1.Gateway/PushSandboxLogs", 0, &s, &st);
        check_status(rc, &st, true);
        if (rc != 0) break;
        for (int i = 0; i < ((opts >> 2) & 3); i++) {
            rc = cl_stream_send(s, (const uint8_t *)"\x0a\x01x", 3, &st);
            check_status(rc, &st, true);
            if (rc != 0) break;
        }
        uint8_t *resp = NULL;
        size_t len = 0;
        rc = cl_stream_finish(s, &resp, &len, &st);
        check_status(rc, &st, true);
        if (rc == 0) FUZZ_CHECK(len <= limit);
        free(resp);
        break;
    }
    case 3: {
        sup_config cfg;
        rc = sup_get_config(conn, SANDBOX_UUID, &cfg, &st);
        check_status(rc, &st, false);
        if (rc == 0) FUZZ_CHECK(cfg.policy != NULL && memchr(cfg.name, '\0', sizeof cfg.name));
        sup_config_free(&cfg);
        break;
    }
    case 4: {
        sup_env_list env;
        rc = sup_get_provider_env(conn, SANDBOX_UUID, &env, &st);
        check_status(rc, &st, false);
        if (rc == 0) {
            FUZZ_CHECK(env.n <= 256);
            check_env(&env);
        } else {
            FUZZ_CHECK(env.vars == NULL && env.n == 0);
        }
        sup_env_list_free(&env);
        break;
    }
    case 5: {
        sup_config cfg = {.policy = (char *)(uintptr_t)"version: 1\n", .policy_version = 3};
        bool applied = false;
        char why[300];
        rc = sup_report_policy(conn, SANDBOX_UUID, &cfg, "enforced by the fuzz driver: none",
                               &applied, why, sizeof why, &st);
        check_status(rc, &st, false);
        FUZZ_CHECK(applied);
        break;
    }
    case 6: {
        sup_identity *got = NULL;
        rc = sup_rotate_renew(conn, current_identity(), FUZZ_TD, 10000, &got, &st);
        check_status(rc, &st, false);
        /* The key is made inside: no answer can carry it. */
        FUZZ_CHECK(rc != 0 && got == NULL);
        break;
    }
    default: FUZZ_CHECK(0);
    }
    cl_conn_close(conn);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    int mode = fuzz_u8(&in) % 8;
    uint8_t opts = fuzz_u8(&in);
    tsr_err_clear();
    if (mode == 7) renewal_check(opts, in);
    else over_connection(mode, opts, in);
    return 0;
}
