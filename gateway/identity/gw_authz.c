#include "gw_authz.h"

#include <string.h>

#include "gw_audit.h"
#include "gw_app.h"
#include "gw_identity.h"
#include "gw_revfeed.h"
#include "tsr_err.h"
#include "tsr_time.h"

/* What the sandbox principal may do with an RPC. */
enum sandbox_rule {
    SANDBOX_DENIED,   /* never */
    SANDBOX_OWN,      /* only naming itself (checked by gw_authz_target) */
    SANDBOX_SELF,     /* identity comes from its certificate; nothing to name */
};

#define ROLE_BIT(r) (1u << (r))
#define VIEWER ROLE_BIT(GW_ROLE_VIEWER)
#define OPERATOR ROLE_BIT(GW_ROLE_OPERATOR)
#define ADMIN ROLE_BIT(GW_ROLE_ADMIN)
#define ANY_ROLE (VIEWER | OPERATOR | ADMIN)

struct rule {
    const char *name;
    enum sandbox_rule sandbox;
    unsigned user_roles;     /* bit set of enum gw_role */
    int anonymous;           /* callable without an identity */
};

/* docs/identity.md, "Who may call what", row by row. */
static const struct rule RULES[GW_RPC_COUNT] = {
    [GW_RPC_CREATE_SANDBOX] = {"CreateSandbox", SANDBOX_DENIED, ADMIN | OPERATOR, 0},
    [GW_RPC_GET_SANDBOX] = {"GetSandbox", SANDBOX_DENIED, ANY_ROLE, 0},
    [GW_RPC_LIST_SANDBOXES] = {"ListSandboxes", SANDBOX_DENIED, ANY_ROLE, 0},
    [GW_RPC_DELETE_SANDBOX] = {"DeleteSandbox", SANDBOX_DENIED, ADMIN | OPERATOR, 0},
    [GW_RPC_GET_SANDBOX_LOGS] = {"GetSandboxLogs", SANDBOX_DENIED, ANY_ROLE, 0},
    [GW_RPC_LIST_CERTIFICATES] = {"ListCertificates", SANDBOX_DENIED, ANY_ROLE, 0},
    [GW_RPC_REVOKE_CERTIFICATE] = {"RevokeCertificate", SANDBOX_DENIED, ADMIN, 0},
    [GW_RPC_GET_SANDBOX_CONFIG] = {"GetSandboxConfig", SANDBOX_OWN, ANY_ROLE, 0},
    [GW_RPC_GET_PROVIDER_ENV] = {"GetSandboxProviderEnvironment", SANDBOX_OWN, ADMIN, 0},
    [GW_RPC_REPORT_POLICY_STATUS] = {"ReportPolicyStatus", SANDBOX_OWN, 0, 0},
    [GW_RPC_SUBMIT_POLICY_ANALYSIS] = {"SubmitPolicyAnalysis", SANDBOX_OWN, 0, 0},
    [GW_RPC_GET_DRAFT_POLICY] = {"GetDraftPolicy", SANDBOX_OWN, ANY_ROLE, 0},
    [GW_RPC_UPDATE_CONFIG] = {"UpdateConfig", SANDBOX_OWN, ADMIN | OPERATOR, 0},
    [GW_RPC_PUSH_SANDBOX_LOGS] = {"PushSandboxLogs", SANDBOX_OWN, 0, 0},
    [GW_RPC_RENEW_CERTIFICATE] = {"RenewCertificate", SANDBOX_SELF, 0, 0},
    [GW_RPC_GET_TRUST_BUNDLE] = {"GetTrustBundle", SANDBOX_SELF, ANY_ROLE, 0},
    [GW_RPC_HEALTH_CHECK] = {"Check", SANDBOX_SELF, ANY_ROLE, 1},
    [GW_RPC_HEALTH_WATCH] = {"Watch", SANDBOX_SELF, ANY_ROLE, 1},
    /* Server reflection: any authenticated caller (docs/security.md). */
    [GW_RPC_REFLECTION_V1] = {"ServerReflectionInfo", SANDBOX_SELF, ANY_ROLE, 0},
    [GW_RPC_REFLECTION_V1ALPHA] = {"ServerReflectionInfo", SANDBOX_SELF, ANY_ROLE, 0},
};

static const struct rule *rule_of(enum gw_rpc_id rpc)
{
    if ((unsigned)rpc >= GW_RPC_COUNT || RULES[rpc].name == NULL) return NULL;
    return &RULES[rpc];
}

const char *gw_rpc_name(enum gw_rpc_id rpc)
{
    const struct rule *r = rule_of(rpc);
    return r != NULL ? r->name : "?";
}

