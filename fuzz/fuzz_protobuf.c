/* Request messages as a handler receives them: the first byte picks a
 * request type of tessera.v1 (or grpc.health.v1), the rest is the message.
 * protobuf_c_message_unpack exactly as gw_unpack does, then pack and unpack
 * again (a repack must reproduce itself byte for byte), then the request
 * checks the handlers run before any store access: policy documents and
 * chunks (gw_policy_check, pol_validate_domain), provider
 * environments (gw_env_validate), CSRs (ca_csr_check), ids and names. */
#include <stdbool.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_spiffe.h"
#include "fuzz/fuzz.h"
#include "grpc/health/v1/health.pb-c.h"
#include "pol_policy.h"
#include "gw_rpcs.h"
#include "tessera/v1/gateway.pb-c.h"

static const ProtobufCMessageDescriptor *const REQUESTS[] = {
    &tessera__v1__create_sandbox_request__descriptor,
    &tessera__v1__get_sandbox_request__descriptor,
    &tessera__v1__list_sandboxes_request__descriptor,
    &tessera__v1__delete_sandbox_request__descriptor,
    &tessera__v1__get_sandbox_logs_request__descriptor,
    &tessera__v1__list_certificates_request__descriptor,
    &tessera__v1__revoke_certificate_request__descriptor,
    &tessera__v1__get_sandbox_config_request__descriptor,
    &tessera__v1__get_sandbox_provider_environment_request__descriptor,
    &tessera__v1__report_policy_status_request__descriptor,
    &tessera__v1__submit_policy_analysis_request__descriptor,
    &tessera__v1__get_draft_policy_request__descriptor,
    &tessera__v1__update_config_request__descriptor,
    &tessera__v1__push_sandbox_logs_request__descriptor,
    &tessera__v1__renew_certificate_request__descriptor,
    &tessera__v1__get_trust_bundle_request__descriptor,
    &grpc__health__v1__health_check_request__descriptor,
};
#define N_REQUESTS (sizeof REQUESTS / sizeof REQUESTS[0])

/* env: GW_ENV_FROM_ENTRIES of a request's map, as the handlers build it. */
static void check_env(gw_env_var *env, size_t n)
{
    FUZZ_CHECK(env != NULL);
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    if (gw_env_validate(env, n, &resp) == 0) {
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(env[i].name != NULL && env[i].name[0] != '\0' && env[i].value != NULL);
    } else {
        FUZZ_CHECK(resp.status == GW_STATUS_INVALID_ARGUMENT);
    }
    free(env);
}

static void check_policy(const char *policy)
{
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    if (gw_policy_check(policy, &resp) != 0) FUZZ_CHECK(resp.status == GW_STATUS_INVALID_ARGUMENT);
}

static void check_chunks(Tessera__V1__PolicyChunk **chunks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const Tessera__V1__PolicyChunk *c = chunks[i];
        FUZZ_CHECK(c != NULL && c->domain != NULL && c->content != NULL);
        if (pol_is_domain(c->domain))
            FUZZ_IGNORE(pol_validate_domain(c->domain, c->content, strlen(c->content)));
        else
            FUZZ_CHECK(pol_validate_domain(c->domain, c->content, strlen(c->content)) != 0);
    }
}

static void check_id(const char *s)
{
    FUZZ_CHECK(s != NULL);
    FUZZ_IGNORE(ca_uuid_validate(s, strlen(s)));
    FUZZ_IGNORE(ca_name_validate(s, strlen(s)));
}

static void validate(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &tessera__v1__create_sandbox_request__descriptor) {
        const Tessera__V1__CreateSandboxRequest *r = (const void *)m;
        check_id(r->name);
        check_policy(r->policy);
        gw_env_var *env;
        GW_ENV_FROM_ENTRIES(r->provider_env, r->n_provider_env, env);
        check_env(env, r->n_provider_env);
    } else if (d == &tessera__v1__update_config_request__descriptor) {
        const Tessera__V1__UpdateConfigRequest *r = (const void *)m;
        check_id(r->name);
        if (r->policy[0] != '\0') check_policy(r->policy);
        gw_env_var *env;
        GW_ENV_FROM_ENTRIES(r->provider_env, r->n_provider_env, env);
        check_env(env, r->n_provider_env);
    } else if (d == &tessera__v1__submit_policy_analysis_request__descriptor) {
        const Tessera__V1__SubmitPolicyAnalysisRequest *r = (const void *)m;
        check_id(r->sandbox_name);
        check_chunks(r->chunks, r->n_chunks);
    } else if (d == &tessera__v1__renew_certificate_request__descriptor) {
        const Tessera__V1__RenewCertificateRequest *r = (const void *)m;
        EVP_PKEY *key = NULL;
        if (r->csr.len > 0 && r->csr.len <= CA_CSR_MAX_DER &&
            ca_csr_check(r->csr.data, r->csr.len, &key) == 0)
            FUZZ_CHECK(key != NULL && ca_key_check_accepted(key) == 0);
        EVP_PKEY_free(key);
    } else if (d == &tessera__v1__push_sandbox_logs_request__descriptor) {
        const Tessera__V1__PushSandboxLogsRequest *r = (const void *)m;
        check_id(r->sandbox_id);
        for (size_t i = 0; i < r->n_lines; i++) {
            const Tessera__V1__LogLine *l = r->lines[i];
            FUZZ_CHECK(l != NULL && l->stream != NULL);
            FUZZ_CHECK(l->text.len == 0 || l->text.data != NULL);
        }
    } else if (d == &tessera__v1__get_sandbox_request__descriptor) {
        const Tessera__V1__GetSandboxRequest *r = (const void *)m;
        check_id(r->id);
        check_id(r->name);
    } else if (d == &tessera__v1__report_policy_status_request__descriptor) {
        const Tessera__V1__ReportPolicyStatusRequest *r = (const void *)m;
        check_id(r->sandbox_id);
        FUZZ_CHECK(r->message != NULL);
    }
}

/* protobuf-c 1.4 refuses field number 0 in a one-byte tag but takes it in an
 * over-long varint (0x80 0x00) as an unknown field, which it re-emits in the
 * short form it then refuses: a library quirk, harmless here (unknown fields
 * are never used or forwarded), that the repack check must step around. */
static bool has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t j = 0; j < n; j++)
                if (has_field_zero(arr[j])) return true;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);
            if (sub != NULL && has_field_zero(sub)) return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    const ProtobufCMessageDescriptor *desc = REQUESTS[fuzz_u8(&in) % N_REQUESTS];
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, in.len, in.p);
    if (m == NULL) return 0;
    FUZZ_CHECK(protobuf_c_message_check(m));

    size_t n1 = protobuf_c_message_get_packed_size(m);
    uint8_t *b1 = malloc(n1 > 0 ? n1 : 1);
    FUZZ_CHECK(b1 != NULL);
    FUZZ_CHECK(protobuf_c_message_pack(m, b1) == n1);
    if (!has_field_zero(m)) {
        ProtobufCMessage *m2 = protobuf_c_message_unpack(desc, NULL, n1, b1);
        FUZZ_CHECK(m2 != NULL);
        size_t n2 = protobuf_c_message_get_packed_size(m2);
        uint8_t *b2 = malloc(n2 > 0 ? n2 : 1);
        FUZZ_CHECK(b2 != NULL);
        FUZZ_CHECK(protobuf_c_message_pack(m2, b2) == n2);
        FUZZ_CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
        protobuf_c_message_free_unpacked(m2, NULL);
        free(b2);
    }
    validate(m);
    protobuf_c_message_free_unpacked(m, NULL);
    free(b1);
    return 0;
}
