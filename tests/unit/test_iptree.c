/* test_iptree.c: prefix trees, CIDR parsing and list loading (src/protect/iptree.c), and
 * country lookups (src/protect/geoip.c) on databases written by tests/integration/mmdb.py.
 *
 * Longest-prefix match is checked against a brute-force scan on random, deliberately
 * nested prefixes of both families. A 1M-prefix load is timed and printed (bounded only
 * generously, and not under sanitizers). The GeoIP tests skip, saying why, when the
 * Python writer cannot run. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "protect/geoip.h"
#include "protect/iptree.h"
#include "t.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
    return 1;
#endif
#endif
    return getenv("GATEHOUSE_SANITIZED") != NULL;
}

/* The repository root, found from __FILE__ (as test_ja4 does). */
static const char *repo_root(void)
{
    static char prefix[512];
    const char *me = __FILE__, *end = strstr(me, "tests/unit/");
    if (end && (size_t)(end - me) < sizeof prefix)
        memcpy(prefix, me, (size_t)(end - me)), prefix[end - me] = '\0';
    return prefix;
}

static int parse(const char *s, int *fam, uint8_t a[16], uint8_t *plen)
{
    return gh_cidr_parse(s, strlen(s), fam, a, plen);
}

static void mask(uint8_t *a, size_t nbytes, unsigned plen)
{
    for (size_t k = 0; k < nbytes; k++) {
        unsigned keep = plen >= 8 * (k + 1) ? 8 : plen > 8 * k ? plen - 8 * (unsigned)k : 0;
        a[k] &= (uint8_t)(keep ? 0xff << (8 - keep) : 0);
    }
}

static int prefix_match(const uint8_t *p, const uint8_t *a, unsigned plen)
{
    size_t full = plen / 8;
    if (memcmp(p, a, full))
        return 0;
    if (plen % 8) {
        uint8_t m = (uint8_t)(0xff << (8 - plen % 8));
        if ((p[full] ^ a[full]) & m)
            return 0;
    }
    return 1;
}

/* ---- parsing ------------------------------------------------------------------------ */

static void test_parse_good(void)
{
    /* the expected bytes come from inet_pton, an independent parser */
    static const struct {
        const char *s;
        int fam;
        unsigned plen;
    } v[] = {
        {"10.0.0.0/8", AF_INET, 8},
        {"192.0.2.1", AF_INET, 32},
        {"0.0.0.0/0", AF_INET, 0},
        {"255.255.255.255/32", AF_INET, 32},
        {"100.64.0.0/10", AF_INET, 10},
        {"2001:db8::/32", AF_INET6, 32},
        {"::1", AF_INET6, 128},
        {"::", AF_INET6, 128},
        {"::/0", AF_INET6, 0},
        {"1::", AF_INET6, 128},
        {"1:2:3:4:5:6:7:8", AF_INET6, 128},
        {"1:2:3:4:5:6:7::", AF_INET6, 128},
        {"::2:3:4:5:6:7:8", AF_INET6, 128},
        {"FE80::ABCD:0/112", AF_INET6, 112},
        {"::ffff:192.0.2.128/121", AF_INET6, 121},
        {"64:ff9b::192.0.2.33", AF_INET6, 128},
        {"1:2:3:4:5:6:1.2.3.4", AF_INET6, 128},
        {"::1.2.3.4", AF_INET6, 128},
        {"2001:db8:0:0:0:0:0:0/64", AF_INET6, 64},
        {"2001:0db8:00ab::/48", AF_INET6, 48},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(v); i++) {
        int fam = -1;
        uint8_t a[16], want[16] = {0}, plen = 0;
        int rc = parse(v[i].s, &fam, a, &plen);
        if (rc != 0) {
            fprintf(stderr, "  rejected %s\n", v[i].s);
            CHECK_INT(rc, 0);
            continue;
        }
        CHECK_INT(fam, v[i].fam);
        CHECK_INT(plen, v[i].plen);
        char txt[64];
        const char *sl = strchr(v[i].s, '/');
        size_t an = sl ? (size_t)(sl - v[i].s) : strlen(v[i].s);
        memcpy(txt, v[i].s, an), txt[an] = '\0';
        CHECK_INT(inet_pton(v[i].fam, txt, want), 1);
        size_t nb = fam == AF_INET ? 4 : 16;
        if (memcmp(a, want, nb)) {
            fprintf(stderr, "  bytes differ for %s\n", v[i].s);
            CHECK(0);
        }
        for (size_t k = nb; k < 16; k++)
            CHECK_INT(a[k], 0);
    }
    /* a view: bytes after n are not read */
    int fam;
    uint8_t a[16], plen;
    CHECK_INT(gh_cidr_parse("10.0.0.0/8junk", 10, &fam, a, &plen), 0);
    CHECK_INT(plen, 8);
    CHECK_INT(gh_cidr_parse("10.0.0.1/8", 8, &fam, a, &plen), 0);
    CHECK_INT(plen, 32);
}

