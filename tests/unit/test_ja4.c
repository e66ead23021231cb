/* test_ja4.c: unit tests of the JA4 TLS client fingerprint (src/tls/ja4.c).
 *
 * Vectors: real ClientHellos captured on this machine from openssl s_client, curl and
 * Python ssl (OpenSSL 3.0), and synthetic ones, in tests/unit/data/ja4_*.bin; expected
 * values from the independent Python reference tests/unit/ja4_ref.py (which documents how
 * each file was made). Two of them are FoxIO's published fingerprints rebuilt from their
 * published field lists. Then: every prefix of a hello waits (GH_EAGAIN), GREASE is
 * ignored everywhere and only GREASE is, malformed hellos are refused field by field,
 * record fragmentation does not change the result, and gh_ja4_from_ssl inside OpenSSL's
 * client-hello callback agrees with the raw parser on the same hello (fed through a
 * memory BIO, and in real in-process handshakes), except for extensions OpenSSL does not
 * know, which is exactly what gh_ja4_ssl_ctx_observe_exts fixes. */
#include "tls/ja4.h"
#include "t.h"

#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MAXIN (1 << 18)

/* ---- the vectors ---- */

static const struct {
    const char *file, *ja4;
} vectors[] = {
    /* FoxIO published: rust/ja4/src/tls.rs unit test (Chrome field lists, 2023) */
    {"ja4_foxio_2023.bin", "t13d1516h2_8daaf6152771_e5627efa2ab1"},
    /* FoxIO published: pcap/sigalg-grease.pcapng (Chrome 152, GREASE inside sigalgs),
     * rebuilt from its JA4_ro field order; then re-GREASEd, bare, and fragmented */
    {"ja4_foxio_chrome152.bin", "t13d1517h2_8daaf6152771_cb7bf5808d99"},
    {"ja4_foxio_chrome152_regrease.bin", "t13d1517h2_8daaf6152771_cb7bf5808d99"},
    {"ja4_foxio_chrome152_bare.bin", "t13d1517h2_8daaf6152771_cb7bf5808d99"},
    {"ja4_foxio_chrome152_frag.bin", "t13d1517h2_8daaf6152771_cb7bf5808d99"},
    {"ja4_foxio_chrome152_frag1.bin", "t13d1517h2_8daaf6152771_cb7bf5808d99"},
    /* captured on loopback (OpenSSL 3.0.19) */
    {"ja4_openssl_default.bin", "t13d311000_e8f1e7e78f70_1f22a2ca17c4"}, /* no ALPN */
    {"ja4_openssl_alpn.bin", "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4"},
    {"ja4_openssl_nosni.bin", "t13i310900_e8f1e7e78f70_1f22a2ca17c4"},   /* no SNI */
    {"ja4_openssl_tls12.bin", "t12d2808h1_d943125447b4_e7e480e5a997"},   /* TLS 1.2 only */
    {"ja4_openssl_tls11.bin", "t11d090600_c491f621fb4c_195413a0cc0f"},
    {"ja4_curl_h2.bin", "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"},
    {"ja4_curl_ip_h11.bin", "t13i3111h1_e8f1e7e78f70_b26ce05bbdd6"},     /* IP: no SNI */
    {"ja4_curl_tls12.bin", "t12d2807h2_d943125447b4_a44c6288192a"},
    {"ja4_python_h11.bin", "t13d3112h1_e8f1e7e78f70_d41ae481755e"},
    {"ja4_python_tls12.bin", "t12d070700_3c41e4bed497_e7e480e5a997"},
    /* synthetic: ALPN (hex when the first or last byte is not alphanumeric) */
    {"ja4_alpn_hex_ab.bin", "t13d0206ab_62ed6f6ca7ad_e12c865f31a5"},     /* ab */
    {"ja4_alpn_hex_ad.bin", "t13d0206ad_62ed6f6ca7ad_e12c865f31a5"},     /* ab cd */
    {"ja4_alpn_hex_3b.bin", "t13d02063b_62ed6f6ca7ad_e12c865f31a5"},     /* "0" ab */
    {"ja4_alpn_hex_3d.bin", "t13d02063d_62ed6f6ca7ad_e12c865f31a5"},     /* "01" ab cd */
    {"ja4_alpn_alnum_01.bin", "t13d020601_62ed6f6ca7ad_e12c865f31a5"},   /* "0" ab cd "1" */
    {"ja4_alpn_single_h.bin", "t13d0206hh_62ed6f6ca7ad_e12c865f31a5"},   /* "h" */
    {"ja4_alpn_dash.bin", "t13d020622_62ed6f6ca7ad_e12c865f31a5"},       /* "-h2" */
    /* synthetic: GREASE */
    {"ja4_grease_ciphers_only.bin", "t13d000500_000000000000_e12c865f31a5"},
    {"ja4_grease_everywhere.bin", "t13d0205h2_777cda164f4b_7a92526c31dc"},
    {"ja4_sigalgs_all_grease.bin", "t13d010300_0f2cb44170f4_90f4629a5905"}, /* no "_" in c */
    {"ja4_versions_all_grease.bin", "t12d010200_f06271c2b022_b9a491fefe05"}, /* legacy wins */
    /* synthetic: versions, empty lists, caps */
    {"ja4_version_draft.bin", "t00i010100_0f2cb44170f4_b9a491fefe05"},
    {"ja4_no_extensions_tls10.bin", "t10i030000_5704bdfc91c6_000000000000"},
    {"ja4_empty_extensions.bin", "t11i010000_ba72b8082249_000000000000"},
    {"ja4_sni_alpn_only.bin", "t12d0102h1_0f2cb44170f4_000000000000"},
    {"ja4_legacy_ssl3.bin", "ts3i020000_ecbe99380d04_000000000000"},
    {"ja4_legacy_ssl2.bin", "ts2i010000_a8f3e973773c_000000000000"},
    {"ja4_many_ciphers_exts.bin", "t12d999900_78cd3e4e4f62_dc70904fac7e"},
    {"ja4_huge_lists.bin", "t12i999900_b4aacf48d770_bac9d4808b5d"}, /* 5000 ciphers, 4K records */
    {"ja4_scsv_and_dup_ciphers.bin", "t12d040100_87828e7418ca_000000000000"},
    {"ja4_trailing_bytes.bin", "t13d010500_0f2cb44170f4_e12c865f31a5"},
};

