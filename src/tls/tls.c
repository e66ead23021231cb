/* tls.c: see tls.h.
 *
 * Server certificates. One SSL_CTX per gh_tls_server_t carries the protocol settings
 * and callbacks; the certificates are loaded once (X509, EVP_PKEY, chain: immutable,
 * refcounted, shared by all threads) and the one chosen by SNI is installed on the
 * connection from the client-hello callback with SSL_use_cert_and_key(). We prefer
 * this to the SSL_set_SSL_CTX() switch of nginx and HAProxy because:
 *  - an SSL_CTX costs ~13 KB before its certificate (measured on OpenSSL 3.0), which
 *    for thousands of tenant certificates is real memory, while a loaded certificate
 *    costs only itself;
 *  - SSL_set_SSL_CTX() carries over only the certificate and the session id context;
 *    options, cipher lists and versions stay those of the first SSL_CTX, and ALPN and
 *    client-hello callbacks are read from the new one, so every per-certificate
 *    SSL_CTX would have to be kept identical by hand;
 *  - with one SSL_CTX the object that owns the SNI table is simply the SSL_CTX's ex
 *    data, kept alive by the SSL_CTX refcount that every SSL holds (see reload below).
 * The cost is one SSL_use_cert_and_key() per handshake (a key/certificate consistency
 * check and chain up-refs, microseconds next to the handshake's signature).
 *
 * Reload. The gh_tls_server_t (and a gh_tls_client_t likewise) is attached to its
 * SSL_CTX as ex data whose free function runs when the SSL_CTX's last reference goes:
 * gh_tls_server_free() is SSL_CTX_free(), and each SSL holds a reference until
 * SSL_free(). Callbacks of a connection made before a reload therefore never see
 * freed memory.
 *
 * Session tickets. Keys live in one static ring (no allocation) behind a rwlock:
 * handshakes on all worker threads take the read lock for a 80-byte copy, rotation
 * takes the write lock every few hours. An atomic pointer swap would need a grace
 * period before the old ring could be freed; a rwlock read acquisition per
 * handshake is noise next to the handshake. */
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/common.h"
#include "tls/ja4.h"

/* ---- module state ------------------------------------------------------------------ */

typedef struct {
    unsigned char name[16]; /* sent in the clear in the ticket: random, not derived */
    unsigned char aes[32];
    unsigned char hmac[32];
} tkey_t;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_ready;
static int g_srv_idx = -1;   /* SSL_CTX ex data: the gh_tls_server_t it owns */
static int g_cli_idx = -1;   /* SSL_CTX ex data: the gh_tls_client_t it owns */
static int g_state_idx = -1; /* SSL ex data: server connection state word */
static int g_skey_idx = -1;  /* SSL ex data: client session-cache key (malloc'd) */
static EVP_CIPHER *g_aes;    /* fetched once: an implicit fetch per ticket costs locks */

static pthread_rwlock_t g_ring_lock = PTHREAD_RWLOCK_INITIALIZER;
static tkey_t g_ring[GH_TLS_TICKET_KEYS]; /* [0] is current */
static int g_nring;

static void srv_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp);
static void cli_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp);
static void skey_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp)
{
    free(ptr);
}

static int ring_push(void)
{
    tkey_t k;
    if (RAND_bytes(k.name, sizeof k.name) <= 0 || RAND_priv_bytes(k.aes, sizeof k.aes) <= 0 ||
        RAND_priv_bytes(k.hmac, sizeof k.hmac) <= 0) {
        OPENSSL_cleanse(&k, sizeof k);
        ERR_clear_error();
        return GH_EIO;
    }
    pthread_rwlock_wrlock(&g_ring_lock);
    memmove(&g_ring[1], &g_ring[0], sizeof(tkey_t) * (GH_TLS_TICKET_KEYS - 1));
    g_ring[0] = k;
    if (g_nring < GH_TLS_TICKET_KEYS)
        g_nring++;
    pthread_rwlock_unlock(&g_ring_lock);
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}

static void global_init(void)
{
    g_srv_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, srv_ctx_free);
    g_cli_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, cli_ctx_free);
    g_state_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    g_skey_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, skey_free);
    g_aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    g_ready = g_srv_idx >= 0 && g_cli_idx >= 0 && g_state_idx >= 0 && g_skey_idx >= 0 &&
              g_aes && ring_push() == 0;
    ERR_clear_error();
}

static int init(char *err, size_t errlen)
{
    pthread_once(&g_once, global_init);
    if (!g_ready)
        snprintf(err, errlen, "TLS initialisation failed (OpenSSL)");
    return g_ready ? 0 : GH_EIO;
}

int gh_tls_ticket_rotate(void)
{
    pthread_once(&g_once, global_init);
    return g_ready ? ring_push() : GH_EIO;
}

void gh_tls_cleanup(void)
{
    pthread_rwlock_wrlock(&g_ring_lock);
    OPENSSL_cleanse(g_ring, sizeof g_ring);
    g_nring = 0;
    pthread_rwlock_unlock(&g_ring_lock);
    EVP_CIPHER_free(g_aes);
    g_aes = NULL;
    g_ready = 0;
}

/* OpenSSL's session-ticket key callback (RFC 5077 layout: 16-byte key name, IV,
 * AES-256-CBC, HMAC-SHA256). Returns 1 (use), 2 (decrypted under an old key: accept and
 * issue a fresh ticket), 0 (unknown key: full handshake) or -1. */
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    tkey_t k;
    int which = -1;
    pthread_rwlock_rdlock(&g_ring_lock);
    if (enc) {
        if (g_nring > 0)
            which = 0;
    } else {
        for (int i = 0; i < g_nring; i++)
            if (memcmp(name, g_ring[i].name, sizeof k.name) == 0) {
                which = i;
                break;
            }
    }
    if (which >= 0)
        k = g_ring[which];
    pthread_rwlock_unlock(&g_ring_lock);
    if (which < 0 || !g_aes)
        return enc ? -1 : 0;

    int ok;
    if (enc) {
        memcpy(name, k.name, sizeof k.name);
        ok = RAND_bytes(iv, EVP_CIPHER_get_iv_length(g_aes)) > 0 &&
             EVP_EncryptInit_ex(cctx, g_aes, NULL, k.aes, iv);
    } else {
        ok = EVP_DecryptInit_ex(cctx, g_aes, NULL, k.aes, iv);
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    ok = ok && EVP_MAC_CTX_set_params(hctx, params);
    OPENSSL_cleanse(&k, sizeof k);
    if (!ok)
        return -1;
    /* 2 on every decrypt: the ticket is good and a fresh one is issued. Clients use a
     * TLS 1.3 ticket once (RFC 8446 C.4), so without a replacement every other
     * connection would be a full handshake; for an old key it also moves the client on. */
    (void)which;
    return enc ? 1 : 2;
}

