/* certgen issue-user: an operator client certificate signed by DIR/issuing.* */
#include <stdio.h>
#include <string.h>

#include "cg.h"

#define CMD "issue-user"

static const char help[] =
    "Usage: certgen issue-user NAME --pki DIR [OPTIONS]\n"
    "\n"
    "Issue a client certificate for operator NAME (SPIFFE ID spiffe://TD/user/NAME),\n"
    "signed by the issuing CA in DIR, into DIR/users/NAME.pem (chain: leaf, issuing)\n"
    "and DIR/users/NAME.key. The trust domain is the issuing CA's.\n"
    "\n"
    "Options:\n"
    "  --pki DIR          the PKI directory made by certgen init (required)\n"
    "  --ttl D            certificate lifetime (default 90d; never past the issuing CA)\n"
    "  --key-type TYPE    p256, p384 or ed25519 (default: the issuing CA's key type)\n"
    "  --force            replace an existing certificate and key of NAME\n"
    "  -h, --help         show this help\n"
    "\n"
    "NAME: 1-64 of a-z 0-9 . _ -. The user's role is set in the gateway config.\n";

int cg_cmd_issue_user(int argc, char **argv)
{
    cg_named_leaf o = {.cmd = CMD, .kind = "user", .subdir = "users"};
    int done = 0, rc = cg_parse_named(argc, argv, help, &o, &done);
    if (rc != CG_OK || done) return rc;
    return cg_issue_named(&o);
}
