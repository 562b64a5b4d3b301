/* fake_supervisor: a TEST DOUBLE for the tessera-supervisor binary, used only
 * by the process driver's tests (passed as supervisor_path). The driver under
 * test is real; this program reports what a supervisor started by it sees.
 *
 *   fake_supervisor --identity-dir DIR --gateway ADDR [--gateway ADDR]... --trust-domain TD
 *                   [--sandbox-id ID] [--driver NAME] [--enforced DOMAINS]
 *                   [--ignore-term] [--probe PATH]... [-- COMMAND [ARGS...]]
 *
 * It runs no workload: it prints what it was given (driver=, enforced=,
 * one "command[i]=" line per argument after --).
 * Prints "key=value" lines on stdout (the driver sends it to
 * supervisor.log), then "ready", then waits for SIGTERM ("got SIGTERM",
 * exit 0). --ignore-term makes it ignore SIGTERM (to test SIGKILL after the
 * grace period). Never prints key material. */
#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t g_term;

static void on_term(int sig)
{
    (void)sig;
    g_term++;
}

/* Whole file into a NUL-terminated buffer (NULs inside kept; *len set). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf != NULL) buf[n] = '\0';
    *len = n;
    return buf;
}

static int contains(const char *hay, size_t hay_len, const char *needle, size_t nlen)
{
    if (nlen == 0 || nlen > hay_len) return 0;
    for (size_t i = 0; i + nlen <= hay_len; i++)
        if (memcmp(hay + i, needle, nlen) == 0) return 1;
    return 0;
}

/* 1 if any base64 line of the key (or a PEM key header) is in the blob. */
static int has_key_bytes(const char *blob, size_t blob_len, const char *key)
{
    if (contains(blob, blob_len, "PRIVATE KEY", 11)) return 1;
    const char *p = key;
    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, '\n');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l >= 16 && p[0] != '-' && contains(blob, blob_len, p, l)) return 1;
        p = e != NULL ? e + 1 : NULL;
    }
    return 0;
}

static void print_mode(const char *label, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("%s=missing\n", label);
        return;
    }
    printf("%s=%04o\n", label, (unsigned)(st.st_mode & 07777));
    printf("%s_owner_is_me=%d\n", label, st.st_uid == getuid());
}