static void test_parse_bad(void)
{
    static const struct {
        const char *s;
        size_t off;
        const char *msg; /* substring of the diagnosis */
    } v[] = {
        {"", 0, "empty address"},
        {"/8", 0, "missing address"},
        {"10.0.0.0/", 8, "missing prefix length"},
        {"10.0.0.0/33", 9, "prefix length > 32"},
        {"10.0.0.0/1000", 9, "prefix length > 32"},
        {"::/129", 3, "prefix length > 128"},
        {"10.0.0.0/08", 9, "leading zero"},
        {"10.0.0.0/8/8", 10, "second '/'"},
        {"10.0.0.0/8x", 10, "unexpected character 'x'"},
        {"10.1.0.0/8", 0, "host bits set beyond /8 (10.0.0.0/8?)"},
        {"192.0.2.1/24", 0, "(192.0.2.0/24?)"},
        {"2001:db8::1/32", 0, "(2001:db8::/32?)"},
        {"::1/0", 0, "host bits"},
        {"10.0.0", 6, "needs 4 octets"},
        {"10.0.0.", 7, "needs 4 octets"},
        {"10.0.0.0.0", 8, "more than 4 octets"},
        {"256.0.0.0", 0, "octet > 255"},
        {"1.2.3.1000", 6, "octet > 255"},
        {"01.2.3.4", 0, "leading zero"},
        {"1.2.3.04", 6, "leading zero"},
        {"1..3.4", 2, "unexpected character '.'"},
        {"1.2.3.4 ", 7, "whitespace"},
        {"10.0.0.0 /8", 8, "whitespace"},
        {"10.0.0.0/ 8", 9, "whitespace"},
        {" 10.0.0.0/8", 0, "whitespace"},
        {"1.2.3.-4", 6, "unexpected character '-'"},
        {"0x1.2.3.4", 1, "unexpected character 'x'"},
        {"1.2.3.4\x01", 7, "unexpected byte 0x01"},
        {":1::", 0, "single ':'"},
        {"1::2:", 4, "single ':'"},
        {"1:::2", 3, "unexpected character ':'"},
        {"1::2::3", 4, "second '::'"},
        {"1:2:3:4:5:6:7", 0, "needs 8 groups"},
        {"1:2:3:4:5:6:7:8:9", 16, "more than 8 groups"},
        {"1:2:3:4:5:6:7:8::", 0, "8 groups and '::'"},
        {"::1:2:3:4:5:6:7:8", 0, "8 groups and '::'"},
        {"12345::", 0, "longer than 4 hex"},
        {"fe80::1%eth0", 7, "zone index"},
        {"g::", 0, "unexpected character 'g'"},
        {"1:2:3:4:5:6:7:1.2.3.4", 14, "too many groups"},
        {"::1.2.3", 7, "needs 4 octets"},
        {"::1.2.3.4:5", 9, "unexpected character ':'"},
        {"::ffff:1.2.3.256", 13, "octet > 255"},
        {"[::1]", 0, "unexpected character '['"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(v); i++) {
        int fam = -7;
        uint8_t a[16], plen = 77;
        size_t off = 999;
        char msg[128] = "";
        int rc = gh_cidr_parse_diag(v[i].s, strlen(v[i].s), &fam, a, &plen, &off, msg, sizeof msg);
        if (rc != GH_EINVAL || off != v[i].off || !strstr(msg, v[i].msg)) {
            fprintf(stderr, "  \"%s\": rc %d off %zu msg \"%s\" (want off %zu \"%s\")\n", v[i].s,
                    rc, off, msg, v[i].off, v[i].msg);
            CHECK(0);
        }
        CHECK_INT(fam, -7); /* outputs untouched on error */
        CHECK_INT(plen, 77);
    }
    int fam;
    uint8_t a[16], plen;
    CHECK_INT(gh_cidr_parse(NULL, 0, &fam, a, &plen), GH_EINVAL);
    CHECK_INT(gh_cidr_parse("10.0.0.0", 0, &fam, a, &plen), GH_EINVAL);
}

/* ---- the tree ----------------------------------------------------------------------- */

static void test_basic(void)
{
    gh_iptree_t *t = gh_iptree_new();
    CHECK(t != NULL);
    uint8_t a[16], plen = 0;
    uint32_t tag = 0;
    int fam;
    CHECK_INT(gh_iptree_count(t), 0);
    CHECK(gh_iptree_bytes(t) > 0 && gh_iptree_bytes(t) < 512);
    parse("10.1.2.3", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, AF_INET, a, &tag, &plen), 0);

    static const struct {
        const char *cidr;
        uint32_t tag;
    } add[] = {
        {"10.0.0.0/8", 1}, {"10.1.0.0/16", 2}, {"10.1.2.0/24", 3}, {"10.1.2.3/32", 4},
        {"10.128.0.0/9", 5}, {"2001:db8::/32", 6}, {"2001:db8:1::/48", 7}, {"::1", 8},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(add); i++) {
        CHECK_INT(parse(add[i].cidr, &fam, a, &plen), 0);
        CHECK_INT(gh_iptree_add(t, fam, a, plen, add[i].tag), 0);
    }
    CHECK_INT(gh_iptree_count(t), GH_ARRAY_LEN(add));

    static const struct {
        const char *ip;
        int found;
        uint32_t tag;
        unsigned plen;
    } q[] = {
        {"10.1.2.3", 1, 4, 32},       {"10.1.2.4", 1, 3, 24},     {"10.1.3.1", 1, 2, 16},
        {"10.2.0.0", 1, 1, 8},        {"10.200.0.1", 1, 5, 9},    {"11.0.0.0", 0, 0, 0},
        {"9.255.255.255", 0, 0, 0},   {"2001:db8::1", 1, 6, 32},  {"2001:db8:1:2::", 1, 7, 48},
        {"2001:db9::", 0, 0, 0},      {"::1", 1, 8, 128},         {"::2", 0, 0, 0},
        {"::ffff:10.1.2.9", 1, 3, 24}, {"::10.1.2.3", 0, 0, 0}, /* IPv4-compatible is IPv6 */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(q); i++) {
        CHECK_INT(parse(q[i].ip, &fam, a, &plen), 0);
        tag = 0xdead, plen = 200;
        int rc = gh_iptree_lookup(t, fam, a, &tag, &plen);
        if (rc != q[i].found || (rc && (tag != q[i].tag || plen != q[i].plen))) {
            fprintf(stderr, "  %s: rc %d tag %u len %u\n", q[i].ip, rc, tag, plen);
            CHECK(0);
        }
        CHECK_INT(gh_iptree_lookup(t, fam, a, NULL, NULL), q[i].found);
    }

    /* duplicates: the later tag wins, the count stays */
    parse("10.1.0.0/16", &fam, a, &plen);
    CHECK_INT(gh_iptree_add(t, fam, a, plen, 42), 0);
    CHECK_INT(gh_iptree_count(t), GH_ARRAY_LEN(add));
    parse("10.1.9.9", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 42);
    /* add ignores host bits */
    parse("172.16.5.5", &fam, a, &plen);
    CHECK_INT(gh_iptree_add(t, AF_INET, a, 12, 9), 0);
    parse("172.31.0.1", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 9);
    CHECK_INT(plen, 12);

    /* invalid arguments */
    CHECK_INT(gh_iptree_add(t, AF_INET, a, 33, 1), GH_EINVAL);
    CHECK_INT(gh_iptree_add(t, AF_INET6, a, 129, 1), GH_EINVAL);
    CHECK_INT(gh_iptree_add(t, AF_UNIX, a, 8, 1), GH_EINVAL);
    CHECK_INT(gh_iptree_add(NULL, AF_INET, a, 8, 1), GH_EINVAL);
    CHECK_INT(gh_iptree_lookup(t, AF_UNIX, a, &tag, &plen), GH_EINVAL);
    gh_iptree_free(t);
    gh_iptree_free(NULL);
}

