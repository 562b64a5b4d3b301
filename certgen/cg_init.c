/* certgen init: a new PKI in DIR (docs/certgen.md). Everything is generated and
 * checked in memory first; nothing is written if any file already exists
 * (unless --force), so a PKI is never completed with keys that do not match. */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "cg.h"
#include "tsr_fs.h"

#define CMD "init"

static const char help[] =
    "Usage: certgen init --out DIR [OPTIONS]\n"
    "\n"
    "Create a new Tessera PKI in DIR: root CA, online issuing CA, trust bundle,\n"
    "gateway server certificate and operator (user) client certificates.\n"
    "\n"
    "Options:\n"
    "  --out DIR             directory to create the PKI in (required)\n"
    "  --trust-domain TD     SPIFFE trust domain (default " CG_DEFAULT_TD ")\n"
    "  --key-type TYPE       p256 (default), p384 or ed25519\n"
    "  --gateway-dns NAME    DNS name of the gateway; repeatable (default localhost)\n"
    "  --gateway-ip IP       IP address of the gateway; repeatable\n"
    "                        (default 127.0.0.1 and ::1)\n"
    "  --user NAME           operator certificate to issue; repeatable (default admin)\n"
    "  --root-ttl D          root CA lifetime (default 3650d)\n"
    "  --issuing-ttl D       issuing CA lifetime (default 365d)\n"
    "  --leaf-ttl D          gateway and user certificate lifetime (default 90d)\n"
    "  --force               replace an existing PKI in DIR (a new root: certificates\n"
    "                        issued before stop verifying)\n"
    "  -h, --help            show this help\n"
    "\n"
    "Durations are like 90d, 12h, 1h30m. Files written (directories 0700, keys 0600,\n"
    "certificates 0644):\n"
    "  DIR/root.pem DIR/root.key          root CA (move root.key offline afterwards)\n"
    "  DIR/issuing.pem DIR/issuing.key    issuing CA used by the gateway\n"
    "  DIR/bundle.pem                     trust bundle\n"
    "  DIR/gateway.pem DIR/gateway.key    gateway certificate (chain: leaf, issuing)\n"
    "  DIR/users/NAME.pem NAME.key        operator certificates (chain)\n";

typedef struct init_opts {
    const char *td;
    const char *out;
    enum ca_key_type key_type;
    const char *dns[CG_MAX_NAMES];
    size_t n_dns;
    const char *ips[CG_MAX_NAMES];
    size_t n_ips;
    const char *users[CG_MAX_USERS];
    size_t n_users;
    int64_t root_ttl, issuing_ttl, leaf_ttl;
    int force;
} init_opts;

static int add_value(const char **list, size_t *n, size_t max, const char *flag,
                     const char *value)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], value) == 0)
            return cg_usage_error(CMD, "%s %s given twice", flag, value);
    if (*n >= max) return cg_usage_error(CMD, "more than %zu %s options", max, flag);
    list[(*n)++] = value;
    return CG_OK;
}