/* ---- errors ------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static size_t append(char *buf, size_t n, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t append(char *buf, size_t n, size_t off, const char *fmt, ...)
{
    if (off >= n)
        return off;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + off, n - off, fmt, ap);
    va_end(ap);
    if (k < 0)
        return off;
    return GH_MIN(off + (size_t)k, n - 1);
}

const char *gh_tls_strerror(const SSL *ssl, char *buf, size_t n)
{
    if (!buf || !n)
        return buf;
    buf[0] = '\0';
    size_t off = 0;
    int verify_failed = 0;
    if (ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
            off = append(buf, n, off, "certificate verify failed: %s",
                         X509_verify_cert_error_string(v));
            verify_failed = 1;
        }
    }
    const char *data;
    int flags, shown = 0;
    unsigned long e;
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (shown >= 4)
            continue; /* keep draining, stop printing */
        if (verify_failed && ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
            continue;
        const char *r = ERR_reason_error_string(e);
        if (r)
            off = append(buf, n, off, "%s%s", off ? ": " : "", r);
        else
            off = append(buf, n, off, "%serror %lx", off ? ": " : "", e);
        if ((flags & ERR_TXT_STRING) && data && *data)
            off = append(buf, n, off, " (%.80s)", data);
        shown++;
    }
    if (off == 0)
        append(buf, n, 0, "no detail from OpenSSL");
    return buf;
}

/* "<file>: <reason>" for a failed BIO_new_file(): the system error when there is one. */
static void file_err(char *err, size_t errlen, const char *path)
{
    unsigned long e;
    int sys = 0;
    while ((e = ERR_get_error()) != 0)
        if (!sys && ERR_GET_LIB(e) == ERR_LIB_SYS)
            sys = ERR_GET_REASON(e);
    set_err(err, errlen, "%s: %s", path, sys ? strerror(sys) : "cannot open");
}

/* Never prompt on a terminal for an encrypted key: refuse it. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* ---- certificates ------------------------------------------------------------------ */

typedef struct {
    X509 *x;
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* intermediates, or NULL */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
} cert_t;

static void cert_clear(cert_t *c)
{
    X509_free(c->x);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    memset(c, 0, sizeof *c);
}

/* A PEM source: a file name, or the PEM text itself ("-----BEGIN ...", as the admin API
 * stores certificates); name is what errors call it (never the text: it may hold a key). */
static BIO *pem_open(const char *src, const char *what, const char **name)
{
    if (!strncmp(src, "-----BEGIN", 10)) {
        *name = what;
        return BIO_new_mem_buf(src, -1);
    }
    *name = src;
    return BIO_new_file(src, "r");
}

/* Loads a PEM chain (leaf first) and its key, and checks that they match. */
static int load_cert_key(cert_t *c, const char *cert_src, const char *key_src, char *err,
                         size_t errlen)
{
    char why[200];
    const char *cert_file = cert_src, *key_file = key_src;
    ERR_clear_error();
    BIO *b = pem_open(cert_src, "the inline certificate", &cert_file);
    if (!b) {
        file_err(err, errlen, cert_file);
        return GH_ECONFIG;
    }
    c->x = PEM_read_bio_X509_AUX(b, NULL, no_password, NULL);
    if (!c->x) {
        BIO_free(b);
        set_err(err, errlen, "%s: no certificate found (%s)", cert_file,
                gh_tls_strerror(NULL, why, sizeof why));
        return GH_ECONFIG;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        if ((!c->chain && !(c->chain = sk_X509_new_null())) || !sk_X509_push(c->chain, ca)) {
            X509_free(ca);
            BIO_free(b);
            set_err(err, errlen, "%s: out of memory", cert_file);
            return GH_ENOMEM;
        }
    }
    /* The loop ends at the end of the file (no start line) or on a broken block. */
    unsigned long e = ERR_peek_last_error();
    BIO_free(b);
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        set_err(err, errlen, "%s: bad certificate after the first (%s)", cert_file,
                gh_tls_strerror(NULL, why, sizeof why));
        return GH_ECONFIG;
    }
    ERR_clear_error();

    if (!key_file) {
        set_err(err, errlen, "%s: no key file given", cert_file);
        return GH_ECONFIG;
    }
    b = pem_open(key_src, "the inline key", &key_file);
    if (!b) {
        file_err(err, errlen, key_file);
        return GH_ECONFIG;
    }
    c->key = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
    BIO_free(b);
    if (!c->key) {
        gh_tls_strerror(NULL, why, sizeof why);
        set_err(err, errlen, "%s: no usable private key (%s)", key_file,
                strstr(why, "passphrase") || strstr(why, "password") ||
                        strstr(why, "decrypt")
                    ? "encrypted keys are not supported"
                    : why);
        return GH_ECONFIG;
    }
    if (!X509_check_private_key(c->x, c->key)) {
        ERR_clear_error();
        set_err(err, errlen, "%s: key does not match certificate %s", key_file, cert_file);
        return GH_ECONFIG;
    }
    return 0;
}

/* Lower-cases a server name and checks it; a leading "*." makes it a wildcard (one
 * label) and is removed. Returns the length, or -1 when not a name we can match. */
