/* fuzz_cookie.c: libFuzzer target for the pass cookie and the challenge token
 * (src/protect/challenge.c), and the bot scorer's parsers (src/protect/bot.c).
 *
 * Input: [family][16 address bytes][ua length][value length][flags] then the User-Agent,
 * the value (tried as a cookie and as a token) and the rest (the answer n, the return
 * path, the request path). Beyond "does not crash" it traps on broken invariants:
 *  - checks answer 0 or 1; a fuzzed cookie that passes is exactly what gh_chal_cookie
 *    writes for its expiry (one spelling per cookie); a token that verifies (only a
 *    seed's real one can) has its zero bits and fails for another User-Agent;
 *  - for the fuzzed client, a fresh cookie passes and fails with any byte changed, for
 *    another User-Agent or /24 (/64); a fresh token, solved here, verifies, and fails
 *    for another User-Agent;
 *  - the page embeds any return path without ending its one script, and
 *    gh_chal_return_ok never accepts what a browser reads as another host;
 *  - the scorer returns 0..100 and known reason bits, whatever the path, UA and JA4. */
#include "protect/bot.h"
#include "protect/challenge.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#define NOW 1700000000ull

static const uint8_t SECRET[32] = "fuzz-secret-fuzz-secret-fuzz-sec";

static size_t count(const char *h, size_t n, const char *needle)
{
    size_t c = 0, l = strlen(needle);
    for (const char *p = h; (p = memmem(p, (size_t)(h + n - p), needle, l)); p += l)
        c++;
    return c;
}

static void make_peer(const uint8_t *d, struct sockaddr_storage *ss, const struct sockaddr **sa)
{
    memset(ss, 0, sizeof(*ss));
    *sa = (const struct sockaddr *)ss;
    switch (d[0] & 3) {
    case 0: {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, d + 1, 4);
        break;
    }
    case 1: {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, d + 1, 16);
        break;
    }
    case 2: { /* IPv4-mapped */
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        memset(a->sin6_addr.s6_addr + 10, 0xff, 2);
        memcpy(a->sin6_addr.s6_addr + 12, d + 1, 4);
        break;
    }
    default:
        *sa = (d[0] & 4) ? NULL : (const struct sockaddr *)ss; /* AF_UNSPEC or none */
        break;
    }
}

/* The same client in another prefix: flip a bit inside the bound bytes. */
static int other_prefix(const uint8_t *d, struct sockaddr_storage *ss)
{
    switch (d[0] & 3) {
    case 0:
        ((struct sockaddr_in *)ss)->sin_addr.s_addr ^= htonl(0x100);
        return 1;
    case 1:
        ((struct sockaddr_in6 *)ss)->sin6_addr.s6_addr[7] ^= 1;
        return 1;
    case 2:
        ((struct sockaddr_in6 *)ss)->sin6_addr.s6_addr[14] ^= 1;
        return 1;
    default:
        return 0;
    }
}

