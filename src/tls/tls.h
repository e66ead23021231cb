/* tls.h: TLS for gatehouse on OpenSSL 3.0: terminating TLS on client connections
 * (gh_tls_server_t: certificates chosen by SNI, ALPN, rotating session-ticket keys)
 * and originating TLS to backends (gh_tls_client_t: verification, SNI, mTLS, ALPN,
 * session reuse), with non-blocking I/O helpers over a connected non-blocking fd.
 *
 * Called by the session and upstream code (src/proxy) and built from the
 * configuration snapshot (src/config); includes only core. A gh_tls_server_t and a
 * gh_tls_client_t are immutable once built and shared by all worker threads; an SSL
 * belongs to the thread that drives its fd. The caller ignores SIGPIPE (main.c does):
 * OpenSSL writes to the socket with write(2).
 *
 * Lifetimes and reload. gh_tls_server_free() and gh_tls_client_free() only drop the
 * caller's reference: every SSL made from one keeps what it needs (its SSL_CTX, the
 * certificates, the SNI table, the ALPN list) alive through OpenSSL's refcount until
 * SSL_free(). A reload
 * builds a new object from the new configuration, new connections use it, and
 * connections in flight finish on the old one; nothing is dropped.
 *
 * Session tickets use one process-wide key ring shared by every gh_tls_server_t, so a
 * client resumes across reloads. The caller rotates it on a timer
 * (gh_tls_ticket_rotate(), e.g. every 12 h); the current key encrypts, it and the
 * GH_TLS_TICKET_KEYS - 1 previous keys decrypt. A ticket is only accepted by a
 * certificate with the same server names it was issued for (the session id context is
 * derived from the names), so one tenant's ticket never resumes on another's
 * certificate. There is no server-side session cache (tickets only), and no 0-RTT.
 *
 * Per-connection data: SSL_set_app_data()/SSL_get_app_data() (ex_data index 0) belong
 * to the caller; this module never touches them. Set them right after
 * gh_tls_server_ssl()/gh_tls_client_ssl() and they are visible to the on_hello
 * observer as well.
 *
 * Return codes: 0 or a byte count on success; GH_EAGAIN when the socket would block
 * (gh_tls_want() says for which direction; wait for it even on a read, since TLS
 * can need to write while reading and the other way round); GH_ECLOSED when the
 * peer went away without close_notify (EOF or reset); GH_EINVAL on a server
 * connection whose first bytes are not TLS (gh_tls_plain_http() tells whether they
 * look like an HTTP request); GH_EIO for any other TLS or socket failure. After a
 * failure, gh_tls_strerror() on the same thread says why, in one short line.
 *
 * Memory an idle connection keeps after its handshake (OpenSSL 3.0, buffers released
 * while idle; measured by test_idle_memory): ~14 KB server side; client side ~23 KB
 * with TLS 1.2 and ~40 KB with TLS 1.3 when the backend sends tickets, because
 * OpenSSL keeps its 16 KiB handshake-message buffer after reading a NewSessionTicket. */
#ifndef GH_TLS_TLS_H
#define GH_TLS_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/common.h"

/* Ticket keys kept: the current one and GH_TLS_TICKET_KEYS - 1 previous ones. */
#define GH_TLS_TICKET_KEYS 4

/* TLS 1.2 cipher list used when none is configured: forward secrecy (ECDHE) and AEAD
 * only, in Mozilla's "intermediate" order. TLS 1.3 suites are OpenSSL's defaults (all
 * AEAD) unless configured. */
#define GH_TLS_DEFAULT_CIPHERS                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                       \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                       \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Key-exchange groups offered and accepted. No finite-field groups: a client must not
 * be able to make us compute 8192-bit DH. */
#define GH_TLS_GROUPS "X25519:P-256:P-384"

/* ---- server side ------------------------------------------------------------------ */

/* One certificate. */
typedef struct {
    const char *cert_file;    /* PEM: the leaf first, then its intermediates */
    const char *key_file;     /* PEM private key, not encrypted */
    const char *const *names; /* server names it answers ("a.test", "*.b.test"); when
                                 nnames is 0, the certificate's subjectAltName DNS
                                 entries, or its CN when it has none */
    size_t nnames;
} gh_tls_cert_conf_t;

/* How a server connection's certificate was chosen (gh_tls_server_name()). */
enum {
    GH_TLS_SNI_NONE = 0,  /* the client sent no SNI: the default certificate */
    GH_TLS_SNI_EXACT,     /* SNI equals one of the certificate's names */
    GH_TLS_SNI_WILDCARD,  /* SNI matched "*.example.com" (exactly one label) */
    GH_TLS_SNI_DEFAULT,   /* SNI matched nothing: the default certificate */
};