static int norm_name(const char *in, size_t len, char *out, size_t outlen, int *wild)
{
    *wild = 0;
    if (len >= 2 && in[0] == '*' && in[1] == '.') {
        *wild = 1;
        in += 2;
        len -= 2;
    }
    if (len == 0 || len > 253 || len >= outlen)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                   ch == '.' || ch == '_'))
            return -1;
        out[i] = ch;
    }
    out[len] = '\0';
    return (int)len;
}

typedef struct {
    char *name; /* normalized; for a wildcard the part after "*." */
    uint32_t cert;
} name_t;

typedef struct {
    name_t *v;
    size_t n, cap;
} names_t;

static int names_add(names_t *t, const char *name, uint32_t cert)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        name_t *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return GH_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    if (!(t->v[t->n].name = strdup(name)))
        return GH_ENOMEM;
    t->v[t->n++].cert = cert;
    return 0;
}

static void names_free(names_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    memset(t, 0, sizeof *t);
}

static int name_cmp(const void *a, const void *b)
{
    const name_t *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->cert > y->cert) - (x->cert < y->cert);
}

/* Sorts for bsearch and drops duplicates: the first certificate in the configuration
 * that claims a name keeps it. */
static void names_finish(names_t *t)
{
    if (t->n == 0)
        return;
    qsort(t->v, t->n, sizeof *t->v, name_cmp);
    size_t w = 1;
    for (size_t i = 1; i < t->n; i++) {
        if (strcmp(t->v[i].name, t->v[w - 1].name) == 0)
            free(t->v[i].name);
        else
            t->v[w++] = t->v[i];
    }
    t->n = w;
}

static const name_t *names_find(const names_t *t, const char *name)
{
    name_t key = {.name = (char *)name, .cert = 0};
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(key.name, t->v[mid].name);
        if (r == 0)
            return &t->v[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The names a certificate answers when none are configured: subjectAltName DNS
 * entries, else the last CN (what browsers did before SANs were required), added to
 * the exact or wildcard table; entries we cannot match (odd wildcards, NULs) are
 * skipped. *count says how many were added. */
static int cert_names(X509 *x, names_t *exact, names_t *wild, uint32_t cert, size_t *count)
{
    char norm[256];
    int w, rc = 0;
    *count = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const char *p = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        if (len <= 0 || memchr(p, 0, (size_t)len) ||
            norm_name(p, (size_t)len, norm, sizeof norm, &w) < 0)
            continue;
        rc = names_add(w ? wild : exact, norm, cert);
        (*count)++;
    }
    GENERAL_NAMES_free(gens);
    if (rc || *count)
        return rc;
    X509_NAME *subj = X509_get_subject_name(x);
    int last = -1;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;)
        last = i;
    if (last < 0)
        return 0;
    unsigned char *u = NULL;
    int len = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
    if (len > 0 && !memchr(u, 0, (size_t)len) &&
        norm_name((const char *)u, (size_t)len, norm, sizeof norm, &w) >= 0) {
        rc = names_add(w ? wild : exact, norm, cert);
        (*count)++;
    }
    OPENSSL_free(u);
    return rc;
}

/* ---- ALPN and shared settings ------------------------------------------------------ */

typedef struct {
    unsigned char *wire; /* length-prefixed, as on the wire */
    size_t wirelen;
    char **names; /* NUL-terminated copies: what gh_tls_alpn() returns */
    size_t n;
} alpn_t;

static void alpn_free(alpn_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->names[i]);
    free(a->names);
    free(a->wire);
    memset(a, 0, sizeof *a);
}

static int alpn_build(alpn_t *a, const char *const *protos, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = protos[i] ? strlen(protos[i]) : 0;
        if (len == 0 || len > 255) {
            set_err(err, errlen, "alpn: protocol name must be 1 to 255 bytes");
            return GH_ECONFIG;
        }
        total += 1 + len;
    }
    if (total > 65535) {
        set_err(err, errlen, "alpn: list too long");
        return GH_ECONFIG;
    }
    if (!(a->wire = malloc(total)) || !(a->names = calloc(n, sizeof *a->names)))
        return GH_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(protos[i]);
        a->wire[off++] = (unsigned char)len;
        memcpy(a->wire + off, protos[i], len);
        off += len;
        if (!(a->names[i] = strdup(protos[i])))
            return GH_ENOMEM;
        a->n = i + 1;
    }
    a->wirelen = total;
    return 0;
}

static const char *alpn_lookup(const alpn_t *a, const unsigned char *p, unsigned len)
{
    for (size_t i = 0; i < a->n; i++)
        if (strlen(a->names[i]) == len && memcmp(a->names[i], p, len) == 0)
            return a->names[i];
    return NULL;
}

static int version_ok(int v)
{
    return v == 0 || v == TLS1_2_VERSION || v == TLS1_3_VERSION;
}