static uint8_t *vec_data[GH_ARRAY_LEN(vectors)];
static size_t vec_len[GH_ARRAY_LEN(vectors)];

/* Reads tests/unit/data/NAME relative to the repository (found from __FILE__, as
 * test_config does, so the test runs from any directory the Makefile builds it in). */
static uint8_t *load(const char *name, size_t *n)
{
    char prefix[512] = "", path[1024];
    const char *me = __FILE__, *end = strstr(me, "tests/unit/");
    if (end && (size_t)(end - me) < sizeof prefix)
        memcpy(prefix, me, (size_t)(end - me)), prefix[end - me] = '\0';
    snprintf(path, sizeof path, "%stests/unit/data/%s", prefix, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    uint8_t *b = malloc(MAXIN), *shrunk;
    *n = b ? fread(b, 1, MAXIN, f) : 0;
    fclose(f);
    if (b && (shrunk = realloc(b, *n ? *n : 1)))
        b = shrunk;
    return b;
}

static int ja4(const uint8_t *p, size_t n, char *out) { return gh_ja4_from_client_hello(p, n, out); }

#define CHECK_JA4(p, n, want)                                                             \
    do {                                                                                  \
        char o_[GH_JA4_SIZE] = "";                                                        \
        int r_ = ja4((p), (n), o_);                                                       \
        CHECK_INT(r_, 0);                                                                 \
        if (r_ == 0 && strcmp(o_, (want)) != 0) {                                         \
            t_cur_fail++;                                                                 \
            fprintf(stderr, "%s:%d: JA4 %s, expected %s\n", __FILE__, __LINE__, o_, want); \
        }                                                                                 \
    } while (0)

static void test_vectors(void)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(vectors); i++) {
        CHECK(vec_data[i] != NULL);
        if (!vec_data[i])
            continue;
        char o[GH_JA4_SIZE];
        int rc = ja4(vec_data[i], vec_len[i], o);
        if (rc != 0 || strcmp(o, vectors[i].ja4) != 0) {
            t_cur_fail++;
            fprintf(stderr, "%s: rc %d, JA4 %s, expected %s\n", vectors[i].file, rc,
                    rc ? "-" : o, vectors[i].ja4);
        }
        CHECK_INT(strlen(o), GH_JA4_LEN);
    }
}

/* Every proper prefix of the hello answers GH_EAGAIN; from the hello's end on, the same
 * JA4 whatever follows. */
static void test_prefixes(void)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(vectors); i++) {
        const uint8_t *p = vec_data[i];
        size_t n = vec_len[i], k;
        if (!p)
            continue;
        char o[GH_JA4_SIZE];
        int rc = GH_EAGAIN;
        for (k = 0; k <= n && (rc = ja4(p, k, o)) == GH_EAGAIN; k++)
            ;
        CHECK_INT(rc, 0);
        if (rc != 0)
            continue;
        if (strcmp(o, vectors[i].ja4) != 0) {
            t_cur_fail++;
            fprintf(stderr, "%s: at %zu bytes %s\n", vectors[i].file, k, o);
        }
        for (size_t m = k; m <= n; m += 1 + (n - k) / 7) {
            char o2[GH_JA4_SIZE];
            CHECK_INT(ja4(p, m, o2), 0);
            CHECK(strcmp(o, o2) == 0);
        }
        if (strcmp(vectors[i].file, "ja4_trailing_bytes.bin") == 0)
            CHECK(k < n);
        else
            CHECK_INT(k, n);
    }
}

