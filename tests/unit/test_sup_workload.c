/* sup_workload: the environment scrub (TESSERA_*, key-like names, PEM
 * values) and provider variables, command resolution, exit codes, and a real
 * start: dropped ids, no groups, no new privileges, nothing inherited. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../supervisor/sup_workload.c"

/* ---- environment ------------------------------------------------------------------ */

/* A sup_env_var of two literals (its value's length as the supervisor keeps it). */
#define V(name, value) {(char *)(uintptr_t)(name), (char *)(uintptr_t)(value), sizeof(value) - 1}

static void test_inherit_refusals(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "TESSERA_IDENTITY_DIR=/run/tessera/identity",
        "TESSERA_=x",
        "tessera_token=abc",
        "Tessera_Key=abc",
        "OPENAI_API_KEY=sk-123",
        "AWS_SECRET_ACCESS_KEY=abc",
        "AWS_ACCESS_KEY_ID=AKIA",
        "GITHUB_TOKEN=ghp_x",
        "SSH_AUTH_SOCK=/tmp/agent.sock",
        "PGPASSWORD=hunter2",
        "DB_PASSWD=x",
        "MY_CREDENTIALS=x",
        "GOOGLE_APPLICATION_CREDENTIALS=/k.json",
        "APIKEY=x",
        "MYAPIKEY=x",
        "PRIVATE_THING=x",
        "TLS_KEY=x",
        "SIGNING_KEYS=x",
        "NPM_TOKENS=x",
        "HTTP_AUTH=basic",
        "SOME_PASS=x",
        "GPG_PASSPHRASE=x",
        "CLIENT_CREDS=x",
        "BLOB=-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n",
        "CERT_TEXT=-----BEGIN CERTIFICATE-----\nMIIB\n",
        "X=prefix -----begin ec private key----- suffix",
        "Y=this is a PRIVATE KEY",
        "NOEQUALS",
        "=value",
        "",
        NULL,
    };
    for (size_t i = 0; refused[i] != NULL; i++)
        if (sup_env_inherit_ok(refused[i])) fail_msg("kept \"%s\"", refused[i]);
    assert_false(sup_env_inherit_ok(NULL));
}

static void test_inherit_kept(void **state)
{
    (void)state;
    static const char *const kept[] = {
        "PATH=/usr/bin:/bin",
        "LANG=C.UTF-8",
        "TERM=xterm",
        "GIT_AUTHOR_NAME=Ada",
        "KEYBOARD=us",
        "MONKEY=banana",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "TESSERACT_DATA=/usr/share/tess",
        "EMPTY=",
        "TOKENIZERS_PARALLELISM=false",
        NULL,
    };
    for (size_t i = 0; kept[i] != NULL; i++)
        if (!sup_env_inherit_ok(kept[i])) fail_msg("dropped \"%s\"", kept[i]);
}

