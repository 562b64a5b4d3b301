#include "tsr_json.h"

#include <stdlib.h>
#include <string.h>

#include "tsr_utf8.h"

json_t *tsr_json_bytes(const char *s, size_t len, size_t max)
{
    size_t n = s == NULL ? 0 : len < max ? len : max;
    if (n == 0) return json_string("");
    char small[256];
    char *buf = 3 * n <= sizeof small ? small : malloc(3 * n);
    if (buf == NULL) return NULL;
    size_t out = tsr_utf8_sanitize(s, len, max, buf);
    json_t *v = json_stringn_nocheck(buf, out);
    if (buf != small) free(buf);
    return v;
}

int tsr_json_set_new(json_t *obj, const char *key, json_t *v)
{
    size_t klen = strlen(key);
    json_t *k = tsr_json_bytes(key, klen, klen);
    int rc = k != NULL && v != NULL
                 ? json_object_setn_new_nocheck(obj, json_string_value(k), json_string_length(k), v)
                 : (json_decref(v), -1);
    json_decref(k);
    return rc == 0 ? 0 : TSR_FAIL(TSR_E_INTERNAL, "out of memory");
}

int tsr_json_set_bytes(json_t *obj, const char *key, const char *s, size_t len, size_t max)
{
    return tsr_json_set_new(obj, key, tsr_json_bytes(s, len, max));
}

int tsr_json_set_str(json_t *obj, const char *key, const char *s, size_t max)
{
    return tsr_json_set_bytes(obj, key, s, s != NULL ? strlen(s) : 0, max);
}

int tsr_json_append_new(json_t *arr, json_t *v)
{
    if (v == NULL || json_array_append_new(arr, v) != 0)
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    return 0;
}

char *tsr_json_dump(const json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL) {
        (void)TSR_FAIL(TSR_E_INTERNAL, "out of memory");
        return NULL;
    }
    *len = strlen(s);
    return s;
}