/* The FoxIO 2023 field lists through the core directly (no parsing involved). */
static void test_fields(void)
{
    static const uint8_t ciphers[] = {0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f,
                                      0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9, 0xcc, 0xa8, 0xc0, 0x13,
                                      0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35};
    static const uint16_t exts[] = {0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017,
                                    0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b,
                                    0xff01, 0x000b, 0x000a, 0x0015};
    static const uint8_t sv[] = {6, 0x2a, 0x2a, 0x03, 0x04, 0x03, 0x03};
    static const uint8_t alpn[] = {0, 12, 2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    static const uint8_t sigs[] = {0,    16,   0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05,
                                   0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06, 0x01};
    gh_ja4_fields_t f = {'t', 0x0303, ciphers, sizeof ciphers, exts, GH_ARRAY_LEN(exts),
                         sv, sizeof sv, alpn, sizeof alpn, sigs, sizeof sigs};
    char o[GH_JA4_SIZE];
    CHECK_INT(gh_ja4_from_fields(&f, o), 0);
    CHECK(strcmp(o, "t13d1516h2_8daaf6152771_e5627efa2ab1") == 0);
    f.proto = 'q'; /* passed through for a QUIC caller */
    CHECK_INT(gh_ja4_from_fields(&f, o), 0);
    CHECK(strcmp(o, "q13d1516h2_8daaf6152771_e5627efa2ab1") == 0);
    /* inconsistent fields */
    f.ciphers_len = 3;
    CHECK_INT(gh_ja4_from_fields(&f, o), GH_EINVAL);
    f.ciphers_len = sizeof ciphers;
    f.alpn = NULL, f.alpn_len = 0; /* ALPN listed without its body */
    CHECK_INT(gh_ja4_from_fields(&f, o), GH_EINVAL);
    CHECK_INT(gh_ja4_from_fields(NULL, o), GH_EINVAL);
}

/* ---- hellos built in the test ---- */

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;
    for (; *h; h++) {
        if (*h == ' ')
            continue;
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
        h++;
    }
    return n;
}

#define ZERO32 "0000000000000000000000000000000000000000000000000000000000000000"
/* legacy_version 0x0303, random, empty session id, ciphers 1301 c02b, null compression */
#define PFX "0303" ZERO32 "00 0004 1301c02b 0100"

/* One record holding a ClientHello of body prefix + extensions (exts NULL: no extension
 * block; otherwise its length is computed). Returns the size. */
static size_t hello(uint8_t *out, const char *prefix, const char *exts)
{
    uint8_t *b = out + 9;
    size_t n = unhex(prefix, b);
    if (exts) {
        size_t e = unhex(exts, b + n + 2);
        b[n] = (uint8_t)(e >> 8), b[n + 1] = (uint8_t)e;
        n += 2 + e;
    }
    out[0] = 0x16, out[1] = 0x03, out[2] = 0x01;
    out[3] = (uint8_t)((n + 4) >> 8), out[4] = (uint8_t)(n + 4);
    out[5] = 0x01, out[6] = (uint8_t)(n >> 16), out[7] = (uint8_t)(n >> 8), out[8] = (uint8_t)n;
    return n + 9;
}

#define SNI "0000 0009 0007 00 0004 612e7474"            /* "a.tt" */
#define SV13 "002b 0003 02 0304"
#define SIGS "000d 0006 0004 0403 0804"
#define ALPN_H2 "0010 0005 0003 02 6832"
#define GROUPS "000a 0004 0002 001d"

static int rc_of(const char *prefix, const char *exts)
{
    static uint8_t b[8192];
    char o[GH_JA4_SIZE];
    return ja4(b, hello(b, prefix, exts), o);
}

static int same_ja4(const char *p1, const char *e1, const char *p2, const char *e2)
{
    static uint8_t b1[8192], b2[8192];
    char o1[GH_JA4_SIZE] = "1", o2[GH_JA4_SIZE] = "2";
    int r1 = ja4(b1, hello(b1, p1, e1), o1), r2 = ja4(b2, hello(b2, p2, e2), o2);
    if (r1 || r2)
        fprintf(stderr, "same_ja4: rc %d %d\n", r1, r2);
    return r1 == 0 && r2 == 0 && strcmp(o1, o2) == 0;
}

#define G16 "0a0a1a1a2a2a3a3a4a4a5a5a6a6a7a7a8a8a9a9aaaaababacacadadaeaeafafa"

/* All 16 GREASE values, anywhere JA4 looks, change nothing; look-alikes count. */
static void test_grease(void)
{
#define PLAIN_E SNI SV13 SIGS ALPN_H2
    const char *plain_p = PFX, *plain_e = PLAIN_E;
    /* GREASE ciphers */
    CHECK(same_ja4(plain_p, plain_e,
                   "0303" ZERO32 "00 0024 " G16 "1301c02b 0100", plain_e));
    /* GREASE extensions (16 distinct types, empty and non-empty bodies) */
    CHECK(same_ja4(plain_p, plain_e, plain_p,
                   "0a0a0000 1a1a000100" SNI "2a2a0000 3a3a0000 4a4a0000 5a5a0000" SV13
                   "6a6a0000 7a7a0000 8a8a0000 9a9a0000 aaaa0000" SIGS "baba0000 caca0000"
                   "dada0000 eaea0000" ALPN_H2 "fafa0002 0000"));
    /* GREASE inside supported_versions and signature_algorithms */
    CHECK(same_ja4(plain_p, plain_e, plain_p,
                   SNI "002b 0007 06 fafa 0304 0a0a" "000d 000a 0008 1a1a 0403 2a2a 0804"
                   ALPN_H2));
    /* look-alikes (0x0a1a, 0x0b0b, 0x1a0a) are real values */
    CHECK(!same_ja4(plain_p, plain_e, "0303" ZERO32 "00 0006 1301c02b0a1a 0100", plain_e));
    CHECK(!same_ja4(plain_p, plain_e, plain_p, PLAIN_E "0b0b0000"));
    CHECK(!same_ja4(plain_p, plain_e, plain_p,
                    SNI SV13 "000d 0008 0006 0403 0804 1a0a" ALPN_H2));
    /* a GREASE ALPN protocol name is just bytes: its first protocol still decides */
    static uint8_t b[512];
    char o[GH_JA4_SIZE];
    CHECK_INT(ja4(b, hello(b, PFX, SNI SV13 "0010 0005 0003 02 0a0a"), o), 0);
    CHECK(memcmp(o + 8, "0a", 2) == 0);
}

