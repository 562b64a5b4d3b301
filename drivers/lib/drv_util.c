/* drv_util.h: errors, logging, options, names, identity checks, argv and
 * output tails for the driver plugins (built into each .so, hidden). */
#include "drv_util.h"
#include "tsr_name.h"

__attribute__((format(printf, 3, 4))) int drv_errf(char *err, size_t cap,
                                                   const char *fmt, ...)
{
    if (err != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, cap, fmt, ap);
        va_end(ap);
        if (n < 0) err[0] = '\0';
        /* One line: a reason never spans lines (engine messages may). */
        for (char *p = err; *p != '\0'; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return -1;
}

int drv_err_recorded(char *err, size_t cap, const char *what, const char *id)
{
    const char *msg = tsr_errmsg();
    if (msg[0] == '\0') msg = "failed (no detail recorded)";
    if (id != NULL) return drv_errf(err, cap, "%s %s: %s", what, id, msg);
    return drv_errf(err, cap, "%s: %s", what, msg);
}

int drv_invalid_recorded(char *err, size_t cap, const char *what, const char *id)
{
    (void)drv_err_recorded(err, cap, what, id);
    return TSR_DRIVER_INVALID;
}

int drv_fail_recorded(char *err, size_t cap, const char *what, const char *id)
{
    int r = tsr_errcat() == TSR_E_STATE ? TSR_DRIVER_PRECONDITION : TSR_DRIVER_FAILED;
    (void)drv_err_recorded(err, cap, what, id);
    return r;
}

__attribute__((format(printf, 2, 3))) void drv_logf(const drv_logger *lg,
                                                    const char *fmt, ...)
{
    if (lg == NULL || lg->log == NULL) return;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: ", lg->prefix != NULL ? lg->prefix : "driver");
    if (n < 0 || (size_t)n >= sizeof line) return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = line; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    lg->log(lg->arg, line);
}

const char *drv_option(const tsr_driver_env *env, const char *key)
{
    if (env->option_keys == NULL || env->option_values == NULL) return NULL;
    for (size_t i = 0; i < env->n_options; i++)
        if (env->option_keys[i] != NULL && strcmp(env->option_keys[i], key) == 0)
            return env->option_values[i];
    return NULL;
}

TSR_WUR int drv_options_check(const tsr_driver_env *env, const char *const *known)
{
    TSR_ENSURE(env->n_options <= 64, TSR_E_LIMIT, "too many driver options (%zu)", env->n_options);
    TSR_ENSURE(env->n_options == 0 || (env->option_keys != NULL && env->option_values != NULL),
               TSR_E_INPUT, "driver options without keys or values");
    for (size_t i = 0; i < env->n_options; i++) {
        const char *k = env->option_keys[i], *v = env->option_values[i];
        TSR_ENSURE(k != NULL && v != NULL, TSR_E_INPUT, "driver option %zu is NULL", i);
        int ok = 0;
        for (size_t j = 0; known[j] != NULL; j++)
            if (strcmp(k, known[j]) == 0) ok = 1;
        TSR_ENSURE(ok, TSR_E_INPUT, "unknown option \"%.64s\"", k);
        for (size_t j = 0; j < i; j++)
            TSR_ENSURE(strcmp(k, env->option_keys[j]) != 0, TSR_E_INPUT,
                       "option \"%s\" given twice", k);
        TSR_ENSURE(strlen(v) <= 4095, TSR_E_LIMIT, "option \"%s\" is too long", k);
        for (const char *p = v; *p != '\0'; p++)
            TSR_ENSURE((unsigned char)*p >= 0x20 && *p != 0x7f, TSR_E_INPUT,
                       "option \"%s\" has a control character", k);
    }
    return 0;
}

TSR_WUR int drv_option_u64(const tsr_driver_env *env, const char *key, uint64_t def,
                           uint64_t min, uint64_t max, uint64_t *out)
{
    const char *v = drv_option(env, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    uint64_t n = 0;
    TSR_ENSURE(v[0] != '\0', TSR_E_INPUT, "option %s: empty", key);
    for (const char *p = v; *p != '\0'; p++) {
        TSR_ENSURE(*p >= '0' && *p <= '9', TSR_E_INPUT, "option %s: \"%.32s\" is not a number",
                   key, v);
        TSR_ENSURE(n <= (UINT64_MAX - 9) / 10, TSR_E_INPUT, "option %s: too large", key);
        n = n * 10 + (uint64_t)(*p - '0');
    }
    TSR_ENSURE(n >= min && n <= max, TSR_E_INPUT,
               "option %s: %llu is outside [%llu, %llu]", key, (unsigned long long)n,
               (unsigned long long)min, (unsigned long long)max);
    *out = n;
    return 0;
}

int drv_id_valid(const char *id)
{
    if (id == NULL || strlen(id) != 36) return 0;
    for (size_t i = 0; i < 36; i++) {
        char c = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int drv_td_valid(const char *td)
{
    size_t n = td != NULL ? strlen(td) : 0;
    return n > 0 && n <= DRV_MAX_TD && tsr_name_chars(td, n);
}

int drv_addr_valid(const char *addr)
{
    size_t n = addr != NULL ? strlen(addr) : 0;
    if (n < 3 || n > DRV_MAX_ADDR) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)addr[i] <= 0x20 || addr[i] == 0x7f || addr[i] == ',') return 0;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0') return 0;
    for (const char *p = colon + 1; *p != '\0'; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

int drv_addr_list_item(const char *list, size_t i, char *out, size_t cap)
{
    const char *p = list;
    for (size_t k = 0; k < i; k++) {
        p = strchr(p, ',');
        if (p == NULL) return 0;
        p++;
    }
    size_t len = strcspn(p, ",");
    if (len >= cap) return 0;
    memcpy(out, p, len);
    out[len] = '\0';
    return 1;
}

int drv_addr_list_valid(const char *list)
{
    if (list == NULL || strlen(list) > DRV_MAX_ADDR) return 0;
    char one[DRV_MAX_ADDR + 1];
    size_t n = 0;
    for (; drv_addr_list_item(list, n, one, sizeof one); n++)
        if (n >= DRV_MAX_GATEWAYS || !drv_addr_valid(one)) return 0;
    return n > 0;
}

int drv_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0; /* never prompt: an encrypted key is refused */
}

TSR_WUR int drv_pem_buf_ok(const char *what, const char *buf, size_t len)
{
    TSR_ENSURE(buf != NULL && len > 0, TSR_E_INPUT, "%s is empty", what);
    TSR_ENSURE(len <= DRV_MAX_PEM, TSR_E_LIMIT, "%s is %zu bytes, more than %u", what, len,
               DRV_MAX_PEM);
    TSR_ENSURE(memchr(buf, '\0', len) == NULL, TSR_E_INPUT, "%s has an embedded NUL", what);
    return 0;
}

TSR_WUR int drv_identity_check(const char *td, const tsr_driver_sandbox *sb,
                               const tsr_driver_identity *ident)
{
    int rc = -1;
    BIO *bio = NULL;
    X509 *cert = NULL, *root = NULL;
    EVP_PKEY *key = NULL;
    GENERAL_NAMES *sans = NULL;
    char want[512];

    TSR_TRY_ENSURE(sb != NULL && ident != NULL, TSR_E_INPUT, "no sandbox or identity");
    TSR_TRY_ENSURE(drv_id_valid(sb->id), TSR_E_INPUT, "sandbox id is not a lowercase UUID");
    int n = snprintf(want, sizeof want, "spiffe://%s/sandbox/%s", td, sb->id);
    TSR_TRY_ENSURE(n > 0 && (size_t)n < sizeof want, TSR_E_LIMIT, "trust domain too long");
    TSR_TRY_ENSURE(sb->spiffe_id != NULL && strcmp(sb->spiffe_id, want) == 0, TSR_E_INPUT,
                   "sandbox SPIFFE ID is not %s", want);
    TSR_TRY(drv_pem_buf_ok("certificate", ident->cert_pem, ident->cert_len));
    TSR_TRY(drv_pem_buf_ok("private key", ident->key_pem, ident->key_len));
    TSR_TRY(drv_pem_buf_ok("trust bundle", ident->bundle_pem, ident->bundle_len));

    bio = BIO_new_mem_buf(ident->cert_pem, (int)ident->cert_len);
    TSR_TRY_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    cert = PEM_read_bio_X509(bio, NULL, drv_no_passphrase, NULL);
    TSR_TRY_ENSURE(cert != NULL, TSR_E_INPUT, "certificate: no PEM certificate");
    BIO_free(bio);
    bio = NULL;

    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    TSR_TRY_ENSURE(sans != NULL, TSR_E_INPUT, "certificate has no subjectAltName");
    int uris = 0, match = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_URI) continue;
        uris++;
        const unsigned char *d = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int dl = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (dl == n && memcmp(d, want, (size_t)n) == 0) match = 1;
    }
    TSR_TRY_ENSURE(uris == 1 && match, TSR_E_INPUT,
                   "certificate's URI SAN is not exactly %s", want);

    bio = BIO_new_mem_buf(ident->key_pem, (int)ident->key_len);
    TSR_TRY_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    key = PEM_read_bio_PrivateKey(bio, NULL, drv_no_passphrase, NULL);
    TSR_TRY_ENSURE(key != NULL, TSR_E_INPUT, "private key: no unencrypted PEM key");
    BIO_free(bio);
    bio = NULL;
    TSR_TRY_ENSURE(X509_check_private_key(cert, key) == 1, TSR_E_INPUT,
                   "private key does not belong to the certificate");

    bio = BIO_new_mem_buf(ident->bundle_pem, (int)ident->bundle_len);
    TSR_TRY_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    root = PEM_read_bio_X509(bio, NULL, drv_no_passphrase, NULL);
    TSR_TRY_ENSURE(root != NULL, TSR_E_INPUT, "trust bundle: no PEM certificate");
    rc = 0;
out:
    ERR_clear_error();
    GENERAL_NAMES_free(sans);
    X509_free(cert);
    X509_free(root);
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}

drv_argv *drv_argv_new(void)
{
    drv_argv *a = calloc(1, sizeof *a);
    if (a == NULL) (void)TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    return a;
}

void drv_argv_free(drv_argv *a)
{
    if (a == NULL) return;
    OPENSSL_cleanse(a, sizeof *a); /* holds paths only, but cheap */
    free(a);
}

__attribute__((format(printf, 2, 3))) TSR_WUR int drv_argv_addf(drv_argv *a,
                                                                const char *fmt, ...)
{
    TSR_ENSURE(a->n < DRV_ARGV_MAX, TSR_E_LIMIT, "too many arguments");
    size_t room = sizeof a->arena - a->used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(a->arena + a->used, room, fmt, ap);
    va_end(ap);
    TSR_ENSURE(n >= 0 && (size_t)n < room, TSR_E_LIMIT, "arguments too long");
    a->v[a->n++] = a->arena + a->used;
    a->v[a->n] = NULL;
    a->used += (size_t)n + 1;
    return 0;
}

TSR_WUR int drv_argv_add(drv_argv *a, const char *s)
{
    return drv_argv_addf(a, "%s", s);
}

TSR_WUR int drv_argv_add_split(drv_argv *a, const char *text)
{
    if (text == NULL) return 0;
    const char *p = text;
    while (*p != '\0') {
        while (*p == ' ') p++;
        if (*p == '\0') break;
        const char *e = p;
        while (*e != '\0' && *e != ' ') e++;
        TSR_ENSURE(e - p <= 1024, TSR_E_LIMIT, "argument too long");
        TSR_GUARD(drv_argv_addf(a, "%.*s", (int)(e - p), p));
        p = e;
    }
    return 0;
}

TSR_WUR int drv_argv_add_gateways(drv_argv *a, const char *list)
{
    TSR_ENSURE(drv_addr_list_valid(list), TSR_E_INPUT, "bad gateway address list");
    char one[DRV_MAX_ADDR + 1];
    for (size_t i = 0; drv_addr_list_item(list, i, one, sizeof one); i++) {
        TSR_GUARD(drv_argv_add(a, "--gateway"));
        TSR_GUARD(drv_argv_add(a, one));
    }
    return 0;
}

TSR_WUR int drv_option_supervisor_args(const tsr_driver_env *env, char *buf,
                                       size_t cap)
{
    const char *extra = drv_option(env, "supervisor_args");
    buf[0] = '\0';
    if (extra == NULL) return 0;
    TSR_ENSURE(strlen(extra) < cap, TSR_E_LIMIT, "supervisor_args too long");
    strcpy(buf, extra);
    drv_argv *probe = drv_argv_new();
    TSR_ENSURE(probe != NULL, TSR_E_INTERNAL, "out of memory");
    int r = drv_argv_add_split(probe, extra);
    size_t n = probe->n;
    drv_argv_free(probe);
    TSR_GUARD(r);
    TSR_ENSURE(n <= DRV_MAX_SUPERVISOR_ARGS, TSR_E_LIMIT,
               "supervisor_args: more than %d arguments", DRV_MAX_SUPERVISOR_ARGS);
    return 0;
}

TSR_WUR int drv_argv_add_workload(drv_argv *a, const char *supervisor_args,
                                  const char *const *command, size_t n_command)
{
    drv_argv *extra = drv_argv_new();
    TSR_ENSURE(extra != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    size_t dash = 0;
    TSR_TRY(drv_argv_add_split(extra, supervisor_args));
    while (dash < extra->n && strcmp(extra->v[dash], "--") != 0) dash++;
    for (size_t i = 0; i < dash; i++) TSR_TRY(drv_argv_add(a, extra->v[i]));
    if (n_command > 0) {
        TSR_TRY(drv_argv_add(a, "--"));
        for (size_t i = 0; i < n_command; i++) {
            TSR_TRY_ENSURE(command[i] != NULL, TSR_E_INPUT, "command[%zu] is missing", i);
            TSR_TRY(drv_argv_add(a, command[i]));
        }
    } else if (dash + 1 < extra->n) {
        for (size_t i = dash; i < extra->n; i++) TSR_TRY(drv_argv_add(a, extra->v[i]));
    }
    rc = 0;
out:
    drv_argv_free(extra);
    return rc;
}

TSR_WUR int drv_command_check(const tsr_driver_sandbox *sb)
{
    TSR_ENSURE(sb != NULL, TSR_E_INPUT, "no sandbox");
    TSR_ENSURE(sb->image != NULL, TSR_E_INPUT, "no image (an empty one is the default)");
    TSR_ENSURE(sb->n_command <= TSR_DRIVER_MAX_COMMAND_ARGS, TSR_E_INPUT,
               "command has %zu arguments (at most %d)", sb->n_command,
               TSR_DRIVER_MAX_COMMAND_ARGS);
    TSR_ENSURE(sb->n_command == 0 || sb->command != NULL, TSR_E_INPUT, "no command");
    size_t bytes = 0;
    for (size_t i = 0; i < sb->n_command; i++) {
        TSR_ENSURE(sb->command[i] != NULL, TSR_E_INPUT, "command[%zu] is missing", i);
        bytes += strlen(sb->command[i]) + 1;
    }
    TSR_ENSURE(bytes <= TSR_DRIVER_MAX_COMMAND_BYTES, TSR_E_INPUT,
               "command exceeds %d bytes", TSR_DRIVER_MAX_COMMAND_BYTES);
    TSR_ENSURE(sb->n_command == 0 || sb->command[0][0] != '\0', TSR_E_INPUT,
               "command[0] is empty");
    return 0;
}

void drv_tail_lines(const char *text, size_t len, size_t max_lines,
                    const char *only, char *out, size_t cap)
{
    if (cap == 0) return;
    out[0] = '\0';
    size_t lines = 0;
    const char *end = text + len;
    /* Walk back line by line, building the result from its end. */
    char *tmp = malloc(cap);
    if (tmp == NULL) return;
    size_t tlen = 0;
    while (end > text && lines < max_lines) {
        const char *start = end;
        while (start > text && start[-1] != '\n') start--;
        size_t n = (size_t)(end - start);
        const char *line = start;
        end = start > text ? start - 1 : text;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n')) n--;
        if (n == 0) continue;
        if (only != NULL) {
            size_t on = strlen(only);
            int hit = 0;
            for (size_t i = 0; !hit && i + on <= n; i++) hit = memcmp(line + i, only, on) == 0;
            if (!hit) continue;
        }
        size_t need = n + (tlen > 0 ? 1 : 0);
        if (tlen + need + 1 > cap) break;
        /* prepend: line, then '\n', before what is there */
        memmove(tmp + need, tmp, tlen);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)line[i];
            tmp[i] = (c >= 0x20 && c < 0x7f) || c == '\t' ? (char)c : '?';
        }
        if (tlen > 0) tmp[n] = '\n';
        tlen += need;
        lines++;
    }
    memcpy(out, tmp, tlen);
    out[tlen] = '\0';
    free(tmp);
}

void drv_one_line(const char *lines, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0) return;
    for (const char *p = lines; *p != '\0' && n + 4 < cap; p++) {
        if (*p == '\n') {
            memcpy(out + n, " | ", 3);
            n += 3;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

int drv_exit_after(const char *text, const char *marker, int *code)
{
    const char *last = NULL;
    size_t ml = strlen(marker);
    for (const char *p = strstr(text, marker); p != NULL; p = strstr(p + 1, marker)) last = p;
    if (last == NULL) return 0;
    const char *p = last + ml;
    int neg = *p == '-';
    if (neg) p++;
    long v = 0;
    const char *d = p;
    while (*p >= '0' && *p <= '9' && v < 100000) v = v * 10 + (*p++ - '0');
    if (p == d || v >= 100000) return 0;
    *code = (int)(neg ? -v : v);
    return 1;
}
