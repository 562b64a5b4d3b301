/* certgen: bootstrap and maintain a Tessera PKI (docs/certgen.md). */
#include <stdio.h>
#include <string.h>

#include "cg.h"
#include "tsr_version.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"init", cg_cmd_init, "create root CA, issuing CA, gateway and user certificates"},
    {"issue-user", cg_cmd_issue_user, "issue (or re-issue) an operator client certificate"},
    {"issue-proxy", cg_cmd_issue_proxy,
     "issue a proxy client certificate, recorded in the gateway's database"},
    {"renew-gateway", cg_cmd_renew_gateway,
     "renew the gateway certificate (new key, same names) offline"},
    {"list", cg_cmd_list, "list the recorded gateway and proxy certificates"},
    {"inspect", cg_cmd_inspect, "show what a certificate file holds"},
    {"rotate-issuing", cg_cmd_rotate_issuing,
     "replace the issuing CA under the same root and re-issue the gateway"},
    {"rotate-root", cg_cmd_rotate_root,
     "stage a new root (bundle with both roots), then --activate it"},
    {"retire-root", cg_cmd_retire_root, "drop every root but the current one from bundle.pem"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: certgen COMMAND [OPTIONS]\n\n"
                 "Bootstrap and maintain the PKI of a Tessera gateway.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-15s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'certgen COMMAND --help' for the options of a command;\n"
                 "'certgen --version' for the version.\n"
                 "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (tsr_version_requested(argc, argv)) return tsr_version_print(stdout, "certgen");
    if (argc < 2) {
        usage(stderr);
        return CG_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CG_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "certgen: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return CG_USAGE;
}