/* Settings both sides share. */
static int ctx_common(SSL_CTX *ctx, int min, int max, const char *ciphers, const char *suites,
                      char *err, size_t errlen)
{
    if (!version_ok(min) || !version_ok(max) || (max && max < (min ? min : TLS1_2_VERSION))) {
        set_err(err, errlen, "min/max version: TLS 1.2 or 1.3, min <= max");
        return GH_ECONFIG;
    }
    SSL_CTX_set_min_proto_version(ctx, min ? min : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max);
    if (!SSL_CTX_set_cipher_list(ctx, ciphers ? ciphers : GH_TLS_DEFAULT_CIPHERS)) {
        ERR_clear_error();
        set_err(err, errlen, "ciphers \"%s\": no usable cipher", ciphers ? ciphers : "");
        return GH_ECONFIG;
    }
    if (suites && !SSL_CTX_set_ciphersuites(ctx, suites)) {
        ERR_clear_error();
        set_err(err, errlen, "ciphersuites \"%s\": no usable suite", suites);
        return GH_ECONFIG;
    }
    if (!SSL_CTX_set1_groups_list(ctx, GH_TLS_GROUPS)) {
        ERR_clear_error();
        set_err(err, errlen, "groups: not supported by this OpenSSL");
        return GH_ECONFIG;
    }
    /* Read-ahead: one read(2) takes the record header and body (and whatever follows)
     * instead of two small reads per record. gh_tls_read drains until OpenSSL wants
     * more from the socket, so nothing waits in its buffer unseen by the event loop. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Renegotiation is a DoS lever and HTTP/2 forbids it; compression is CRIME. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* PARTIAL_WRITE + MOVING_WRITE_BUFFER: gh_tls_write() returns what was accepted and
     * the caller's buffer may be compacted between calls. RELEASE_BUFFERS: an idle
     * connection holds no 16 KiB read/write buffers (an idle server connection keeps
     * ~14 KB instead of ~48 KB: test_idle_memory in tests/unit/test_tls.c).
     * NO_AUTO_CHAIN: send exactly the chain in the PEM file instead of building one
     * from a store on every handshake. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    return 0;
}

/* ---- server ------------------------------------------------------------------------ */

struct gh_tls_server {
    SSL_CTX *ctx; /* owns this struct (ex data freed with it) */
    cert_t *certs;
    size_t ncerts, def;
    names_t exact, wild;
    alpn_t alpn;
    int alpn_strict;
    void (*on_hello)(SSL *ssl, void *arg);
    void *on_hello_arg;
};

/* The server state word kept in the SSL's ex data (no allocation per connection). */
#define ST_SEEN 0x1u       /* ClientHello handled */
#define ST_MATCH_SHIFT 1   /* 2 bits: GH_TLS_SNI_* */
#define ST_PLAIN 0x8u      /* first bytes were plain HTTP */
#define ST_DRAINED 0x10u   /* the socket's last read returned less than it asked for */
#define ST_CERT_SHIFT 8    /* certificate index */

static uintptr_t state_get(const SSL *ssl)
{
    return (uintptr_t)SSL_get_ex_data(ssl, g_state_idx);
}

static void state_set(SSL *ssl, uintptr_t w)
{
    /* Storage for ex data indices is created on first use; a failure leaves the word
     * at 0 (unknown), which only degrades gh_tls_server_name(). */
    if (!SSL_set_ex_data(ssl, g_state_idx, (void *)w))
        ERR_clear_error();
}

/* Watches the socket reads OpenSSL makes (read-ahead asks for all the room it has): a
 * short read means the socket was empty, so gh_tls_read() can stop without a read that
 * only returns EAGAIN (with edge-triggered readiness a new arrival is a new event). */
static long bio_read_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                        size_t *processed)
{
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        SSL *ssl = (SSL *)BIO_get_callback_arg(b);
        uintptr_t st = state_get(ssl);
        uintptr_t drained = (ret <= 0 || !processed || *processed < len) ? ST_DRAINED : 0;
        if ((st & ST_DRAINED) != drained)
            state_set(ssl, (st & ~(uintptr_t)ST_DRAINED) | drained);
    }
    return ret;
}

static void watch_reads(SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    BIO_set_callback_arg(b, (char *)ssl);
    BIO_set_callback_ex(b, bio_read_cb);
}

int gh_tls_pending(const SSL *ssl) { return SSL_has_pending(ssl); }

static void srv_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    gh_tls_server_t *srv = ptr;
    if (!srv)
        return;
    for (size_t i = 0; i < srv->ncerts; i++)
        cert_clear(&srv->certs[i]);
    free(srv->certs);
    names_free(&srv->exact);
    names_free(&srv->wild);
    alpn_free(&srv->alpn);
    free(srv);
}

/* Reads the host name from a raw server_name extension into out (lower-cased).
 * Returns its length, or -1 when there is none we could match. */
static int parse_sni(const unsigned char *p, size_t n, char *out, size_t outlen)
{
    if (n < 2)
        return -1;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 != n)
        return -1;
    p += 2;
    while (list >= 3) {
        unsigned type = p[0];
        size_t len = ((size_t)p[1] << 8) | p[2];
        if (len + 3 > list)
            return -1;
        if (type == TLSEXT_NAMETYPE_host_name) {
            int w;
            int k = norm_name((const char *)p + 3, len, out, outlen, &w);
            return w ? -1 : k; /* a literal "*.x" from a client matches nothing */
        }
        p += 3 + len;
        list -= 3 + len;
    }
    return -1;
}

/* Chooses the certificate as soon as the ClientHello is parsed, before OpenSSL looks
 * at ciphers, signature algorithms or the ticket, and lets the observer look. */
