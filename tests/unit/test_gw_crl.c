/* The gateway's CRL cache (gw_crl.c): signed once and served again until
 * the revocation set, the PKI snapshot or the refresh time says otherwise;
 * entries from the store (date, reason); expired ones left out; cRLNumber
 * persisted and growing across caches (restarts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca_crl.h"
#include "ca_issue.h"
#include "gw_app.h"
#include "gw_config.h"
#include "gw_crl.h"
#include "gw_revocation.h"
#include "gw_store.h"
#include "tsr_fs.h"
#include "tsr_time.h"
#include "tu_fs.h"

#define TD "tessera.local"

typedef struct fixture {
    char dir[64], db[128], number[128];
    gw_config cfg;
    ca_issuer *root, *issuing;
    gw_pki pki;
    gw_store *store;
    gw_revocations *rev;
    gw_crl_cache *cache;
    int64_t now;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tu_temp_path(f->dir, sizeof f->dir, "tsr-crl-XXXXXX"), 0);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/t.db", f->dir);
    snprintf(f->number, sizeof f->number, "%s/crl.number", f->dir);
    f->now = tsr_now_unix();
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(ca_create_root(CA_KEY_P256, TD, 86400 * 30, f->now, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &f->root), 0);
    assert_int_equal(ca_create_issuing(f->root, CA_KEY_P256, TD, 86400 * 7, f->now, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &f->issuing), 0);
    f->cfg.crl_validity = 6 * 3600;
    f->pki.cfg = &f->cfg;
    f->pki.issuer = f->issuing;
    f->pki.generation = 1;
    assert_int_equal(gw_store_open(f->db, NULL, &f->store), 0);
    assert_int_equal(gw_revocations_new(&f->rev), 0);
    assert_int_equal(gw_crl_cache_new(f->number, &f->cache), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_crl_cache_free(f->cache);
    gw_revocations_free(f->rev);
    gw_store_close(f->store);
    ca_issuer_free(f->root);
    ca_issuer_free(f->issuing);
    assert_int_equal(tu_rm_rf(f->dir), 0);
    free(f);
    return 0;
}

/* A certificate recorded and revoked in the store, then in memory. */
static void revoke_cert(fixture *f, const char *serial, int64_t not_after, const char *reason,
                   int64_t when)
{
    gw_cert_rec rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.serial, sizeof rec.serial, "%s", serial);
    snprintf(rec.spiffe_id, sizeof rec.spiffe_id, "spiffe://%s/user/alice", TD);
    rec.not_before = f->now - 3600;
    rec.not_after = not_after;
    rec.issued_at = f->now - 3600;
    assert_int_equal(gw_store_cert_insert(f->store, &rec), 0);
    assert_int_equal(gw_store_cert_revoke(f->store, serial, reason, when, NULL, NULL, NULL), 0);
    assert_int_equal(gw_revocations_add(f->rev, serial, not_after), 0);
}

static X509_CRL *parse(const fixture *f, const gw_crl *crl)
{
    BIO *bio = BIO_new_mem_buf(crl->pem, (int)crl->len);
    X509_CRL *x = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    assert_int_equal(X509_CRL_verify(x, X509_get0_pubkey(f->issuing->cert)), 1);
    return x;
}

static uint64_t number_of(X509_CRL *x)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
    assert_non_null(num);
    uint64_t v = 0;
    assert_int_equal(ASN1_INTEGER_get_uint64(&v, num), 1);
    ASN1_INTEGER_free(num);
    return v;
}

static uint64_t number_on_disk(const fixture *f)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(tsr_read_file(f->number, 64, &buf, &len), 0);
    uint64_t v = strtoull((const char *)buf, NULL, 10);
    free(buf);
    return v;
}

/* The entry for `serial_hex` (normalized: no leading zeros), or NULL. */
static X509_REVOKED *entry(X509_CRL *x, const char *serial_hex)
{
    BIGNUM *bn = NULL;
    assert_true(BN_hex2bn(&bn, serial_hex) > 0);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    X509_REVOKED *r = NULL;
    int found = X509_CRL_get0_by_serial(x, &r, ai);
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return found == 1 ? r : NULL;
}

static int reason_of(X509_REVOKED *r)
{
    ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, NULL, NULL);
    if (e == NULL) return CA_CRL_REASON_NONE;
    int v = (int)ASN1_ENUMERATED_get(e);
    ASN1_ENUMERATED_free(e);
    return v;
}

static gw_crl *current(fixture *f, int64_t now)
{
    gw_crl *crl = NULL;
    if (gw_crl_current(f->cache, &f->pki, f->rev, f->store, now, &crl) != 0)
        fail_msg("gw_crl_current: %s", tsr_errmsg());
    assert_non_null(crl);
    return crl;
}

/* ---- failure cases ------------------------------------------------------------- */

