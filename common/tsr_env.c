/* Credential-like variable names (tsr_env.h). */
#include "tsr_env.h"

#include <string.h>
#include <strings.h>

static bool contains_ci(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, needle, n) == 0) return true;
    return false;
}

bool tsr_env_name_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > TSR_ENV_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

bool tsr_env_name_secretlike(const char *name, size_t len)
{
    static const char *const words[] = {"KEY",  "KEYS",       "TOKEN",   "TOKENS", "AUTH",
                                        "PASS", "PASSPHRASE", "PRIVATE", "CREDS"};
    static const char *const parts[] = {"SECRET", "PASSWORD",  "PASSWD",    "CREDENTIAL",
                                        "APIKEY", "ACCESSKEY", "PRIVATEKEY"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (contains_ci(name, len, parts[i])) return true;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '_') continue;
        size_t wl = i - start;
        for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
            if (wl == strlen(words[k]) && strncasecmp(name + start, words[k], wl) == 0)
                return true;
        start = i + 1;
    }
    return false;
}


bool tsr_env_value_secretlike(const char *value)
{
    size_t len = strlen(value);
    return contains_ci(value, len, "-----BEGIN") || contains_ci(value, len, "PRIVATE KEY");
}
