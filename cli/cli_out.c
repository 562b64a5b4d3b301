/* Output of the CLI: JSON writer, terminal-safe text, times. */
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tsr_utf8.h"

void cli_put_safe(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if ((c >= 0x20 && c < 0x7f) || c == '\t') {
            fputc(c, f);
            i++;
            continue;
        }
        size_t n = c >= 0x80 ? tsr_utf8_seq_len(p + i, len - i) : 0;
        if (n > 0) {
            fwrite(p + i, 1, n, f);
            i += n;
            continue;
        }
        fprintf(f, "\\x%02x", c);
        i++;
    }
}

void cli_puts_safe(FILE *f, const char *s)
{
    cli_put_safe(f, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

void cli_time(int64_t t, char out[32])
{
    if (t == 0) {
        strcpy(out, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_string(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c == '\r') {
            fputs("\\r", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, f);
            i++;
        } else {
            size_t n = tsr_utf8_seq_len(p + i, len - i);
            if (n > 0) {
                fwrite(p + i, 1, n, f);
                i += n;
            } else {
                fputs("\\ufffd", f);
                i++;
            }
        }
    }
    fputc('"', f);
}

static void sep(cli_json *j, const char *key)
{
    if (!j->first[j->depth]) fputc(',', j->f);
    j->first[j->depth] = false;
    if (key != NULL) {
        json_string(j->f, key, strlen(key));
        fputc(':', j->f);
    }
}

static void push(cli_json *j)
{
    if (j->depth + 1 < (int)(sizeof j->first / sizeof j->first[0])) j->depth++;
    j->first[j->depth] = true;
}

void cj_begin(cli_json *j, FILE *f)
{
    memset(j, 0, sizeof *j);
    j->f = f;
    j->first[0] = true;
    fputc('{', f);
    push(j);
}

void cj_end(cli_json *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}

void cj_obj(cli_json *j, const char *key)
{
    sep(j, key);
    fputc('{', j->f);
    push(j);
}

void cj_arr(cli_json *j, const char *key)
{
    sep(j, key);
    fputc('[', j->f);
    push(j);
}

void cj_close_obj(cli_json *j)
{
    fputc('}', j->f);
    if (j->depth > 0) j->depth--;
}

void cj_close_arr(cli_json *j)
{
    fputc(']', j->f);
    if (j->depth > 0) j->depth--;
}

void cj_strn(cli_json *j, const char *key, const char *v, size_t len)
{
    sep(j, key);
    json_string(j->f, v != NULL ? v : "", v != NULL ? len : 0);
}

void cj_str(cli_json *j, const char *key, const char *v)
{
    cj_strn(j, key, v, v != NULL ? strlen(v) : 0);
}

void cj_int(cli_json *j, const char *key, int64_t v)
{
    sep(j, key);
    fprintf(j->f, "%lld", (long long)v);
}

void cj_bool(cli_json *j, const char *key, bool v)
{
    sep(j, key);
    fputs(v ? "true" : "false", j->f);
}

/* ---- sandboxes -------------------------------------------------------------- */

void cj_sandbox(cli_json *j, const char *key, const Tessera__V1__Sandbox *sb)
{
    cj_obj(j, key);
    if (sb != NULL) {
        cj_str(j, "id", sb->id);
        cj_str(j, "name", sb->name);
        cj_str(j, "spiffe_id", sb->spiffe_id);
        cj_str(j, "driver", sb->driver);
        cj_str(j, "state", sb->state);
        cj_int(j, "created_at", sb->created_at);
        cj_int(j, "policy_version", sb->policy_version);
        cj_str(j, "image", sb->image);
        cj_arr(j, "command");
        for (size_t i = 0; i < sb->n_command; i++) cj_str(j, NULL, sb->command[i]);
        cj_close_arr(j);
        cj_obj(j, "env");
        for (size_t i = 0; i < sb->n_env; i++) cj_str(j, sb->env[i]->key, sb->env[i]->value);
        cj_close_obj(j);
        cj_bool(j, "exited", sb->exited);
        if (sb->exited) cj_int(j, "exit_code", sb->exit_code);
        cj_str(j, "state_detail", sb->state_detail);
    }
    cj_close_obj(j);
}

/* An argument as a POSIX shell would need it to mean itself: as it is when
 * it holds only safe characters, else in single quotes (' as '\''). */
static void put_shell_word(FILE *f, const char *s)
{
    size_t n = strlen(s);
    bool plain = n > 0;
    for (size_t i = 0; i < n && plain; i++)
        plain = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-=:,+@%",
                       s[i]) != NULL;
    if (plain) {
        fputs(s, f);
        return;
    }
    putc('\'', f);
    for (const char *p = s; *p != '\0';) {
        const char *q = strchr(p, '\'');
        size_t len = q != NULL ? (size_t)(q - p) : strlen(p);
        cli_put_safe(f, p, len);
        if (q == NULL) break;
        fputs("'\\''", f);
        p = q + 1;
    }
    putc('\'', f);
}

void cli_print_sandbox(const Tessera__V1__Sandbox *sb)
{
    if (sb == NULL) return;
    char when[32];
    cli_time(sb->created_at, when);
    static const char *const labels[] = {"name", "id", "spiffe id", "state", "driver"};
    const char *values[] = {sb->name, sb->id, sb->spiffe_id, sb->state, sb->driver};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        printf("%-15s ", labels[i]);
        cli_puts_safe(stdout, values[i]);
        putchar('\n');
    }
    if (sb->exited) printf("%-15s %d\n", "exit status", (int)sb->exit_code);
    printf("%-15s ", "image");
    cli_puts_safe(stdout, sb->image[0] != '\0' ? sb->image : "(the driver's default)");
    printf("\n%-15s ", "command");
    if (sb->n_command == 0) fputs("(the driver's default)", stdout);
    for (size_t i = 0; i < sb->n_command; i++) {
        if (i > 0) putchar(' ');
        put_shell_word(stdout, sb->command[i]);
    }
    putchar('\n');
    for (size_t i = 0; i < sb->n_env; i++) {
        printf("%-15s ", i == 0 ? "env" : "");
        cli_puts_safe(stdout, sb->env[i]->key);
        putchar('=');
        cli_puts_safe(stdout, sb->env[i]->value);
        putchar('\n');
    }
    printf("%-15s %s\n", "created", when);
    printf("%-15s %lld\n", "policy version", (long long)sb->policy_version);
    /* How it ended, in the supervisor's last lines (one per line). */
    for (const char *p = sb->state_detail, *first = p; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        printf("%-15s ", p == first ? "last lines" : "");
        cli_put_safe(stdout, p, len);
        putchar('\n');
        p = nl != NULL ? nl + 1 : NULL;
    }
}