static void test_bad_number_file(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {"", "x\n", "12x\n", "-1\n", "1\n\n", " 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tsr_write_file_atomic(f->number, bad[i], strlen(bad[i]), 0600,
                                               TSR_WRITE_REPLACE), 0);
        gw_crl_cache *c = NULL;
        assert_int_equal(gw_crl_cache_new(f->number, &c), -1);
        assert_null(c);
        assert_non_null(strstr(tsr_errmsg(), "not a CRL number"));
    }
    /* Past what the next number can follow (UINT64_MAX and more: strtoull
     * read them as UINT64_MAX, and last + 1 wrapped to 0), and a number cut
     * short by a NUL byte (strtoull stopped there and took the rest for the
     * end): found by fuzz/fuzz_crl_number.c (crash-crl-number-overflows). */
    static const struct {
        const char *text;
        size_t len;
    } cut[] = {
        {"18446744073709551615\n", 21}, {"18446744073709551616", 20},
        {"99999999999999999999999\n", 24}, {"12\0junk\n", 8}, {"12\0", 3}, {"\n", 1},
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        assert_int_equal(tsr_write_file_atomic(f->number, cut[i].text, cut[i].len, 0600,
                                               TSR_WRITE_REPLACE), 0);
        gw_crl_cache *c = NULL;
        assert_int_equal(gw_crl_cache_new(f->number, &c), -1);
        assert_null(c);
        assert_non_null(strstr(tsr_errmsg(), "not a CRL number"));
    }
    uint64_t v = 0;
    assert_int_equal(gw_crl_number_parse((const uint8_t *)"18446744073709551614\n", 21, &v), 0);
    assert_true(v == UINT64_MAX - 1);
    assert_int_equal(gw_crl_number_parse((const uint8_t *)"18446744073709551615", 20, &v), -1);
    assert_string_equal(tsr_errmsg(), "CRL number out of range");
    /* Too long to be a number. */
    char big[200];
    memset(big, '1', sizeof big);
    assert_int_equal(tsr_write_file_atomic(f->number, big, sizeof big, 0600, TSR_WRITE_REPLACE), 0);
    gw_crl_cache *c = NULL;
    assert_int_equal(gw_crl_cache_new(f->number, &c), -1);
}

static void test_unknown_to_the_store_is_listed(void **state)
{
    fixture *f = *state;
    /* Revoked in memory, unknown to the store (cannot happen: the store is
     * written first): listed anyway, as of now, never left out. */
    revoke_cert(f, "abcdef", f->now + 3600, "keyCompromise", f->now - 10);
    assert_int_equal(gw_revocations_add(f->rev, "123456", f->now + 3600), 0);
    gw_crl *crl = current(f, f->now);
    X509_CRL *x = parse(f, crl);
    assert_int_equal(reason_of(entry(x, "abcdef")), CA_CRL_KEY_COMPROMISE);
    X509_REVOKED *r = entry(x, "123456");
    assert_non_null(r);
    assert_int_equal(reason_of(r), CA_CRL_REASON_NONE);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(r), (time_t)f->now), 0);
    X509_CRL_free(x);
    gw_crl_release(crl);
}

/* ---- caching ------------------------------------------------------------------- */

static void test_cached_until_something_changes(void **state)
{
    fixture *f = *state;
    gw_crl *a = current(f, f->now);
    X509_CRL *x = parse(f, a);
    assert_null(X509_CRL_get_REVOKED(x));
    uint64_t n1 = number_of(x);
    assert_true(n1 >= (uint64_t)tsr_now_unix_ms() - 60000);   /* the clock floor */
    assert_true(number_on_disk(f) == n1);
    X509_CRL_free(x);
    assert_int_equal(a->entries, 0);
    assert_int_equal(a->next_update - a->this_update, 6 * 3600 + 60);

    /* Nothing changed: the very same CRL, not signed again. */
    gw_crl *b = current(f, f->now + 10);
    assert_ptr_equal(a, b);
    gw_crl_release(b);
    /* Just before half the validity: still the same. */
    b = current(f, f->now + 3 * 3600 - 1);
    assert_ptr_equal(a, b);
    gw_crl_release(b);

    /* A revocation: a new CRL listing it, with a larger number. */
    revoke_cert(f, "0f00aa", f->now + 86400, "Key Compromise", f->now - 5);
    b = current(f, f->now + 20);
    assert_ptr_not_equal(a, b);
    x = parse(f, b);
    uint64_t n2 = number_of(x);
    assert_true(n2 > n1);
    assert_true(number_on_disk(f) == n2);
    X509_REVOKED *r = entry(x, "f00aa");
    assert_non_null(r);
    assert_int_equal(reason_of(r), CA_CRL_KEY_COMPROMISE);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(r),
                                          (time_t)(f->now - 5)), 0);
    X509_CRL_free(x);
    /* The old one stays valid for whoever still holds it. */
    assert_non_null(strstr(a->pem, "BEGIN X509 CRL"));
    gw_crl_release(a);

    /* Adding a serial already in the set changes nothing. */
    assert_int_equal(gw_revocations_add(f->rev, "0f00aa", f->now + 86400), 0);
    a = current(f, f->now + 30);
    assert_ptr_equal(a, b);
    gw_crl_release(a);

    /* Half the validity later: signed again, same entries. */
    a = current(f, f->now + 20 + 3 * 3600);
    assert_ptr_not_equal(a, b);
    assert_int_equal(a->entries, 1);
    gw_crl_release(b);

    /* A reload (another snapshot): signed again, by that snapshot's issuer. */
    f->pki.generation = 2;
    b = current(f, f->now + 20 + 3 * 3600);
    assert_ptr_not_equal(a, b);
    x = parse(f, b);
    assert_true(number_of(x) > n2);
    X509_CRL_free(x);
    gw_crl_release(a);
    gw_crl_release(b);
}

