/* The gateway configuration file: gw_config_load on untrusted YAML, as the
 * gateway reads it at startup. gw_config.h reads only from a path, so each
 * input is written to one file in a private temporary directory.
 * Invariants: a loaded configuration keeps every documented range, its
 * paths are absolute, its users are valid, distinct and found by
 * gw_config_user_role; a file with a NUL byte never loads. */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "ca_spiffe.h"
#include "fuzz/fuzz.h"
#include "gw_config.h"


static void check_path(const char *p)
{
    FUZZ_CHECK(p[0] == '/' || strcmp(p, "-") == 0);
    for (const char *q = p; *q; q++) FUZZ_CHECK((unsigned char)*q >= 0x20 && *q != 0x7f);
}

static void check(const gw_config *c)
{
    FUZZ_CHECK(ca_trust_domain_validate(c->trust_domain, strlen(c->trust_domain)) == 0);
    FUZZ_CHECK(c->listen_host[0] != '\0');
    FUZZ_CHECK(c->workers >= 0 && c->workers <= 64);
    FUZZ_CHECK(c->sandbox_cert_ttl >= 300 && c->sandbox_cert_ttl <= 86400);
    FUZZ_CHECK(c->renew_limit >= 1 && c->renew_limit <= 1000);
    FUZZ_CHECK(c->renew_window >= 60 && c->renew_window <= 86400);
    FUZZ_CHECK(c->max_message_bytes >= 1024 && c->max_message_bytes <= 64u << 20);
    FUZZ_CHECK(c->max_concurrent_streams >= 1 && c->max_concurrent_streams <= 1000);
    FUZZ_CHECK(c->max_connections >= 1 && c->max_connections <= 1000000);
    FUZZ_CHECK(c->handshake_timeout_ms >= 1000 && c->handshake_timeout_ms <= 300000);
    FUZZ_CHECK(c->idle_timeout_ms >= 10000 && c->idle_timeout_ms <= 86400000);
    FUZZ_CHECK(c->log_lines_per_batch >= 1 && c->log_lines_per_batch <= 100000);
    FUZZ_CHECK(c->log_line_bytes >= 64 && c->log_line_bytes <= 1u << 20);
    check_path(c->data_dir);
    check_path(c->bundle_path);
    check_path(c->issuing_cert_path);
    check_path(c->issuing_key_path);
    check_path(c->server_cert_path);
    check_path(c->server_key_path);
    check_path(c->store_path);
    check_path(c->secrets_key_path);
    check_path(c->audit_path);
    if (c->drivers_dir[0] != '\0') check_path(c->drivers_dir);
    FUZZ_CHECK(c->default_driver[0] != '\0');
    FUZZ_CHECK(c->n_users <= GW_CONFIG_MAX_USERS && (c->n_users == 0 || c->users != NULL));
    for (size_t i = 0; i < c->n_users; i++) {
        const gw_user_entry *u = &c->users[i];
        FUZZ_CHECK(ca_name_validate(u->name, strlen(u->name)) == 0);
        FUZZ_CHECK(u->role == GW_ROLE_VIEWER || u->role == GW_ROLE_OPERATOR ||
                   u->role == GW_ROLE_ADMIN);
        FUZZ_CHECK(gw_config_user_role(c, u->name) == u->role);
        for (size_t j = 0; j < i; j++) FUZZ_CHECK(strcmp(c->users[j].name, u->name) != 0);
    }
    FUZZ_CHECK(gw_config_user_role(c, "") == GW_ROLE_NONE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_private_path("gateway.yaml");
    unsetenv("TESSERA_SECRETS_KEY_FILE");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    FUZZ_CHECK(close(fd) == 0);

    gw_config *c = NULL;
    if (gw_config_load(path, &c) == 0) {
        FUZZ_CHECK(c != NULL && memchr(data, '\0', size) == NULL);
        check(c);
        gw_config_free(c);
    } else {
        FUZZ_CHECK(c == NULL && tsr_errmsg()[0] != '\0');
    }
    return 0;
}
