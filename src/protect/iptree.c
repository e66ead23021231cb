/* iptree.c: see iptree.h.
 *
 * Keys are 128 bits as (hi, lo) words, most significant bit first; an IPv4 address
 * sits in the top 32 bits of hi, so both families share one node type and one code
 * path, with lengths relative to the family (0..32 or 0..128). A node's key has its
 * bits beyond len cleared. Index 0 of the node array is never used, so 0 is "no child".
 * Insertion reserves the (at most two) nodes it may need before it takes any pointer
 * into the array, so a realloc never leaves a stale pointer behind.
 *
 * The text parsers are written out rather than delegated to inet_pton so that they
 * take views, report the offset and reason of a rejection (for "PATH:LINE:COL" errors)
 * and are exactly as strict as documented. */
#include "protect/iptree.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_NODES (1u << 31)
#define DIR_BITS 16               /* directory stride, once a family is big */
#define DIR_SLOTS (1u << DIR_BITS)
#define DIR_AFTER 8192            /* prefixes in a family before it gets the directory */

typedef struct {
    uint64_t hi, lo;
    uint32_t child[2];
    uint32_t tag;
    uint8_t len;
    uint8_t has; /* a stored prefix ends here (else a branching node) */
} node_t;

/* One address family. bits 0: a single trie at root0 (roots = &root0). bits 16: a trie
 * per value of the first 16 bits (roots[slot]) for prefixes of /16 and longer, and per
 * slot the longest shorter prefix covering it (short_len = len + 1, 0 = none). */
typedef struct {
    node_t *nodes;
    uint32_t nnodes; /* used, including the unused slot 0 */
    uint32_t cap;
    uint32_t *roots;
    uint32_t root0;
    uint8_t bits;
    uint8_t no_dir; /* building the directory failed: stay a plain trie */
    uint32_t *short_tag;
    uint8_t *short_len;
    uint8_t *short_seen;
    size_t count;
} fam_t;

struct gh_iptree {
    fam_t fam[2]; /* [0] IPv4, [1] IPv6 */
};

/* ---- bits --------------------------------------------------------------------------- */

static inline uint64_t mask_hi(unsigned len)
{
    return len >= 64 ? ~0ull : len ? ~0ull << (64 - len) : 0;
}

static inline uint64_t mask_lo(unsigned len)
{
    return len <= 64 ? 0 : len >= 128 ? ~0ull : ~0ull << (128 - len);
}

/* Bit b (0 = most significant of hi); b < 128. */
static inline unsigned bit_at(uint64_t hi, uint64_t lo, unsigned b)
{
    return b < 64 ? (unsigned)(hi >> (63 - b)) & 1 : (unsigned)(lo >> (127 - b)) & 1;
}

/* Number of leading bits two keys share (0..128). */
static inline unsigned common_bits(uint64_t h1, uint64_t l1, uint64_t h2, uint64_t l2)
{
    uint64_t x = h1 ^ h2;
    if (x)
        return (unsigned)__builtin_clzll(x);
    x = l1 ^ l2;
    return x ? 64 + (unsigned)__builtin_clzll(x) : 128;
}

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline int is_mapped(const uint8_t *a)
{
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, pfx, 12) == 0;
}

/* ---- tree --------------------------------------------------------------------------- */

gh_iptree_t *gh_iptree_new(void)
{
    gh_iptree_t *t = calloc(1, sizeof(gh_iptree_t));
    if (!t)
        return NULL;
    for (int f = 0; f < 2; f++)
        t->fam[f].roots = &t->fam[f].root0;
    return t;
}

static void fam_free(fam_t *f)
{
    free(f->nodes);
    if (f->bits) {
        free(f->roots);
        free(f->short_tag);
        free(f->short_len);
        free(f->short_seen);
    }
}

void gh_iptree_free(gh_iptree_t *t)
{
    if (!t)
        return;
    fam_free(&t->fam[0]);
    fam_free(&t->fam[1]);
    free(t);
}

size_t gh_iptree_count(const gh_iptree_t *t) { return t ? t->fam[0].count + t->fam[1].count : 0; }

static size_t fam_bytes(const fam_t *f)
{
    size_t b = (size_t)f->cap * sizeof(node_t);
    if (f->bits)
        b += DIR_SLOTS * (sizeof(uint32_t) * 2 + 1) + DIR_SLOTS / 8;
    return b;
}

