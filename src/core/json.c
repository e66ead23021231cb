/* json.c: see json.h. */
#include "core/json.h"

/* Eight bytes at a time: a word with no byte to escape (", \, < 0x20, 0x7f and, unless utf8,
 * >= 0x80) is copied whole. The tests below are exact for "is there any such byte" (borrows only
 * start at a byte that matches), which is all the fast path asks. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline uint64_t has_zero_byte(uint64_t x) { return (x - ONES) & ~x; }
static inline uint64_t word_needs_escape(uint64_t w, int utf8)
{
    uint64_t qb = has_zero_byte(w ^ (ONES * '"')) | has_zero_byte(w ^ (ONES * '\\'));
    if (!utf8) /* any byte >= 0x80 answers alone; else no byte carries: + 0x60 leaves the high bit
                * clear exactly below 0x20, + 1 sets it exactly at 0x7f */
        return (w | ~(w + ONES * 0x60) | (w + ONES) | qb) & HIGHS;
    uint64_t d = w ^ (ONES * 0x7f);
    return (((w - ONES * 0x20) & ~w) | has_zero_byte(d) | qb) & HIGHS;
}

size_t gh_json_str(char *out, size_t cap, gh_str_t s, int utf8)
{
    static const char hex[] = "0123456789abcdef";
    if (cap < 2)
        return 0;
    size_t n = 0, i = 0;
    out[n++] = '"';
    while (i < s.n) {
        if (n + 8 + 1 <= cap) { /* room for a whole word and the closing quote */
            size_t k = s.n - i;
            uint64_t w;
            if (k >= 8)
                memcpy(&w, s.p + i, 8), k = 8;
            else /* a short last word is padded with a byte that needs nothing */
                w = gh_load_tail(s.p + i, k) | (ONES * 'a') << (8 * k);
            if (!word_needs_escape(w, utf8)) {
                memcpy(out + n, &w, 8); /* the padding lands inside cap and is overwritten or past n */
                n += k;
                i += k;
                continue;
            }
        }
        unsigned char c = (unsigned char)s.p[i];
        if (c == '"' || c == '\\') {
            if (n + 2 + 1 > cap)
                break;
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
            if (n + 6 + 1 > cap)
                break;
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            if (n + 1 + 1 > cap)
                break;
            out[n++] = (char)c;
        }
        i++;
    }
    out[n++] = '"';
    return n;
}
