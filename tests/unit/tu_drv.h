/* Test utilities for the driver plugins: a sandbox identity (root CA, leaf
 * with one URI SAN, its key) as the gateway would hand it to a driver, and
 * small file-system helpers. */
#ifndef TU_DRV_H
#define TU_DRV_H

#include "tu_fs.h"

#include <stddef.h>

typedef struct tu_ident {
    char *cert;   /* leaf then root, PEM */
    size_t cert_len;
    char *key;    /* PKCS#8 PEM */
    size_t key_len;
    char *bundle; /* root, PEM */
    size_t bundle_len;
} tu_ident;

/* A fresh identity whose leaf has exactly the URI SAN `uri` (NULL: none).
 * 0 on success. */
int tu_ident_make(tu_ident *out, const char *uri);
void tu_ident_free(tu_ident *id);


/* Whole file into a NUL-terminated malloc'd buffer; NULL if unreadable. */
char *tu_slurp(const char *path, size_t *len);

/* 1 if `needle` (nlen bytes) occurs in hay. */
int tu_contains(const char *hay, size_t hay_len, const char *needle, size_t nlen);

/* 1 if the blob holds a PEM private-key header or any base64 line of key. */
int tu_has_key_bytes(const char *blob, size_t blob_len, const char *key);

/* A random lowercase UUID (version 4) into out[37]. */
void tu_uuid(char out[37]);

#endif
