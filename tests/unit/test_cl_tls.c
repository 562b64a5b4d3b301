/* cl_tls: configuration checks, identity and bundle reloads, and the
 * lifetime of context generations held across a reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ca_pem.h"
#include "cl_internal.h"
#include "cl_tls.h"
#include "tu_certforge.h"

typedef struct fx {
    char *bundle;  size_t bundle_len;
    char *chain;   size_t chain_len;     /* alice leaf + root */
    char *key;     size_t key_len;       /* alice's key */
    char *chain2;  size_t chain2_len;    /* bob leaf + root */
    char *key2;    size_t key2_len;
} fx;

static char *leaf_chain(X509 *root, EVP_PKEY *root_key, const char *uri, EVP_PKEY *key,
                        size_t *len)
{
    tu_cert_spec spec;
    tu_spec_leaf(&spec, (int64_t)time(NULL), uri);
    X509 *leaf = tu_forge(&spec, key, root, root_key);
    assert_non_null(leaf);
    X509 *certs[2] = {leaf, root};
    char *pem = tu_pem_of(certs, 2, len);
    X509_free(leaf);
    return pem;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    EVP_PKEY *root_key = tu_key_new(), *k1 = tu_key_new(), *k2 = tu_key_new();
    tu_cert_spec spec;
    tu_spec_root(&spec, (int64_t)time(NULL));
    X509 *root = tu_forge(&spec, root_key, NULL, NULL);
    assert_non_null(root);
    f->bundle = tu_pem_of(&root, 1, &f->bundle_len);
    f->chain = leaf_chain(root, root_key, "spiffe://tessera.local/user/alice", k1, &f->chain_len);
    f->chain2 = leaf_chain(root, root_key, "spiffe://tessera.local/user/bob", k2, &f->chain2_len);
    assert_int_equal(ca_key_to_pem(k1, &f->key, &f->key_len), 0);
    assert_int_equal(ca_key_to_pem(k2, &f->key2, &f->key2_len), 0);
    X509_free(root);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    free(f->bundle);
    free(f->chain);
    free(f->chain2);
    ca_secret_free(f->key, f->key_len);
    ca_secret_free(f->key2, f->key2_len);
    free(f);
    return 0;
}

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

static void expect_refused(const cl_tls_config *cfg, enum tsr_errcat cat)
{
    cl_tls *tls = (cl_tls *)1;
    assert_int_not_equal(cl_tls_new(cfg, &tls), 0);
    assert_null(tls);
    assert_int_equal(tsr_errcat(), cat);
}

static void test_new_refused(void **state)
{
    fx *f = *state;
    cl_tls *tls = NULL;
    assert_int_not_equal(cl_tls_new(NULL, &tls), 0);

    cl_tls_config c = {0}; /* no bundle */
    expect_refused(&c, TSR_E_INPUT);

    c = (cl_tls_config){.bundle_pem = u8("garbage"), .bundle_pem_len = 7};
    expect_refused(&c, TSR_E_INPUT);

    /* Both a file and a buffer. */
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                        .bundle_file = "/nonexistent"};
    expect_refused(&c, TSR_E_INPUT);

    /* Missing bundle file. */
    c = (cl_tls_config){.bundle_file = "/nonexistent/bundle.pem"};
    assert_int_not_equal(cl_tls_new(&c, &tls), 0);

    /* Bad trust domain. */
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                        .trust_domain = "Tessera.Local"};
    expect_refused(&c, TSR_E_INPUT);

    /* A certificate without its key, a key without its certificate. */
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                        .cert_pem = u8(f->chain), .cert_pem_len = f->chain_len};
    expect_refused(&c, TSR_E_INPUT);
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                        .key_pem = u8(f->key), .key_pem_len = f->key_len};
    expect_refused(&c, TSR_E_INPUT);

    /* Key of somebody else. */
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                        .cert_pem = u8(f->chain), .cert_pem_len = f->chain_len,
                        .key_pem = u8(f->key2), .key_pem_len = f->key2_len};
    expect_refused(&c, TSR_E_INPUT);

    /* Truncated certificate PEM, and trailing garbage. */
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                        .cert_pem = u8(f->chain), .cert_pem_len = f->chain_len / 2,
                        .key_pem = u8(f->key), .key_pem_len = f->key_len};
    expect_refused(&c, TSR_E_INPUT);
    size_t glen = f->chain_len + 8;
    char *garbage = malloc(glen);
    assert_non_null(garbage);
    memcpy(garbage, f->chain, f->chain_len);
    memcpy(garbage + f->chain_len, "garbage\n", 8);
    c.cert_pem = u8(garbage);
    c.cert_pem_len = glen;
    expect_refused(&c, TSR_E_INPUT);
    free(garbage);

    /* Oversized buffer: refused before parsing. */
    c = (cl_tls_config){.bundle_pem = u8(f->bundle), .bundle_pem_len = CA_PEM_MAX_BYTES + 1};
    expect_refused(&c, TSR_E_LIMIT);
}

