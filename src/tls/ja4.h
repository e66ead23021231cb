/* ja4.h: JA4 TLS client fingerprints (FoxIO JA4, the BSD-3-licensed member of JA4+).
 *
 * JA4 is 36 characters, a_b_c, e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1":
 *   a  protocol ('t'), TLS version, 'd' if SNI is present else 'i', the number of
 *      cipher suites and of extensions (2 digits each, capped at 99) and the first and
 *      last character of the first ALPN protocol ("00" without ALPN);
 *   b  the first 12 hex digits of SHA-256 over the sorted cipher suites;
 *   c  the same over the sorted extension types (without SNI and ALPN), "_", and the
 *      signature algorithms in the client's order.
 * GREASE values are ignored everywhere (ciphers, extensions, supported_versions,
 * signature_algorithms). tests/unit/ja4_ref.py is the executable form of the rules.
 *
 * Called by the TLS listener once per connection, either on the raw first flight
 * (gh_ja4_from_client_hello: exact, no TLS library involved) or inside OpenSSL's
 * client-hello callback (gh_ja4_from_ssl). The fingerprint goes to the access log, the
 * rule engine and events. Both entry points fill a gh_ja4_fields_t and share one hashing
 * core, gh_ja4_from_fields, which a future QUIC or DTLS front end can call directly.
 * Uses only core/common.h and OpenSSL (libcrypto for SHA-256, libssl for the callback
 * accessors). Allocates one EVP_MD_CTX per fingerprint, plus buffers only for a hello
 * split across TLS records or carrying more than a few hundred ciphers and extensions. */
#ifndef GH_TLS_JA4_H
#define GH_TLS_JA4_H

#include "core/common.h"

#include <openssl/types.h>

#define GH_JA4_LEN 36  /* characters in a JA4 */
#define GH_JA4_SIZE 37 /* with the NUL */

/* The ClientHello fields JA4 reads, as views into the hello (or into OpenSSL's copy). */
typedef struct {
    char proto;              /* 't' TLS over TCP, 'q' QUIC (same version codes; no DTLS) */
    uint16_t legacy_version; /* ClientHello.legacy_version */
    const uint8_t *ciphers;  /* cipher_suites body: 2-byte big-endian values, GREASE included */
    size_t ciphers_len;      /* in bytes; must be even */
    const uint16_t *exts;    /* extension types in hello order, GREASE included */
    size_t nexts;
    /* Bodies of the extensions JA4 looks into. An extension counts as present when its
     * type is in exts; its body must then be given here (it is parsed strictly). */
    const uint8_t *supported_versions; /* 0x002b */
    size_t supported_versions_len;
    const uint8_t *alpn; /* 0x0010 */
    size_t alpn_len;
    const uint8_t *sigalgs; /* 0x000d */
    size_t sigalgs_len;
} gh_ja4_fields_t;

/* JA4 of the ClientHello at the start of p[0..n): a TLS record stream (0x16 ..., the hello
 * may span several handshake records) or a bare handshake message (0x01 ..., as OpenSSL's
 * msg_callback hands it over). Bytes after the hello are ignored. Writes 36 characters and
 * a NUL to out and returns 0; GH_EAGAIN when more bytes are needed (every proper prefix of
 * a hello answers GH_EAGAIN), GH_EINVAL when it is not a well-formed ClientHello (SSLv2
 * framing, a record that is not handshake, bad lengths, duplicate extensions, malformed
 * supported_versions, ALPN or signature_algorithms), GH_ENOMEM. */
int gh_ja4_from_client_hello(const uint8_t *p, size_t n, char out[GH_JA4_SIZE]);

/* JA4 from inside an SSL_CTX_set_client_hello_cb callback, through the
 * SSL_client_hello_get* accessors. Same result as the raw parser, with one caveat:
 * OpenSSL lists only the extensions it knows (built-in or registered as custom), so an
 * extension it does not parse, such as compress_certificate (0x001b) before OpenSSL 3.2,
 * ALPS (0x4469, 0x44cd) or ECH (0xfe0d), is missing from the count and from c, and the
 * fingerprint of a browser differs from gh_ja4_from_client_hello's. GREASE extensions are
 * missing too, which JA4 ignores anyway. gh_ja4_ssl_ctx_observe_exts() closes the gap for
 * the extension types it registers; capture the hello with SSL_CTX_set_msg_callback and
 * use the raw parser when every hello must be exact. With a HelloRetryRequest the callback
 * runs again for the second hello: fingerprint the first. GH_EINVAL outside the callback,
 * for an SSLv2-format hello, for DTLS, or as the raw parser; GH_ENOMEM. */
int gh_ja4_from_ssl(SSL *ssl, char out[GH_JA4_SIZE]);

/* Registers extension types as ClientHello custom extensions on ctx that are parsed (and
 * ignored) but never sent, so that OpenSSL reports them to gh_ja4_from_ssl. types NULL:
 * the types today's browsers and TLS stacks send that OpenSSL 3.0 does not parse (0x000f,
 * 0x0011, 0x0013, 0x0014, 0x0018, 0x0019, 0x001b, 0x001c, 0x0022, 0x4469, 0x44cd,
 * 0xfe0d). Types OpenSSL handles itself or that are already registered are skipped (a
 * later SSL_CTX_add_custom_ext of a type registered here fails). Side effect: a duplicate
 * of a registered type becomes a handshake error, as for built-in extensions. Call before
 * SSL_new. Returns how many types were registered, GH_EINVAL for a NULL ctx. */
int gh_ja4_ssl_ctx_observe_exts(SSL_CTX *ctx, const uint16_t *types, size_t n);

/* The shared core: JA4 of extracted fields. 0, GH_EINVAL (inconsistent fields, duplicate
 * extension, malformed body), GH_ENOMEM. */
int gh_ja4_from_fields(const gh_ja4_fields_t *f, char out[GH_JA4_SIZE]);

#endif
