/* fuzz_iplist.c: libFuzzer target for IP list loading, CIDR parsing and longest-prefix
 * match (src/protect/iptree.c).
 *
 * The input is loaded as a list with gh_iptree_load_mem. Beyond "does not crash" it traps
 * on broken invariants, against an independent reading of the same lines:
 * - only the documented codes come back; an error names "fz:LINE:COL: " with the first
 *   line that this file's splitter (comments, trimming, CRLF, 256-byte limit) and
 *   gh_cidr_parse_diag reject, at the column they agree on; every line before it
 *   parses, and a success counts exactly the entries read;
 * - a parsed address agrees with inet_pton (same acceptance, same bytes) and survives
 *   inet_ntop + "/len" + parsing again unchanged;
 * - lookups agree with a brute-force scan over the parsed entries (tags by entry
 *   order, later duplicates winning, IPv4-mapped prefixes and queries folded to IPv4)
 *   for addresses inside each entry, next to it, and taken from the input bytes; for
 *   half of the inputs gh_iptree_hint switches the tree to its /16 directory halfway
 *   through the entries, so the rebuild and the directory lookups run too. */
#include "protect/iptree.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

#define MAX_ENTRIES 256

typedef struct {
    int fam;
    uint8_t a[16];
    uint8_t len;
    uint32_t tag;
} entry_t;

static const uint8_t mapped_pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* IPv4-mapped IPv6 folded to IPv4, as the tree documents it. */
static void fold(int *fam, uint8_t *a, unsigned *len, int is_prefix)
{
    if (*fam == AF_INET6 && !memcmp(a, mapped_pfx, 12) && (!is_prefix || *len >= 96)) {
        memmove(a, a + 12, 4);
        memset(a + 4, 0, 12);
        *fam = AF_INET;
        *len -= 96;
    }
}

static int match(const uint8_t *p, const uint8_t *a, unsigned len)
{
    if (memcmp(p, a, len / 8))
        return 0;
    return len % 8 == 0 || !((p[len / 8] ^ a[len / 8]) & (0xff00 >> (len % 8)));
}

/* Checks one query against t (tags by entry) and tl (the list loaded with tag 7). */
static void query(const gh_iptree_t *t, const gh_iptree_t *tl, const entry_t *e, int ne, int fam,
                  const uint8_t *addr)
{
    const int qfam = fam;
    uint8_t a[16] = {0};
    memcpy(a, addr, fam == AF_INET ? 4 : 16);
    unsigned dummy = 128;
    fold(&fam, a, &dummy, 0);
    int best = -1;
    for (int i = 0; i < ne; i++)
        if (e[i].fam == fam && match(e[i].a, a, e[i].len) &&
            (best < 0 || e[i].len >= e[best].len))
            best = i; /* equal length means the same prefix: the later entry wins */
    int want = best >= 0;
    uint32_t wtag = want ? e[best].tag : 0;
    unsigned wlen = want ? e[best].len : 0;

    uint32_t tag = 0;
    uint8_t len = 0;
    int rc = gh_iptree_lookup(t, qfam, addr, &tag, &len);
    ASSERT(rc == want);
    if (want)
        ASSERT(tag == wtag && len == wlen);
    if (tl) {
        rc = gh_iptree_lookup(tl, qfam, addr, &tag, &len);
        ASSERT(rc == want);
        if (want)
            ASSERT(tag == 7 && len == wlen);
    }
}