typedef struct {
    const gh_tls_cert_conf_t *certs;
    size_t ncerts;
    size_t default_cert; /* index into certs used without SNI or when nothing matches */
    /* ALPN protocols in server preference order ({"h2", "http/1.1"}), or none. When the
     * client offers ALPN but none of ours, the handshake goes on without ALPN (the
     * caller then speaks HTTP/1.1, as with a client that sends no ALPN), because old
     * clients and health checkers offer odd lists; set alpn_strict to refuse such a
     * client with the no_application_protocol alert instead (nginx >= 1.21.4 does,
     * against cross-protocol attacks). */
    const char *const *alpn;
    size_t nalpn;
    int alpn_strict;
    int min_version;          /* TLS1_2_VERSION (default when 0) or TLS1_3_VERSION */
    int max_version;          /* 0: the highest OpenSSL knows (TLS 1.3) */
    const char *ciphers;      /* TLS 1.2 cipher list; NULL: GH_TLS_DEFAULT_CIPHERS */
    const char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's default */
    int no_tickets;           /* 1: issue no session tickets (no resumption at all) */
    /* Observer called from the client-hello callback, once per handshake, before the
     * handshake goes on (the place for gh_ja4_from_ssl(); SSL_client_hello_get0_*()
     * work there). gh_tls_server_name() already answers. Runs on the worker thread
     * that drives the connection; must not block. */
    void (*on_hello)(SSL *ssl, void *arg);
    void *on_hello_arg;
} gh_tls_server_conf_t;

typedef struct gh_tls_server gh_tls_server_t;

/* Builds a server from conf (copied: conf may be freed after). NULL on error, with a
 * message in err naming the file and the reason ("cert.pem: No such file or
 * directory", "key.pem: key does not match certificate cert.pem", "cert.pem: no
 * certificate found (no start line)"). Also creates the process-wide ticket key ring
 * on first use. */
gh_tls_server_t *gh_tls_server_new(const gh_tls_server_conf_t *conf, char *err, size_t errlen);

/* Drops the caller's reference; connections made from srv keep working. */
void gh_tls_server_free(gh_tls_server_t *srv);

/* A server SSL over the connected non-blocking fd (the fd stays the caller's: SSL_free
 * does not close it). NULL when out of memory. Drive it with gh_tls_handshake(). */
SSL *gh_tls_server_ssl(gh_tls_server_t *srv, int fd);

/* Index in conf->certs of the certificate chosen for this connection, -1 before the
 * ClientHello was seen. *match (may be NULL) gets a GH_TLS_SNI_* value. */
int gh_tls_server_name(const SSL *ssl, int *match);

/* The SNI host name the client sent (as sent, not lower-cased), or NULL. Valid once
 * the handshake is done. Client input: OpenSSL only checked its length and that it
 * has no NUL byte. */
const char *gh_tls_sni(const SSL *ssl);

/* 1 when gh_tls_handshake() failed with GH_EINVAL because the first bytes look like
 * a plain HTTP request (an uppercase method): the caller may answer 400 "plain HTTP
 * request was sent to HTTPS port" in clear text. Nothing was consumed from the fd (the
 * bytes were only peeked), so the request can even be read and parsed. */
int gh_tls_plain_http(const SSL *ssl);

/* Generates a new current ticket key; the previous ones stay for decryption (a
 * ticket encrypted under an older key is accepted and replaced by a fresh one).
 * Thread-safe against handshakes in flight. 0 or GH_EIO (no randomness). */
int gh_tls_ticket_rotate(void);

/* Wipes the ticket keys and frees the module's global state. At process exit only,
 * after every server and SSL is freed (keeps leak checkers quiet). */
void gh_tls_cleanup(void);

/* ---- client (upstream) side -------------------------------------------------------- */

typedef struct {
    /* Verification. Unless insecure, the backend's chain is verified against ca_file
     * and/or the system store (the hashed directory /etc/ssl/certs, or SSL_CERT_DIR),
     * and its name against the name given to gh_tls_client_ssl(). With neither
     * ca_file nor system_ca the system store is used: verification is never off by
     * omission. */
    const char *ca_file;
    int system_ca;
    int insecure; /* no verification at all (test backends, private links) */
    const char *cert_file, *key_file; /* client certificate for mTLS, or NULL */
    const char *const *alpn;          /* offered, in preference order; or none */
    size_t nalpn;
    int min_version;          /* TLS1_2_VERSION (default when 0) or TLS1_3_VERSION */
    int max_version;          /* 0: the highest */
    const char *ciphers;      /* TLS 1.2; NULL: GH_TLS_DEFAULT_CIPHERS */
    const char *ciphersuites; /* TLS 1.3; NULL: OpenSSL's default */
    /* Session reuse: the last session of each (session key, name) is kept in the
     * client, up to this many backends (least recently stored dropped first).
     * 0: 256; -1: no resumption. */
    int session_cache;
} gh_tls_client_conf_t;

