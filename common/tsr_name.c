#include "tsr_name.h"

bool tsr_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool tsr_name_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!tsr_name_char(s[i])) return false;
    return true;
}

bool tsr_name_valid(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max) return false;
    /* Never a SPIFFE path segment. */
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) return false;
    return tsr_name_chars(s, len);
}

bool tsr_dns_name_valid(const char *s, size_t len, unsigned flags)
{
    if ((flags & TSR_DNS_WILDCARD) && len >= 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        len -= 2;
    }
    if (len == 0 || len > TSR_DNS_NAME_MAX) return false;
    size_t label = 0;
    bool label_digits = true, all_digits = true;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') return false;
            if (i == len && label_digits && (flags & TSR_DNS_LAST_NOT_DIGITS)) return false;
            label = 0;
            label_digits = true;
            continue;
        }
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !digit && c != '-') return false;
        if (c == '-' && label == 0) return false;
        if (!digit) label_digits = all_digits = false;
        if (++label > 63) return false;
    }
    return !(all_digits && (flags & TSR_DNS_NOT_DIGITS));
}