static int hello_cb(SSL *ssl, int *al, void *arg)
{
    gh_tls_server_t *srv = arg;
    uintptr_t st = state_get(ssl);
    if (st & ST_SEEN) /* the second ClientHello after a HelloRetryRequest */
        return SSL_CLIENT_HELLO_SUCCESS;

    const unsigned char *ext;
    size_t extlen;
    char name[256];
    int match = GH_TLS_SNI_NONE;
    size_t cert = srv->def;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &extlen)) {
        match = GH_TLS_SNI_DEFAULT;
        int len = parse_sni(ext, extlen, name, sizeof name);
        const name_t *hit = len > 0 ? names_find(&srv->exact, name) : NULL;
        if (hit) {
            match = GH_TLS_SNI_EXACT;
            cert = hit->cert;
        } else if (len > 0) {
            /* "*.b.test" covers exactly one label: x.b.test, not b.test nor y.x.b.test */
            const char *dot = strchr(name, '.');
            if (dot && dot != name && dot[1] && (hit = names_find(&srv->wild, dot + 1))) {
                match = GH_TLS_SNI_WILDCARD;
                cert = hit->cert;
            }
        }
    }
    const cert_t *c = &srv->certs[cert];
    if (!SSL_use_cert_and_key(ssl, c->x, c->key, c->chain, 1) ||
        !SSL_set_session_id_context(ssl, c->sid, sizeof c->sid)) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    state_set(ssl, (st & ST_PLAIN) | ST_SEEN | ((uintptr_t)match << ST_MATCH_SHIFT) |
                       ((uintptr_t)cert << ST_CERT_SHIFT));
    if (srv->on_hello)
        srv->on_hello(ssl, srv->on_hello_arg);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Server preference: our first protocol that the client also offers. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    gh_tls_server_t *srv = arg;
    const unsigned char *ours = srv->alpn.wire, *end = ours + srv->alpn.wirelen;
    while (ours < end) {
        unsigned len = ours[0];
        for (unsigned i = 0; i < inlen;) {
            unsigned clen = in[i];
            if (i + 1 + clen > inlen)
                break; /* malformed list: OpenSSL has checked it, but be safe */
            if (clen == len && memcmp(in + i + 1, ours + 1, len) == 0) {
                *out = ours + 1;
                *outlen = (unsigned char)len;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + clen;
        }
        ours += 1 + len;
    }
    return srv->alpn_strict ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

/* Session id context of a certificate: a hash of its names, so that a ticket only
 * resumes on a certificate for the same names, and still does after a reload (or a
 * renewal of the certificate with the same names). */
static void cert_sid(cert_t *c, const gh_tls_server_t *srv, uint32_t cert, const char *file)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned len = 0;
    unsigned char out[EVP_MAX_MD_SIZE];
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    ok = ok && EVP_DigestUpdate(md, "gatehouse-sid", 13);
    size_t names = 0;
    for (int pass = 0; pass < 2 && ok; pass++) {
        const names_t *t = pass ? &srv->wild : &srv->exact;
        for (size_t i = 0; i < t->n && ok; i++)
            if (t->v[i].cert == cert) {
                ok = EVP_DigestUpdate(md, pass ? "*." : "=", pass ? 2 : 1) &&
                     EVP_DigestUpdate(md, t->v[i].name, strlen(t->v[i].name) + 1);
                names++;
            }
    }
    if (ok && names == 0) /* a name-less default certificate */
        ok = EVP_DigestUpdate(md, file, strlen(file));
    ok = ok && EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
    if (ok)
        memcpy(c->sid, out, GH_MIN(sizeof c->sid, (size_t)len));
    else
        ERR_clear_error(); /* stays zero: resumption still works, only not per name */
}

