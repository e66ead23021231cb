/* ja4.c: JA4 TLS client fingerprints (see ja4.h for the format and the callers).
 *
 * Three layers: find the ClientHello handshake message in a record stream (reassembling
 * it only when it spans records), parse it strictly into gh_ja4_fields_t, and hash the
 * fields (gh_ja4_from_fields). gh_ja4_from_ssl fills the same fields from OpenSSL's
 * client-hello accessors. Every length is checked against its container before use; the
 * input is untrusted network data. */
#include "tls/ja4.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#define REC_MAX 16384u    /* TLSPlaintext.length limit (2^14) */
#define HELLO_MAX 131396u /* largest body the ClientHello fields allow: OpenSSL's limit too */
#define SCRATCH 256       /* uint16 slots on the stack before falling back to malloc */

#define EXT_SNI 0x0000
#define EXT_SIGALGS 0x000d
#define EXT_ALPN 0x0010
#define EXT_VERSIONS 0x002b

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline size_t be24(const uint8_t *p) { return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2]; }

/* RFC 8701 GREASE: 0x0a0a, 0x1a1a, ..., 0xfafa. */
static inline int is_grease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

static const char hexd[] = "0123456789abcdef";

/* ---- hashing: comma-joined 4-hex-digit lists fed to SHA-256 in small chunks ---- */

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* Fetch SHA-256 once: EVP_sha256() would make OpenSSL 3 look the provider up per init. */
static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

typedef struct {
    EVP_MD_CTX *md;
    size_t total; /* characters hashed so far: 0 means the empty string */
    size_t n;
    char buf[240];
} hasher_t;

static int h_begin(hasher_t *h)
{
    h->total = h->n = 0;
    return EVP_DigestInit_ex(h->md, sha256_md ? sha256_md : EVP_sha256(), NULL) == 1;
}

static int h_flush(hasher_t *h)
{
    int ok = h->n == 0 || EVP_DigestUpdate(h->md, h->buf, h->n) == 1;
    h->n = 0;
    return ok;
}

/* Appends sep (unless 0) and v as 4 lowercase hex digits. */
static int h_u16(hasher_t *h, char sep, uint16_t v)
{
    if (h->n + 5 > sizeof h->buf && !h_flush(h))
        return 0;
    if (sep)
        h->buf[h->n++] = sep, h->total++;
    h->buf[h->n++] = hexd[v >> 12];
    h->buf[h->n++] = hexd[(v >> 8) & 15];
    h->buf[h->n++] = hexd[(v >> 4) & 15];
    h->buf[h->n++] = hexd[v & 15];
    h->total += 4;
    return 1;
}