static int deny(const gw_call_ctx *ctx, gw_response *resp, enum gw_status status,
                const char *target, const char *reason)
{
    enum gw_denial kind = status == GW_STATUS_UNAUTHENTICATED ? GW_DENY_UNAUTHENTICATED
                          : strcmp(reason, GW_CROSS_SANDBOX_MESSAGE) == 0 ? GW_DENY_CROSS_SANDBOX
                                                                          : GW_DENY_PERMISSION;
    gw_audit_denial(ctx, kind, target, reason);
    return gw_response_fail(resp, status, "%s", reason);
}

int gw_authz_call(const gw_call_ctx *ctx, enum gw_rpc_id rpc, gw_response *resp)
{
    /* Fail closed on anything unexpected: a missing principal aborts, a
     * method without a rule is nobody's to call. */
    TSR_ASSERT(ctx != NULL && ctx->principal != NULL);
    const struct rule *r = rule_of(rpc);
    const gw_principal *p = ctx->principal;
    if (r == NULL)
        return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, "", "method has no authorization rule");

    if (r->anonymous) return 0;
    switch (p->kind) {
    case GW_PRINCIPAL_ANONYMOUS:
        return deny(ctx, resp, GW_STATUS_UNAUTHENTICATED, "", "client certificate required");
    case GW_PRINCIPAL_UNAUTHENTICATED:
        return deny(ctx, resp, GW_STATUS_UNAUTHENTICATED, "", p->reason[0] ? p->reason
                                                                           : "invalid identity");
    case GW_PRINCIPAL_SANDBOX:
        if (r->sandbox == SANDBOX_DENIED)
            return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, "",
                        "sandbox identities may not call this method");
        return 0;
    case GW_PRINCIPAL_USER:
        if (p->role == GW_ROLE_NONE)
            return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, "",
                        "user has no role on this gateway");
        if ((r->user_roles & ROLE_BIT(p->role)) == 0)
            return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, "",
                        r->user_roles == 0 ? "user identities may not call this method"
                                           : "role does not allow this method");
        return 0;
    case GW_PRINCIPAL_PROXY:
        /* A proxy only forwards other identities; by itself it is nobody. */
        return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, "",
                    "a proxy identity may not call methods itself");
    }
    return deny(ctx, resp, GW_STATUS_UNAUTHENTICATED, "", "unknown principal");
}

int gw_authz_dispatch(const gw_call_ctx *ctx, const gw_method *m, gw_response *resp)
{
    TSR_ASSERT(ctx != NULL && ctx->principal != NULL && ctx->app != NULL && m != NULL);
    /* The identity as of now, not as of the handshake or the request
     * headers: a call admitted then may run after a revocation. */
    enum gw_identity_verdict v = gw_identity_recheck(ctx->app, ctx->principal, tsr_now_unix());
    /* Replicas on one database (gw_revfeed.h): without a current feed a
     * certificate may have been revoked by another gateway; refuse every
     * call until the feed has caught up (docs/operations.md). Not a
     * denial of the caller: nothing is audited, clients retry elsewhere. */
    if (!gw_revfeed_current(((gw_app *)ctx->app)->revfeed))
        return gw_response_fail(resp, GW_STATUS_UNAVAILABLE, "%s", GW_REVFEED_STALE_MESSAGE);
    if (v != GW_IDENTITY_CURRENT)
        return deny(ctx, resp, GW_STATUS_UNAUTHENTICATED, "", gw_identity_verdict_text(v));
    return gw_authz_call(ctx, (enum gw_rpc_id)m->rule, resp);
}

int gw_authz_target(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *target_sandbox_id,
                    gw_response *resp)
{
    TSR_ASSERT(rule_of(rpc) != NULL && ctx != NULL && ctx->principal != NULL);
    const gw_principal *p = ctx->principal;
    if (p->kind == GW_PRINCIPAL_USER) return 0;
    if (p->kind != GW_PRINCIPAL_SANDBOX)
        return deny(ctx, resp, GW_STATUS_UNAUTHENTICATED, target_sandbox_id, "invalid identity");
    if (RULES[rpc].sandbox != SANDBOX_OWN)
        return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, target_sandbox_id,
                    "sandbox identities may not call this method");
    if (target_sandbox_id == NULL || target_sandbox_id[0] == '\0' ||
        strcmp(target_sandbox_id, p->name) != 0)
        return deny(ctx, resp, GW_STATUS_PERMISSION_DENIED, target_sandbox_id,
                    GW_CROSS_SANDBOX_MESSAGE);
    return 0;
}

int gw_authz_is_sandbox(const gw_call_ctx *ctx)
{
    return ctx->principal->kind == GW_PRINCIPAL_SANDBOX;
}