size_t gh_iptree_bytes(const gh_iptree_t *t)
{
    return t ? sizeof(*t) + fam_bytes(&t->fam[0]) + fam_bytes(&t->fam[1]) : 0;
}

/* Room for k more nodes. */
static int reserve(fam_t *f, uint32_t k)
{
    if (f->nnodes + k <= f->cap)
        return 0;
    if ((uint64_t)f->nnodes + k > MAX_NODES)
        return GH_ELIMIT;
    uint64_t cap = f->cap ? (uint64_t)f->cap * 2 : 16;
    while (cap < (uint64_t)f->nnodes + k)
        cap *= 2;
    if (cap > MAX_NODES)
        cap = MAX_NODES;
    node_t *n = realloc(f->nodes, (size_t)cap * sizeof(node_t));
    if (!n)
        return GH_ENOMEM;
    f->nodes = n;
    f->cap = (uint32_t)cap;
    if (f->nnodes == 0)
        f->nnodes = 1; /* slot 0 is "none" */
    return 0;
}

static uint32_t new_node(fam_t *f, uint64_t hi, uint64_t lo, unsigned len, uint32_t tag, int has)
{
    uint32_t i = f->nnodes++;
    node_t *n = &f->nodes[i];
    n->hi = hi, n->lo = lo;
    n->child[0] = n->child[1] = 0;
    n->tag = tag;
    n->len = (uint8_t)len;
    n->has = (uint8_t)has;
    return i;
}

/* Stores (hi, lo)/len (bits beyond len already cleared, len >= f->bits) in the trie
 * below *root (a slot of f->roots, which no realloc moves). */
static int trie_insert(fam_t *f, uint32_t *root, uint64_t hi, uint64_t lo, unsigned len, uint32_t tag)
{
    int rc = reserve(f, 2);
    if (rc)
        return rc;
    node_t *nodes = f->nodes; /* stable from here on: nothing reallocates */
    uint32_t *link = root;
    uint32_t cur = *link;
    while (cur) {
        node_t *n = &nodes[cur];
        unsigned c = common_bits(hi, lo, n->hi, n->lo);
        c = GH_MIN(c, GH_MIN(len, (unsigned)n->len));
        if (c == n->len) { /* n's prefix contains ours */
            if (n->len == len) {
                f->count += !n->has;
                n->has = 1;
                n->tag = tag;
                return 0;
            }
            link = &n->child[bit_at(hi, lo, n->len)];
            cur = *link;
            continue;
        }
        if (c == len) { /* ours contains n's: insert above n */
            uint32_t k = new_node(f, hi, lo, len, tag, 1);
            nodes[k].child[bit_at(n->hi, n->lo, len)] = cur;
            *link = k;
            f->count++;
            return 0;
        }
        /* they diverge at bit c: a branching node with both below */
        uint32_t g = new_node(f, hi & mask_hi(c), lo & mask_lo(c), c, 0, 0);
        uint32_t k = new_node(f, hi, lo, len, tag, 1);
        unsigned b = bit_at(hi, lo, c);
        nodes[g].child[b] = k;
        nodes[g].child[b ^ 1] = cur;
        *link = g;
        f->count++;
        return 0;
    }
    *link = new_node(f, hi, lo, len, tag, 1);
    f->count++;
    return 0;
}

/* A prefix shorter than the directory stride: painted over the slots it covers where
 * no longer short prefix is. short_seen (one bit per possible short prefix, indexed
 * heap-style by (1 << len) | value) tells a new prefix from a duplicate. */
static void short_insert(fam_t *f, uint64_t hi, unsigned len, uint32_t tag)
{
    uint32_t v = (uint32_t)(hi >> (64 - DIR_BITS)); /* the slot of the first address */
    uint32_t id = (1u << len) | (len ? v >> (DIR_BITS - len) : 0);
    if (!(f->short_seen[id / 8] & (1u << (id % 8)))) {
        f->short_seen[id / 8] |= (uint8_t)(1u << (id % 8));
        f->count++;
    }
    uint32_t n = 1u << (DIR_BITS - len);
    for (uint32_t s = v; s < v + n; s++)
        if (f->short_len[s] <= len + 1) /* an equal length is this prefix: the later tag wins */
            f->short_len[s] = (uint8_t)(len + 1), f->short_tag[s] = tag;
}

