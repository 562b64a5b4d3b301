#include "tsr_utf8.h"

#include <stdint.h>
#include <string.h>

size_t tsr_utf8_seq_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) len = 4;
    else return 0;  /* continuation byte, overlong lead 0xc0/0xc1, or past U+10FFFF */
    if (n < len) return 0;
    uint32_t cp = s[0] & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
    return len;
}

bool tsr_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = tsr_utf8_seq_len(p + i, len - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

size_t tsr_utf8_sanitize(const char *s, size_t len, size_t max, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t n = tsr_utf8_seq_len(p + i, len - i);
        if (i + (n > 0 ? n : 1) > max) break;
        if (n > 0) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    return o;
}
