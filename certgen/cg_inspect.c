/* certgen inspect: what a certificate file holds, for humans. */
#include <arpa/inet.h>
#include <getopt.h>
#include <openssl/bio.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "cg.h"
#include "tsr_fs.h"
#include "tsr_time.h"

#define CMD "inspect"

static const char help[] =
    "Usage: certgen inspect FILE\n"
    "\n"
    "Show each certificate in FILE (PEM, or one DER certificate): SPIFFE ID (URI\n"
    "SAN), DNS and IP SANs, serial, validity and remaining lifetime, key type,\n"
    "subject, issuer, CA or leaf, and SHA-256 fingerprint.\n"
    "\n"
    "Options:\n"
    "  -h, --help   show this help\n";

/* Untrusted bytes of a certificate to the terminal: printable ASCII as is,
 * everything else as \xNN (an embedded NUL or escape sequence stays visible). */
static void print_escaped(const unsigned char *data, int len)
{
    for (int i = 0; i < len; i++) {
        unsigned char c = data[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

static void print_name(const char *label, const X509_NAME *name)
{
    printf("  %-20s ", label);
    if (X509_NAME_entry_count(name) == 0) {
        printf("(empty)\n");
        return;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    char *text = NULL;
    long n = 0;
    unsigned long flags = (XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV & ~XN_FLAG_SEP_MASK) |
                          XN_FLAG_SEP_CPLUS_SPC;
    if (bio != NULL && X509_NAME_print_ex(bio, name, 0, flags) >= 0 &&
        (n = BIO_get_mem_data(bio, &text)) > 0)
        print_escaped((const unsigned char *)text, (int)n);
    else
        printf("(unprintable)");
    printf("\n");
    BIO_free(bio);
}

static void print_sans(const X509 *cert, int is_ca)
{
    int crit = -1;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (names == NULL && crit != -1) {
        printf("  %-20s (subjectAltName does not parse)\n", "SPIFFE ID:");
        return;
    }
    int uris = 0, dns = 0, ips = 0;
    for (int pass = 0; pass < 3; pass++) {
        int count = 0;
        const char *label = pass == 0 ? "SPIFFE ID:" : pass == 1 ? "DNS names:" : "IP addresses:";
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
            int want = pass == 0 ? GEN_URI : pass == 1 ? GEN_DNS : GEN_IPADD;
            if (gn->type != want) continue;
            printf(count == 0 ? "  %-20s " : ", ", label);
            const ASN1_STRING *s = pass == 0   ? gn->d.uniformResourceIdentifier
                                   : pass == 1 ? gn->d.dNSName
                                               : gn->d.iPAddress;
            const unsigned char *data = ASN1_STRING_get0_data(s);
            int len = ASN1_STRING_length(s);
            char text[INET6_ADDRSTRLEN];
            if (pass == 2 && len == 4 && inet_ntop(AF_INET, data, text, sizeof text) != NULL)
                printf("%s", text);
            else if (pass == 2 && len == 16 &&
                     inet_ntop(AF_INET6, data, text, sizeof text) != NULL)
                printf("%s", text);
            else
                print_escaped(data, len);
            count++;
        }
        if (count > 0) printf("\n");
        if (pass == 0) uris = count;
        if (pass == 1) dns = count;
        if (pass == 2) ips = count;
    }
    if (uris == 0 && !is_ca) printf("  %-20s (none)\n", "SPIFFE ID:");
    if (!is_ca && uris > 1)
        printf("  %-20s %d URI SANs: not a valid X509-SVID (exactly one is required)\n",
               "warning:", uris);
    (void)dns;
    (void)ips;
    GENERAL_NAMES_free(names);
}

static int print_cert(X509 *cert, int index, int total, int64_t now)
{
    char serial[41], fp[96], nb_text[32], na_text[32], key[128], left[48];
    int64_t nb = 0, na = 0;
    int is_ca = X509_check_ca(cert) != 0;
    TSR_GUARD(ca_cert_serial_hex(cert, serial));
    TSR_GUARD(ca_cert_fingerprint(cert, fp));
    TSR_GUARD(ca_cert_validity(cert, &nb, &na));
    cg_format_time(nb, nb_text);
    cg_format_time(na, na_text);
    ca_key_describe(X509_get0_pubkey(cert), key, sizeof key);

    printf("Certificate %d of %d\n", index, total);
    print_sans(cert, is_ca);
    printf("  %-20s %s\n", "serial:", serial);
    printf("  %-20s %s\n", "not before:", nb_text);
    printf("  %-20s %s\n", "not after:", na_text);
    if (now >= na) {
        tsr_duration_format(now - na, left, sizeof left);
        printf("  %-20s expired %s ago\n", "remaining lifetime:", left);
    } else if (now < nb) {
        tsr_duration_format(nb - now, left, sizeof left);
        printf("  %-20s not valid yet (starts in %s)\n", "remaining lifetime:", left);
    } else {
        tsr_duration_format(na - now, left, sizeof left);
        printf("  %-20s %s\n", "remaining lifetime:", left);
    }
    printf("  %-20s %s\n", "key:", key);
    print_name("subject:", X509_get_subject_name(cert));
    print_name("issuer:", X509_get_issuer_name(cert));
    if (is_ca) {
        long pathlen = X509_get_pathlen(cert);
        char td[CA_TRUST_DOMAIN_MAX + 1];
        if (pathlen >= 0)
            printf("  %-20s CA (path length %ld)\n", "type:", pathlen);
        else
            printf("  %-20s CA (no path length limit)\n", "type:");
        if (ca_issuing_trust_domain(cert, td, sizeof td) == 0)
            printf("  %-20s URIs in %s only\n", "name constraints:", td);
    } else {
        printf("  %-20s leaf\n", "type:");
    }
    printf("  %-20s %s\n", "SHA-256 fingerprint:", fp);
    return 0;
}

static int looks_like(const uint8_t *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0) return 1;
    return 0;
}

int cg_cmd_inspect(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return CG_OK;
        }
        return cg_bad_option(CMD, argc, argv, c);
    }
    if (optind >= argc) return cg_usage_error(CMD, "missing the FILE to inspect");
    if (argc - optind > 1) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind + 1]);
    const char *path = argv[optind];

    int status = CG_FAIL;
    uint8_t *buf = NULL;
    size_t len = 0;
    STACK_OF(X509) *certs = NULL;
    X509 *one = NULL;
    if (tsr_read_file(path, CA_PEM_MAX_BYTES, &buf, &len) != 0) {
        cg_error(CMD, "%s", tsr_errmsg());
        goto out;
    }
    size_t start = 0;
    while (start < len && (buf[start] == ' ' || buf[start] == '\t' || buf[start] == '\r' ||
                           buf[start] == '\n'))
        start++;
    if (looks_like(buf, len, "PRIVATE KEY-----")) {
        cg_error(CMD, "%s holds a private key; inspect shows certificates (e.g. the .pem file "
                      "next to it)",
                 path);
        goto out;
    }
    if (len - start >= 5 && memcmp(buf + start, "-----", 5) == 0) {
        if (ca_certs_from_pem(buf, len, &certs) != 0) {
            cg_error(CMD, "%s: %s", path, tsr_errmsg());
            goto out;
        }
    } else if (len > 0 && buf[0] == 0x30) {
        if (ca_cert_from_der(buf, len, &one) != 0) {
            cg_error(CMD, "%s is neither PEM nor a DER certificate: %s", path, tsr_errmsg());
            goto out;
        }
        certs = sk_X509_new_null();
        if (certs == NULL || sk_X509_push(certs, one) <= 0) {
            cg_error(CMD, "out of memory");
            goto out;
        }
        one = NULL;
    } else {
        cg_error(CMD, "%s is not a certificate file (expected PEM \"-----BEGIN CERTIFICATE-----\" "
                      "or DER)",
                 path);
        goto out;
    }
    int64_t now = tsr_now_unix();
    int total = sk_X509_num(certs);
    printf("%s: %d certificate%s\n", path, total, total == 1 ? "" : "s");
    for (int i = 0; i < total; i++) {
        printf("\n");
        if (print_cert(sk_X509_value(certs, i), i + 1, total, now) != 0) {
            cg_error(CMD, "%s: certificate %d: %s", path, i + 1, tsr_errmsg());
            goto out;
        }
    }
    status = CG_OK;
out:
    free(buf);
    X509_free(one);
    sk_X509_pop_free(certs, X509_free);
    return status;
}