static int fam_insert(fam_t *f, uint64_t hi, uint64_t lo, unsigned len, uint32_t tag)
{
    if (len < f->bits) {
        short_insert(f, hi, len, tag);
        return 0;
    }
    uint32_t slot = f->bits ? (uint32_t)(hi >> (64 - f->bits)) : 0;
    return trie_insert(f, &f->roots[slot], hi, lo, len, tag);
}

/* Rebuilds a family with the directory: a new structure filled from the old nodes, so
 * that a failure leaves the old one intact. */
static int fam_grow_dir(fam_t *f)
{
    fam_t nf;
    memset(&nf, 0, sizeof nf);
    nf.bits = DIR_BITS;
    nf.roots = calloc(DIR_SLOTS, sizeof(uint32_t));
    nf.short_tag = calloc(DIR_SLOTS, sizeof(uint32_t));
    nf.short_len = calloc(DIR_SLOTS, 1);
    nf.short_seen = calloc(DIR_SLOTS / 8, 1);
    int rc = nf.roots && nf.short_tag && nf.short_len && nf.short_seen ? reserve(&nf, f->nnodes) : GH_ENOMEM;
    for (uint32_t i = 1; rc == 0 && i < f->nnodes; i++) {
        const node_t *n = &f->nodes[i];
        if (n->has)
            rc = fam_insert(&nf, n->hi, n->lo, n->len, n->tag);
    }
    if (rc) {
        fam_free(&nf);
        f->no_dir = 1; /* stay a plain trie; lookups are only slower */
        return rc;
    }
    fam_free(f);
    *f = nf;
    return 0;
}

static int tree_insert(gh_iptree_t *t, int r, uint64_t hi, uint64_t lo, unsigned len, uint32_t tag)
{
    fam_t *f = &t->fam[r];
    int rc = fam_insert(f, hi, lo, len, tag);
    if (rc == 0 && !f->bits && !f->no_dir && f->count >= DIR_AFTER)
        fam_grow_dir(f);
    return rc;
}

