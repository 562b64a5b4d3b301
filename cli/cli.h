/* The `tessera` operator CLI: shared state, argument scanning, output
 * (human tables or one JSON document) and error reporting.
 *
 * Exit codes: CLI_OK 0, CLI_RPC 1 (the call or the connection failed, or a
 * local file could not be read), CLI_USAGE 2 (bad command line). */
#ifndef CLI_H
#define CLI_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cl_grpc.h"
#include "tessera/v1/gateway.pb-c.h"

enum { CLI_OK = 0, CLI_RPC = 1, CLI_USAGE = 2 };

#define CLI_PATH_MAX 4096
#define CLI_GATEWAY "/tessera.v1.Gateway/"

typedef struct cli_ctx {
    /* Global options (flags, then TESSERA_* environment, then defaults). */
    const char *addr_text;
    cl_addr addr;
    const char *pki;
    const char *user;
    const char *trust_domain;
    char cert[CLI_PATH_MAX], key[CLI_PATH_MAX], bundle[CLI_PATH_MAX];
    bool json;
    bool verify_host;
    int64_t timeout_ms;
    /* The connection, opened on first use. */
    cl_tls *tls;
    cl_conn *conn;
    bool anonymous;
} cli_ctx;

/* ---- arguments ------------------------------------------------------------ */

typedef struct cli_optdef {
    const char *name;    /* without "--" */
    bool has_arg;
} cli_optdef;

typedef struct cli_iter {
    int argc;
    char **argv;
    int i;
    bool no_more_opts;   /* after "--" */
    const char *cmd;     /* "sandbox create", for messages */
} cli_iter;

enum { CLI_IT_END = -1, CLI_IT_POS = -2, CLI_IT_HELP = -3, CLI_IT_ERR = -4 };

/* Next argument: the index of an option in defs (NULL-name terminated) with
 * *val its value (or NULL), CLI_IT_POS with *val the positional argument,
 * CLI_IT_HELP for -h/--help, CLI_IT_END, or CLI_IT_ERR (message printed). */
int cli_next(cli_iter *it, const cli_optdef *defs, const char **val);

/* For commands without options and with `want` (0 or 1) positional
 * arguments (*arg). Returns CLI_OK, CLI_USAGE, or -1 after printing help. */
int cli_positional(const char *cmd, const char *help, int argc, char **argv, int want,
                   const char **arg);
/* Print "tessera: <message>" and the --help pointer; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "tessera: <message>" (a local failure); returns CLI_RPC. */
int cli_fail(cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse a non-negative decimal integer (at most max). */
bool cli_parse_int(const char *s, int64_t max, int64_t *out);

/* ---- calls ------------------------------------------------------------------- */

/* Connect (once) with the operator certificate, or anonymously. Reports
 * failures itself; returns CLI_OK or CLI_RPC. */
int cli_connect(cli_ctx *c, bool anonymous);
/* One unary call to /tessera.v1.Gateway/<method> (or a full path starting
 * with '/'); reports failures itself with a hint; returns CLI_OK or CLI_RPC. */
int cli_call(cli_ctx *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp);
/* Every page of a paginated List call: *token (the request's page_token
 * field, "" at first) is set to each response's next_page_token until it is
 * "" (a repeated token, or more than max_pages pages, is a failure naming
 * `what`). pages[] (room for max_pages) receive the responses; the caller
 * frees the first *n_pages of them, also on failure. */
int cli_call_pages(cli_ctx *c, const char *method, ProtobufCMessage *req, char **token,
                   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **pages,
                   size_t max_pages, size_t *n_pages, const char *what);
/* Print a failed status with what to do about it (stderr; JSON on stdout). */
void cli_report(cli_ctx *c, const char *method, const cl_status *st);
void cli_close(cli_ctx *c);

/* A SANDBOX argument: a lowercase UUID is an id, anything else a name. */
bool cli_is_id(const char *arg);
/* The id of a sandbox named by id or name (a name is looked up). */
int cli_resolve_sandbox(cli_ctx *c, const char *arg, char id[CA_UUID_LEN + 1]);

/* ---- output --------------------------------------------------------------------- */

/* Compact JSON on stdout, built with jansson (tsr_json.h) and written at
 * cj_end: keys and strings escaped (control characters, quotes; invalid
 * UTF-8 as U+FFFD). key NULL inside arrays. */
typedef struct cli_json {
    FILE *f;
    int depth;
    int overflow;          /* containers opened past the stack: ignored */
    struct json_t *stack[32];
} cli_json;

void cj_begin(cli_json *j, FILE *f);           /* top-level object */
void cj_end(cli_json *j);                      /* closes it, newline, flush */
void cj_obj(cli_json *j, const char *key);
void cj_arr(cli_json *j, const char *key);
void cj_close_obj(cli_json *j);
void cj_close_arr(cli_json *j);
void cj_str(cli_json *j, const char *key, const char *v);
void cj_strn(cli_json *j, const char *key, const char *v, size_t len);
void cj_int(cli_json *j, const char *key, int64_t v);
void cj_bool(cli_json *j, const char *key, bool v);

/* Write bytes for a terminal: printable ASCII and valid UTF-8 as they are,
 * anything else (control characters, escape sequences, bad UTF-8) as \xNN. */
void cli_put_safe(FILE *f, const char *s, size_t len);
void cli_puts_safe(FILE *f, const char *s);
/* "2024-05-01T12:00:00Z"; "-" for 0. */
void cli_time(int64_t unix_secs, char out[32]);

void cj_sandbox(cli_json *j, const char *key, const Tessera__V1__Sandbox *sb);
void cli_print_sandbox(const Tessera__V1__Sandbox *sb);

/* ---- commands -------------------------------------------------------------------- */

int cli_cmd_sandbox(cli_ctx *c, int argc, char **argv);
int cli_cmd_logs(cli_ctx *c, int argc, char **argv);
int cli_cmd_cert(cli_ctx *c, int argc, char **argv);
int cli_cmd_bundle(cli_ctx *c, int argc, char **argv);
int cli_cmd_health(cli_ctx *c, int argc, char **argv);

#endif
