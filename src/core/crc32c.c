/* crc32c.c: see crc32c.h. */
#include "core/crc32c.h"

#include <string.h>

#define POLY 0x82F63B78u /* reflected Castagnoli */

static uint32_t tab[8][256]; /* tab[k][b]: b's CRC followed by k zero bytes */

__attribute__((constructor)) static void tab_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        tab[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            tab[k][b] = (tab[k - 1][b] >> 8) ^ tab[0][tab[k - 1][b] & 0xff];
}

uint32_t gh_crc32c_sw(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    for (; n && ((uintptr_t)p & 7); n--)
        c = (c >> 8) ^ tab[0][(c ^ *p++) & 0xff];
    for (; n >= 8; n -= 8, p += 8) { /* (little-endian: the word's low byte comes first) */
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c;
        c = tab[7][w & 0xff] ^ tab[6][(w >> 8) & 0xff] ^ tab[5][(w >> 16) & 0xff] ^ tab[4][(w >> 24) & 0xff] ^
            tab[3][(w >> 32) & 0xff] ^ tab[2][(w >> 40) & 0xff] ^ tab[1][(w >> 48) & 0xff] ^ tab[0][w >> 56];
    }
    for (; n; n--)
        c = (c >> 8) ^ tab[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(__x86_64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c32 = __builtin_ia32_crc32si(c32, w);
        p += 4, n -= 4;
    }
    for (; n; n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

uint32_t gh_crc32c(uint32_t crc, const void *p, size_t n)
{
    static int hw = -1; /* (every thread that finds it unset computes the same answer) */
    int h = __atomic_load_n(&hw, __ATOMIC_RELAXED);
    if (__builtin_expect(h < 0, 0)) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&hw, h, __ATOMIC_RELAXED);
    }
    return h ? crc32c_hw(crc, p, n) : gh_crc32c_sw(crc, p, n);
}
#else
uint32_t gh_crc32c(uint32_t crc, const void *p, size_t n) { return gh_crc32c_sw(crc, p, n); }
#endif
