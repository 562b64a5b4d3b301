/* Environment variable names that look like credentials, shared by the
 * supervisor (which keeps such variables of its own from the workload,
 * docs/supervisor.md) and the CLI (which keeps them out of a sandbox's plain
 * env: secrets go in provider_env, docs/cli.md). */
#ifndef TSR_ENV_H
#define TSR_ENV_H

#include <stdbool.h>
#include <stddef.h>

/* True when the name (len bytes, any case) has a '_'-separated word KEY,
 * KEYS, TOKEN, TOKENS, AUTH, PASS, PASSPHRASE, PRIVATE or CREDS, or contains
 * SECRET, PASSWORD, PASSWD, CREDENTIAL, APIKEY, ACCESSKEY or PRIVATEKEY: so
 * OPENAI_API_KEY, GITHUB_TOKEN, SSH_AUTH_SOCK and PGPASSWORD are, and
 * GIT_AUTHOR_NAME and KEYBOARD are not. A heuristic. */
bool tsr_env_name_secretlike(const char *name, size_t len);
/* True when a value holds PEM ("-----BEGIN") or "PRIVATE KEY" (any case). */
bool tsr_env_value_secretlike(const char *value);

#endif