/* Hand-built hellos exercising each part of a. */
static void test_parts(void)
{
    static uint8_t b[8192];
    char o[GH_JA4_SIZE];
    /* no SNI, no ALPN, TLS 1.3 through supported_versions */
    CHECK_INT(ja4(b, hello(b, PFX, SV13 SIGS GROUPS), o), 0);
    CHECK(memcmp(o, "t13i020300_", 11) == 0);
    /* TLS 1.2 only: no supported_versions, legacy 0x0303 */
    CHECK_INT(ja4(b, hello(b, PFX, SNI SIGS GROUPS ALPN_H2), o), 0);
    CHECK(memcmp(o, "t12d0204h2_", 11) == 0);
    /* supported_versions beats legacy_version, highest value wins whatever the order */
    CHECK_INT(ja4(b, hello(b, "0301" ZERO32 "00 0002 1301 0100", "002b 0007 06 0302 0304 0303"), o), 0);
    CHECK(memcmp(o, "t13i010100_", 11) == 0);
    /* same ciphers and extensions in another order: same fingerprint (sorted) */
    CHECK(same_ja4(PFX, SNI SV13 SIGS GROUPS ALPN_H2,
                   "0303" ZERO32 "00 0004 c02b1301 0100", ALPN_H2 GROUPS SIGS SV13 SNI));
    /* ... but signature algorithms keep their order */
    CHECK(!same_ja4(PFX, SNI SV13 SIGS, PFX, SNI SV13 "000d 0006 0004 0804 0403"));
    /* SNI and ALPN are counted in a, left out of c */
    CHECK_INT(ja4(b, hello(b, PFX, SNI ALPN_H2), o), 0);
    CHECK(memcmp(o, "t12d0202h2_", 11) == 0 && strcmp(o + 23, "_000000000000") == 0);
    /* a non-empty session id and several compression methods are skipped correctly */
    CHECK(same_ja4(PFX, SNI SV13, "0303" ZERO32 "20" ZERO32 "0004 1301c02b 020100", SNI SV13));
}

#define REJ(prefix, exts, err) CHECK_INT(rc_of((prefix), (exts)), (err))

static void test_malformed_fields(void)
{
    /* the well-formed baseline */
    REJ(PFX, SNI SV13 SIGS ALPN_H2, 0);
    REJ(PFX, NULL, 0);
    /* session id longer than 32, or running past the hello */
    REJ("0303" ZERO32 "21" ZERO32 "00 0002 1301 0100", NULL, GH_EINVAL);
    REJ("0303" ZERO32 "05 0000", NULL, GH_EINVAL);
    /* cipher_suites: odd length, empty, past the end */
    REJ("0303" ZERO32 "00 0003 130113 0100", NULL, GH_EINVAL);
    REJ("0303" ZERO32 "00 0000 0100", NULL, GH_EINVAL);
    REJ("0303" ZERO32 "00 0008 1301", NULL, GH_EINVAL);
    /* compression methods: none, past the end, missing */
    REJ("0303" ZERO32 "00 0002 1301 00", NULL, GH_EINVAL);
    REJ("0303" ZERO32 "00 0002 1301 03 00", NULL, GH_EINVAL);
    REJ("0303" ZERO32 "00 0002 1301", NULL, GH_EINVAL);
    /* a body too short for version and random */
    REJ("0303 0000", NULL, GH_EINVAL);
    /* extension block: length off by one either way, a lone byte, an extension past it */
    REJ(PFX "000a" SNI, NULL, GH_EINVAL);
    REJ(PFX "000c" SNI, NULL, GH_EINVAL);
    REJ(PFX "00", NULL, GH_EINVAL);
    REJ(PFX, "0017 0004 00", GH_EINVAL);
    REJ(PFX, "001700", GH_EINVAL);
    /* duplicate extension; duplicate SNI; duplicate GREASE is tolerated (ignored) */
    REJ(PFX, "0017 0000 0017 0000", GH_EINVAL);
    REJ(PFX, SNI SNI, GH_EINVAL);
    REJ(PFX, "0a0a 0000 0a0a 0000", 0);
    /* supported_versions: length byte wrong, odd, empty, no body */
    REJ(PFX, "002b 0003 04 0304", GH_EINVAL);
    REJ(PFX, "002b 0004 03 030403", GH_EINVAL);
    REJ(PFX, "002b 0001 00", GH_EINVAL);
    REJ(PFX, "002b 0000", GH_EINVAL);
    /* ALPN: empty list, empty protocol, protocol past the list, list length wrong */
    REJ(PFX, "0010 0002 0000", GH_EINVAL);
    REJ(PFX, "0010 0004 0002 00 00", GH_EINVAL);
    REJ(PFX, "0010 0005 0003 05 6832", GH_EINVAL);
    REJ(PFX, "0010 0005 0004 02 6832", GH_EINVAL);
    REJ(PFX, "0010 0000", GH_EINVAL);
    /* signature_algorithms: odd, empty, length wrong */
    REJ(PFX, "000d 0005 0003 040308", GH_EINVAL);
    REJ(PFX, "000d 0002 0000", GH_EINVAL);
    REJ(PFX, "000d 0006 0006 0403 0804", GH_EINVAL);
    /* bodies JA4 does not read are not judged (OpenSSL does that) */
    REJ(PFX, "0000 0001 ff", 0);
}