/* Writes the first 12 hex digits of the digest, or twelve zeros for the empty string. */
static int h_end(hasher_t *h, char *out12)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (!h_flush(h) || EVP_DigestFinal_ex(h->md, d, &dl) != 1 || dl < 6)
        return 0;
    for (int i = 0; i < 6; i++) {
        out12[2 * i] = h->total ? hexd[d[i] >> 4] : '0';
        out12[2 * i + 1] = h->total ? hexd[d[i] & 15] : '0';
    }
    return 1;
}

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* Insertion sort for the usual dozen or two values; qsort beyond. */
static void sort_u16(uint16_t *v, size_t n)
{
    if (n > 64) {
        qsort(v, n, sizeof *v, cmp_u16);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint16_t x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

static int alnum(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static const char *version_code(uint16_t v)
{
    switch (v) {
    case 0x0304: return "13";
    case 0x0303: return "12";
    case 0x0302: return "11";
    case 0x0301: return "10";
    case 0x0300: return "s3";
    case 0x0002: return "s2";
    default: return "00";
    }
}

/* Whether extension `type` is listed in f->exts. */
static int ext_present(const gh_ja4_fields_t *f, uint16_t type)
{
    for (size_t i = 0; i < f->nexts; i++)
        if (f->exts[i] == type)
            return 1;
    return 0;
}

/* supported_versions (ClientHello form): versions<2..254>, one length byte. The highest
 * non-GREASE value, or `fallback` when there is none. */
static int parse_versions(const uint8_t *b, size_t n, uint16_t fallback, uint16_t *out)
{
    if (n < 1 || !b || b[0] != n - 1 || b[0] < 2 || b[0] % 2)
        return GH_EINVAL;
    uint16_t best = 0;
    int any = 0;
    for (size_t i = 1; i < n; i += 2) {
        uint16_t v = be16(b + i);
        if (!is_grease(v) && (!any || v > best))
            best = v, any = 1;
    }
    *out = any ? best : fallback;
    return 0;
}

/* ALPN: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1>; the whole list
 * is checked, the first protocol gives the two characters. */
static int parse_alpn(const uint8_t *b, size_t n, char out2[2])
{
    if (n < 2 || !b || be16(b) != n - 2 || n - 2 < 2)
        return GH_EINVAL;
    const uint8_t *first = NULL;
    size_t flen = 0;
    for (size_t i = 2; i < n;) {
        size_t l = b[i];
        if (l == 0 || l > n - i - 1)
            return GH_EINVAL;
        if (!first)
            first = b + i + 1, flen = l;
        i += 1 + l;
    }
    uint8_t c0 = first[0], c1 = first[flen - 1];
    if (alnum(c0) && alnum(c1)) {
        out2[0] = (char)c0;
        out2[1] = (char)c1;
    } else { /* first and last hex digit (JA4.md, "ALPN Extension Value") */
        out2[0] = hexd[c0 >> 4];
        out2[1] = hexd[c1 & 15];
    }
    return 0;
}

/* signature_algorithms: SignatureScheme supported_signature_algorithms<2..2^16-2>. */
static int check_sigalgs(const uint8_t *b, size_t n)
{
    if (n < 2 || !b || be16(b) != n - 2 || n - 2 < 2 || (n - 2) % 2)
        return GH_EINVAL;
    return 0;
}

static void two_digits(char *o, size_t v)
{
    v = GH_MIN(v, (size_t)99);
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
}

int gh_ja4_from_fields(const gh_ja4_fields_t *f, char out[GH_JA4_SIZE])
{
    if (!f || (f->ciphers_len % 2) || (f->ciphers_len && !f->ciphers) || (f->nexts && !f->exts))
        return GH_EINVAL;
    size_t nc_all = f->ciphers_len / 2;

    uint16_t version = f->legacy_version;
    char alpn[2] = {'0', '0'};
    int rc;
    if (ext_present(f, EXT_VERSIONS) &&
        (rc = parse_versions(f->supported_versions, f->supported_versions_len, f->legacy_version,
                             &version)) < 0)
        return rc;
    if (ext_present(f, EXT_ALPN) && (rc = parse_alpn(f->alpn, f->alpn_len, alpn)) < 0)
        return rc;
    int has_sigalgs = ext_present(f, EXT_SIGALGS);
    if (has_sigalgs && (rc = check_sigalgs(f->sigalgs, f->sigalgs_len)) < 0)
        return rc;

    /* sorted copies: ciphers in s[0..nc), extensions in s[nc..nc+ne) */
    uint16_t stackbuf[SCRATCH], *s = stackbuf;
    if (nc_all + f->nexts > SCRATCH && !(s = malloc((nc_all + f->nexts) * sizeof *s)))
        return GH_ENOMEM;
    size_t nc = 0, ne = 0;
    for (size_t i = 0; i < nc_all; i++) {
        uint16_t v = be16(f->ciphers + 2 * i);
        if (!is_grease(v))
            s[nc++] = v;
    }
    uint16_t *e = s + nc;
    int sni = 0;
    for (size_t i = 0; i < f->nexts; i++) {
        if (is_grease(f->exts[i]))
            continue;
        sni |= f->exts[i] == EXT_SNI;
        e[ne++] = f->exts[i];
    }
    sort_u16(s, nc);
    sort_u16(e, ne);

    rc = GH_EINVAL;
    hasher_t h;
    h.md = EVP_MD_CTX_new();
    if (!h.md) {
        rc = GH_ENOMEM;
        goto out;
    }
    for (size_t i = 1; i < ne; i++)
        if (e[i] == e[i - 1]) /* RFC 8446 4.2: at most one extension of a type */
            goto out;

    pthread_once(&sha256_once, sha256_fetch);
    char b12[12], c12[12];
    if (!h_begin(&h))
        goto out;
    for (size_t i = 0; i < nc; i++)
        if (!h_u16(&h, i ? ',' : 0, s[i]))
            goto out;
    if (!h_end(&h, b12) || !h_begin(&h))
        goto out;
    int first = 1;
    for (size_t i = 0; i < ne; i++) {
        if (e[i] == EXT_SNI || e[i] == EXT_ALPN) /* they are in a already */
            continue;
        if (!h_u16(&h, first ? 0 : ',', e[i]))
            goto out;
        first = 0;
    }
    if (has_sigalgs) {
        char sep = '_'; /* only when there is at least one non-GREASE algorithm */
        for (size_t i = 2; i < f->sigalgs_len; i += 2) {
            uint16_t v = be16(f->sigalgs + i);
            if (is_grease(v))
                continue;
            if (!h_u16(&h, sep, v))
                goto out;
            sep = ',';
        }
    }
    if (!h_end(&h, c12))
        goto out;

    char *o = out;
    *o++ = f->proto ? f->proto : 't';
    memcpy(o, version_code(version), 2), o += 2;
    *o++ = sni ? 'd' : 'i';
    two_digits(o, nc), o += 2;
    two_digits(o, ne), o += 2;
    *o++ = alpn[0];
    *o++ = alpn[1];
    *o++ = '_';
    memcpy(o, b12, 12), o += 12;
    *o++ = '_';
    memcpy(o, c12, 12), o += 12;
    *o = '\0';
    rc = 0;
out:
    EVP_MD_CTX_free(h.md);
    if (s != stackbuf)
        free(s);
    return rc;
}

/* ---- the raw parser ---- */

/* Locates the ClientHello handshake message (header included) at the start of p[0..n).
 * Zero-copy when it lies in one record (or is bare); otherwise the record fragments are
 * copied into *heap, which the caller frees. Only bytes present are judged: GH_EINVAL
 * for what can already be seen to be wrong, else GH_EAGAIN until the message is whole. */
static int find_message(const uint8_t *p, size_t n, const uint8_t **msg, size_t *len,
                        uint8_t **heap)
{
    *heap = NULL;
    if (n == 0)
        return GH_EAGAIN;
    if (p[0] == 0x01) {
        if (n < 4)
            return GH_EAGAIN;
        size_t body = be24(p + 1);
        if (body > HELLO_MAX)
            return GH_EINVAL;
        if (n - 4 < body)
            return GH_EAGAIN;
        *msg = p;
        *len = 4 + body;
        return 0;
    }
    if (p[0] != 0x16) /* also SSLv2-framed hellos (high bit set): not fingerprinted */
        return GH_EINVAL;

    uint8_t hdr[4];
    size_t hgot = 0, need = 0, got = 0, pos = 0, first_avail = 0;
    for (;;) {
        if (pos >= n)
            return GH_EAGAIN;
        /* RFC 8446 5.1: handshake messages are not interleaved with other record types */
        if (p[pos] != 0x16)
            return GH_EINVAL;
        if (n - pos < 2)
            return GH_EAGAIN;
        if (p[pos + 1] != 0x03)
            return GH_EINVAL;
        if (n - pos < 5)
            return GH_EAGAIN;
        size_t flen = be16(p + pos + 3);
        if (flen == 0 || flen > REC_MAX) /* zero-length handshake fragments are forbidden */
            return GH_EINVAL;
        const uint8_t *frag = p + pos + 5;
        size_t avail = GH_MIN(flen, n - pos - 5);
        if (pos == 0)
            first_avail = avail;
        for (size_t i = 0; i < avail && hgot < 4; i++) {
            hdr[hgot++] = frag[i];
            if (hgot == 1 && hdr[0] != 0x01)
                return GH_EINVAL;
            if (hgot == 4) {
                size_t body = be24(hdr + 1);
                if (body > HELLO_MAX)
                    return GH_EINVAL;
                need = 4 + body;
            }
        }
        got += avail;
        if (need && got >= need)
            break;
        if (avail < flen)
            return GH_EAGAIN;
        pos += 5 + flen;
    }
    if (first_avail >= need) {
        *msg = p + 5;
        *len = need;
        return 0;
    }
    /* split over records (legal, and a known trick to dodge fingerprinting): reassemble */
    uint8_t *buf = malloc(need);
    if (!buf)
        return GH_ENOMEM;
    size_t off = 0;
    for (pos = 0; off < need; pos += 5 + be16(p + pos + 3)) {
        size_t take = GH_MIN((size_t)be16(p + pos + 3), need - off);
        memcpy(buf + off, p + pos + 5, take);
        off += take;
    }
    *heap = buf;
    *msg = buf;
    *len = need;
    return 0;
}

/* Parses the ClientHello body b[0..n) into f. Extension types go to types[0..cap); when
 * there are more, *heap_types receives a malloc'd array (caller frees). */
static int parse_hello(const uint8_t *b, size_t n, gh_ja4_fields_t *f, uint16_t *types,
                       size_t cap, uint16_t **heap_types)
{
    size_t i = 0;
    *heap_types = NULL;
    if (n < 2 + 32 + 1)
        return GH_EINVAL;
    f->legacy_version = be16(b);
    i = 2 + 32;
    size_t sid = b[i++];
    if (sid > 32 || n - i < sid)
        return GH_EINVAL;
    i += sid;
    if (n - i < 2)
        return GH_EINVAL;
    size_t clen = be16(b + i);
    i += 2;
    if (clen < 2 || clen % 2 || n - i < clen)
        return GH_EINVAL;
    f->ciphers = b + i;
    f->ciphers_len = clen;
    i += clen;
    if (n - i < 1)
        return GH_EINVAL;
    size_t comp = b[i++];
    if (comp < 1 || n - i < comp)
        return GH_EINVAL;
    i += comp;
    f->exts = types;
    f->nexts = 0;
    if (i == n) /* no extension block: legal before TLS 1.3 */
        return 0;
    if (n - i < 2 || be16(b + i) != n - i - 2)
        return GH_EINVAL;
    i += 2;
    /* pass 1: structure and count */
    size_t count = 0;
    for (size_t j = i; j < n; count++) {
        if (n - j < 4 || be16(b + j + 2) > n - j - 4)
            return GH_EINVAL;
        j += 4 + be16(b + j + 2);
    }
    if (count > cap) {
        if (!(types = malloc(count * sizeof *types)))
            return GH_ENOMEM;
        *heap_types = types;
        f->exts = types;
    }
    /* pass 2: types, and the bodies JA4 reads (first occurrence; the core refuses
     * duplicates) */
    int seen_v = 0, seen_a = 0, seen_s = 0;
    for (size_t j = i, k = 0; j < n; k++) {
        uint16_t t = be16(b + j);
        size_t l = be16(b + j + 2);
        const uint8_t *body = b + j + 4;
        types[k] = t;
        if (t == EXT_VERSIONS && !seen_v++)
            f->supported_versions = body, f->supported_versions_len = l;
        else if (t == EXT_ALPN && !seen_a++)
            f->alpn = body, f->alpn_len = l;
        else if (t == EXT_SIGALGS && !seen_s++)
            f->sigalgs = body, f->sigalgs_len = l;
        j += 4 + l;
    }
    f->nexts = count;
    return 0;
}

int gh_ja4_from_client_hello(const uint8_t *p, size_t n, char out[GH_JA4_SIZE])
{
    const uint8_t *msg;
    size_t len;
    uint8_t *heap = NULL;
    uint16_t types[64], *heap_types = NULL;
    if (!p && n)
        return GH_EINVAL;
    int rc = find_message(p, n, &msg, &len, &heap);
    if (rc < 0)
        return rc;
    gh_ja4_fields_t f;
    memset(&f, 0, sizeof f);
    f.proto = 't';
    rc = parse_hello(msg + 4, len - 4, &f, types, GH_ARRAY_LEN(types), &heap_types);
    if (rc == 0)
        rc = gh_ja4_from_fields(&f, out);
    free(heap_types);
    free(heap);
    return rc;
}

/* ---- OpenSSL's view ---- */

int gh_ja4_from_ssl(SSL *ssl, char out[GH_JA4_SIZE])
{
    int *ids = NULL;
    size_t nids = 0;
    /* fails outside a client-hello callback (no ClientHello kept) */
    if (!ssl || !SSL_client_hello_get1_extensions_present(ssl, &ids, &nids))
        return GH_EINVAL;
    int rc = GH_EINVAL;
    uint16_t types[64], *t = types;
    if (SSL_client_hello_isv2(ssl) || SSL_is_dtls(ssl))
        goto out;
    if (nids > GH_ARRAY_LEN(types) && !(t = malloc(nids * sizeof *t))) {
        rc = GH_ENOMEM;
        goto out;
    }
    gh_ja4_fields_t f;
    memset(&f, 0, sizeof f);
    f.proto = 't';
    f.legacy_version = (uint16_t)SSL_client_hello_get0_legacy_version(ssl);
    const unsigned char *cs = NULL;
    f.ciphers_len = SSL_client_hello_get0_ciphers(ssl, &cs);
    f.ciphers = cs;
    for (size_t i = 0; i < nids; i++)
        t[i] = (uint16_t)ids[i];
    f.exts = t;
    f.nexts = nids;
    const unsigned char *body;
    size_t blen;
    if (SSL_client_hello_get0_ext(ssl, EXT_VERSIONS, &body, &blen))
        f.supported_versions = body, f.supported_versions_len = blen;
    if (SSL_client_hello_get0_ext(ssl, EXT_ALPN, &body, &blen))
        f.alpn = body, f.alpn_len = blen;
    if (SSL_client_hello_get0_ext(ssl, EXT_SIGALGS, &body, &blen))
        f.sigalgs = body, f.sigalgs_len = blen;
    rc = gh_ja4_from_fields(&f, out);
out:
    if (t != types)
        free(t);
    OPENSSL_free(ids);
    return rc;
}

/* Custom extensions that only make OpenSSL record the extension: never sent (add returns
 * 0 = skip, as a client and as a server), accepted as they come. */
static int observe_add(SSL *s, unsigned int type, unsigned int context, const unsigned char **out,
                       size_t *outlen, X509 *x, size_t chainidx, int *al, void *arg)
{
    return 0;
}

static int observe_parse(SSL *s, unsigned int type, unsigned int context, const unsigned char *in,
                         size_t inlen, X509 *x, size_t chainidx, int *al, void *arg)
{
    return 1;
}

int gh_ja4_ssl_ctx_observe_exts(SSL_CTX *ctx, const uint16_t *types, size_t n)
{
    static const uint16_t dflt[] = {
        0x000f, /* heartbeat */
        0x0011, /* status_request_v2 (Java) */
        0x0013, /* client_certificate_type */
        0x0014, /* server_certificate_type */
        0x0018, /* token_binding */
        0x0019, /* cached_info */
        0x001b, /* compress_certificate (built in from OpenSSL 3.2) */
        0x001c, /* record_size_limit (Firefox) */
        0x0022, /* delegated_credentials (Firefox) */
        0x4469, /* application_settings, old code point (Chrome) */
        0x44cd, /* application_settings (Chrome) */
        0xfe0d, /* encrypted_client_hello */
    };
    if (!ctx)
        return GH_EINVAL;
    if (!types)
        types = dflt, n = GH_ARRAY_LEN(dflt);
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_grease(types[i])) /* drawn at random per connection: nothing to observe */
            continue;
        if (SSL_CTX_add_custom_ext(ctx, types[i], SSL_EXT_CLIENT_HELLO, observe_add, NULL, NULL,
                                   observe_parse, NULL) == 1)
            added++;
    }
    return added;
}