static void test_anonymous_then_identity(void **state)
{
    fx *f = *state;
    cl_tls *tls = NULL;
    cl_tls_config c = {.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len};
    assert_int_equal(cl_tls_new(&c, &tls), 0);
    assert_false(cl_tls_has_identity(tls));
    assert_string_equal(cl_tls_trust_domain(tls), "tessera.local");
    assert_int_equal(cl_tls_generation(tls), 0);

    /* A refused reload changes nothing. */
    assert_int_not_equal(cl_tls_reload(tls, u8(f->chain), f->chain_len, u8(f->key2), f->key2_len),
                         0);
    assert_int_not_equal(cl_tls_reload(tls, u8(f->chain), f->chain_len, NULL, 0), 0);
    assert_false(cl_tls_has_identity(tls));
    assert_int_equal(cl_tls_generation(tls), 0);

    assert_int_equal(cl_tls_reload(tls, u8(f->chain), f->chain_len, u8(f->key), f->key_len), 0);
    assert_true(cl_tls_has_identity(tls));
    assert_int_equal(cl_tls_generation(tls), 1);

    /* Back to anonymous. */
    assert_int_equal(cl_tls_reload(tls, NULL, 0, NULL, 0), 0);
    assert_false(cl_tls_has_identity(tls));
    assert_int_equal(cl_tls_generation(tls), 2);
    cl_tls_free(tls);
}

static void test_generations_outlive_reloads(void **state)
{
    fx *f = *state;
    cl_tls *tls = NULL;
    cl_tls_config c = {.bundle_pem = u8(f->bundle), .bundle_pem_len = f->bundle_len,
                       .cert_pem = u8(f->chain), .cert_pem_len = f->chain_len,
                       .key_pem = u8(f->key), .key_pem_len = f->key_len,
                       .trust_domain = "tessera.local", .verify_host = true};
    assert_int_equal(cl_tls_new(&c, &tls), 0);
    assert_true(cl_tls_has_identity(tls));

    cl_tls_gen *g0 = cl_tls_acquire(tls);
    assert_non_null(g0->ctx);
    assert_true(g0->verify_host);
    assert_int_equal(cl_tls_reload(tls, u8(f->chain2), f->chain2_len, u8(f->key2), f->key2_len),
                     0);
    cl_tls_gen *g1 = cl_tls_acquire(tls);
    assert_ptr_not_equal(g0, g1);
    /* The bundle reload keeps the identity. */
    assert_int_not_equal(cl_tls_reload_bundle(tls, u8("junk"), 4), 0);
    assert_int_equal(cl_tls_generation(tls), 1);
    assert_int_equal(cl_tls_reload_bundle(tls, u8(f->bundle), f->bundle_len), 0);
    assert_int_equal(cl_tls_generation(tls), 2);
    assert_true(cl_tls_has_identity(tls));
    cl_tls_gen *g2 = cl_tls_acquire(tls);
    /* The new context presents bob's certificate; the old one still alice's. */
    X509 *c0 = SSL_CTX_get0_certificate(g0->ctx), *c2 = SSL_CTX_get0_certificate(g2->ctx);
    assert_non_null(c0);
    assert_non_null(c2);
    assert_int_not_equal(X509_cmp(c0, c2), 0);
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(g1->ctx), c2), 0);

    /* Freeing the cl_tls first: held generations stay usable (ASan checks). */
    cl_tls_free(tls);
    assert_non_null(SSL_CTX_get0_certificate(g0->ctx));
    cl_tls_gen_release(g0);
    cl_tls_gen_release(g1);
    cl_tls_gen_release(g2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refused),
        cmocka_unit_test(test_anonymous_then_identity),
        cmocka_unit_test(test_generations_outlive_reloads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