static void test_malformed_framing(void)
{
    static uint8_t b[4096];
    char o[GH_JA4_SIZE];
    size_t n = hello(b, PFX, SNI SV13 SIGS ALPN_H2);
    CHECK_INT(ja4(b, n, o), 0);

    CHECK_INT(ja4(b, 0, o), GH_EAGAIN);
    CHECK_INT(ja4(NULL, 0, o), GH_EAGAIN);
    CHECK_INT(ja4(NULL, 5, o), GH_EINVAL);
    static const uint8_t not_tls[][6] = {
        {0x17, 0x03, 0x03, 0x00, 0x01, 0x00}, /* application data */
        {0x15, 0x03, 0x01, 0x00, 0x02, 0x02}, /* alert */
        {0x80, 0x2e, 0x01, 0x00, 0x02, 0x00}, /* SSLv2-framed hello */
        {0x47, 0x45, 0x54, 0x20, 0x2f, 0x20}, /* "GET / " */
        {0x16, 0x02, 0x00, 0x00, 0x01, 0x01}, /* record major 2 */
        {0x16, 0x03, 0x01, 0x00, 0x00, 0x01}, /* zero-length record */
        {0x16, 0x03, 0x01, 0x40, 0x01, 0x01}, /* record longer than 2^14 */
        {0x16, 0x03, 0x01, 0x00, 0x04, 0x02}, /* ServerHello */
        {0x02, 0x00, 0x00, 0x26, 0x03, 0x03}, /* bare ServerHello */
        {0x01, 0x02, 0x01, 0x45, 0x03, 0x03}, /* bare hello longer than any ClientHello */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(not_tls); i++)
        CHECK_INT(ja4(not_tls[i], 6, o), GH_EINVAL);

    uint8_t c[4096];
    /* handshake length beyond the ClientHello maximum (in a record) */
    memcpy(c, b, n);
    c[6] = 0x02, c[7] = 0x01, c[8] = 0x45; /* 131397 */
    CHECK_INT(ja4(c, n, o), GH_EINVAL);
    /* handshake longer than the record, no next record yet: wait; a non-handshake next
     * record: refused */
    memcpy(c, b, n);
    c[8] += 1;
    CHECK_INT(ja4(c, n, o), GH_EAGAIN);
    memcpy(c + n, "\x15\x03\x03\x00\x02\x02\x28", 7);
    CHECK_INT(ja4(c, n + 7, o), GH_EINVAL);
    /* the next record's header split: wait; major version wrong: refused */
    memcpy(c + n, "\x16", 1);
    CHECK_INT(ja4(c, n + 1, o), GH_EAGAIN);
    memcpy(c + n, "\x16\x04", 2);
    CHECK_INT(ja4(c, n + 2, o), GH_EINVAL);
    /* handshake shorter than its record: the hello is judged on its own length */
    memcpy(c, b, n);
    c[8] -= 1;
    CHECK_INT(ja4(c, n, o), GH_EINVAL);
}

/* Re-frame a hello as records of k bytes (k = 1..), and bare: same JA4. */
static size_t reframe(const uint8_t *msg, size_t len, size_t k, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += k) {
        size_t f = GH_MIN(k, len - i);
        out[o++] = 0x16, out[o++] = 0x03, out[o++] = 0x03;
        out[o++] = (uint8_t)(f >> 8), out[o++] = (uint8_t)f;
        memcpy(out + o, msg + i, f);
        o += f;
    }
    return o;
}

static void test_fragmentation(void)
{
    for (size_t v = 0; v < GH_ARRAY_LEN(vectors); v++) {
        const uint8_t *p = vec_data[v];
        /* the message as one piece, from vectors whose first record has its header */
        if (!p || p[0] != 0x16 || vec_len[v] < 9 || p[3] != 0 || p[4] < 4 ||
            strstr(vectors[v].file, "huge"))
            continue;
        size_t need = 4 + ((size_t)p[6] << 16 | (size_t)p[7] << 8 | p[8]);
        uint8_t *msg = malloc(need), *rec = malloc(need * 6 + 16);
        size_t got = 0;
        for (size_t pos = 0; got < need && pos + 5 <= vec_len[v];) {
            size_t f = (size_t)p[pos + 3] << 8 | p[pos + 4];
            size_t take = GH_MIN(f, need - got);
            memcpy(msg + got, p + pos + 5, take);
            got += take;
            pos += 5 + f;
        }
        CHECK_INT(got, need);
        CHECK_JA4(msg, need, vectors[v].ja4);
        static const size_t ks[] = {1, 2, 3, 4, 5, 7, 64, 255, 1000};
        for (size_t i = 0; i < GH_ARRAY_LEN(ks); i++) {
            size_t rn = reframe(msg, need, ks[i], rec);
            CHECK_JA4(rec, rn, vectors[v].ja4);
            /* still positional: a cut anywhere waits */
            char o[GH_JA4_SIZE];
            CHECK_INT(ja4(rec, rn - 1, o), GH_EAGAIN);
            CHECK_INT(ja4(rec, rn / 2, o), GH_EAGAIN);
        }
        free(msg);
        free(rec);
    }
}

