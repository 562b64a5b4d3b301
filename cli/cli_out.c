/* Output of the CLI: JSON writer, terminal-safe text, times. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tsr_json.h"
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

/* ---- JSON (jansson, tsr_json.h) ------------------------------------------- */

/* Add v (a new reference) under key to the open container; out of memory
 * drops the value (the document stays valid JSON). */
static void add(cli_json *j, const char *key, json_t *v)
{
    json_t *parent = j->stack[j->depth];
    int rc = key != NULL && json_is_object(parent) ? tsr_json_set_new(parent, key, v)
                                                   : tsr_json_append_new(parent, v);
    (void)rc;
}

static void push(cli_json *j, const char *key, json_t *v)
{
    if (v != NULL) json_incref(v);
    add(j, key, v);
    if (v != NULL && j->depth + 1 < (int)(sizeof j->stack / sizeof j->stack[0])) {
        j->stack[++j->depth] = v;
        return;
    }
    json_decref(v);
    j->overflow++;
}

static void pop(cli_json *j)
{
    if (j->overflow > 0) {
        j->overflow--;
        return;
    }
    if (j->depth > 0) json_decref(j->stack[j->depth--]);
}

void cj_begin(cli_json *j, FILE *f)
{
    memset(j, 0, sizeof *j);
    j->f = f;
    j->stack[0] = json_object();
}

void cj_end(cli_json *j)
{
    while (j->depth > 0) pop(j);
    size_t len = 0;
    char *text = j->stack[0] != NULL ? tsr_json_dump(j->stack[0], &len) : NULL;
    if (text != NULL) fwrite(text, 1, len, j->f);
    else fputs("{}", j->f);
    fputc('\n', j->f);
    fflush(j->f);
    free(text);
    json_decref(j->stack[0]);
    j->stack[0] = NULL;
}

void cj_obj(cli_json *j, const char *key) { push(j, key, json_object()); }
void cj_arr(cli_json *j, const char *key) { push(j, key, json_array()); }
void cj_close_obj(cli_json *j) { pop(j); }
void cj_close_arr(cli_json *j) { pop(j); }

void cj_strn(cli_json *j, const char *key, const char *v, size_t len)
{
    add(j, key, tsr_json_bytes(v, v != NULL ? len : 0, SIZE_MAX));
}

void cj_str(cli_json *j, const char *key, const char *v)
{
    cj_strn(j, key, v, v != NULL ? strlen(v) : 0);
}

void cj_int(cli_json *j, const char *key, int64_t v) { add(j, key, json_integer((json_int_t)v)); }
void cj_bool(cli_json *j, const char *key, bool v) { add(j, key, json_boolean(v)); }

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