static void test_provider_names(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "1ABC", "A-B", "A B", "A=B", "TESSERA_X", "tessera_x",
                                      "LD_PRELOAD", "ld_library_path", "Ä", NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        if (sup_env_name_valid(bad[i])) fail_msg("accepted \"%s\"", bad[i]);
    assert_false(sup_env_name_valid(NULL));
    char longname[SUP_ENV_NAME_MAX + 2];
    memset(longname, 'A', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_false(sup_env_name_valid(longname));
    longname[SUP_ENV_NAME_MAX] = '\0';
    assert_true(sup_env_name_valid(longname));
    static const char *const good[] = {"OPENAI_API_KEY", "_X", "a1", "PATH", "HOME", NULL};
    for (size_t i = 0; good[i] != NULL; i++)
        if (!sup_env_name_valid(good[i])) fail_msg("refused \"%s\"", good[i]);
}

/* Nothing of the supervisor's environment but its PATH reaches the
 * workload: the provider's variables (valid names only), HOME, PATH. */
static void test_env_build(void **state)
{
    (void)state;
    char *parent[] = {
        (char *)(uintptr_t) "TESSERA_IDENTITY_DIR=/run/tessera/identity",
        (char *)(uintptr_t) "TESSERA_SANDBOX_ID=abc",
        (char *)(uintptr_t) "PEM=-----BEGIN CERTIFICATE-----",
        (char *)(uintptr_t) "SUPERVISOR_API_KEY=mine",
        (char *)(uintptr_t) "LANG=C.UTF-8",
        (char *)(uintptr_t) "HOSTNAME=engine-given",
        (char *)(uintptr_t) "container=podman",
        (char *)(uintptr_t) "HOME=/root",
        (char *)(uintptr_t) "MODEL=old",
        (char *)(uintptr_t) "PATH=/opt/image/bin:/usr/bin",
        NULL,
    };
    sup_env_var vars[] = {
        V("OPENAI_API_KEY", "sk-provider"),
        V("MODEL", "new"),
        V("TESSERA_EVIL", "x"),
        V("LD_PRELOAD", "/tmp/x.so"),
        V("BAD-NAME", "x"),
    };
    sup_env_list provider = {vars, 5};
    char **env = NULL;
    char rejected[128];
    assert_int_equal(sup_env_build(parent, &provider, "/workspace", &env, rejected,
                                   sizeof rejected),
                     0);
    assert_string_equal(rejected, "TESSERA_EVIL,LD_PRELOAD,BAD-NAME");
    size_t n = 0;
    while (env[n] != NULL) n++;
    /* PATH (the supervisor's), OPENAI_API_KEY, MODEL, HOME; nothing else. */
    assert_int_equal(n, 4);
    assert_string_equal(sup_env_get(env, "PATH"), "/opt/image/bin:/usr/bin");
    assert_string_equal(sup_env_get(env, "OPENAI_API_KEY"), "sk-provider");
    assert_string_equal(sup_env_get(env, "MODEL"), "new");
    assert_string_equal(sup_env_get(env, "HOME"), "/workspace");
    sup_env_free(env);

    /* Rejected names are logged: from the gateway's answer, so anything but
     * printable ASCII is shown escaped (found by fuzz/fuzz_client.c:
     * crash-env-name-escapes-into-log). */
    sup_env_var hostile[] = {
        V("\x1b]0;owned\x07\x1b[2J", "x"),
        V("A\nB\\C\xc3\xa9", "y"),
    };
    sup_env_list hostile_list = {hostile, 2};
    assert_int_equal(sup_env_build(NULL, &hostile_list, NULL, &env, rejected, sizeof rejected),
                     0);
    assert_string_equal(rejected, "\\x1b]0;owned\\x07\\x1b[2J,A\\x0aB\\x5cC\\xc3\\xa9");
    sup_env_free(env);
    /* Truncated at the buffer, never inside an escape. */
    char small[8];
    assert_int_equal(sup_env_build(NULL, &hostile_list, NULL, &env, small, sizeof small), 0);
    assert_string_equal(small, "\\x1b]0;");
    sup_env_free(env);

    /* A PATH holding PEM is not taken: the default instead. No home: none. */
    char *parent2[] = {(char *)(uintptr_t) "PATH=-----BEGIN PRIVATE KEY-----",
                       (char *)(uintptr_t) "HOME=/root", NULL};
    assert_int_equal(sup_env_build(parent2, NULL, NULL, &env, NULL, 0), 0);
    assert_string_equal(sup_env_get(env, "PATH"), SUP_DEFAULT_PATH);
    assert_null(sup_env_get(env, "HOME"));
    assert_null(env[1]);
    sup_env_free(env);
    /* Nothing at all. */
    assert_int_equal(sup_env_build(NULL, NULL, NULL, &env, NULL, 0), 0);
    assert_string_equal(sup_env_get(env, "PATH"), SUP_DEFAULT_PATH);
    assert_null(env[1]);
    sup_env_free(env);
}

/* The sandbox's plain env (CreateSandbox env): over what is inherited,
 * under the provider's, its reserved names skipped and named. */
static void test_env_build_with_plain(void **state)
{
    (void)state;
    char *parent[] = {(char *)(uintptr_t) "PATH=/usr/bin", (char *)(uintptr_t) "LANG=C",
                      (char *)(uintptr_t) "HOME=/root", (char *)(uintptr_t) "TERM=xterm", NULL};
    sup_env_var pv[] = {V("MODEL", "provider")};
    sup_env_var lv[] = {
        V("LANG", "C.UTF-8"),
        V("MODEL", "plain"),
        V("GREETING", "hello world"),
        V("LD_PRELOAD", "/x.so"),
        V("HOME", "/srv"),
    };
    sup_env_list provider = {pv, 1}, plain = {lv, 5};
    char **env = NULL;
    char rejected[64];
    assert_int_equal(sup_env_build_with(parent, &plain, &provider, "/workspace", &env, rejected,
                                        sizeof rejected),
                     0);
    assert_string_equal(rejected, "LD_PRELOAD");
    assert_string_equal(sup_env_get(env, "LANG"), "C.UTF-8");     /* given, not inherited */
    assert_null(sup_env_get(env, "TERM"));
    assert_string_equal(sup_env_get(env, "MODEL"), "provider");   /* provider over plain */
    assert_string_equal(sup_env_get(env, "GREETING"), "hello world");
    assert_string_equal(sup_env_get(env, "HOME"), "/srv");        /* given, kept */
    assert_string_equal(sup_env_get(env, "PATH"), "/usr/bin");
    assert_null(sup_env_get(env, "LD_PRELOAD"));
    size_t n = 0;
    while (env[n] != NULL) n++;
    assert_int_equal(n, 5); /* PATH, MODEL, LANG, GREETING, HOME: each once */
    sup_env_free(env);
}

/* ---- command, exit code ------------------------------------------------------------- */

static void test_resolve_command(void **state)
{
    (void)state;
    char *path = NULL;
    assert_int_equal(sup_resolve_command("", NULL, &path), -1);
    assert_int_equal(sup_resolve_command("no-such-command-xyz", NULL, &path), -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);
    assert_int_equal(sup_resolve_command("/no/such/file", NULL, &path), -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);
    assert_int_equal(sup_resolve_command("/etc/passwd", NULL, &path), -1); /* not executable */
    /* An empty or relative PATH entry never resolves to the current directory. */
    char *env[] = {(char *)(uintptr_t) "PATH=:relative:/nonexistent", NULL};
    assert_int_equal(sup_resolve_command("sh", env, &path), -1);
    assert_int_equal(sup_resolve_command("sh", NULL, &path), 0);
    assert_non_null(strstr(path, "/sh"));
    assert_int_equal(path[0], '/');
    free(path);
    assert_int_equal(sup_resolve_command("/bin/sh", NULL, &path), 0);
    assert_string_equal(path, "/bin/sh");
    free(path);
}

static void test_exit_code(void **state)
{
    (void)state;
    assert_int_equal(sup_exit_code(0), 0);
    assert_int_equal(sup_exit_code(7 << 8), 7);
    assert_int_equal(sup_exit_code(255 << 8), 255);
    assert_int_equal(sup_exit_code(SIGKILL), 128 + SIGKILL);
    assert_int_equal(sup_exit_code(SIGTERM), 128 + SIGTERM);
}

/* ---- a real start ----------------------------------------------------------------- */

/* Run `script` under sh as the workload; collect stdout; return the exit code. */
static int run_workload(const char *script, bool drop, uid_t uid, gid_t gid, char *out,
                        size_t cap)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    /* A descriptor the workload must not inherit (not close-on-exec). */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 0);
    char *argv[] = {(char *)(uintptr_t) "sh", (char *)(uintptr_t) "-c", (char *)(uintptr_t)script,
                    NULL};
    char *envp[] = {(char *)(uintptr_t) "PATH=/usr/bin:/bin", NULL};
    sup_spawn sp = {.path = "/bin/sh", .argv = argv, .envp = envp, .drop = drop, .uid = uid,
                    .gid = gid, .cwd = "/", .stdout_fd = p[1], .stderr_fd = p[1]};
    pid_t pid;
    int exec_errno = -1;
    if (sup_workload_spawn(&sp, &pid, &exec_errno) != 0) fail_msg("spawn: %s", tsr_errmsg());
    assert_int_equal(exec_errno, 0);
    close(p[1]);
    close(leak);
    size_t got = 0;
    ssize_t r;
    while ((r = read(p[0], out + got, cap - 1 - got)) > 0) got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return sup_exit_code(status);
}