/* ---- OpenSSL: the client-hello callback ---- */

typedef struct {
    int calls;
    int rc[2];
    char ja4[2][GH_JA4_SIZE];
    size_t hello_len[2];
    uint8_t hello[2][1 << 17]; /* bare ClientHellos seen by msg_callback */
} probe_t;

static probe_t *probe;

static int hello_cb(SSL *s, int *al, void *arg)
{
    if (probe->calls < 2) {
        probe->rc[probe->calls] = gh_ja4_from_ssl(s, probe->ja4[probe->calls]);
        probe->calls++;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    const uint8_t *b = buf;
    if (write_p || content_type != SSL3_RT_HANDSHAKE || len == 0 || b[0] != SSL3_MT_CLIENT_HELLO)
        return;
    for (int i = 0; i < 2; i++)
        if (probe->hello_len[i] == 0) {
            if (len <= sizeof probe->hello[i]) {
                memcpy(probe->hello[i], b, len);
                probe->hello_len[i] = len;
            }
            return;
        }
}

static EVP_PKEY *key;
static X509 *cert;

/* A self-signed P-256 certificate for gatehouse.test, made in memory. */
static int make_cert(void)
{
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    if (!key || !cert)
        return 0;
    X509_NAME *nm = X509_get_subject_name(cert);
    return ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) &&
           X509_gmtime_adj(X509_getm_notBefore(cert), -60) &&
           X509_gmtime_adj(X509_getm_notAfter(cert), 3600) && X509_set_pubkey(cert, key) &&
           X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                                      (const unsigned char *)"gatehouse.test", -1, -1, 0) &&
           X509_set_issuer_name(cert, nm) && X509_sign(cert, key, EVP_sha256()) > 0;
}