gh_tls_server_t *gh_tls_server_new(const gh_tls_server_conf_t *conf, char *err, size_t errlen)
{
    if (init(err, errlen) < 0)
        return NULL;
    if (!conf || conf->ncerts == 0 || !conf->certs) {
        set_err(err, errlen, "tls: no certificate configured");
        return NULL;
    }
    if (conf->default_cert >= conf->ncerts) {
        set_err(err, errlen, "tls: default certificate %zu out of range (%zu configured)",
                conf->default_cert, conf->ncerts);
        return NULL;
    }
    ERR_clear_error();
    gh_tls_server_t *srv = calloc(1, sizeof *srv);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!srv || !ctx || !SSL_CTX_set_ex_data(ctx, g_srv_idx, srv)) {
        free(srv);
        SSL_CTX_free(ctx);
        ERR_clear_error();
        set_err(err, errlen, "tls: out of memory");
        return NULL;
    }
    /* From here on srv belongs to ctx: every error path is SSL_CTX_free(ctx). */
    srv->ctx = ctx;
    srv->def = conf->default_cert;
    srv->alpn_strict = conf->alpn_strict;
    srv->on_hello = conf->on_hello;
    srv->on_hello_arg = conf->on_hello_arg;
    char why[200];
    int rc = ctx_common(ctx, conf->min_version, conf->max_version, conf->ciphers,
                        conf->ciphersuites, err, errlen);
    if (rc)
        goto fail;
    /* The server picks the cipher (our list is ordered), but lets a client that put
     * ChaCha20 first (phones without AES instructions) have it. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    /* Tickets only: a server-side cache is per process and per SSL_CTX, so it would
     * neither survive a reload nor be shared by a second node, and it costs memory. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (conf->no_tickets) {
        /* In TLS 1.3, NO_TICKET alone means stateful tickets: also send none. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    } else if (!SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb)) {
        set_err(err, errlen, "tls: cannot install the ticket key callback");
        goto fail;
    }
    SSL_CTX_set_client_hello_cb(ctx, hello_cb, srv);
    /* an observer fingerprints hellos (JA4): make OpenSSL report the extension types
     * browsers send that it does not parse itself, or their fingerprints come out wrong */
    if (conf->on_hello && gh_ja4_ssl_ctx_observe_exts(ctx, NULL, 0) < 0) {
        set_err(err, errlen, "tls: cannot register the JA4 extension observers");
        goto fail;
    }
    if ((rc = alpn_build(&srv->alpn, conf->alpn, conf->nalpn, err, errlen)) != 0) {
        if (rc == GH_ENOMEM)
            set_err(err, errlen, "tls: out of memory");
        goto fail;
    }
    if (srv->alpn.n)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, srv);

    if (!(srv->certs = calloc(conf->ncerts, sizeof *srv->certs))) {
        set_err(err, errlen, "tls: out of memory");
        goto fail;
    }
    srv->ncerts = conf->ncerts;
    for (size_t i = 0; i < conf->ncerts; i++) {
        const gh_tls_cert_conf_t *cc = &conf->certs[i];
        if (!cc->cert_file) {
            set_err(err, errlen, "tls: certificate %zu: no cert file given", i);
            goto fail;
        }
        if (load_cert_key(&srv->certs[i], cc->cert_file, cc->key_file, err, errlen) < 0)
            goto fail;
        size_t count = 0;
        if (cc->nnames == 0) {
            if (cert_names(srv->certs[i].x, &srv->exact, &srv->wild, (uint32_t)i, &count)) {
                set_err(err, errlen, "tls: out of memory");
                goto fail;
            }
            if (count == 0 && i != srv->def) {
                set_err(err, errlen, "%s: no server names in the certificate (no DNS "
                        "subjectAltName, no CN) and none configured", cc->cert_file);
                goto fail;
            }
        }
        for (size_t j = 0; j < cc->nnames; j++) {
            char norm[256];
            int w;
            const char *nm = cc->names[j] ? cc->names[j] : "";
            if (norm_name(nm, strlen(nm), norm, sizeof norm, &w) < 0) {
                set_err(err, errlen, "%s: server name \"%s\" is not a host name or \"*.\" "
                        "wildcard", cc->cert_file, nm);
                goto fail;
            }
            if (names_add(w ? &srv->wild : &srv->exact, norm, (uint32_t)i)) {
                set_err(err, errlen, "tls: out of memory");
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < srv->ncerts; i++)
        cert_sid(&srv->certs[i], srv, (uint32_t)i, conf->certs[i].cert_file);
    names_finish(&srv->exact);
    names_finish(&srv->wild);

    /* Install each certificate once on a scratch connection: the same call as in the
     * handshake, so OpenSSL's checks (security level: "ee key too small", "ca md too
     * weak") fail here, at load, with the file name, not on the first client. */
    SSL *probe = SSL_new(ctx);
    if (!probe) {
        set_err(err, errlen, "tls: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < srv->ncerts; i++) {
        const cert_t *c = &srv->certs[i];
        if (!SSL_use_cert_and_key(probe, c->x, c->key, c->chain, 1)) {
            set_err(err, errlen, "%s: %s", conf->certs[i].cert_file,
                    gh_tls_strerror(NULL, why, sizeof why));
            SSL_free(probe);
            goto fail;
        }
    }
    SSL_free(probe);
    return srv;

fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void gh_tls_server_free(gh_tls_server_t *srv)
{
    if (srv)
        SSL_CTX_free(srv->ctx);
}

SSL *gh_tls_server_ssl(gh_tls_server_t *srv, int fd)
{
    SSL *ssl = SSL_new(srv->ctx);
    if (!ssl || !SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    watch_reads(ssl);
    SSL_set_accept_state(ssl);
    return ssl;
}

int gh_tls_server_name(const SSL *ssl, int *match)
{
    uintptr_t st = state_get(ssl);
    if (match)
        *match = (st & ST_SEEN) ? (int)((st >> ST_MATCH_SHIFT) & 3) : GH_TLS_SNI_NONE;
    return (st & ST_SEEN) ? (int)(st >> ST_CERT_SHIFT) : -1;
}

const char *gh_tls_sni(const SSL *ssl)
{
    return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

int gh_tls_plain_http(const SSL *ssl)
{
    return (state_get(ssl) & ST_PLAIN) != 0;
}

/* ---- client ------------------------------------------------------------------------ */

typedef struct {
    uint64_t hash;
    char *key; /* session_key '\0' name */
    size_t klen;
    SSL_SESSION *sess;
    uint64_t stamp;
} sent_t;

struct gh_tls_client {
    SSL_CTX *ctx; /* owns this struct */
    alpn_t alpn;
    int verify;
    pthread_mutex_t mu; /* the session cache: touched per new backend connection and per
                           ticket received, never per request */
    sent_t *cache;
    size_t cap, n;
    uint64_t clock;
};

static void cli_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    gh_tls_client_t *cl = ptr;
    if (!cl)
        return;
    for (size_t i = 0; i < cl->n; i++) {
        SSL_SESSION_free(cl->cache[i].sess);
        free(cl->cache[i].key);
    }
    free(cl->cache);
    pthread_mutex_destroy(&cl->mu);
    alpn_free(&cl->alpn);
    free(cl);
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static sent_t *cache_find(gh_tls_client_t *cl, const char *key, size_t klen, uint64_t h)
{
    for (size_t i = 0; i < cl->n; i++)
        if (cl->cache[i].hash == h && cl->cache[i].klen == klen &&
            memcmp(cl->cache[i].key, key, klen) == 0)
            return &cl->cache[i];
    return NULL;
}

/* A session (TLS 1.2 at the end of the handshake, TLS 1.3 with each NewSessionTicket,
 * which arrives during a later read). We keep a copy: OpenSSL marks a connection's own
 * session not resumable when that connection is freed without close_notify, which is
 * how idle backend connections usually end. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    gh_tls_client_t *cl = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_cli_idx);
    const char *key = SSL_get_ex_data(ssl, g_skey_idx);
    if (!cl || !key || !SSL_SESSION_is_resumable(sess))
        return 0;
    size_t klen = strlen(key) + 1;
    klen += strlen(key + klen) + 1;
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy) {
        ERR_clear_error();
        return 0;
    }
    uint64_t h = fnv1a(key, klen);
    pthread_mutex_lock(&cl->mu);
    sent_t *e = cache_find(cl, key, klen, h);
    if (!e) {
        char *k = malloc(klen);
        if (k) {
            if (cl->n < cl->cap) {
                e = &cl->cache[cl->n++];
            } else {
                e = &cl->cache[0];
                for (size_t i = 1; i < cl->n; i++)
                    if (cl->cache[i].stamp < e->stamp)
                        e = &cl->cache[i];
                SSL_SESSION_free(e->sess);
                free(e->key);
            }
            memcpy(k, key, klen);
            *e = (sent_t){.hash = h, .key = k, .klen = klen, .sess = NULL};
        }
    }
    if (e) {
        SSL_SESSION_free(e->sess);
        e->sess = copy;
        e->stamp = ++cl->clock;
        copy = NULL;
    }
    pthread_mutex_unlock(&cl->mu);
    SSL_SESSION_free(copy);
    return 0; /* we did not keep OpenSSL's reference */
}

gh_tls_client_t *gh_tls_client_new(const gh_tls_client_conf_t *conf, char *err, size_t errlen)
{
    if (init(err, errlen) < 0)
        return NULL;
    if (!conf) {
        set_err(err, errlen, "tls: no client configuration");
        return NULL;
    }
    ERR_clear_error();
    gh_tls_client_t *cl = calloc(1, sizeof *cl);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!cl || !ctx) {
        free(cl);
        SSL_CTX_free(ctx);
        ERR_clear_error();
        set_err(err, errlen, "tls: out of memory");
        return NULL;
    }
    pthread_mutex_init(&cl->mu, NULL);
    if (!SSL_CTX_set_ex_data(ctx, g_cli_idx, cl)) {
        pthread_mutex_destroy(&cl->mu);
        free(cl);
        SSL_CTX_free(ctx);
        ERR_clear_error();
        set_err(err, errlen, "tls: out of memory");
        return NULL;
    }
    cl->ctx = ctx;
    char why[200];
    int rc = ctx_common(ctx, conf->min_version, conf->max_version, conf->ciphers,
                        conf->ciphersuites, err, errlen);
    if (rc)
        goto fail;

    cl->verify = !conf->insecure;
    if (cl->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (conf->ca_file && !SSL_CTX_load_verify_file(ctx, conf->ca_file)) {
            gh_tls_strerror(NULL, why, sizeof why);
            if (access(conf->ca_file, R_OK) != 0)
                set_err(err, errlen, "%s: %s", conf->ca_file, strerror(errno));
            else
                set_err(err, errlen, "%s: no CA certificate loaded (%s)", conf->ca_file, why);
            goto fail;
        }
        /* The hashed directory is read lazily, one CA per lookup, unlike the bundle
         * file, which would put all ~140 system CAs in memory per client. */
        if ((conf->system_ca || !conf->ca_file) && !SSL_CTX_set_default_verify_dir(ctx)) {
            set_err(err, errlen, "tls: cannot use the system CA directory (%s)",
                    gh_tls_strerror(NULL, why, sizeof why));
            goto fail;
        }
    }
    if (conf->cert_file || conf->key_file) {
        cert_t c = {0};
        if (!conf->cert_file) {
            set_err(err, errlen, "%s: client key without a certificate", conf->key_file);
            goto fail;
        }
        if (load_cert_key(&c, conf->cert_file, conf->key_file, err, errlen) < 0) {
            cert_clear(&c);
            goto fail;
        }
        int ok = SSL_CTX_use_cert_and_key(ctx, c.x, c.key, c.chain, 1);
        cert_clear(&c);
        if (!ok) {
            set_err(err, errlen, "%s: %s", conf->cert_file,
                    gh_tls_strerror(NULL, why, sizeof why));
            goto fail;
        }
    }
    if ((rc = alpn_build(&cl->alpn, conf->alpn, conf->nalpn, err, errlen)) != 0) {
        if (rc == GH_ENOMEM)
            set_err(err, errlen, "tls: out of memory");
        goto fail;
    }
    if (cl->alpn.n && SSL_CTX_set_alpn_protos(ctx, cl->alpn.wire, (unsigned)cl->alpn.wirelen)) {
        set_err(err, errlen, "tls: out of memory");
        goto fail;
    }
    if (conf->session_cache >= 0) {
        cl->cap = conf->session_cache ? (size_t)conf->session_cache : 256;
        if (!(cl->cache = calloc(cl->cap, sizeof *cl->cache))) {
            set_err(err, errlen, "tls: out of memory");
            goto fail;
        }
        /* Sessions go to our cache through the callback, never to OpenSSL's. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    return cl;

fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void gh_tls_client_free(gh_tls_client_t *cl)
{
    if (cl)
        SSL_CTX_free(cl->ctx);
}

SSL *gh_tls_client_ssl(gh_tls_client_t *cl, int fd, const char *name, const char *session_key)
{
    char host[256];
    int is_ip = 0;
    if (name) {
        size_t len = strlen(name);
        if (len >= 2 && name[0] == '[' && name[len - 1] == ']') {
            name++;
            len -= 2;
        }
        if (len == 0 || len >= sizeof host)
            return NULL;
        memcpy(host, name, len);
        host[len] = '\0';
        unsigned char a[16];
        is_ip = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
    }
    SSL *ssl = SSL_new(cl->ctx);
    if (!ssl || !SSL_set_fd(ssl, fd))
        goto fail;
    watch_reads(ssl);
    SSL_set_connect_state(ssl);
    if (name && is_ip) {
        if (cl->verify && !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host))
            goto fail;
    } else if (name) {
        if (!SSL_set_tlsext_host_name(ssl, host))
            goto fail;
        if (cl->verify) {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (!SSL_set1_host(ssl, host))
                goto fail;
        }
    }
    if (cl->cache && (session_key || name)) {
        const char *sk = session_key ? session_key : host;
        const char *nm = name ? host : "";
        size_t a = strlen(sk) + 1, b = strlen(nm) + 1;
        char *key = malloc(a + b);
        if (!key)
            goto fail;
        memcpy(key, sk, a);
        memcpy(key + a, nm, b);
        if (!SSL_set_ex_data(ssl, g_skey_idx, key)) {
            free(key);
            goto fail;
        }
        uint64_t h = fnv1a(key, a + b);
        pthread_mutex_lock(&cl->mu);
        sent_t *e = cache_find(cl, key, a + b, h);
        if (e && e->sess && !SSL_SESSION_is_resumable(e->sess)) {
            SSL_SESSION_free(e->sess);
            e->sess = NULL;
        }
        /* The connection gets its own copy: OpenSSL marks the session of a connection
         * freed without close_notify, or of a TLS 1.2 one whose ticket is renewed,
         * not resumable, and the cached one must stay usable. */
        SSL_SESSION *copy = e && e->sess ? SSL_SESSION_dup(e->sess) : NULL;
        pthread_mutex_unlock(&cl->mu);
        int ok = !copy || SSL_set_session(ssl, copy);
        SSL_SESSION_free(copy);
        if (!ok)
            goto fail;
    }
    return ssl;

fail:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

/* ---- I/O --------------------------------------------------------------------------- */

#define IO_CLOSE_NOTIFY 1 /* io_error(): the peer sent close_notify */

/* Maps a failed SSL_* call to our codes. A fatal error makes a later gh_tls_shutdown()
 * silent: OpenSSL must not be asked to write an alert on a broken connection. */
static int io_error(SSL *ssl, int r)
{
    int saved = errno;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return GH_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return IO_CLOSE_NOTIFY;
    case SSL_ERROR_SYSCALL:
        SSL_set_quiet_shutdown(ssl, 1);
        if (ERR_peek_error() == 0 &&
            (saved == 0 || saved == ECONNRESET || saved == EPIPE || saved == ENOTCONN))
            return GH_ECLOSED;
        errno = saved;
        return GH_EIO;
    case SSL_ERROR_SSL: {
        SSL_set_quiet_shutdown(ssl, 1);
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return GH_ECLOSED;
        return GH_EIO;
    }
    default:
        SSL_set_quiet_shutdown(ssl, 1);
        return GH_EIO;
    }
}

/* Before a server reads anything: is the first byte a TLS handshake record? Peeking
 * leaves the bytes in the socket, so a plain-HTTP request can still be read and
 * answered, and OpenSSL never writes an alert into a clear-text connection. */
static int peek_first(SSL *ssl)
{
    unsigned char b[16];
    ssize_t k = recv(SSL_get_rfd(ssl), b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
    if (k < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return GH_EAGAIN;
        return errno == ECONNRESET ? GH_ECLOSED : GH_EIO;
    }
    if (k == 0)
        return GH_ECLOSED;
    if (b[0] == 0x16 || b[0] == 0x80) /* handshake record; SSLv2-format ClientHello */
        return 0;
    /* A method token (uppercase letters) up to a space, or as far as we saw. */
    ssize_t i = 0;
    while (i < k && b[i] >= 'A' && b[i] <= 'Z')
        i++;
    if (i > 0 && (i == k || b[i] == ' '))
        state_set(ssl, state_get(ssl) | ST_PLAIN);
    SSL_set_quiet_shutdown(ssl, 1);
    return GH_EINVAL;
}

int gh_tls_handshake(SSL *ssl)
{
    if (SSL_is_server(ssl) && SSL_in_before(ssl)) {
        int rc = peek_first(ssl);
        if (rc)
            return rc;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        /* A resumed TLS 1.2 handshake may bring a renewed ticket, which OpenSSL does
         * not pass to the new-session callback (TLS 1.3 tickets always go there). */
        if (!SSL_is_server(ssl) && SSL_session_reused(ssl) && SSL_version(ssl) < TLS1_3_VERSION)
            new_session_cb(ssl, SSL_get0_session(ssl));
        return 0;
    }
    int rc = io_error(ssl, r);
    return rc == IO_CLOSE_NOTIFY ? GH_ECLOSED : rc;
}

int gh_tls_want(const SSL *ssl)
{
    return SSL_want_write(ssl) ? GH_TLS_WANT_WRITE : GH_TLS_WANT_READ;
}

ssize_t gh_tls_read(SSL *ssl, void *buf, size_t n)
{
    size_t total = 0;
    ERR_clear_error();
    uintptr_t st = state_get(ssl);
    if (st & ST_DRAINED) /* only a read made by this call tells that the socket is empty now */
        state_set(ssl, st & ~(uintptr_t)ST_DRAINED);
    while (total < n) {
        size_t got = 0;
        errno = 0;
        int r = SSL_read_ex(ssl, (char *)buf + total, n - total, &got);
        if (r == 1) {
            total += got;
            if ((state_get(ssl) & ST_DRAINED) && !SSL_has_pending(ssl))
                break; /* the socket was empty at the last read: a short count, as read(2) */
            continue;
        }
        int rc = io_error(ssl, r);
        if (total > 0) {
            /* Deliver what we have; a close or an error is sticky and shows next call. */
            ERR_clear_error();
            return (ssize_t)total;
        }
        return rc == IO_CLOSE_NOTIFY ? 0 : rc;
    }
    return (ssize_t)total;
}

ssize_t gh_tls_write(SSL *ssl, const void *buf, size_t n)
{
    size_t total = 0;
    ERR_clear_error();
    while (total < n) {
        /* One record per call: after a blocked record, OpenSSL reports nothing until a
         * call writes through without blocking, so a larger call would hide the
         * progress of every record flushed meanwhile behind GH_EAGAIN. */
        size_t put = 0, chunk = GH_MIN(n - total, (size_t)SSL3_RT_MAX_PLAIN_LENGTH);
        errno = 0;
        int r = SSL_write_ex(ssl, (const char *)buf + total, chunk, &put);
        if (r == 1) {
            total += put;
            continue;
        }
        int rc = io_error(ssl, r);
        if (total > 0) {
            ERR_clear_error();
            return (ssize_t)total;
        }
        return rc == IO_CLOSE_NOTIFY ? GH_ECLOSED : rc;
    }
    return (ssize_t)total;
}

int gh_tls_shutdown(SSL *ssl)
{
    /* Nothing to say before the handshake is done or after a fatal error (OpenSSL
     * keeps a failed connection "in init"). */
    if (SSL_in_init(ssl) || SSL_in_before(ssl))
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(ssl);
    if (r >= 0)
        return 0;
    int rc = io_error(ssl, r);
    return rc == IO_CLOSE_NOTIFY ? 0 : rc;
}

/* ---- what was negotiated ----------------------------------------------------------- */

const char *gh_tls_alpn(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    if (!p || !len)
        return NULL;
    const SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    if (SSL_is_server(ssl)) {
        const gh_tls_server_t *srv = SSL_CTX_get_ex_data(ctx, g_srv_idx);
        return srv ? alpn_lookup(&srv->alpn, p, len) : NULL;
    }
    const gh_tls_client_t *cl = SSL_CTX_get_ex_data(ctx, g_cli_idx);
    return cl ? alpn_lookup(&cl->alpn, p, len) : NULL;
}

const char *gh_tls_version(const SSL *ssl)
{
    return SSL_get_version(ssl);
}

const char *gh_tls_cipher(const SSL *ssl)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    return c ? SSL_CIPHER_get_name(c) : "(none)";
}

int gh_tls_resumed(const SSL *ssl)
{
    return SSL_session_reused(ssl) ? 1 : 0;
}

int gh_tls_check_settings(const char *ciphers, const char *suites, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) {
        set_err(err, errlen, "tls: out of memory");
        return GH_ENOMEM;
    }
    int rc = ctx_common(ctx, 0, 0, ciphers, suites, err, errlen);
    SSL_CTX_free(ctx);
    return rc;
}