int main(int argc, char **argv)
{
    const char *iddir = NULL, *gateways[16], *td = NULL, *sid = "", *driver = "",
               *enforced = "";
    int ignore_term = 0, command_at = 0, n_gateways = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--identity-dir") == 0 && i + 1 < argc) iddir = argv[++i];
        else if (strcmp(argv[i], "--gateway") == 0 && i + 1 < argc && n_gateways < 16)
            gateways[n_gateways++] = argv[++i];
        else if (strcmp(argv[i], "--trust-domain") == 0 && i + 1 < argc) td = argv[++i];
        else if (strcmp(argv[i], "--sandbox-id") == 0 && i + 1 < argc) sid = argv[++i];
        else if (strcmp(argv[i], "--driver") == 0 && i + 1 < argc) driver = argv[++i];
        else if (strcmp(argv[i], "--enforced") == 0 && i + 1 < argc) enforced = argv[++i];
        else if (strcmp(argv[i], "--") == 0) {
            command_at = i + 1;
            break;
        }
        else if (strcmp(argv[i], "--ignore-term") == 0) ignore_term = 1;
        else if (strcmp(argv[i], "--probe") == 0 && i + 1 < argc) {
            const char *p = argv[++i];
            printf("probe %s=%d\n", p, access(p, F_OK) == 0);
        } else {
            printf("unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (iddir == NULL || n_gateways == 0 || td == NULL) {
        printf("missing --identity-dir, --gateway or --trust-domain\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    /* SIGTERM is only delivered inside sigsuspend: no lost wake-up. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);

    for (int k = 0; k < n_gateways; k++) printf("gateway=%s\n", gateways[k]);
    printf("trust_domain=%s\nsandbox_id=%s\nidentity_dir=%s\n", td, sid, iddir);
    printf("driver=%s\nenforced=%s\n", driver, enforced);
    for (int k = command_at; command_at > 0 && k < argc; k++)
        printf("command[%d]=%s\n", k - command_at, argv[k]);
    printf("uid=%u\npid=%ld\n", (unsigned)getuid(), (long)getpid());
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    printf("hostname=%s\n", host);
    char cwd[4096] = "";
    if (getcwd(cwd, sizeof cwd) == NULL) strcpy(cwd, "?");
    printf("cwd=%s\n", cwd);

    char path[4096];
    print_mode("dir_mode", iddir);
    const char *files[3] = {"cert.pem", "key.pem", "bundle.pem"};
    const char *labels[3] = {"cert_mode", "key_mode", "bundle_mode"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", iddir, files[i]);
        print_mode(labels[i], path);
    }

    size_t key_len = 0, cert_len = 0;
    snprintf(path, sizeof path, "%s/key.pem", iddir);
    char *key = slurp(path, &key_len);
    snprintf(path, sizeof path, "%s/cert.pem", iddir);
    char *cert_pem = slurp(path, &cert_len);
    X509 *cert = NULL;
    EVP_PKEY *pk = NULL;
    if (cert_pem != NULL) {
        BIO *b = BIO_new_mem_buf(cert_pem, (int)cert_len);
        cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
    }
    if (key != NULL) {
        BIO *b = BIO_new_mem_buf(key, (int)key_len);
        pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
        BIO_free(b);
    }
    if (cert != NULL) {
        GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
            if (gn->type != GEN_URI) continue;
            printf("spiffe_id=%.*s\n", ASN1_STRING_length(gn->d.uniformResourceIdentifier),
                   (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
        }
        GENERAL_NAMES_free(sans);
    }
    printf("key_matches_cert=%d\n", cert != NULL && pk != NULL && X509_check_private_key(cert, pk) == 1);
    X509_free(cert);
    EVP_PKEY_free(pk);
    ERR_clear_error();

    size_t env_len = 0, cmd_len = 0;
    char *env = slurp("/proc/self/environ", &env_len);
    char *cmd = slurp("/proc/self/cmdline", &cmd_len);
    printf("env_has_key=%d\n", env != NULL && key != NULL && has_key_bytes(env, env_len, key));
    printf("cmdline_has_key=%d\n", cmd != NULL && key != NULL && has_key_bytes(cmd, cmd_len, key));
    printf("env_has_pem=%d\n", env != NULL && contains(env, env_len, "-----BEGIN", 10));
    /* Names of the environment variables, comma separated. */
    printf("env_names=");
    for (size_t off = 0; env != NULL && off < env_len;) {
        const char *var = env + off;
        size_t l = strlen(var);
        const char *eq = strchr(var, '=');
        printf("%s%.*s", off == 0 ? "" : ",", (int)(eq != NULL ? eq - var : (ptrdiff_t)l), var);
        off += l + 1;
    }
    printf("\n");
    free(env);
    free(cmd);
    free(cert_pem);
    if (key != NULL) memset(key, 0, key_len);
    free(key);

    /* Descriptors beyond stdin/out/err (the one opendir uses is skipped). */
    int extra = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        const struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            int fd = atoi(de->d_name);
            if (de->d_name[0] == '.' || fd <= 2 || fd == dirfd(d)) continue;
            char lpath[64], target[512] = "";
            snprintf(lpath, sizeof lpath, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(lpath, target, sizeof target - 1);
            if (n > 0) target[n] = '\0';
            printf("extra_fd %d -> %s\n", fd, target);
            extra++;
        }
        closedir(d);
    }
    printf("extra_fds=%d\n", extra);
    printf("ready\n");
    fflush(stdout);

    for (;;) {
        while (g_term == 0) sigsuspend(&waitmask);
        if (!ignore_term) break;
        printf("ignoring SIGTERM\n");
        g_term = 0;
    }
    printf("got SIGTERM\n");
    return 0;
}
