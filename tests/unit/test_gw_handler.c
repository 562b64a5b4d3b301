/* gw_repeated_new: the backing store of a repeated message field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw_handler.h"

static void test_repeated_overflow_fails_cleanly(void **state)
{
    (void)state;
    const size_t huge[] = {SIZE_MAX, SIZE_MAX / sizeof(void *), SIZE_MAX / 16};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        gw_response resp;
        memset(&resp, 0, sizeof resp);
        void *r = gw_repeated_new(&tessera__v1__certificate__descriptor, huge[i], &resp);
        assert_null(r);
        assert_int_equal(resp.status, GW_STATUS_RESOURCE_EXHAUSTED);
    }
}

static void test_repeated_empty(void **state)
{
    (void)state;
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    Tessera__V1__Certificate **items =
        gw_repeated_new(&tessera__v1__certificate__descriptor, 0, &resp);
    assert_non_null(items);
    assert_null(items[0]);
    free(items);
}

static void test_repeated_elements_initialised_distinct_aligned(void **state)
{
    (void)state;
    enum { N = 7 };
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    Tessera__V1__Certificate **items =
        gw_repeated_new(&tessera__v1__certificate__descriptor, N, &resp);
    assert_non_null(items);
    assert_null(items[N]);
    static char spiffe[] = "spiffe://tessera.local/sandbox/x";
    for (size_t i = 0; i < N; i++) {
        assert_non_null(items[i]);
        assert_ptr_equal(items[i]->base.descriptor, &tessera__v1__certificate__descriptor);
        assert_int_equal((uintptr_t)items[i] % _Alignof(max_align_t), 0);
        assert_string_equal(items[i]->serial, "");   /* __init's default */
        if (i > 0)
            assert_true((char *)items[i] >= (char *)items[i - 1] + sizeof **items);
        items[i]->spiffe_id = spiffe;
        items[i]->not_after = (int64_t)i + 1;
    }
    /* It packs and unpacks as a real repeated field. */
    Tessera__V1__ListCertificatesResponse msg;
    tessera__v1__list_certificates_response__init(&msg);
    msg.n_certificates = N;
    msg.certificates = items;
    size_t len = protobuf_c_message_get_packed_size(&msg.base);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    protobuf_c_message_pack(&msg.base, buf);
    Tessera__V1__ListCertificatesResponse *back =
        tessera__v1__list_certificates_response__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_int_equal(back->n_certificates, N);
    for (size_t i = 0; i < N; i++) {
        assert_string_equal(back->certificates[i]->spiffe_id, spiffe);
        assert_int_equal(back->certificates[i]->not_after, (int64_t)i + 1);
    }
    tessera__v1__list_certificates_response__free_unpacked(back, NULL);
    free(buf);
    free(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeated_overflow_fails_cleanly),
        cmocka_unit_test(test_repeated_empty),
        cmocka_unit_test(test_repeated_elements_initialised_distinct_aligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
