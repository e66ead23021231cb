/* crc32c.h: CRC-32C (Castagnoli, the reflected polynomial 0x82F63B78: iSCSI, ext4, RocksDB),
 * the checksum of the experiments' log frames (src/experiments/evlog.c). x86-64 with SSE4.2
 * computes it with the crc32 instruction (8 bytes per instruction, chosen once at start by the
 * CPU's flags); elsewhere a table-driven software version (8 bytes per step) gives the same
 * value. zlib's crc32 (a different polynomial) costs ~4 instructions per byte; this ~0.2. */
#ifndef GH_CORE_CRC32C_H
#define GH_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of p[0, n) continuing crc (0 to start): gh_crc32c(0, "123456789", 9) is 0xE3069283,
 * and gh_crc32c(gh_crc32c(0, a, n), b, m) is the CRC of a followed by b. */
uint32_t gh_crc32c(uint32_t crc, const void *p, size_t n);
/* The software version (what gh_crc32c uses without SSE4.2), for tests. */
uint32_t gh_crc32c_sw(uint32_t crc, const void *p, size_t n);

#endif