static void test_spawn_refusals(void **state)
{
    (void)state;
    char *argv[] = {(char *)(uintptr_t) "x", NULL};
    char *envp[] = {NULL};
    sup_spawn sp = {.path = "/no/such/binary", .argv = argv, .envp = envp, .drop = false,
                    .stdout_fd = 1, .stderr_fd = 2};
    pid_t pid = 0;
    int exec_errno = 0;
    assert_int_equal(sup_workload_spawn(&sp, &pid, &exec_errno), -1);
    assert_int_equal(exec_errno, ENOENT);
    assert_non_null(strstr(tsr_errmsg(), "exec"));
    /* Never root. */
    sp.path = "/bin/sh";
    sp.drop = true;
    sp.uid = 0;
    assert_int_equal(sup_workload_spawn(&sp, &pid, &exec_errno), -1);
    assert_non_null(strstr(tsr_errmsg(), "root"));
}

static void test_spawn_same_uid(void **state)
{
    (void)state;
    char out[4096];
    int rc = run_workload("ls /proc/self/fd | tr '\\n' ' '; echo; grep NoNewPrivs /proc/self/status; "
                          "exit 3",
                          false, 0, 0, out, sizeof out);
    assert_int_equal(rc, 3);
    /* 0, 1, 2 and the directory ls reads: nothing inherited. */
    if (strstr(out, "0 1 2 3 \n") != out) fail_msg("descriptors: %s", out);
    assert_non_null(strstr(out, "NoNewPrivs:\t1"));
}

