/* certgen issue-user: an operator client certificate signed by DIR/issuing.* */
#include <getopt.h>
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
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},      {"ttl", required_argument, NULL, 't'},
        {"key-type", required_argument, NULL, 'k'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *pki = NULL;
    int64_t ttl = CG_LEAF_TTL;
    enum ca_key_type type = CA_KEY_P256;
    int have_type = 0, force = 0, c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': pki = optarg; break;
        case 't':
            if ((rc = cg_parse_ttl(CMD, "--ttl", optarg, &ttl)) != CG_OK) return rc;
            break;
        case 'k':
            if ((rc = cg_parse_key_type(CMD, optarg, &type)) != CG_OK) return rc;
            have_type = 1;
            break;
        case 'f': force = 1; break;
        case 'h': fputs(help, stdout); return CG_OK;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind >= argc) return cg_usage_error(CMD, "missing the user NAME");
    if (argc - optind > 1) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind + 1]);
    const char *name = argv[optind];
    if ((rc = cg_check_user_name(CMD, name)) != CG_OK) return rc;
    if (pki == NULL || pki[0] == '\0')
        return cg_usage_error(CMD, "--pki DIR is required (the directory of certgen init)");

    cg_named_leaf o = {.cmd = CMD, .kind = "user", .subdir = "users", .pki = pki, .name = name,
                       .ttl = ttl, .type = type, .have_type = have_type, .force = force};
    return cg_issue_named(&o);
}