int gh_iptree_hint(gh_iptree_t *t, size_t nprefixes)
{
    if (!t)
        return GH_EINVAL;
    for (int r = 0; r < 2; r++) {
        fam_t *f = &t->fam[r];
        if (!f->bits && nprefixes >= DIR_AFTER) {
            int rc = fam_grow_dir(f);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int gh_iptree_add(gh_iptree_t *t, int family, const uint8_t *addr, uint8_t prefix, uint32_t tag)
{
    if (!t || !addr)
        return GH_EINVAL;
    if (family == AF_INET6 && prefix >= 96 && prefix <= 128 && is_mapped(addr))
        addr += 12, prefix -= 96, family = AF_INET;
    if (family == AF_INET) {
        if (prefix > 32)
            return GH_EINVAL;
        uint64_t hi = (uint64_t)load_be32(addr) << 32;
        return tree_insert(t, 0, hi & mask_hi(prefix), 0, prefix, tag);
    }
    if (family == AF_INET6) {
        if (prefix > 128)
            return GH_EINVAL;
        uint64_t hi = load_be64(addr), lo = load_be64(addr + 8);
        return tree_insert(t, 1, hi & mask_hi(prefix), lo & mask_lo(prefix), prefix, tag);
    }
    return GH_EINVAL;
}

/* The descent: at most one node per distinct length on the path; no writes. Without
 * a match in the slot's trie, the slot's short prefix (if any) is the answer. */
static inline int lpm(const fam_t *f, uint64_t hi, uint64_t lo, uint32_t *tag, uint8_t *plen)
{
    const node_t *nodes = f->nodes, *best = NULL;
    uint32_t slot = f->bits ? (uint32_t)(hi >> (64 - f->bits)) : 0;
    uint32_t i = f->roots[slot];
    while (i) {
        const node_t *n = &nodes[i];
        if (((hi ^ n->hi) & mask_hi(n->len)) | ((lo ^ n->lo) & mask_lo(n->len)))
            break;
        if (n->has)
            best = n;
        if (n->len >= 128)
            break;
        i = n->child[bit_at(hi, lo, n->len)];
    }
    if (best) {
        if (tag)
            *tag = best->tag;
        if (plen)
            *plen = best->len;
        return 1;
    }
    if (f->bits && f->short_len[slot]) {
        if (tag)
            *tag = f->short_tag[slot];
        if (plen)
            *plen = (uint8_t)(f->short_len[slot] - 1);
        return 1;
    }
    return 0;
}

int gh_iptree_lookup(const gh_iptree_t *t, int family, const uint8_t *addr, uint32_t *tag,
                     uint8_t *prefix_len)
{
    if (!t || !addr)
        return GH_EINVAL;
    if (family == AF_INET6 && is_mapped(addr))
        addr += 12, family = AF_INET;
    if (family == AF_INET)
        return lpm(&t->fam[0], (uint64_t)load_be32(addr) << 32, 0, tag, prefix_len);
    if (family == AF_INET6)
        return lpm(&t->fam[1], load_be64(addr), load_be64(addr + 8), tag, prefix_len);
    return GH_EINVAL;
}

int gh_iptree_lookup_sa(const gh_iptree_t *t, const struct sockaddr *sa, uint32_t *tag)
{
    if (!sa)
        return GH_EINVAL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return gh_iptree_lookup(t, AF_INET, (const uint8_t *)&s4->sin_addr, tag, NULL);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return gh_iptree_lookup(t, AF_INET6, s6->sin6_addr.s6_addr, tag, NULL);
    }
    return GH_EINVAL;
}

/* ---- text --------------------------------------------------------------------------- */

typedef struct {
    size_t off;
    char msg[112];
} perr_t;

__attribute__((format(printf, 3, 4))) static int fail(perr_t *e, size_t off, const char *fmt, ...)
{
    e->off = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return GH_EINVAL;
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The rejection of a byte (at offset i) that fits no rule. */
static int bad_char(perr_t *e, char ch, size_t i)
{
    unsigned char c = (unsigned char)ch;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f')
        return fail(e, i, "whitespace inside an address");
    if (c == '%')
        return fail(e, i, "zone index ('%%...') not allowed");
    if (c >= 0x21 && c < 0x7f)
        return fail(e, i, "unexpected character '%c'", c);
    return fail(e, i, "unexpected byte 0x%02x", c);
}

/* Dotted quad filling all of s[0..n); offsets are relative to base. */
static int parse_v4(const char *s, size_t n, size_t base, uint8_t out[4], perr_t *e)
{
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        size_t st = i;
        unsigned v = 0, nd = 0;
        while (i < n && is_digit(s[i])) {
            if (++nd > 3)
                return fail(e, base + st, "octet > 255");
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (nd == 0) {
            if (i == n)
                return fail(e, base + i, "IPv4 address needs 4 octets");
            return bad_char(e, s[i], base + i);
        }
        if (nd > 1 && s[st] == '0')
            return fail(e, base + st, "leading zero in octet (octal or decimal?)");
        if (v > 255)
            return fail(e, base + st, "octet > 255");
        out[k] = (uint8_t)v;
        if (k < 3) {
            if (i == n)
                return fail(e, base + i, "IPv4 address needs 4 octets");
            if (s[i] != '.')
                return bad_char(e, s[i], base + i);
            i++;
        }
    }
    if (i < n) {
        if (s[i] == '.')
            return fail(e, base + i, "IPv4 address has more than 4 octets");
        return bad_char(e, s[i], base + i);
    }
    return 0;
}

/* RFC 4291 text filling all of s[0..n). */
static int parse_v6(const char *s, size_t n, uint8_t out[16], perr_t *e)
{
    uint16_t g[8];
    int ng = 0, dc = -1; /* dc: index in g where "::" stands */
    size_t i = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        dc = 0;
        i = 2;
    } else if (n >= 1 && s[0] == ':') {
        return fail(e, 0, "IPv6 address starts with a single ':'");
    }
    while (i < n) {
        size_t st = i;
        unsigned v = 0, nd = 0;
        int h;
        while (i < n && (h = hexval(s[i])) >= 0) {
            if (++nd > 4)
                return fail(e, st, "IPv6 group longer than 4 hex digits");
            v = v << 4 | (unsigned)h;
            i++;
        }
        if (i < n && s[i] == '.') { /* dotted-quad tail: the last 32 bits */
            uint8_t q[4];
            if (ng > 6)
                return fail(e, st, "too many groups before the IPv4 part");
            int rc = parse_v4(s + st, n - st, st, q, e);
            if (rc)
                return rc;
            g[ng++] = (uint16_t)(q[0] << 8 | q[1]);
            g[ng++] = (uint16_t)(q[2] << 8 | q[3]);
            i = n;
            break;
        }
        if (nd == 0)
            return bad_char(e, s[i], i);
        if (ng == 8)
            return fail(e, st, "IPv6 address has more than 8 groups");
        g[ng++] = (uint16_t)v;
        if (i == n)
            break;
        if (s[i] != ':')
            return bad_char(e, s[i], i);
        i++;
        if (i < n && s[i] == ':') {
            if (dc >= 0)
                return fail(e, i - 1, "second '::' in IPv6 address");
            dc = ng;
            i++;
        } else if (i == n) {
            return fail(e, i - 1, "IPv6 address ends with a single ':'");
        }
    }
    if (dc < 0 && ng != 8)
        return fail(e, 0, "IPv6 address needs 8 groups or '::'");
    if (dc >= 0 && ng > 7)
        return fail(e, 0, "IPv6 address has 8 groups and '::'");
    memset(out, 0, 16);
    int tail = dc < 0 ? 0 : ng - dc; /* groups after the "::" */
    int head = ng - tail;
    for (int k = 0; k < head; k++)
        out[2 * k] = (uint8_t)(g[k] >> 8), out[2 * k + 1] = (uint8_t)g[k];
    for (int k = 0; k < tail; k++) {
        int at = 8 - tail + k;
        out[2 * at] = (uint8_t)(g[head + k] >> 8), out[2 * at + 1] = (uint8_t)g[head + k];
    }
    return 0;
}

static int cidr_parse(const char *s, size_t n, int *family, uint8_t addr[16], uint8_t *prefix,
                      perr_t *e)
{
    const char *slash = n ? memchr(s, '/', n) : NULL;
    size_t an = slash ? (size_t)(slash - s) : n;
    if (an == 0)
        return fail(e, 0, n ? "missing address before '/'" : "empty address");
    int v6 = memchr(s, ':', an) != NULL;
    uint8_t a[16] = {0};
    int rc = v6 ? parse_v6(s, an, a, e) : parse_v4(s, an, 0, a, e);
    if (rc)
        return rc;
    unsigned max = v6 ? 128 : 32, plen = max;
    if (slash) {
        size_t i = an + 1, st = i;
        if (i == n)
            return fail(e, an, "missing prefix length after '/'");
        plen = 0;
        while (i < n && is_digit(s[i])) {
            if (i - st >= 3)
                return fail(e, st, "prefix length > %u", max);
            plen = plen * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (i < n) {
            if (s[i] == '/')
                return fail(e, i, "second '/'");
            return bad_char(e, s[i], i);
        }
        if (i == st)
            return fail(e, st, "missing prefix length after '/'");
        if (i - st > 1 && s[st] == '0')
            return fail(e, st, "leading zero in prefix length");
        if (plen > max)
            return fail(e, st, "prefix length > %u", max);
    }
    /* host bits beyond the prefix */
    size_t nb = max / 8;
    int host = 0;
    uint8_t m[16];
    memcpy(m, a, 16);
    for (size_t k = 0; k < nb; k++) {
        unsigned keep = plen >= 8 * (k + 1) ? 8 : plen > 8 * k ? plen - 8 * (unsigned)k : 0;
        uint8_t mk = (uint8_t)(keep ? 0xff << (8 - keep) : 0);
        if (m[k] & ~mk)
            host = 1, m[k] &= mk;
    }
    if (host) {
        char txt[INET6_ADDRSTRLEN] = "?";
        inet_ntop(v6 ? AF_INET6 : AF_INET, m, txt, sizeof txt);
        return fail(e, 0, "host bits set beyond /%u (%s/%u?)", plen, txt, plen);
    }
    *family = v6 ? AF_INET6 : AF_INET;
    memcpy(addr, a, 16);
    *prefix = (uint8_t)plen;
    return 0;
}

int gh_cidr_parse_diag(const char *s, size_t n, int *family, uint8_t addr[16], uint8_t *prefix,
                       size_t *off, char *msg, size_t msglen)
{
    perr_t e = {0, ""};
    if (!s && n)
        return GH_EINVAL;
    int f = 0;
    uint8_t a[16], p = 0;
    int rc = cidr_parse(s, n, &f, a, &p, &e);
    if (rc) {
        if (off)
            *off = e.off;
        if (msg && msglen)
            snprintf(msg, msglen, "%s", e.msg);
        return rc;
    }
    if (family)
        *family = f;
    if (addr)
        memcpy(addr, a, 16);
    if (prefix)
        *prefix = p;
    return 0;
}

int gh_cidr_parse(const char *s, size_t n, int *family, uint8_t addr[16], uint8_t *prefix)
{
    return gh_cidr_parse_diag(s, n, family, addr, prefix, NULL, NULL, 0);
}

/* ---- lists -------------------------------------------------------------------------- */

typedef struct {
    gh_iptree_t *t;
    const char *name;
    uint32_t tag;
    unsigned long line; /* 1-based number of the next line */
    size_t entries;
    char *err;
    size_t errlen;
} loader_t;

__attribute__((format(printf, 3, 4))) static int load_fail(loader_t *L, size_t col, const char *fmt, ...)
{
    if (L->err && L->errlen) {
        int k = snprintf(L->err, L->errlen, "%s:%lu:%zu: ", L->name, L->line, col);
        if (k >= 0 && (size_t)k < L->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(L->err + k, L->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return GH_EINVAL;
}

/* One line without its '\n'. */
static int load_line(loader_t *L, const char *p, size_t n)
{
    if (n && p[n - 1] == '\r')
        n--;
    if (n > GH_IPTREE_MAX_LINE)
        return load_fail(L, GH_IPTREE_MAX_LINE + 1, "line longer than %d bytes", GH_IPTREE_MAX_LINE);
    const char *hash = memchr(p, '#', n);
    size_t end = hash ? (size_t)(hash - p) : n, st = 0;
    while (st < end && (p[st] == ' ' || p[st] == '\t'))
        st++;
    while (end > st && (p[end - 1] == ' ' || p[end - 1] == '\t'))
        end--;
    if (st == end)
        return 0;
    perr_t e = {0, ""};
    int fam;
    uint8_t a[16], plen;
    if (cidr_parse(p + st, end - st, &fam, a, &plen, &e))
        return load_fail(L, st + e.off + 1, "%s", e.msg);
    int rc = gh_iptree_add(L->t, fam, a, plen, L->tag);
    if (rc) {
        if (L->err && L->errlen)
            snprintf(L->err, L->errlen, "%s:%lu: %s", L->name, L->line, gh_err_msg(rc));
        return rc;
    }
    L->entries++;
    return 0;
}

/* The complete lines of p[0..n) (and the unterminated rest when final); *used = bytes
 * consumed. */
static int load_lines(loader_t *L, const char *p, size_t n, int final, size_t *used)
{
    size_t i = 0;
    const char *nl;
    while (i < n && (nl = memchr(p + i, '\n', n - i))) {
        int rc = load_line(L, p + i, (size_t)(nl - (p + i)));
        if (rc)
            return rc;
        L->line++;
        i = (size_t)(nl - p) + 1;
    }
    if (final && i < n) {
        int rc = load_line(L, p + i, n - i);
        if (rc)
            return rc;
        i = n;
    }
    *used = i;
    return 0;
}

static int entries_rc(const loader_t *L)
{
    return L->entries > INT_MAX ? INT_MAX : (int)L->entries;
}

int gh_iptree_load_mem(gh_iptree_t *t, const char *name, const char *p, size_t n, uint32_t tag,
                       char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!t || (!p && n))
        return GH_EINVAL;
    loader_t L = {t, name ? name : "-", tag, 1, 0, err, errlen};
    size_t used;
    int rc = load_lines(&L, p, n, 1, &used);
    return rc ? rc : entries_rc(&L);
}

#define CHUNK 65536

int gh_iptree_load_file(gh_iptree_t *t, const char *path, uint32_t tag, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!t || !path)
        return GH_EINVAL;
    loader_t L = {t, path, tag, 1, 0, err, errlen};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return GH_EIO;
    }
    /* A chunk plus the carried start of a line (<= MAX_LINE + 1 bytes with its '\r'). */
    size_t cap = CHUNK + GH_IPTREE_MAX_LINE + 2, have = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : GH_ENOMEM;
    while (rc == 0) {
        ssize_t r = read(fd, buf + have, cap - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            if (err && errlen)
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
            rc = GH_EIO;
            break;
        }
        have += (size_t)r;
        size_t used = 0;
        rc = load_lines(&L, buf, have, r == 0, &used);
        if (rc || r == 0)
            break;
        memmove(buf, buf + used, have - used);
        have -= used;
        if (have > GH_IPTREE_MAX_LINE + 1) /* no '\n' in sight: too long whatever follows */
            rc = load_fail(&L, GH_IPTREE_MAX_LINE + 1, "line longer than %d bytes",
                           GH_IPTREE_MAX_LINE);
    }
    free(buf);
    close(fd);
    return rc ? rc : entries_rc(&L);
}