static void test_default_routes(void)
{
    gh_iptree_t *t = gh_iptree_new();
    uint8_t z[16] = {0}, a[16], plen;
    uint32_t tag;
    int fam;
    CHECK_INT(gh_iptree_add(t, AF_INET6, z, 0, 6), 0);
    /* ::/0 covers IPv6 but not IPv4 nor mapped addresses */
    parse("1.2.3.4", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 0);
    parse("::ffff:1.2.3.4", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 0);
    parse("ffff::1", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 6);
    CHECK_INT(plen, 0);
    CHECK_INT(gh_iptree_add(t, AF_INET, z, 0, 4), 0);
    parse("255.255.255.255", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 4);
    CHECK_INT(plen, 0);
    /* full-length keys at the bottom of both families */
    parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &fam, a, &plen);
    CHECK_INT(gh_iptree_add(t, fam, a, 128, 7), 0);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 7);
    CHECK_INT(plen, 128);
    a[15] = 0xfe;
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 6);
    CHECK_INT(gh_iptree_count(t), 3);
    gh_iptree_free(t);
}

static void test_mapped(void)
{
    gh_iptree_t *t = gh_iptree_new();
    uint8_t a[16], plen;
    uint32_t tag;
    int fam;
    /* a mapped IPv6 prefix is stored as the IPv4 prefix it denotes */
    parse("::ffff:192.168.0.0/112", &fam, a, &plen);
    CHECK_INT(gh_iptree_add(t, fam, a, plen, 1), 0);
    parse("::ffff:0:0/96", &fam, a, &plen);
    CHECK_INT(gh_iptree_add(t, fam, a, plen, 2), 0); /* = 0.0.0.0/0 */
    parse("192.168.7.7", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 1);
    CHECK_INT(plen, 16);
    parse("::ffff:192.168.7.7", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 1);
    CHECK_INT(plen, 16);
    parse("8.8.8.8", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 2);
    CHECK_INT(plen, 0);
    /* a mapped prefix shorter than /96 stays IPv6 and matches no IPv4 address */
    CHECK_INT(parse("::fffe:0:0/95", &fam, a, &plen), 0);
    CHECK_INT(gh_iptree_add(t, fam, a, plen, 3), 0);
    parse("::ffff:8.8.8.8", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 2);
    parse("::fffe:8.8.8.8", &fam, a, &plen);
    CHECK_INT(gh_iptree_lookup(t, fam, a, &tag, &plen), 1);
    CHECK_INT(tag, 3);
    CHECK_INT(plen, 95);

    /* sockaddrs */
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.168.1.1", &s4.sin_addr);
    CHECK_INT(gh_iptree_lookup_sa(t, (struct sockaddr *)&s4, &tag), 1);
    CHECK_INT(tag, 1);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.168.1.1", &s6.sin6_addr);
    CHECK_INT(gh_iptree_lookup_sa(t, (struct sockaddr *)&s6, &tag), 1);
    CHECK_INT(tag, 1);
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    CHECK_INT(gh_iptree_lookup_sa(t, (struct sockaddr *)&s6, &tag), 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    CHECK_INT(gh_iptree_lookup_sa(t, (struct sockaddr *)&su, &tag), GH_EINVAL);
    CHECK_INT(gh_iptree_lookup_sa(t, NULL, &tag), GH_EINVAL);
    gh_iptree_free(t);
}


/* Checks ip -> (tag, len) or not found (tag 0). */
static void expect(const gh_iptree_t *t, const char *ip, uint32_t tag, int len)
{
    uint32_t got = 0;
    int fam;
    uint8_t a[16], plen = 0;
    CHECK_INT(parse(ip, &fam, a, &plen), 0);
    int rc = gh_iptree_lookup(t, fam, a, &got, &plen);
    if (rc != (tag != 0) || (rc == 1 && (got != tag || plen != len))) {
        fprintf(stderr, "  %s: rc %d tag %u len %u, want tag %u len %d\n", ip, rc, got, plen, tag, len);
        CHECK(0);
    }
}

static void add_str(gh_iptree_t *t, const char *cidr, uint32_t tag)
{
    int fam;
    uint8_t a[16], plen;
    CHECK_INT(parse(cidr, &fam, a, &plen), 0);
    CHECK_INT(gh_iptree_add(t, fam, a, plen, tag), 0);
}

/* Prefixes shorter than the /16 directory stride live in per-slot entries: duplicates,
 * nesting and /0 there, with the directory from the start (hint) and after the rebuild. */
static void test_directory(void)
{
    for (int mode = 0; mode < 2; mode++) {
        gh_iptree_t *t = gh_iptree_new();
        size_t small = gh_iptree_bytes(t);
        if (mode == 0) {
            CHECK_INT(gh_iptree_hint(t, 100), 0); /* below the threshold: nothing */
            CHECK_INT(gh_iptree_bytes(t), small);
            CHECK_INT(gh_iptree_hint(t, 100000), 0);
            CHECK(gh_iptree_bytes(t) > small + 1000000);
        }
        add_str(t, "10.0.0.0/8", 1);
        add_str(t, "10.0.0.0/8", 2); /* later wins */
        add_str(t, "10.0.0.0/12", 3);
        add_str(t, "10.1.0.0/16", 4);
        add_str(t, "10.1.2.0/24", 5);
        add_str(t, "2000::/3", 6);
        add_str(t, "2000::/3", 7);
        add_str(t, "2000::/15", 8);
        add_str(t, "2001:db8::/32", 9);
        add_str(t, "::/0", 10);
        if (mode == 1) { /* cross the threshold: the family rebuilds with the directory */
            uint8_t a[16] = {0x40};
            for (uint32_t i = 0; i < 9000; i++) {
                a[1] = (uint8_t)(i >> 8), a[2] = (uint8_t)i;
                CHECK_INT(gh_iptree_add(t, AF_INET6, a, 128, 11), 0);
                a[0] = 0xc6, a[3] = 1;
                CHECK_INT(gh_iptree_add(t, AF_INET, a, 32, 11), 0);
                a[0] = 0x40, a[3] = 0;
            }
            CHECK(gh_iptree_bytes(t) > small + 1000000);
            CHECK_INT(gh_iptree_count(t), 8 + 18000);
            expect(t, "4000:0:0:1234::", 10, 0); /* beside a filler /128: ::/0 */
            a[0] = 0x40, a[1] = 0x23, a[2] = 0x27; /* i = 8999 */
            uint32_t tag = 0;
            uint8_t plen = 0;
            CHECK_INT(gh_iptree_lookup(t, AF_INET6, a, &tag, &plen), 1);
            CHECK_INT(tag, 11);
            CHECK_INT(plen, 128);
        } else {
            CHECK_INT(gh_iptree_count(t), 8);
        }
        add_str(t, "10.0.0.0/8", 12); /* a duplicate after the rebuild */
        expect(t, "10.200.0.1", 12, 8);
        expect(t, "10.15.255.255", 3, 12);
        expect(t, "10.1.9.9", 4, 16);
        expect(t, "10.1.2.200", 5, 24);
        expect(t, "11.0.0.0", 0, 0);
        expect(t, "9.255.255.255", 0, 0);
        expect(t, "3fff::", 7, 3);
        expect(t, "2001:1::", 8, 15);
        expect(t, "2001:db8::1", 9, 32);
        expect(t, "2002::", 7, 3);
        expect(t, "5000::", 10, 0);
        expect(t, "::ffff:10.1.2.3", 5, 24);
        add_str(t, "0.0.0.0/0", 13);
        add_str(t, "0.0.0.0/0", 14);
        expect(t, "11.0.0.0", 14, 0);
        expect(t, "10.200.0.1", 12, 8);
        add_str(t, "10.0.0.0/7", 15); /* 10.0.0.0-11.255.255.255, under the /8 */
        expect(t, "11.0.0.0", 15, 7);
        expect(t, "10.200.0.1", 12, 8);
        gh_iptree_free(t);
    }
}

/* Random nested prefixes: bases from a small pool with a few bits flipped, so that
 * prefixes contain one another and share long paths. */
typedef struct {
    uint8_t a[16];
    uint8_t len;
    uint32_t tag;
} ref_t;

static void random_addr(uint8_t *a, size_t nb, const uint8_t pool[][16], int npool)
{
    memcpy(a, pool[rnd() % (uint64_t)npool], nb);
    int flips = (int)(rnd() % 4);
    for (int f = 0; f < flips; f++) {
        unsigned b = (unsigned)(rnd() % (nb * 8));
        a[b / 8] ^= (uint8_t)(0x80 >> (b % 8));
    }
    if (rnd() % 8 == 0)
        for (size_t k = 0; k < nb; k++)
            a[k] = (uint8_t)rnd();
}

static void lpm_vs_bruteforce(int fam, int nprefix, int nlookup, int want_miss)
{
    size_t nb = fam == AF_INET ? 4 : 16;
    unsigned maxlen = (unsigned)nb * 8;
    uint8_t pool[12][16];
    for (int i = 0; i < 12; i++)
        for (int k = 0; k < 16; k++)
            pool[i][k] = (uint8_t)rnd();
    if (fam == AF_INET6) /* keep clear of ::ffff:0:0/96, which is IPv4 in the tree */
        pool[0][0] |= 0x20;
    ref_t *ref = calloc((size_t)nprefix, sizeof *ref);
    int nref = 0;
    gh_iptree_t *t = gh_iptree_new();
    for (int i = 0; i < nprefix; i++) {
        ref_t r = {{0}, 0, 0};
        random_addr(r.a, nb, pool, 12);
        if (fam == AF_INET6 && !memcmp(r.a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
            r.a[0] = 0x20;
        r.len = (uint8_t)(maxlen / 8 + rnd() % (maxlen - maxlen / 8 + 1)); /* v4 4..32, v6 16..128 */
        if (fam == AF_INET6 && rnd() % 4 == 0)
            r.len = (uint8_t)(4 + rnd() % 12); /* short ones too: below the directory stride */
        r.tag = (uint32_t)rnd();
        mask(r.a, nb, r.len);
        CHECK_INT(gh_iptree_add(t, fam, r.a, r.len, r.tag), 0);
        int j;
        for (j = 0; j < nref; j++)
            if (ref[j].len == r.len && !memcmp(ref[j].a, r.a, nb))
                break;
        ref[j] = r;
        if (j == nref)
            nref++;
    }
    CHECK_INT(gh_iptree_count(t), nref);
    int bad = 0, hits = 0;
    for (int i = 0; i < nlookup; i++) {
        uint8_t a[16] = {0};
        random_addr(a, nb, pool, 12);
        if (fam == AF_INET6 && !memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
            a[0] = 0x20;
        int best = -1;
        for (int j = 0; j < nref; j++)
            if (prefix_match(ref[j].a, a, ref[j].len) && (best < 0 || ref[j].len > ref[best].len))
                best = j;
        uint32_t tag = 0;
        uint8_t plen = 0;
        int rc = gh_iptree_lookup(t, fam, a, &tag, &plen);
        int ok = best < 0 ? rc == 0 : rc == 1 && tag == ref[best].tag && plen == ref[best].len;
        hits += best >= 0;
        if (!ok && bad++ < 5)
            fprintf(stderr, "  family %d lookup %d: rc %d tag %u len %u, want %d len %d\n", fam, i,
                    rc, tag, plen, best >= 0, best >= 0 ? ref[best].len : -1);
    }
    CHECK_INT(bad, 0);
    if (!(hits > nlookup / 4 && (hits < nlookup || !want_miss))) /* both outcomes seen */
        fprintf(stderr, "  family %d, %d prefixes: %d hits of %d\n", fam, nprefix, hits, nlookup);
    CHECK(hits > nlookup / 4 && (hits < nlookup || !want_miss));
    gh_iptree_free(t);
    free(ref);
}

static void test_lpm_random_v4(void)
{
    /* small trees are one trie; past 8192 prefixes a family gets the /16 directory */
    for (int round = 0; round < 4; round++)
        lpm_vs_bruteforce(AF_INET, 50 + round * 1000, 20000, 1);
    lpm_vs_bruteforce(AF_INET, 12000, 5000, 0);
}

static void test_lpm_random_v6(void)
{
    for (int round = 0; round < 4; round++)
        lpm_vs_bruteforce(AF_INET6, 50 + round * 1000, 20000, 1);
    lpm_vs_bruteforce(AF_INET6, 12000, 5000, 0);
}

/* ---- lists -------------------------------------------------------------------------- */

static int lookup_str(const gh_iptree_t *t, const char *ip, uint32_t *tag)
{
    int fam;
    uint8_t a[16], plen;
    if (parse(ip, &fam, a, &plen))
        return -100;
    return gh_iptree_lookup(t, fam, a, tag, &plen);
}

static void test_load_mem(void)
{
    static const char list[] = "# office and VPN\n"
                               "\n"
                               "10.0.0.0/8\n"
                               "  192.0.2.1   # a host, with spaces\r\n"
                               "\t2001:db8::/32\t\n"
                               "#10.9.9.9\n"
                               "   \n"
                               "::1"; /* no final newline */
    gh_iptree_t *t = gh_iptree_new();
    char err[256] = "x";
    CHECK_INT(gh_iptree_load_mem(t, "mem", list, sizeof list - 1, 5, err, sizeof err), 4);
    CHECK_STR(gh_str(err, strlen(err)), "");
    CHECK_INT(gh_iptree_count(t), 4);
    uint32_t tag = 0;
    CHECK_INT(lookup_str(t, "10.9.9.9", &tag), 1);
    CHECK_INT(tag, 5);
    CHECK_INT(lookup_str(t, "192.0.2.1", &tag), 1);
    CHECK_INT(lookup_str(t, "192.0.2.2", &tag), 0);
    CHECK_INT(lookup_str(t, "2001:db8:ffff::", &tag), 1);
    CHECK_INT(lookup_str(t, "::1", &tag), 1);
    /* empty input */
    CHECK_INT(gh_iptree_load_mem(t, "mem", "", 0, 5, err, sizeof err), 0);
    CHECK_INT(gh_iptree_load_mem(t, "mem", NULL, 0, 5, err, sizeof err), 0);
    gh_iptree_free(t);

    static const struct {
        const char *text;
        const char *err;
    } bad[] = {
        {"10.0.0.0/8\n10.0.0.256\n", "m:2:8: octet > 255"},
        {"10.0.0.0/8\n\n  10.1.0.0/8 # x\n", "m:3:3: host bits set beyond /8 (10.0.0.0/8?)"},
        {"10.0.0.0 10.1.0.0\n", "m:1:9: whitespace inside an address"},
        {"# c\r\n\t fe80::1%eth0\r\n", "m:2:10: zone index ('%...') not allowed"},
        {"1.2.3.4\r5.6.7.8\n", "m:1:8: whitespace inside an address"},
        {"1.2.3.4\n\n\n::g", "m:4:3: unexpected character 'g'"},
        {"10.0.0.0/", "m:1:9: missing prefix length after '/'"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        t = gh_iptree_new();
        int rc = gh_iptree_load_mem(t, "m", bad[i].text, strlen(bad[i].text), 1, err, sizeof err);
        CHECK_INT(rc, GH_EINVAL);
        if (strcmp(err, bad[i].err)) {
            fprintf(stderr, "  got \"%s\", want \"%s\"\n", err, bad[i].err);
            CHECK(0);
        }
        gh_iptree_free(t);
    }

    /* line length: 256 bytes (+ CRLF) is fine, 257 is not */
    char line[300];
    memset(line, ' ', sizeof line);
    memcpy(line, "10.0.0.0/8 #", 12);
    memcpy(line + 256, "\r\n", 2);
    t = gh_iptree_new();
    CHECK_INT(gh_iptree_load_mem(t, "m", line, 258, 1, err, sizeof err), 1);
    line[256] = '#';
    line[257] = '\n';
    CHECK_INT(gh_iptree_load_mem(t, "m", line, 258, 1, err, sizeof err), GH_EINVAL);
    CHECK_STR(gh_str(err, strlen(err)), "m:1:257: line longer than 256 bytes");
    /* a NUL byte is just a bad byte */
    CHECK_INT(gh_iptree_load_mem(t, "m", "1.2.3.4\0\n", 9, 1, err, sizeof err), GH_EINVAL);
    CHECK_STR(gh_str(err, strlen(err)), "m:1:8: unexpected byte 0x00");
    /* a small err buffer is truncated, NUL-terminated; NULL err is fine */
    char small[8];
    CHECK_INT(gh_iptree_load_mem(t, "mem", "x", 1, 1, small, sizeof small), GH_EINVAL);
    CHECK_STR(gh_str(small, strlen(small)), "mem:1:1");
    CHECK_INT(gh_iptree_load_mem(t, "mem", "x", 1, 1, NULL, 0), GH_EINVAL);
    gh_iptree_free(t);
}

static char tmpdir[] = "/tmp/gh_iptree_XXXXXX";

static int write_file(const char *path, const char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static void test_load_file(void)
{
    char path[600], err[700];
    /* the checked-in sample */
    snprintf(path, sizeof path, "%stests/unit/data/iptree_list.txt", repo_root());
    gh_iptree_t *t = gh_iptree_new();
    int rc = gh_iptree_load_file(t, path, 3, err, sizeof err);
    CHECK_INT(rc, 9);
    if (rc < 0)
        fprintf(stderr, "  %s\n", err);
    uint32_t tag = 0;
    CHECK_INT(lookup_str(t, "203.0.113.77", &tag), 1);
    CHECK_INT(tag, 3);
    CHECK_INT(lookup_str(t, "2001:db8:abcd::1", &tag), 1);
    CHECK_INT(lookup_str(t, "8.8.8.8", &tag), 0);
    gh_iptree_free(t);

    snprintf(path, sizeof path, "%stests/unit/data/iptree_bad.txt", repo_root());
    t = gh_iptree_new();
    CHECK_INT(gh_iptree_load_file(t, path, 3, err, sizeof err), GH_EINVAL);
    char want[700];
    snprintf(want, sizeof want, "%s:6:17: host bits set beyond /24 (198.51.100.0/24?)", path);
    CHECK_STR(gh_str(err, strlen(err)), want);
    gh_iptree_free(t);

    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        CHECK(0);
        return;
    }
    /* a big file: lines straddle the 64 KiB read chunks; the error is on the last line */
    size_t cap = 4u << 20, n = 0;
    char *big = malloc(cap);
    int lines = 0;
    for (int i = 0; n < 3u << 20; i++, lines++) {
        if (i % 7 == 3)
            n += (size_t)snprintf(big + n, cap - n, "# comment %d\n", i);
        else if (i % 5 == 0)
            n += (size_t)snprintf(big + n, cap - n, "  2001:db8:%x:%x::/64  \r\n", i >> 16, i & 0xffff);
        else
            n += (size_t)snprintf(big + n, cap - n, "10.%d.%d.%d\n", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    }
    snprintf(path, sizeof path, "%s/big.txt", tmpdir);
    CHECK_INT(write_file(path, big, n), 0);
    t = gh_iptree_new();
    rc = gh_iptree_load_file(t, path, 1, err, sizeof err);
    int entries = lines - (lines + 3) / 7;
    CHECK_INT(rc, entries);
    CHECK_INT(gh_iptree_count(t), entries);
    /* the same bytes from memory give the same tree */
    gh_iptree_t *t2 = gh_iptree_new();
    CHECK_INT(gh_iptree_load_mem(t2, path, big, n, 1, err, sizeof err), entries);
    CHECK_INT(gh_iptree_count(t2), entries);
    gh_iptree_free(t2);
    gh_iptree_free(t);

    n += (size_t)snprintf(big + n, cap - n, "10.0.0.0/8\n  10.0.0.0/33\n");
    CHECK_INT(write_file(path, big, n), 0);
    t = gh_iptree_new();
    CHECK_INT(gh_iptree_load_file(t, path, 1, err, sizeof err), GH_EINVAL);
    snprintf(want, sizeof want, "%s:%d:12: prefix length > 32", path, lines + 2);
    CHECK_STR(gh_str(err, strlen(err)), want);
    gh_iptree_free(t);

    /* an overlong line far from a newline, across chunks */
    memset(big, '1', 200000);
    CHECK_INT(write_file(path, big, 200000), 0);
    t = gh_iptree_new();
    CHECK_INT(gh_iptree_load_file(t, path, 1, err, sizeof err), GH_EINVAL);
    snprintf(want, sizeof want, "%s:1:257: line longer than 256 bytes", path);
    CHECK_STR(gh_str(err, strlen(err)), want);
    /* an overlong last line without a newline, shorter than a chunk */
    memcpy(big, "1.2.3.4\n", 8);
    CHECK_INT(write_file(path, big, 8 + 300), 0);
    CHECK_INT(gh_iptree_load_file(t, path, 1, err, sizeof err), GH_EINVAL);
    snprintf(want, sizeof want, "%s:2:257: line longer than 256 bytes", path);
    CHECK_STR(gh_str(err, strlen(err)), want);
    gh_iptree_free(t);
    free(big);
    unlink(path);

    /* missing file, a directory */
    t = gh_iptree_new();
    snprintf(path, sizeof path, "%s/missing.txt", tmpdir);
    CHECK_INT(gh_iptree_load_file(t, path, 1, err, sizeof err), GH_EIO);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    CHECK_STR(gh_str(err, strlen(err)), want);
    CHECK_INT(gh_iptree_load_file(t, tmpdir, 1, err, sizeof err), GH_EIO);
    CHECK(strstr(err, "Is a directory") != NULL);
    gh_iptree_free(t);
}

/* ---- scale -------------------------------------------------------------------------- */

typedef struct {
    const gh_iptree_t *t;
    const uint8_t *q;
    size_t n;
    uint64_t sum;
} reader_t;

static void *reader(void *arg)
{
    reader_t *r = arg;
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = 0; i < r->n; i++) {
            uint32_t tag = 0;
            uint8_t plen = 0;
            int fam = i & 1 ? AF_INET6 : AF_INET;
            if (gh_iptree_lookup(r->t, fam, r->q + 16 * i, &tag, &plen) == 1)
                r->sum += tag + plen;
        }
    return NULL;
}

static void test_million(void)
{
    enum { N = 1000000, Q = 1000000 };
    uint8_t *pa = malloc((size_t)N * 16), *pl = malloc(N), *q = malloc((size_t)Q * 16);
    if (!pa || !pl || !q) {
        CHECK(0);
        goto out;
    }
    /* half IPv4 /8../32, half IPv6 /16../128, uniformly random bits */
    for (size_t i = 0; i < N; i++) {
        uint8_t *a = pa + 16 * i;
        for (int k = 0; k < 16; k++)
            a[k] = (uint8_t)rnd();
        if (i & 1) {
            if (a[0] == 0)
                a[0] = 0x20; /* keep out of ::ffff:0:0/96 */
            pl[i] = (uint8_t)(16 + rnd() % 113);
        } else {
            pl[i] = (uint8_t)(8 + rnd() % 25);
        }
    }
    gh_iptree_t *t = gh_iptree_new();
    double t0 = now_s();
    int rc = 0;
    for (size_t i = 0; i < N && rc == 0; i++)
        rc = gh_iptree_add(t, i & 1 ? AF_INET6 : AF_INET, pa + 16 * i, pl[i], (uint32_t)i);
    double t_add = now_s() - t0;
    CHECK_INT(rc, 0);

    /* lookups: addresses inside stored prefixes (deep hits) and random ones */
    for (size_t i = 0; i < Q; i++) {
        uint8_t *a = q + 16 * i;
        size_t j = (size_t)(rnd() % N);
        j = (j & ~(size_t)1) | (i & 1); /* same family as the query slot */
        memcpy(a, pa + 16 * j, 16);
        for (unsigned k = pl[j]; k < 128; k++) /* random host bits */
            if (rnd() & 1)
                a[k / 8] ^= (uint8_t)(0x80 >> (k % 8));
    }
    uint32_t tag;
    uint8_t plen;
    size_t found = 0;
    t0 = now_s();
    for (size_t i = 0; i < Q; i++)
        found += gh_iptree_lookup(t, i & 1 ? AF_INET6 : AF_INET, q + 16 * i, &tag, &plen) == 1;
    double t_hit = now_s() - t0;
    CHECK_INT(found, Q); /* each query lies in the prefix it came from */
    uint8_t *rq = malloc((size_t)Q * 16);
    for (size_t i = 0; rq && i < (size_t)Q * 16; i++)
        rq[i] = (uint8_t)rnd();
    size_t rfound = 0;
    t0 = now_s();
    for (size_t i = 0; rq && i < Q; i++)
        rfound += gh_iptree_lookup(t, i & 1 ? AF_INET6 : AF_INET, rq + 16 * i, &tag, &plen) == 1;
    double t_rnd = now_s() - t0;

    /* two threads look up concurrently and agree with the single-threaded sum */
    reader_t r[2] = {{t, q, Q / 4, 0}, {t, q, Q / 4, 0}}, single = {t, q, Q / 4, 0};
    reader(&single);
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        pthread_create(&th[k], NULL, reader, &r[k]);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    CHECK(r[0].sum == single.sum && r[1].sum == single.sum);

    printf("iptree: 1M prefixes (500k IPv4 /8-/32, 500k IPv6 /16-/128): add %.3f s (%.0f ns/prefix), "
           "%zu distinct, %.1f MiB; lookup %.0f ns (in a prefix), %.0f ns (random, %zu%% hit)%s\n",
           t_add, t_add * 1e9 / N, gh_iptree_count(t), (double)gh_iptree_bytes(t) / (1 << 20),
           t_hit * 1e9 / Q, t_rnd * 1e9 / Q, rfound * 100 / Q, sanitized() ? " [sanitizer build]" : "");
    if (!sanitized())
        CHECK(t_add < 3.0); /* goal < 1 s; generous for a loaded shared machine */
    gh_iptree_free(t);
    free(rq);
out:
    free(pa);
    free(pl);
    free(q);
}

/* ---- GeoIP -------------------------------------------------------------------------- */

/* Writes tmpdir/NAME with mmdb.py; 0 ok, -1 (reason printed) when it cannot run. */
static int mmdb_write(const char *name, const char *args)
{
    char cmd[2048];
    if (access("/usr/bin/python3", X_OK) != 0) {
        printf("geoip: SKIP: /usr/bin/python3 not found\n");
        return -1;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %stests/integration/mmdb.py %s/%s %s >%s/mmdb.log 2>&1",
             repo_root(), tmpdir, name, args, tmpdir);
    int rc = system(cmd);
    if (rc != 0) {
        printf("geoip: SKIP: the writer failed (exit %d): %s (see %s/mmdb.log)\n", rc, cmd, tmpdir);
        return -1;
    }
    return 0;
}

static int country(const gh_geoip_t *g, const char *ip, char cc[3])
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        return -100;
    return gh_geoip_country(g, (struct sockaddr *)&ss, cc);
}

static void geoip_db(const char *opts)
{
    char args[1024], path[600], err[700];
    snprintf(args, sizeof args,
             "%s 10.0.0.0/8=DE 10.1.0.0/16=FR 2001:db8::/32=US 198.51.100.0/24=registered:JP "
             "203.0.113.0/24=CA,registered:US 192.0.2.0/24=it 100.64.0.0/10=- 172.16.0.0/12=USA "
             "127.0.0.0/8=Z1 '0.0.0.0/1={\"country\": {\"iso_code\": \"zz\"}}'",
             opts);
    if (mmdb_write("c.mmdb", args))
        return;
    snprintf(path, sizeof path, "%s/c.mmdb", tmpdir);
    gh_geoip_t *g = gh_geoip_open(path, err, sizeof err);
    CHECK(g != NULL);
    if (!g) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    static const struct {
        const char *ip;
        int rc;
        const char *cc;
    } q[] = {
        {"10.2.3.4", 1, "DE"},        {"10.1.2.3", 1, "FR"},     {"::ffff:10.1.2.3", 1, "FR"},
        {"2001:db8::1", 1, "US"},     {"2001:db9::1", 0, ""},    {"198.51.100.7", 1, "JP"},
        {"203.0.113.9", 1, "CA"},     {"192.0.2.1", 1, "IT"},    {"100.64.0.1", 0, ""},
        {"172.16.0.1", 0, ""}, /* "USA" and "Z1" are not two letters */
        {"127.0.0.1", 0, ""},
        {"200.1.1.1", 0, ""},         {"1.1.1.1", 1, "ZZ"},
        {"::1", 1, "ZZ"}, /* ::/96 is the IPv4 subtree: ::1 is 0.0.0.1 (as in MaxMind's files) */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(q); i++) {
        char cc[3] = "xx";
        int rc = country(g, q[i].ip, cc);
        const char *want = q[i].cc;
        int wrc = q[i].rc;
        if (rc != wrc || strcmp(cc, want)) {
            fprintf(stderr, "  [%s] %s: rc %d cc \"%s\", want %d \"%s\"\n", opts, q[i].ip, rc, cc,
                    wrc, want);
            CHECK(0);
        }
    }
    char cc[3];
    uint8_t a4[4] = {10, 1, 0, 1};
    CHECK_INT(gh_geoip_country_ip(g, AF_INET, a4, cc), 1);
    CHECK_STR(gh_str(cc, strlen(cc)), "FR");
    CHECK_INT(gh_geoip_country_ip(g, AF_UNIX, a4, cc), GH_EINVAL);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    CHECK_INT(gh_geoip_country(g, (struct sockaddr *)&su, cc), GH_EINVAL);
    CHECK_INT(gh_geoip_country(g, NULL, cc), GH_EINVAL);
    const char *type = NULL;
    uint64_t epoch = 0;
    gh_geoip_info(g, &type, &epoch);
    CHECK(type && !strcmp(type, "GeoIP2-Country"));
    CHECK_INT(epoch, 1700000000);
    gh_geoip_close(g);
}

static void test_geoip(void)
{
    if (!tmpdir[0] || strstr(tmpdir, "XXXXXX")) {
        printf("geoip: SKIP: no temporary directory\n");
        return;
    }
    geoip_db("--epoch 1700000000 --record-size 24");
    geoip_db("--epoch 1700000000 --record-size 28");
    geoip_db("--epoch 1700000000 --record-size 32 --no-alias"); /* mapped lookups still work */

    /* an IPv4-only database: IPv6 addresses are unknown */
    char path[600], err[700], cc[3];
    if (mmdb_write("v4.mmdb", "--ip-version 4 10.0.0.0/8=DE") == 0) {
        snprintf(path, sizeof path, "%s/v4.mmdb", tmpdir);
        gh_geoip_t *g = gh_geoip_open(path, err, sizeof err);
        CHECK(g != NULL);
        if (g) {
            CHECK_INT(country(g, "10.0.0.1", cc), 1);
            CHECK_INT(country(g, "::ffff:10.0.0.1", cc), 1);
            CHECK_INT(country(g, "2001:db8::1", cc), 0);
            CHECK_STR(gh_str(cc, strlen(cc)), "");
            gh_geoip_close(g);
        }
    }
    /* open errors */
    snprintf(path, sizeof path, "%s/missing.mmdb", tmpdir);
    CHECK(gh_geoip_open(path, err, sizeof err) == NULL);
    CHECK(strncmp(err, path, strlen(path)) == 0 && strstr(err, "No such file") != NULL);
    printf("geoip: missing file -> \"%s\"\n", err + strlen(tmpdir) + 1);
    snprintf(path, sizeof path, "%s/garbage.mmdb", tmpdir);
    CHECK_INT(write_file(path, "this is not a database\n", 23), 0);
    CHECK(gh_geoip_open(path, err, sizeof err) == NULL);
    CHECK(strncmp(err, path, strlen(path)) == 0 && strlen(err) > strlen(path) + 2);
    printf("geoip: garbage file -> \"%s\"\n", err + strlen(tmpdir) + 1);
    CHECK(gh_geoip_open(NULL, err, sizeof err) == NULL);
    gh_geoip_close(NULL);
}

static void cleanup(void)
{
    if (strstr(tmpdir, "XXXXXX"))
        return;
    static const char *const files[] = {"c.mmdb", "v4.mmdb", "garbage.mmdb", "mmdb.log", "big.txt"};
    char p[600];
    for (size_t i = 0; i < GH_ARRAY_LEN(files); i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, files[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

int main(void)
{
    RUN(test_parse_good);
    RUN(test_parse_bad);
    RUN(test_basic);
    RUN(test_default_routes);
    RUN(test_mapped);
    RUN(test_directory);
    RUN(test_lpm_random_v4);
    RUN(test_lpm_random_v6);
    RUN(test_load_mem);
    RUN(test_load_file);
    RUN(test_million);
    RUN(test_geoip);
    cleanup();
    return t_done("test_iptree");
}
