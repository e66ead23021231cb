/* fuzz_ja4.c: libFuzzer target for the JA4 fingerprint parser (src/tls/ja4.c).
 *
 * The input is parsed as a ClientHello (record stream or bare message). Beyond "does not
 * crash" it traps on broken invariants: only the documented codes come back; a success is
 * 36 characters of the JA4 alphabet in the a_b_c layout; the parser is positional (every
 * prefix answers GH_EAGAIN until the result is decided, and from there the same result,
 * whatever bytes follow); a hello gives the same JA4 bare and re-framed into records of an
 * input-derived size. The input is also cut into gh_ja4_fields_t directly, to reach the
 * core's body parsers with field combinations the wire format would not produce. */
#include "tls/ja4.h"

#include <stdlib.h>

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static int is_lhex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
static int is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void check_format(const char *o, char proto)
{
    static const char *const versions[] = {"13", "12", "11", "10", "s3", "s2", "00"};
    ASSERT(strlen(o) == GH_JA4_LEN);
    ASSERT(o[0] == proto);
    int vok = 0;
    for (size_t i = 0; i < GH_ARRAY_LEN(versions); i++)
        vok |= !memcmp(o + 1, versions[i], 2);
    ASSERT(vok);
    ASSERT(o[3] == 'd' || o[3] == 'i');
    for (int i = 4; i < 8; i++)
        ASSERT(o[i] >= '0' && o[i] <= '9');
    ASSERT(is_alnum(o[8]) && is_alnum(o[9]));
    ASSERT(o[10] == '_' && o[23] == '_');
    for (int i = 11; i < 36; i++)
        ASSERT(i == 23 || is_lhex(o[i]));
}

static int run(const uint8_t *p, size_t n, char *o)
{
    memset(o, 'X', GH_JA4_SIZE);
    int rc = gh_ja4_from_client_hello(p, n, o);
    ASSERT(rc == 0 || rc == GH_EAGAIN || rc == GH_EINVAL);
    return rc;
}

/* The answer for a prefix of length k, given the whole input's (rc, o). */
static void check_prefix(const uint8_t *p, size_t k, int rc, const char *o, int *decided)
{
    char o2[GH_JA4_SIZE];
    int rk = run(p, k, o2);
    if (rk == GH_EAGAIN) {
        ASSERT(!*decided); /* once decided, more bytes never make it wait again */
        return;
    }
    *decided = 1;
    ASSERT(rk == rc);
    if (rc == 0)
        ASSERT(!strcmp(o, o2));
}

static size_t reframe(const uint8_t *msg, size_t len, size_t k, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += k) {
        size_t f = GH_MIN(k, len - i);
        out[o++] = 0x16, out[o++] = 0x03, out[o++] = 0x01;
        out[o++] = (uint8_t)(f >> 8), out[o++] = (uint8_t)f;
        memcpy(out + o, msg + i, f);
        o += f;
    }
    return o;
}

/* The input cut into fields: [flags][ncipher bytes][next][sv len][alpn len][sig len] then
 * the slices, each clamped to what is left. */
static void fuzz_fields(const uint8_t *d, size_t n)
{
    if (n < 6)
        return;
    size_t i = 6, cl = d[1], ne = d[2] % 24, svl = d[3], al = d[4], sl = d[5];
    gh_ja4_fields_t f;
    memset(&f, 0, sizeof f);
    f.proto = (d[0] & 1) ? 'q' : 't';
    f.legacy_version = (uint16_t)(d[0] << 8 | d[1]);
    cl = GH_MIN(cl, n - i) & ~(size_t)1;
    f.ciphers = d + i, f.ciphers_len = cl, i += cl;
    uint16_t exts[24];
    static const uint16_t pick[] = {0x0000, 0x000d, 0x0010, 0x002b, 0x0a0a, 0x0017, 0xfafa, 0x0033};
    for (size_t k = 0; k < ne && i < n; k++, i++)
        exts[f.nexts++] = (d[i] & 0x80) ? (uint16_t)(d[i] << 8 | d[i]) : pick[d[i] % 8];
    f.exts = exts;
    svl = GH_MIN(svl, n - i), f.supported_versions = d + i, f.supported_versions_len = svl, i += svl;
    al = GH_MIN(al, n - i), f.alpn = d + i, f.alpn_len = al, i += al;
    sl = GH_MIN(sl, n - i), f.sigalgs = d + i, f.sigalgs_len = sl;
    char o[GH_JA4_SIZE];
    int rc = gh_ja4_from_fields(&f, o);
    ASSERT(rc == 0 || rc == GH_EINVAL);
    if (rc == 0)
        check_format(o, f.proto);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        seed = (seed ^ data[i]) * 16777619u;
    seed ^= (uint32_t)size;

    char o[GH_JA4_SIZE];
    int rc = run(data, size, o);
    if (rc == 0)
        check_format(o, 't');

    /* positional: all prefixes of small inputs, a few of large ones */
    int decided = 0;
    if (size <= 300) {
        for (size_t k = 0; k <= size; k++)
            check_prefix(data, k, rc, o, &decided);
        ASSERT(rc == GH_EAGAIN ? !decided : decided);
    } else {
        size_t ks[4] = {seed % size, (seed >> 9) % size, size - 1, size};
        for (int i = 0; i < 4; i++) {
            int d2 = 0;
            check_prefix(data, ks[i], rc, o, &d2);
        }
    }

    /* trailing bytes never change a decided result */
    uint8_t *buf = malloc(size * 6 + 64);
    ASSERT(buf);
    memcpy(buf, data, size);
    memset(buf + size, (int)(seed & 0xff), 16);
    char o2[GH_JA4_SIZE];
    int r2 = run(buf, size + 16, o2);
    if (rc != GH_EAGAIN) {
        ASSERT(r2 == rc);
        if (rc == 0)
            ASSERT(!strcmp(o, o2));
    }

    /* bare <-> records */
    if (rc == 0 && size >= 4 && data[0] == 0x01) {
        size_t len = 4 + ((size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3]);
        size_t rn = reframe(data, len, 1 + seed % 300, buf);
        ASSERT(run(buf, rn, o2) == 0 && !strcmp(o, o2));
    } else if (rc == 0 && size >= 9 && data[0] == 0x16) {
        size_t flen = (size_t)data[3] << 8 | data[4];
        size_t len = 4 + ((size_t)data[6] << 16 | (size_t)data[7] << 8 | data[8]);
        if (flen >= len) { /* the hello sits in the first record */
            ASSERT(run(data + 5, len, o2) == 0 && !strcmp(o, o2));
            size_t rn = reframe(data + 5, len, 1 + seed % 97, buf);
            ASSERT(run(buf, rn, o2) == 0 && !strcmp(o, o2));
        }
    }
    free(buf);

    fuzz_fields(data, size);
    return 0;
}