static void test_entries_from_the_store(void **state)
{
    fixture *f = *state;
    revoke_cert(f, "01", f->now + 3600, "sandbox deleted", f->now - 100);
    revoke_cert(f, "02", f->now + 3600, "revoked by alice", f->now - 200);
    revoke_cert(f, "03", f->now + 3600, "superseded", f->now - 300);
    revoke_cert(f, "04", f->now - 1, "keyCompromise", f->now - 400);   /* expired: left out */
    gw_crl *crl = current(f, f->now);
    assert_int_equal(crl->entries, 3);
    X509_CRL *x = parse(f, crl);
    assert_int_equal(reason_of(entry(x, "01")), CA_CRL_CESSATION_OF_OPERATION);
    assert_int_equal(reason_of(entry(x, "02")), CA_CRL_REASON_NONE);
    assert_int_equal(reason_of(entry(x, "03")), CA_CRL_SUPERSEDED);
    assert_null(entry(x, "04"));
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(entry(x, "03")),
                                          (time_t)(f->now - 300)), 0);
    X509_CRL_free(x);
    gw_crl_release(crl);
    /* Later, entry 01's certificate expires too: it leaves at the next CRL. */
    revoke_cert(f, "05", f->now + 7200, "superseded", f->now);
    crl = current(f, f->now + 3601);
    assert_int_equal(crl->entries, 1);
    x = parse(f, crl);
    assert_non_null(entry(x, "05"));
    assert_null(entry(x, "01"));
    X509_CRL_free(x);
    gw_crl_release(crl);
}

static void test_number_survives_restart(void **state)
{
    fixture *f = *state;
    /* Far ahead of the clock (many CRLs in a burst): continued, not reset. */
    uint64_t ahead = (uint64_t)tsr_now_unix_ms() + 1000000;
    char text[32];
    int len = snprintf(text, sizeof text, "%llu\n", (unsigned long long)ahead);
    assert_int_equal(tsr_write_file_atomic(f->number, text, (size_t)len, 0600,
                                           TSR_WRITE_REPLACE), 0);
    gw_crl_cache_free(f->cache);
    assert_int_equal(gw_crl_cache_new(f->number, &f->cache), 0);
    gw_crl *crl = current(f, f->now);
    X509_CRL *x = parse(f, crl);
    assert_true(number_of(x) == ahead + 1);
    X509_CRL_free(x);
    gw_crl_release(crl);
    /* The file is lost: the clock floor still keeps numbers growing. */
    assert_int_equal(unlink(f->number), 0);
    gw_crl_cache_free(f->cache);
    assert_int_equal(gw_crl_cache_new(f->number, &f->cache), 0);
    crl = current(f, f->now);
    x = parse(f, crl);
    assert_true(number_of(x) >= (uint64_t)tsr_now_unix_ms() - 60000);
    X509_CRL_free(x);
    gw_crl_release(crl);
}

static void test_number_file_unwritable(void **state)
{
    fixture *f = *state;
    char sub[160], path[200];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    snprintf(path, sizeof path, "%s/crl.number", sub);
    assert_int_equal(tsr_mkdir_p(sub, 0700), 0);
    /* Ahead of the clock: only the file keeps the numbers growing, so a
     * failed write means no CRL. */
    char text[32];
    uint64_t ahead = (uint64_t)tsr_now_unix_ms() + 1000000;
    int len = snprintf(text, sizeof text, "%llu\n", (unsigned long long)ahead);
    assert_int_equal(tsr_write_file_atomic(path, text, (size_t)len, 0600, TSR_WRITE_REPLACE), 0);
    gw_crl_cache *c = NULL;
    assert_int_equal(gw_crl_cache_new(path, &c), 0);
    assert_int_equal(tu_rm_rf(sub), 0);
    gw_crl *crl = NULL;
    assert_int_equal(gw_crl_current(c, &f->pki, f->rev, f->store, f->now, &crl), -1);
    assert_null(crl);
    gw_crl_cache_free(c);
    /* At the clock floor (the usual case) the CRL is served all the same:
     * a full disk does not stop GetTrustBundle. */
    assert_int_equal(gw_crl_cache_new(path, &c), 0);
    assert_int_equal(gw_crl_current(c, &f->pki, f->rev, f->store, f->now, &crl), 0);
    assert_non_null(crl);
    gw_crl_release(crl);
    gw_crl_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_number_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_to_the_store_is_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_file_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_until_something_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entries_from_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_survives_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