static int parse_args(int argc, char **argv, init_opts *o)
{
    static const struct option longopts[] = {
        {"trust-domain", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},
        {"key-type", required_argument, NULL, 'k'},
        {"gateway-dns", required_argument, NULL, 'd'},
        {"gateway-ip", required_argument, NULL, 'i'},
        {"user", required_argument, NULL, 'u'},
        {"root-ttl", required_argument, NULL, 'R'},
        {"issuing-ttl", required_argument, NULL, 'I'},
        {"leaf-ttl", required_argument, NULL, 'L'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->td = CG_DEFAULT_TD;
    o->key_type = CA_KEY_P256;
    o->root_ttl = CG_ROOT_TTL;
    o->issuing_ttl = CG_ISSUING_TTL;
    o->leaf_ttl = CG_LEAF_TTL;
    opterr = 0;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->td = optarg; break;
        case 'o': o->out = optarg; break;
        case 'k':
            if ((rc = cg_parse_key_type(CMD, optarg, &o->key_type)) != CG_OK) return rc;
            break;
        case 'd':
            if ((rc = cg_check_dns_name(CMD, optarg)) != CG_OK) return rc;
            if ((rc = add_value(o->dns, &o->n_dns, CG_MAX_NAMES, "--gateway-dns", optarg)))
                return rc;
            break;
        case 'i':
            if ((rc = cg_check_ip(CMD, optarg)) != CG_OK) return rc;
            if ((rc = add_value(o->ips, &o->n_ips, CG_MAX_NAMES, "--gateway-ip", optarg)))
                return rc;
            break;
        case 'u':
            if ((rc = cg_check_user_name(CMD, optarg)) != CG_OK) return rc;
            if ((rc = add_value(o->users, &o->n_users, CG_MAX_USERS, "--user", optarg)))
                return rc;
            break;
        case 'R':
            if ((rc = cg_parse_ttl(CMD, "--root-ttl", optarg, &o->root_ttl)) != CG_OK) return rc;
            break;
        case 'I':
            if ((rc = cg_parse_ttl(CMD, "--issuing-ttl", optarg, &o->issuing_ttl)) != CG_OK)
                return rc;
            break;
        case 'L':
            if ((rc = cg_parse_ttl(CMD, "--leaf-ttl", optarg, &o->leaf_ttl)) != CG_OK) return rc;
            break;
        case 'f': o->force = 1; break;
        case 'h': fputs(help, stdout); return -1;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind < argc) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (o->out == NULL || o->out[0] == '\0')
        return cg_usage_error(CMD, "--out DIR is required (where to create the PKI)");
    if ((rc = cg_check_trust_domain(CMD, o->td)) != CG_OK) return rc;
    if (o->n_dns == 0) o->dns[o->n_dns++] = "localhost";
    if (o->n_ips == 0) {
        o->ips[o->n_ips++] = "127.0.0.1";
        o->ips[o->n_ips++] = "::1";
    }
    if (o->n_users == 0) o->users[o->n_users++] = "admin";
    return CG_OK;
}

/* ---- what exists already ------------------------------------------------------ */

typedef struct listing {
    char **names;
    size_t n, cap;
} listing;

static int listing_add(listing *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **names = realloc(l->names, cap * sizeof *names);
        if (names == NULL) return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
        l->names = names;
        l->cap = cap;
    }
    l->names[l->n] = strdup(name);
    if (l->names[l->n] == NULL) return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    l->n++;
    return 0;
}

