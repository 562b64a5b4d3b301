/* A minimal ustar writer for the identity archive (POSIX.1-1988 ustar
 * headers: 512-byte blocks, octal numeric fields, checksum over the header
 * with the checksum field read as spaces, two zero blocks at the end). */
#include "drv_docker.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAR_BLOCK 512u
/* Each file must fit the 11 octal digits of the size field; identity files
 * are far smaller (the driver refuses more than DRV_MAX_PEM). */
#define TAR_MAX_FILE (64u * 1024u * 1024u)

void dk_buf_free_secret(dk_buf *b)
{
    if (b == NULL) return;
    if (b->p != NULL) OPENSSL_cleanse(b->p, b->cap);
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static size_t tar_round(size_t n)
{
    return (n + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
}

/* `width - 1` zero-padded octal digits and a NUL; 0 if it does not fit. */
static int tar_octal(unsigned char *field, size_t width, uint64_t v)
{
    field[width - 1] = '\0';
    for (size_t i = width - 1; i > 0; i--) {
        field[i - 1] = (unsigned char)('0' + (v & 7u));
        v >>= 3;
    }
    return v == 0;
}

TSR_WUR static int tar_header(dk_buf *b, const char *name, unsigned mode, uint32_t uid,
                              uint32_t gid, size_t size, int64_t mtime, char type)
{
    TSR_ENSURE(b->len + TAR_BLOCK <= b->cap, TSR_E_INTERNAL, "tar buffer too small");
    unsigned char *h = b->p + b->len;
    memset(h, 0, TAR_BLOCK);
    size_t nl = strlen(name);
    TSR_ENSURE(nl > 0 && nl < 100, TSR_E_INTERNAL, "tar name too long: %s", name);
    memcpy(h, name, nl);
    TSR_ENSURE(tar_octal(h + 100, 8, mode) && tar_octal(h + 108, 8, uid) &&
                   tar_octal(h + 116, 8, gid) && tar_octal(h + 124, 12, size) &&
                   tar_octal(h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0) &&
                   tar_octal(h + 329, 8, 0) && tar_octal(h + 337, 8, 0),
               TSR_E_INTERNAL, "tar field out of range for %s", name);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6); /* magic "ustar\0" */
    memcpy(h + 263, "00", 2);    /* version */
    memset(h + 148, ' ', 8);
    uint32_t sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++) sum += h[i];
    TSR_ENSURE(tar_octal(h + 148, 7, sum), TSR_E_INTERNAL, "tar checksum");
    h[155] = ' '; /* "%06o\0 " as tar(1) writes it */
    b->len += TAR_BLOCK;
    return 0;
}

TSR_WUR static int tar_file(dk_buf *b, const char *name, const char *data, size_t len,
                            uint32_t uid, uint32_t gid, int64_t mtime)
{
    TSR_GUARD(tar_header(b, name, 0600, uid, gid, len, mtime, '0'));
    size_t padded = tar_round(len);
    TSR_ENSURE(b->len + padded <= b->cap, TSR_E_INTERNAL, "tar buffer too small");
    memcpy(b->p + b->len, data, len);
    memset(b->p + b->len + len, 0, padded - len);
    b->len += padded;
    return 0;
}

int dk_tar_identity(const tsr_driver_identity *ident, uint32_t uid, uint32_t gid, int64_t mtime,
                    dk_buf *out)
{
    int rc = -1;
    dk_buf b = {NULL, 0, 0};
    TSR_TRY_ENSURE(ident != NULL && ident->cert_pem != NULL && ident->key_pem != NULL &&
                       ident->bundle_pem != NULL,
                   TSR_E_INPUT, "identity incomplete");
    TSR_TRY_ENSURE(ident->cert_len <= TAR_MAX_FILE && ident->key_len <= TAR_MAX_FILE &&
                       ident->bundle_len <= TAR_MAX_FILE,
                   TSR_E_LIMIT, "identity file too large for the archive");
    size_t total = TAR_BLOCK /* identity/ */ + 3 * TAR_BLOCK + tar_round(ident->cert_len) +
                   tar_round(ident->key_len) + tar_round(ident->bundle_len) +
                   2 * TAR_BLOCK /* end of archive */;
    b.p = calloc(1, total);
    TSR_TRY_ENSURE(b.p != NULL, TSR_E_INTERNAL, "out of memory");
    b.cap = total;
    TSR_TRY(tar_header(&b, "identity/", 0700, uid, gid, 0, mtime, '5'));
    TSR_TRY(tar_file(&b, "identity/cert.pem", ident->cert_pem, ident->cert_len, uid, gid, mtime));
    TSR_TRY(tar_file(&b, "identity/key.pem", ident->key_pem, ident->key_len, uid, gid, mtime));
    TSR_TRY(tar_file(&b, "identity/bundle.pem", ident->bundle_pem, ident->bundle_len, uid, gid,
                     mtime));
    TSR_TRY_ENSURE(b.len + 2 * TAR_BLOCK == b.cap, TSR_E_INTERNAL, "tar size mismatch");
    memset(b.p + b.len, 0, 2 * TAR_BLOCK);
    b.len += 2 * TAR_BLOCK;
    *out = b;
    b.p = NULL;
    rc = 0;
out:
    dk_buf_free_secret(&b);
    return rc;
}
