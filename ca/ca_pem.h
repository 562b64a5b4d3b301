/* Bounded PEM/DER loading and serialization of certificates and keys. */
#ifndef CA_PEM_H
#define CA_PEM_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "tsr_err.h"

#define CA_PEM_MAX_BYTES (1024 * 1024)  /* any PEM file we read */
#define CA_PEM_MAX_CERTS 64             /* certificates per PEM file */
#define CA_CERT_MAX_DER 16384           /* one certificate */

/* Every CERTIFICATE block of `pem` (at least one, at most CA_PEM_MAX_CERTS).
 * Anything that is not whitespace or a CERTIFICATE block (other block types,
 * garbage between or after blocks, a truncated block) is TSR_E_INPUT. */
TSR_WUR int ca_certs_from_pem(const uint8_t *pem, size_t len, STACK_OF(X509) **out);
TSR_WUR int ca_certs_load_file(const char *path, STACK_OF(X509) **out);

/* One private key (PKCS#8 or traditional PEM, unencrypted). */
TSR_WUR int ca_key_from_pem(const uint8_t *pem, size_t len, EVP_PKEY **out);
TSR_WUR int ca_key_load_file(const char *path, EVP_PKEY **out);

/* PEM text into a fresh NUL-terminated malloc'd buffer. Key buffers hold
 * secrets: release them with ca_secret_free(). */
TSR_WUR int ca_cert_to_pem(X509 *cert, char **out, size_t *len);
/* The same text from a certificate's DER, byte for byte what ca_cert_to_pem
 * writes for the certificate those bytes encode. */
TSR_WUR int ca_cert_der_to_pem(const uint8_t *der, size_t der_len, char **out, size_t *len);
TSR_WUR int ca_certs_to_pem(STACK_OF(X509) *certs, char **out, size_t *len);
TSR_WUR int ca_key_to_pem(EVP_PKEY *key, char **out, size_t *len);   /* PKCS#8 */
void ca_secret_free(void *buf, size_t len);                           /* cleanse + free */

/* DER of one certificate, bounded by CA_CERT_MAX_DER. */
TSR_WUR int ca_cert_from_der(const uint8_t *der, size_t len, X509 **out);

/* Lowercase hex serial without leading zero bytes; "0" never occurs (serials
 * are positive). out must hold 2*20+1 bytes. */
TSR_WUR int ca_cert_serial_hex(const X509 *cert, char out[41]);
/* SHA-256 of the DER, lowercase hex with ':' separators (95 chars + NUL). */
TSR_WUR int ca_cert_fingerprint(const X509 *cert, char out[96]);
/* notBefore / notAfter as Unix seconds. */
TSR_WUR int ca_cert_validity(const X509 *cert, int64_t *not_before, int64_t *not_after);

#endif