static void test_spawn_drops_privileges(void **state)
{
    (void)state;
    if (geteuid() != 0) skip();
    char out[4096];
    int rc = run_workload("id -u; id -g; grep -E '^(Groups|NoNewPrivs|CapEff)' /proc/self/status; "
                          "ls /proc/self/fd | tr '\\n' ' '; echo; "
                          "cat /proc/$PPID/environ >/dev/null 2>&1 && echo LEAK; kill -TERM $$",
                          true, 65534, 65534, out, sizeof out);
    assert_int_equal(rc, 128 + SIGTERM);
    if (strstr(out, "65534\n65534\n") != out) fail_msg("ids: %s", out);
    /* No supplementary group: nothing but blanks after "Groups:". */
    const char *g = strstr(out, "Groups:");
    assert_non_null(g);
    for (g += 7; *g != '\n'; g++)
        if (*g != ' ' && *g != '\t') fail_msg("groups: %s", out);
    assert_non_null(strstr(out, "NoNewPrivs:\t1"));
    assert_non_null(strstr(out, "CapEff:\t0000000000000000"));
    assert_non_null(strstr(out, "\n0 1 2 3 \n"));
    assert_null(strstr(out, "LEAK"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inherit_refusals),
        cmocka_unit_test(test_inherit_kept),
        cmocka_unit_test(test_provider_names),
        cmocka_unit_test(test_env_build),
        cmocka_unit_test(test_env_build_with_plain),
        cmocka_unit_test(test_resolve_command),
        cmocka_unit_test(test_exit_code),
        cmocka_unit_test(test_spawn_refusals),
        cmocka_unit_test(test_spawn_same_uid),
        cmocka_unit_test(test_spawn_drops_privileges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