static void listing_free(listing *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int listing_has(const listing *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0) return 1;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Entries of DIR/users that this run would not write (other users' files). */
static int other_user_files(const char *dir, const listing *wanted, listing *other)
{
    char users[CG_PATH_MAX];
    TSR_GUARD(cg_path(users, dir, "users"));
    DIR *d = opendir(users);
    if (d == NULL) return 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char rel[CG_PATH_MAX];
        if (tsr_path_join(rel, sizeof rel, "users", e->d_name) != 0) continue;
        if (!listing_has(wanted, rel)) rc = listing_add(other, rel);
    }
    closedir(d);
    if (other->n > 1) qsort(other->names, other->n, sizeof *other->names, cmp_names);
    return rc;
}

static void print_names(FILE *out, const char *dir, const listing *l)
{
    for (size_t i = 0; i < l->n; i++) fprintf(out, "  %s/%s\n", dir, l->names[i]);
}

static void print_inline(FILE *out, const listing *l)
{
    for (size_t i = 0; i < l->n; i++) fprintf(out, "%s%s", i ? ", " : "", l->names[i]);
}

/* ---- the command --------------------------------------------------------------- */

enum { F_ROOT_KEY, F_ROOT, F_ISSUING_KEY, F_ISSUING, F_BUNDLE, F_GW_KEY, F_GW, F_CORE };

/* One init, step by step. A step returns STEP_OK to go on, STEP_STOP
 * when it has said why not (nothing more to add), STEP_FAIL for "init"
 * failures that only the recorded error explains. */
enum { STEP_OK = 0, STEP_STOP = 1, STEP_FAIL = -1 };

typedef struct init_run {
    init_opts o;
    cg_file *files;
    size_t n_files;
    listing wanted, present, missing, other;
    ca_issuer *root, *issuing;
    STACK_OF(X509) *bundle;
} init_run;

static const char *const core_files[F_CORE] = {"root.key",  "root.pem",    "issuing.key",
                                               "issuing.pem", "bundle.pem", "gateway.key",
                                               "gateway.pem"};

/* 1. Which files would be written, and which of them exist: without
 * --force, any of them (or another user's) stops here, nothing written. */
static int plan_files(init_run *r)
{
    const init_opts *o = &r->o;
    for (size_t i = 0; i < F_CORE; i++)
        if (listing_add(&r->wanted, core_files[i]) != 0) return STEP_FAIL;
    for (size_t i = 0; i < o->n_users; i++) {
        char rel[CG_PATH_MAX];
        snprintf(rel, sizeof rel, "users/%s.key", o->users[i]);
        if (listing_add(&r->wanted, rel) != 0) return STEP_FAIL;
        snprintf(rel, sizeof rel, "users/%s.pem", o->users[i]);
        if (listing_add(&r->wanted, rel) != 0) return STEP_FAIL;
    }
    for (size_t i = 0; i < r->wanted.n; i++) {
        char path[CG_PATH_MAX];
        if (cg_path(path, o->out, r->wanted.names[i]) != 0) return STEP_FAIL;
        if (listing_add(tsr_path_exists(path) ? &r->present : &r->missing,
                        r->wanted.names[i]) != 0)
            return STEP_FAIL;
    }
    if (other_user_files(o->out, &r->wanted, &r->other) != 0) return STEP_FAIL;
    if (o->force || (r->present.n == 0 && r->other.n == 0)) return STEP_OK;
    int all_core = 1;
    for (size_t i = 0; i < F_CORE; i++) all_core &= listing_has(&r->present, core_files[i]);
    if (all_core) {
        cg_error(CMD, "%s already holds a PKI; these files exist:", o->out);
    } else {
        fprintf(stderr, "certgen %s: partial PKI in %s: present ", CMD, o->out);
        print_inline(stderr, &r->present);
        if (r->other.n > 0) fprintf(stderr, "%s", r->present.n ? ", " : "");
        print_inline(stderr, &r->other);
        fprintf(stderr, "; missing ");
        print_inline(stderr, &r->missing);
        fprintf(stderr, "\n");
    }
    if (all_core) {
        print_names(stderr, o->out, &r->present);
        print_names(stderr, o->out, &r->other);
    }
    fprintf(stderr,
            "Nothing was written. A PKI is never completed or overwritten silently (its keys "
            "would not match).\n"
            "To add a user to an existing PKI: certgen issue-user NAME --pki %s\n"
            "To replace everything with a new root CA: certgen init --out %s --force\n",
            o->out, o->out);
    return STEP_STOP;
}

/* 2a. The root and the issuing CA, in memory; the bundle holds the root. */
static int make_cas(init_run *r)
{
    const init_opts *o = &r->o;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (ca_create_root(o->key_type, o->td, o->root_ttl, 0, &key, &cert) != 0) {
        EVP_PKEY_free(key);
        X509_free(cert);
        cg_fail(CMD, "create the root CA");
        return STEP_STOP;
    }
    if (ca_issuer_new(cert, key, &r->root) != 0) return STEP_FAIL; /* takes ownership */
    X509_up_ref(r->root->cert); /* the bundle's reference */
    if (sk_X509_push(r->bundle, r->root->cert) <= 0) {
        X509_free(r->root->cert);
        return STEP_FAIL;
    }
    key = NULL;
    cert = NULL;
    if (ca_create_issuing(r->root, o->key_type, o->td, o->issuing_ttl, 0, &key, &cert) != 0) {
        EVP_PKEY_free(key);
        X509_free(cert);
        cg_fail(CMD, "create the issuing CA");
        return STEP_STOP;
    }
    if (ca_issuer_new(cert, key, &r->issuing) != 0) return STEP_FAIL;
    return STEP_OK;
}

/* 2b. The gateway's and each user's certificate, each checked against the
 * bundle, and every file's bytes (keys, certificates, the bundle). */
static int make_leaves(init_run *r)
{
    const init_opts *o = &r->o;
    ca_issuer *root = r->root, *issuing = r->issuing;
    cg_file *files = r->files;
    EVP_PKEY *gw_key = NULL;
    X509 *gw_cert = NULL;
    char id[CG_PATH_MAX];
    int step = STEP_FAIL;
    snprintf(id, sizeof id, "spiffe://%s/gateway", o->td);
    if (cg_issue_leaf(issuing, o->key_type, id, o->leaf_ttl, o->dns, o->n_dns, o->ips, o->n_ips,
                      &gw_key, &gw_cert) != 0 ||
        cg_self_verify(r->bundle, issuing->cert, gw_cert, 1) != 0) {
        cg_fail(CMD, "issue the gateway certificate");
        step = STEP_STOP;
        goto out;
    }
    if (cg_file_key(&files[F_ROOT_KEY], o->out, "root.key", root->key) != 0 ||
        cg_file_certs(&files[F_ROOT], o->out, "root.pem", root->cert, NULL) != 0 ||
        cg_file_key(&files[F_ISSUING_KEY], o->out, "issuing.key", issuing->key) != 0 ||
        cg_file_certs(&files[F_ISSUING], o->out, "issuing.pem", issuing->cert, NULL) != 0 ||
        cg_file_certs(&files[F_BUNDLE], o->out, "bundle.pem", root->cert, NULL) != 0 ||
        cg_file_key(&files[F_GW_KEY], o->out, "gateway.key", gw_key) != 0 ||
        cg_file_certs(&files[F_GW], o->out, "gateway.pem", gw_cert, issuing->cert) != 0)
        goto out;
    for (size_t i = 0; i < o->n_users; i++) {
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        snprintf(id, sizeof id, "spiffe://%s/user/%s", o->td, o->users[i]);
        if (cg_issue_leaf(issuing, o->key_type, id, o->leaf_ttl, NULL, 0, NULL, 0, &key,
                          &cert) != 0 ||
            cg_self_verify(r->bundle, issuing->cert, cert, 0) != 0) {
            EVP_PKEY_free(key);
            X509_free(cert);
            cg_fail(CMD, "issue a user certificate");
            step = STEP_STOP;
            goto out;
        }
        char rel[CG_PATH_MAX];
        snprintf(rel, sizeof rel, "users/%s.key", o->users[i]);
        int bad = cg_file_key(&files[F_CORE + 2 * i], o->out, rel, key);
        snprintf(rel, sizeof rel, "users/%s.pem", o->users[i]);
        bad = bad || cg_file_certs(&files[F_CORE + 2 * i + 1], o->out, rel, cert, issuing->cert);
        EVP_PKEY_free(key);
        X509_free(cert);
        if (bad) goto out;
    }
    step = STEP_OK;
out:
    EVP_PKEY_free(gw_key);
    X509_free(gw_cert);
    return step;
}

/* 3. Write: keys before their certificates. */
static int write_files(init_run *r)
{
    const init_opts *o = &r->o;
    char users_dir[CG_PATH_MAX];
    size_t written = 0;
    if (cg_private_dir(CMD, o->out) != 0 || cg_path(users_dir, o->out, "users") != 0 ||
        cg_private_dir(CMD, users_dir) != 0) {
        cg_fail(CMD, "create the PKI directory");
        return STEP_STOP;
    }
    if (cg_files_write(r->files, r->n_files, o->force, &written) != 0) {
        cg_error(CMD, "%s", tsr_errmsg());
        if (written > 0) {
            fprintf(stderr, "The PKI in %s is incomplete; these files were written:\n", o->out);
            for (size_t i = 0; i < written; i++) fprintf(stderr, "  %s\n", r->files[i].path);
            fprintf(stderr, "Remove them (or rerun with --force) to start over.\n");
        }
        return STEP_STOP;
    }
    return STEP_OK;
}

/* 4. Report. */
static void report(const init_run *r)
{
    const init_opts *o = &r->o;
    char fp[96], serial[41], until[32];
    int64_t nb = 0, na = 0;
    printf("Created a Tessera PKI in %s (trust domain %s, %s keys)\n", o->out, o->td,
           ca_key_type_name(o->key_type));
    if (ca_cert_fingerprint(r->root->cert, fp) == 0 &&
        ca_cert_validity(r->root->cert, &nb, &na) == 0) {
        cg_format_time(na, until);
        printf("  root CA       %s/root.pem  valid until %s\n                SHA-256 %s\n",
               o->out, until, fp);
    }
    if (ca_cert_serial_hex(r->issuing->cert, serial) == 0 &&
        ca_cert_validity(r->issuing->cert, &nb, &na) == 0) {
        cg_format_time(na, until);
        printf("  issuing CA    %s/issuing.pem  serial %s, valid until %s\n", o->out, serial,
               until);
    }
    printf("  trust bundle  %s/bundle.pem\n", o->out);
    printf("  gateway       %s/gateway.pem  spiffe://%s/gateway  DNS ", o->out, o->td);
    for (size_t i = 0; i < o->n_dns; i++) printf("%s%s", i ? "," : "", o->dns[i]);
    printf("  IP ");
    for (size_t i = 0; i < o->n_ips; i++) printf("%s%s", i ? "," : "", o->ips[i]);
    printf("\n");
    for (size_t i = 0; i < o->n_users; i++)
        printf("  user          %s/users/%s.pem  spiffe://%s/user/%s\n", o->out, o->users[i],
               o->td, o->users[i]);
    printf("root.key is only needed to rotate the issuing CA (certgen rotate-issuing): keep it "
           "offline.\n");
    for (size_t i = 0; i < r->other.n; i++)
        fprintf(stderr,
                "certgen %s: warning: %s/%s belongs to the replaced PKI and no longer "
                "verifies; re-issue that user with certgen issue-user --force, or remove it\n",
                CMD, o->out, r->other.names[i]);
}

int cg_cmd_init(int argc, char **argv)
{
    init_run r;
    memset(&r, 0, sizeof r);
    int rc = parse_args(argc, argv, &r.o);
    if (rc == -1) return CG_OK; /* --help */
    if (rc != CG_OK) return rc;

    int status = CG_FAIL, step = STEP_FAIL;
    r.n_files = F_CORE + 2 * r.o.n_users;
    r.files = calloc(r.n_files, sizeof *r.files);
    r.bundle = sk_X509_new_null();
    if (r.files == NULL || r.bundle == NULL) {
        cg_error(CMD, "out of memory");
        goto out;
    }
    if ((step = plan_files(&r)) != STEP_OK || (step = make_cas(&r)) != STEP_OK ||
        (step = make_leaves(&r)) != STEP_OK || (step = write_files(&r)) != STEP_OK)
        goto out;
    report(&r);
    status = CG_OK;
out:
    if (step == STEP_FAIL && r.files != NULL && r.bundle != NULL) cg_fail(CMD, "init");
    for (size_t i = 0; r.files != NULL && i < r.n_files; i++) cg_file_release(&r.files[i]);
    free(r.files);
    listing_free(&r.wanted);
    listing_free(&r.present);
    listing_free(&r.missing);
    listing_free(&r.other);
    ca_issuer_free(r.root);
    ca_issuer_free(r.issuing);
    sk_X509_pop_free(r.bundle, X509_free);
    return status;
}
