/* Environment variable names, shared by the gateway, the CLI and the
 * supervisor: what a name may be, and which names look like credentials (the
 * supervisor keeps such variables of its own from the workload,
 * docs/supervisor.md; the CLI keeps them out of a sandbox's plain env:
 * secrets go in provider_env, docs/cli.md). */
#ifndef TSR_ENV_H
#define TSR_ENV_H

#include <stdbool.h>
#include <stddef.h>

#define TSR_ENV_NAME_MAX 128

/* True when name (len bytes) is [A-Za-z_][A-Za-z0-9_]*, 1..TSR_ENV_NAME_MAX
 * bytes: the names provider_env and a sandbox's env take. */
bool tsr_env_name_valid(const char *name, size_t len);

/* True when the name (len bytes, any case) has a '_'-separated word KEY,
 * KEYS, TOKEN, TOKENS, AUTH, PASS, PASSPHRASE, PRIVATE or CREDS, or contains
 * SECRET, PASSWORD, PASSWD, CREDENTIAL, APIKEY, ACCESSKEY or PRIVATEKEY: so
 * OPENAI_API_KEY, GITHUB_TOKEN, SSH_AUTH_SOCK and PGPASSWORD are, and
 * GIT_AUTHOR_NAME and KEYBOARD are not. A heuristic. */
bool tsr_env_name_secretlike(const char *name, size_t len);
/* True when a value holds PEM ("-----BEGIN") or "PRIVATE KEY" (any case). */
bool tsr_env_value_secretlike(const char *value);

#endif