typedef struct gh_tls_client gh_tls_client_t;

/* Builds a client from conf (copied). NULL on error with a message in err. */
gh_tls_client_t *gh_tls_client_new(const gh_tls_client_conf_t *conf, char *err, size_t errlen);

/* Drops the caller's reference (cached sessions go with the last SSL). */
void gh_tls_client_free(gh_tls_client_t *cl);

/* A client SSL over the connected non-blocking fd. name is the backend's host name,
 * sent as SNI and verified against the certificate (no partial wildcards); an IP
 * literal ("10.0.0.5", "::1" or "[::1]") is verified against the certificate's IP
 * addresses and sends no SNI (RFC 6066 forbids it); NULL sends no SNI and verifies
 * the chain only. session_key names the backend for session reuse (e.g. its
 * "addr:port"; NULL: name; both NULL: no reuse): a session is offered again only to
 * the same key and name, so that a session verified for one name never skips
 * verification for another. NULL when out of memory or name is invalid (empty or
 * longer than 255 bytes). */
SSL *gh_tls_client_ssl(gh_tls_client_t *cl, int fd, const char *name, const char *session_key);

/* Whether a TLS 1.2 cipher list and TLS 1.3 suites (either NULL: the default) are
 * usable, for configuration checks. 0, or GH_ECONFIG with the reason in err. */
int gh_tls_check_settings(const char *ciphers, const char *suites, char *err, size_t errlen);

/* ---- I/O on either side ------------------------------------------------------------ */

enum { GH_TLS_WANT_READ = 1, GH_TLS_WANT_WRITE = 2 };

/* Advances the handshake: 0 once complete, GH_EAGAIN (see gh_tls_want()), or an error.
 * A server connection peeks at the first bytes before starting (one recv(MSG_PEEK)
 * per connection, as nginx does) and fails with GH_EINVAL when they are not a TLS
 * record, without sending anything. */
int gh_tls_handshake(SSL *ssl);

/* After GH_EAGAIN (or a short count): GH_TLS_WANT_READ or GH_TLS_WANT_WRITE. */
int gh_tls_want(const SSL *ssl);

/* 1 when OpenSSL holds received bytes not yet returned by gh_tls_read(). */
int gh_tls_pending(const SSL *ssl);

/* Reads up to n > 0 bytes: as many as are there, record after record, so that a short
 * count means nothing more can be read now (the edge-triggered loop's rule for
 * read(2); as after GH_EAGAIN, gh_tls_want() says which readiness to wait for, and it
 * is read unless TLS itself must write). Data that arrived before a close or an error
 * is returned first; the close or error comes with the next call: 0 on close_notify,
 * GH_EAGAIN, GH_ECLOSED (EOF or reset without close_notify: a truncation unless the
 * HTTP framing says the message was complete), or GH_EIO. Call gh_tls_handshake()
 * to completion first. */
ssize_t gh_tls_read(SSL *ssl, void *buf, size_t n);

/* Writes up to n bytes, one record (16 KiB) per SSL_write, until the socket is full:
 * returns the count accepted (short means the socket is full, like write(2)),
 * GH_EAGAIN when not one byte was accepted, or an error (GH_ECLOSED when the peer
 * reset). After a short count or GH_EAGAIN, OpenSSL may hold an encrypted record made
 * of the next bytes: the next call must pass those same bytes again, at least as many
 * of them (up to 16 KiB) as before (the buffer may have moved, and may have grown). */
ssize_t gh_tls_write(SSL *ssl, const void *buf, size_t n);

/* Sends close_notify without waiting for the peer's: 0 (sent, or nothing to do because
 * the handshake never finished or failed), GH_EAGAIN (want write; calling it again is
 * optional), or an error. Call before SSL_free() on a clean close. */
int gh_tls_shutdown(SSL *ssl);

/* ---- what was negotiated ----------------------------------------------------------- */

/* The ALPN protocol selected ("h2", "http/1.1": one of the configured strings), or
 * NULL when none was. */
const char *gh_tls_alpn(const SSL *ssl);

/* "TLSv1.2", "TLSv1.3". */
const char *gh_tls_version(const SSL *ssl);

/* OpenSSL's cipher name ("TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"). */
const char *gh_tls_cipher(const SSL *ssl);

/* 1 when the handshake resumed a session (ticket), else 0. */
int gh_tls_resumed(const SSL *ssl);

/* Why the last call failed on this thread, in one line for the error log: the
 * certificate verification result when that failed ("certificate verify failed:
 * hostname mismatch"), then OpenSSL's error queue ("unexpected eof while reading",
 * "no shared cipher"), which it drains. ssl may be NULL. Never contains key material.
 * Returns buf. */
const char *gh_tls_strerror(const SSL *ssl, char *buf, size_t n);

#endif