static void fuzz_bot(gh_str_t path, gh_str_t ua, gh_str_t ja4, uint8_t flags, uint32_t t)
{
    static gh_bot_state_t st; /* kept across inputs: any history, any clock */
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    gh_bot_obs_t o;
    memset(&o, 0, sizeof(o));
    o.now_ms = (flags & 0x80) ? (uint64_t)t << 20 : t;
    o.path = path, o.ua = ua, o.ja4 = ja4;
    o.has_accept = flags & 1, o.has_accept_language = (flags >> 1) & 1;
    o.has_accept_encoding = (flags >> 2) & 1, o.has_sec_fetch = (flags >> 3) & 1;
    o.has_sec_ch_ua = (flags >> 4) & 1;
    uint32_t r = 0;
    int s = gh_bot_observe(&st, &c, &o, &r);
    ASSERT(s >= 0 && s <= 100);
    ASSERT(r < (1u << GH_BOT_R__COUNT));
    ASSERT((s == 0) == (r == 0));
    int a = gh_bot_is_asset(path);
    ASSERT(a == 0 || a == 1);
    char buf[80];
    size_t n = gh_bot_reasons_format(r, buf, sizeof(buf));
    ASSERT(n == strlen(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 20)
        return 0;
    struct sockaddr_storage ss;
    const struct sockaddr *peer;
    make_peer(data, &ss, &peer);
    size_t i = 20, ul = GH_MIN((size_t)data[17], size - i);
    gh_str_t ua = gh_str((const char *)data + i, ul);
    i += ul;
    size_t vl = GH_MIN((size_t)data[18], size - i);
    gh_str_t value = gh_str((const char *)data + i, vl);
    i += vl;
    gh_str_t rest = gh_str((const char *)data + i, size - i);
    uint8_t flags = data[19];

    /* fuzzed values */
    char ua2[300]; /* the same User-Agent and one byte more */
    memcpy(ua2, ua.p, ua.n);
    ua2[ua.n] = 'x';
    int r = gh_chal_cookie_check(SECRET, sizeof(SECRET), peer, ua, value, NOW);
    ASSERT(r == 0 || r == 1);
    if (r) {
        unsigned long long exp = strtoull(value.p + 3, NULL, 10);
        char again[GH_CHAL_COOKIE_MAX];
        int l = gh_chal_cookie(SECRET, sizeof(SECRET), peer, ua, exp, again, sizeof(again));
        ASSERT(l > 0 && (size_t)l == value.n && !memcmp(again, value.p, value.n));
        ASSERT(gh_chal_cookie_check(SECRET, sizeof(SECRET), peer, gh_str(ua2, ua.n + 1), value,
                                    NOW) == 0);
    }
    r = gh_chal_verify(SECRET, sizeof(SECRET), peer, ua, value, rest, NOW, 600);
    ASSERT(r == 0 || r == 1);
    if (r) { /* only a real token (a seed) with a real answer */
        const char *dot = memchr(value.p + 3, '.', value.n - 3);
        ASSERT(dot && gh_chal_pow_bits(value, rest) >= strtoul(dot + 1, NULL, 10));
        ASSERT(gh_chal_verify(SECRET, sizeof(SECRET), peer, gh_str(ua2, ua.n + 1), value, rest, NOW,
                              600) == 0);
    }

    /* fresh cookie for this client */
    char ck[GH_CHAL_COOKIE_MAX];
    uint64_t exp = NOW + 1 + (flags & 0x7f);
    int cl = gh_chal_cookie(SECRET, sizeof(SECRET), peer, ua, exp, ck, sizeof(ck));
    ASSERT(cl > 0);
    ASSERT(gh_chal_cookie_check(SECRET, sizeof(SECRET), peer, ua, gh_str(ck, (size_t)cl), NOW) ==
           1);
    ASSERT(gh_chal_cookie_check(SECRET, sizeof(SECRET), peer, ua, gh_str(ck, (size_t)cl), exp) ==
           0);
    size_t pos = data[19] % (size_t)cl;
    char saved = ck[pos];
    ck[pos] = (char)(ck[pos] ^ (1 + (data[18] & 0x3f)));
    ASSERT(gh_chal_cookie_check(SECRET, sizeof(SECRET), peer, ua, gh_str(ck, (size_t)cl), NOW) ==
           0);
    ck[pos] = saved;
    ASSERT(gh_chal_cookie_check(SECRET, sizeof(SECRET), peer, gh_str(ua2, ua.n + 1),
                                gh_str(ck, (size_t)cl), NOW) == 0);
    struct sockaddr_storage ss2 = ss;
    if (peer && other_prefix(data, &ss2))
        ASSERT(gh_chal_cookie_check(SECRET, sizeof(SECRET), (const struct sockaddr *)&ss2, ua,
                                    gh_str(ck, (size_t)cl), NOW) == 0);

    /* fresh token, solved here (difficulty 0..3: a handful of tries) */
    char tok[GH_CHAL_TOKEN_MAX], n[24];
    unsigned d = flags & 3;
    int tl = gh_chal_token(SECRET, sizeof(SECRET), peer, ua, NOW, d, tok, sizeof(tok));
    ASSERT(tl > 0);
    for (unsigned long long k = 0;; k++) {
        snprintf(n, sizeof(n), "%llu", k);
        if (gh_chal_pow_bits(gh_str(tok, (size_t)tl), gh_str(n, strlen(n))) >= d)
            break;
    }
    ASSERT(gh_chal_verify(SECRET, sizeof(SECRET), peer, ua, gh_str(tok, (size_t)tl),
                          gh_str(n, strlen(n)), NOW, 600) == 1);
    ASSERT(gh_chal_verify(SECRET, sizeof(SECRET), peer, gh_str(ua2, ua.n + 1),
                          gh_str(tok, (size_t)tl), gh_str(n, strlen(n)), NOW, 600) == 0);

    /* the page, with the rest as the return path */
    if (gh_chal_return_ok(rest)) {
        ASSERT(rest.p[0] == '/' && (rest.n == 1 || (rest.p[1] != '/' && rest.p[1] != '\\')));
        ASSERT(!memchr(rest.p, '\\', rest.n) && !memchr(rest.p, '\n', rest.n));
    }
    size_t cap = GH_CHAL_PAGE_SIZE(rest.n, 8);
    char *page = malloc(cap);
    ASSERT(page);
    int pl = gh_chal_page(page, cap, gh_str(tok, (size_t)tl), d, rest, GH_STR("/verify"));
    ASSERT(pl > 0);
    ASSERT(count(page, (size_t)pl, "<script") == 1 && count(page, (size_t)pl, "</script") == 1);
    ASSERT(count(page, (size_t)pl, "<!--") == 0);
    int pr = gh_chal_page(page, cap, value, d, rest, GH_STR("/verify")); /* value as token */
    ASSERT(pr == GH_EINVAL || (pr > 0 && value.p[0] == 'v'));
    free(page);

    /* the scorer: value as the path, rest as the JA4 */
    fuzz_bot(value, ua, rest, flags, (uint32_t)data[1] << 8 | data[2]);
    return 0;
}