/* The parser against inet_pton, and the inet_ntop round trip. */
static void check_parse(const char *s, size_t n)
{
    int fam = -1;
    uint8_t a[16], plen = 0;
    size_t off = 12345;
    char msg[128] = "";
    int rc = gh_cidr_parse_diag(s, n, &fam, a, &plen, &off, msg, sizeof msg);
    ASSERT(rc == 0 || rc == GH_EINVAL);
    if (rc) {
        ASSERT(off <= n && msg[0]);
    } else {
        ASSERT(fam == AF_INET || fam == AF_INET6);
        ASSERT(plen <= (fam == AF_INET ? 32 : 128));
    }
    /* acceptance of the bare address equals inet_pton's */
    const char *slash = memchr(s, '/', n);
    size_t an = slash ? (size_t)(slash - s) : n;
    if (an < 64 && !memchr(s, '\0', an)) {
        char txt[64];
        memcpy(txt, s, an);
        txt[an] = '\0';
        int pfam = memchr(txt, ':', an) ? AF_INET6 : AF_INET;
        uint8_t pa[16] = {0}, a2[16];
        int prc = inet_pton(pfam, txt, pa);
        int f2;
        uint8_t l2;
        int rc2 = gh_cidr_parse(txt, an, &f2, a2, &l2);
        ASSERT((prc == 1) == (rc2 == 0));
        if (rc2 == 0)
            ASSERT(f2 == pfam && !memcmp(a2, pa, pfam == AF_INET ? 4 : 16));
    }
    if (rc == 0) {
        char txt[INET6_ADDRSTRLEN + 8];
        ASSERT(inet_ntop(fam, a, txt, INET6_ADDRSTRLEN));
        size_t k = strlen(txt);
        snprintf(txt + k, sizeof txt - k, "/%u", plen);
        int f2;
        uint8_t a2[16], l2;
        ASSERT(gh_cidr_parse(txt, strlen(txt), &f2, a2, &l2) == 0);
        ASSERT(f2 == fam && l2 == plen && !memcmp(a2, a, 16));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 16777619u;

    gh_iptree_t *tl = gh_iptree_new();
    ASSERT(tl);
    char err[512];
    memset(err, 'X', sizeof err);
    int rc = gh_iptree_load_mem(tl, "fz", p, size, 7, err, sizeof err);
    ASSERT(rc >= 0 || rc == GH_EINVAL);
    unsigned long eline = 0;
    size_t ecol = 0;
    int epos = 0;
    if (rc < 0) {
        ASSERT(sscanf(err, "fz:%lu:%zu: %n", &eline, &ecol, &epos) == 2 && epos > 0);
        ASSERT(eline >= 1 && ecol >= 1 && ecol <= GH_IPTREE_MAX_LINE + 1);
    } else {
        ASSERT(err[0] == '\0');
    }

    /* the same lines, read independently */
    entry_t *e = calloc(MAX_ENTRIES, sizeof *e);
    ASSERT(e);
    int ne = 0, nread = 0, failed_at_error = 0;
    unsigned long line = 1;
    for (size_t i = 0; i <= size; line++) {
        if (i == size && (size == 0 || p[size - 1] == '\n'))
            break;
        const char *nl = memchr(p + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (p + i)) : size - i;
        const char *s = p + i;
        i += n + 1;
        if (n && s[n - 1] == '\r')
            n--;
        int is_err = rc < 0 && line == eline;
        if (n > GH_IPTREE_MAX_LINE) {
            ASSERT(is_err && ecol == GH_IPTREE_MAX_LINE + 1);
            failed_at_error = 1;
            break;
        }
        const char *hash = memchr(s, '#', n);
        size_t end = hash ? (size_t)(hash - s) : n, st = 0;
        while (st < end && (s[st] == ' ' || s[st] == '\t'))
            st++;
        while (end > st && (s[end - 1] == ' ' || s[end - 1] == '\t'))
            end--;
        if (st == end) {
            ASSERT(!is_err);
            continue;
        }
        check_parse(s + st, end - st);
        int fam;
        uint8_t a[16], plen;
        size_t off;
        char msg[128];
        int prc = gh_cidr_parse_diag(s + st, end - st, &fam, a, &plen, &off, msg, sizeof msg);
        if (is_err) {
            ASSERT(prc == GH_EINVAL && ecol == st + off + 1 && !strcmp(err + epos, msg));
            failed_at_error = 1;
            break;
        }
        ASSERT(prc == 0);
        nread++;
        if (ne < MAX_ENTRIES) {
            unsigned len = plen;
            fold(&fam, a, &len, 1);
            e[ne].fam = fam;
            memcpy(e[ne].a, a, 16);
            e[ne].len = (uint8_t)len;
            e[ne].tag = (uint32_t)ne + 1;
            ne++;
        }
    }
    ASSERT(rc < 0 ? failed_at_error : rc == nread);

    /* a tree with a tag per entry; half the time it gets the directory halfway */
    int dir = seed & 1;
    gh_iptree_t *t = gh_iptree_new();
    ASSERT(t);
    for (int i = 0; i < ne; i++) {
        if (dir && i == ne / 2)
            ASSERT(gh_iptree_hint(t, 1 << 20) == 0);
        ASSERT(gh_iptree_add(t, e[i].fam, e[i].a, e[i].len, e[i].tag) == 0);
    }
    if (dir && ne == 0)
        ASSERT(gh_iptree_hint(t, 1 << 20) == 0);
    if (rc >= 0 && nread == ne)
        ASSERT(gh_iptree_count(t) == gh_iptree_count(tl));
    const gh_iptree_t *tq = nread == ne ? tl : NULL; /* the oracle saw only MAX_ENTRIES */

    /* queries: inside each entry (host bits from the seed), one bit past its prefix, the
     * entry's address mapped to IPv6, and raw input bytes */
    uint32_t x = seed | 1;
    for (int i = 0; i < ne; i++) {
        int fam = e[i].fam;
        unsigned maxlen = fam == AF_INET ? 32 : 128;
        uint8_t a[16];
        memcpy(a, e[i].a, 16);
        for (unsigned b = e[i].len; b < maxlen; b++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            if (x & 1)
                a[b / 8] ^= (uint8_t)(0x80 >> (b % 8));
        }
        query(t, tq, e, ne, fam, a);
        if (e[i].len > 0) {
            memcpy(a, e[i].a, 16);
            unsigned b = e[i].len - 1;
            a[b / 8] ^= (uint8_t)(0x80 >> (b % 8));
            query(t, tq, e, ne, fam, a);
        }
        if (fam == AF_INET) {
            uint8_t m[16];
            memcpy(m, mapped_pfx, 12);
            memcpy(m + 12, e[i].a, 4);
            query(t, tq, e, ne, AF_INET6, m);
        }
    }
    for (size_t i = 0; i + 16 <= size && i < 16 * 32; i += 16) {
        query(t, tq, e, ne, AF_INET, data + i);
        query(t, tq, e, ne, AF_INET6, data + i);
    }

    /* sockaddr entry points agree */
    if (ne > 0) {
        struct sockaddr_in6 s6;
        memset(&s6, 0, sizeof s6);
        s6.sin6_family = AF_INET6;
        memcpy(&s6.sin6_addr, e[0].a, 16);
        uint32_t tag1 = 0, tag2 = 0;
        int r1 = gh_iptree_lookup_sa(t, (struct sockaddr *)&s6, &tag1);
        int r2 = gh_iptree_lookup(t, AF_INET6, e[0].a, &tag2, NULL);
        ASSERT(r1 == r2 && tag1 == tag2);
    }

    gh_iptree_free(t);
    gh_iptree_free(tl);
    free(e);
    return 0;
}