static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    unsigned char *o;
    if (SSL_select_next_proto(&o, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx(int observe, const uint16_t *extra, size_t nextra)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
    SSL_CTX_set_msg_callback(ctx, msg_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    if (observe)
        gh_ja4_ssl_ctx_observe_exts(ctx, NULL, 0);
    if (extra)
        gh_ja4_ssl_ctx_observe_exts(ctx, extra, nextra);
    return ctx;
}

/* Feeds raw bytes to a fresh server SSL as if they came from the network and runs it
 * until the ClientHello has been processed. */
static size_t reframe(const uint8_t *msg, size_t len, size_t k, uint8_t *out);

static void feed(SSL_CTX *ctx, const uint8_t *p, size_t n)
{
    static uint8_t rec[MAXIN + 64];
    if (n && p[0] == 0x01 && n <= MAXIN) /* a bare message: OpenSSL reads records */
        n = reframe(p, n, 16384, rec), p = rec;
    memset(probe, 0, sizeof *probe);
    SSL *s = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_write(rb, p, (int)n);
    SSL_set_bio(s, rb, wb);
    (void)SSL_accept(s);
    SSL_free(s);
    ERR_clear_error();
}

/* The types of a bare ClientHello's extensions (test-side walker, trusting the input,
 * which the raw parser accepted). Returns the count; *block and *blen: the extension list. */
static size_t ext_types(const uint8_t *m, size_t len, uint16_t *types, size_t cap,
                        size_t *block, size_t *blen)
{
    size_t i = 4 + 2 + 32;
    i += 1 + m[i];
    i += 2 + ((size_t)m[i] << 8 | m[i + 1]);
    i += 1 + m[i];
    *block = i;
    *blen = 0;
    if (i >= len)
        return 0;
    *blen = (size_t)m[i] << 8 | m[i + 1];
    size_t k = 0;
    for (i += 2; i < len && k < cap; k++) {
        types[k] = (uint16_t)(m[i] << 8 | m[i + 1]);
        i += 4 + ((size_t)m[i + 2] << 8 | m[i + 3]);
    }
    return k;
}

static int is_grease16(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

static int in_list(uint16_t t, const uint16_t *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == t)
            return 1;
    return 0;
}

/* The JA4 OpenSSL's view of a bare hello should give: the hello with every extension
 * that OpenSSL neither knows nor has registered (`seen`) cut out, hashed by the raw
 * parser. Returns the number of extensions cut. */
static int visible_ja4(const uint8_t *m, size_t len, const uint16_t *seen, size_t nseen,
                       char *out)
{
    static uint16_t types[4096];
    static uint8_t cut[1 << 17];
    size_t block, blen, nt = ext_types(m, len, types, GH_ARRAY_LEN(types), &block, &blen);
    int dropped = 0;
    memcpy(cut, m, block);
    size_t o = block + (nt || blen ? 2 : 0);
    for (size_t i = block + 2, k = 0; k < nt; k++) {
        size_t l = 4 + ((size_t)m[i + 2] << 8 | m[i + 3]);
        uint16_t t = types[k];
        if (is_grease16(t) || SSL_extension_supported(t) || in_list(t, seen, nseen)) {
            memcpy(cut + o, m + i, l);
            o += l;
        } else {
            dropped++;
        }
        i += l;
    }
    if (o > block) {
        cut[block] = (uint8_t)((o - block - 2) >> 8), cut[block + 1] = (uint8_t)(o - block - 2);
    }
    size_t body = o - 4;
    cut[1] = (uint8_t)(body >> 16), cut[2] = (uint8_t)(body >> 8), cut[3] = (uint8_t)body;
    int rc = ja4(cut, o, out);
    return rc == 0 ? dropped : -1;
}

static const uint16_t default_seen[] = {0x000f, 0x0011, 0x0013, 0x0014, 0x0018, 0x0019,
                                        0x001b, 0x001c, 0x0022, 0x4469, 0x44cd, 0xfe0d};

/* Every vector through OpenSSL: msg_callback hands over the same hello (bare) and the raw
 * parser gives the vector's JA4 on it; gh_ja4_from_ssl gives the JA4 of the extensions
 * OpenSSL reports, and exactly the raw JA4 when it reports them all. */
static void test_ssl_feed(void)
{
    SSL_CTX *plain = server_ctx(0, NULL, 0), *obs = server_ctx(1, NULL, 0);
    CHECK(plain && obs);
    if (!plain || !obs)
        return;
    int differ = 0;
    for (size_t v = 0; v < GH_ARRAY_LEN(vectors); v++) {
        if (!vec_data[v])
            continue;
        for (int o = 0; o < 2; o++) {
            feed(o ? obs : plain, vec_data[v], vec_len[v]);
            if (probe->calls != 1 || probe->hello_len[0] == 0) {
                t_cur_fail++;
                fprintf(stderr, "%s: callback %d, msg_callback %zu bytes\n", vectors[v].file,
                        probe->calls, probe->hello_len[0]);
                continue;
            }
            CHECK_JA4(probe->hello[0], probe->hello_len[0], vectors[v].ja4);
            char want[GH_JA4_SIZE];
            int dropped = visible_ja4(probe->hello[0], probe->hello_len[0], default_seen,
                                      o ? GH_ARRAY_LEN(default_seen) : 0, want);
            CHECK(dropped >= 0);
            if (probe->rc[0] != 0 || strcmp(probe->ja4[0], want) != 0) {
                t_cur_fail++;
                fprintf(stderr, "%s%s: from_ssl rc %d %s, expected %s\n", vectors[v].file,
                        o ? " (observe)" : "", probe->rc[0], probe->ja4[0], want);
            }
            if (getenv("JA4_VERBOSE")) /* the table behind the caveat in ja4.h */
                printf("%-34s %s  ssl%s %s (%d unknown to OpenSSL)\n", vectors[v].file,
                       vectors[v].ja4, o ? "+observe" : "", probe->ja4[0], dropped);
            if (dropped == 0)
                CHECK(strcmp(probe->ja4[0], vectors[v].ja4) == 0);
            else
                differ++;
        }
    }
    /* the browsers' hellos are the ones that differ without help */
    CHECK(differ > 0);

    /* FoxIO 2023 (Chrome): exact once the default types are observed */
    feed(obs, vec_data[0], vec_len[0]);
    CHECK(strcmp(probe->ja4[0], vectors[0].ja4) == 0);
    /* ... and without: compress_certificate and ALPS are not counted (16 -> 14) */
    feed(plain, vec_data[0], vec_len[0]);
    CHECK(memcmp(probe->ja4[0], "t13d1514h2_8daaf6152771_", 24) == 0);
    CHECK(strcmp(probe->ja4[0] + 24, vectors[0].ja4 + 24) != 0);
    /* Chrome 152 also sends 0xca34: exact when that is observed too */
    static const uint16_t ca34[] = {0xca34, 0x0a0a /* GREASE: skipped */};
    SSL_CTX *obs2 = server_ctx(1, ca34, GH_ARRAY_LEN(ca34));
    feed(obs2, vec_data[1], vec_len[1]);
    CHECK(strcmp(probe->ja4[0], vectors[1].ja4) == 0);
    /* registering again adds nothing; NULL ctx refused */
    CHECK_INT(gh_ja4_ssl_ctx_observe_exts(obs2, ca34, GH_ARRAY_LEN(ca34)), 0);
    CHECK_INT(gh_ja4_ssl_ctx_observe_exts(NULL, NULL, 0), GH_EINVAL);
    SSL_CTX_free(obs2);

    /* outside the callback there is no ClientHello */
    SSL *s = SSL_new(plain);
    char o[GH_JA4_SIZE];
    CHECK_INT(gh_ja4_from_ssl(s, o), GH_EINVAL);
    CHECK_INT(gh_ja4_from_ssl(NULL, o), GH_EINVAL);
    SSL_free(s);
    SSL_CTX_free(plain);
    SSL_CTX_free(obs);
}

/* Moves what `from` wrote to `to`'s input; the first flight is kept in first[]. */
static size_t shuttle(BIO *from, BIO *to, uint8_t *keep, size_t *kept, size_t cap)
{
    uint8_t buf[16384];
    size_t moved = 0;
    int r;
    while ((r = BIO_read(from, buf, sizeof buf)) > 0) {
        if (keep && *kept + (size_t)r <= cap)
            memcpy(keep + *kept, buf, (size_t)r), *kept += (size_t)r;
        BIO_write(to, buf, r);
        moved += (size_t)r;
    }
    return moved;
}

/* A real handshake in memory between an OpenSSL client and a server whose client-hello
 * callback fingerprints the client. Returns 1 when it completed. */
static int handshake(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, uint8_t *first,
                     size_t *first_len, char *alpn_out)
{
    memset(probe, 0, sizeof *probe);
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
    SSL_set_bio(c, c_in, c_out);
    SSL_set_bio(s, s_in, s_out);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    *first_len = 0;
    int done_c = 0, done_s = 0, flights = 0;
    for (int i = 0; i < 50 && !(done_c && done_s); i++) {
        done_c = SSL_do_handshake(c) == 1;
        shuttle(c_out, s_in, flights == 0 ? first : NULL, first_len, 1 << 17);
        flights++;
        done_s = SSL_do_handshake(s) == 1;
        shuttle(s_out, c_in, NULL, NULL, 0);
    }
    const unsigned char *a = NULL;
    unsigned int al = 0;
    SSL_get0_alpn_selected(c, &a, &al);
    snprintf(alpn_out, 16, "%.*s", (int)al, a ? (const char *)a : "");
    SSL_free(c);
    SSL_free(s);
    ERR_clear_error();
    return done_c && done_s;
}

static void test_handshake(void)
{
    static uint8_t first[1 << 17];
    size_t first_len;
    char alpn[16];
    SSL_CTX *sctx = server_ctx(0, NULL, 0), *sobs = server_ctx(1, NULL, 0);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    CHECK(sctx && sobs && cctx);
    if (!sctx || !sobs || !cctx)
        return;
    SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x02h2\x08http/1.1", 12);

    /* TLS 1.3: the callback's JA4, the raw parser on the bare hello and on the records
     * the client wrote all agree */
    CHECK(handshake(cctx, sctx, "gatehouse.test", first, &first_len, alpn));
    CHECK(strcmp(alpn, "h2") == 0);
    CHECK_INT(probe->calls, 1);
    CHECK_INT(probe->rc[0], 0);
    CHECK(memcmp(probe->ja4[0], "t13d", 4) == 0 && memcmp(probe->ja4[0] + 8, "h2_", 3) == 0);
    CHECK_JA4(probe->hello[0], probe->hello_len[0], probe->ja4[0]);
    CHECK_JA4(first, first_len, probe->ja4[0]);
    char tls13[GH_JA4_SIZE];
    memcpy(tls13, probe->ja4[0], sizeof tls13);

    /* with the observing extensions on both sides: the handshake still completes, the
     * client sends nothing more (same JA4), the server sees the same */
    SSL_CTX *cobs = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_alpn_protos(cobs, (const unsigned char *)"\x02h2\x08http/1.1", 12);
    CHECK(gh_ja4_ssl_ctx_observe_exts(cobs, NULL, 0) > 0);
    CHECK(handshake(cobs, sobs, "gatehouse.test", first, &first_len, alpn));
    CHECK(strcmp(probe->ja4[0], tls13) == 0);
    CHECK_JA4(first, first_len, tls13);
    SSL_CTX_free(cobs);

    /* no SNI */
    CHECK(handshake(cctx, sctx, NULL, first, &first_len, alpn));
    CHECK(probe->ja4[0][3] == 'i');
    CHECK(strcmp(probe->ja4[0] + 4, tls13 + 4) != 0); /* one extension fewer */
    CHECK_JA4(first, first_len, probe->ja4[0]);

    /* TLS 1.2 only, no ALPN */
    SSL_CTX *c12 = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION);
    CHECK(handshake(c12, sctx, "gatehouse.test", first, &first_len, alpn));
    CHECK(memcmp(probe->ja4[0], "t12d", 4) == 0 && memcmp(probe->ja4[0] + 8, "00_", 3) == 0);
    CHECK_JA4(first, first_len, probe->ja4[0]);
    CHECK_JA4(probe->hello[0], probe->hello_len[0], probe->ja4[0]);
    SSL_CTX_free(c12);

    /* HelloRetryRequest: the client's key share (X25519) is not a group the server takes,
     * so the callback runs again on the second hello. Each call agrees with the raw parser
     * on its own hello; the first is the fingerprint. */
    SSL_CTX *shrr = server_ctx(0, NULL, 0), *chrr = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set1_groups_list(shrr, "P-256");
    SSL_CTX_set1_groups_list(chrr, "X25519:P-256");
    CHECK(handshake(chrr, shrr, "gatehouse.test", first, &first_len, alpn));
    CHECK_INT(probe->calls, 2);
    CHECK_INT(probe->rc[0], 0);
    CHECK_INT(probe->rc[1], 0);
    CHECK_JA4(probe->hello[0], probe->hello_len[0], probe->ja4[0]);
    CHECK_JA4(probe->hello[1], probe->hello_len[1], probe->ja4[1]);
    CHECK_JA4(first, first_len, probe->ja4[0]);
    SSL_CTX_free(shrr);
    SSL_CTX_free(chrr);

    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    SSL_CTX_free(sobs);
}

int main(void)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(vectors); i++)
        vec_data[i] = load(vectors[i].file, &vec_len[i]);
    probe = calloc(1, sizeof *probe);
    RUN(test_vectors);
    RUN(test_prefixes);
    RUN(test_fields);
    RUN(test_grease);
    RUN(test_parts);
    RUN(test_malformed_fields);
    RUN(test_malformed_framing);
    RUN(test_fragmentation);
    if (make_cert()) {
        RUN(test_ssl_feed);
        RUN(test_handshake);
    } else {
        t_fail++;
        fprintf(stderr, "cannot make a test certificate\n");
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    free(probe);
    for (size_t i = 0; i < GH_ARRAY_LEN(vectors); i++)
        free(vec_data[i]);
    return t_done("test_ja4");
}
