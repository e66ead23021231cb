/* iptree.h: IPv4/IPv6 prefix sets with longest-prefix match (allow/deny lists, bypass lists).
 *
 * A tree maps CIDR prefixes to caller-chosen uint32_t tags; a lookup returns the tag of
 * the longest prefix that contains an address. IPv4 and IPv6 have separate roots.
 *
 * Structure: a path-compressed binary trie (PATRICIA-style) per family. Every node
 * holds a full prefix (128-bit key in two uint64_t words, IPv4 in the top 32 bits, and
 * a length), an optional tag and two child indices; a node exists only where a stored
 * prefix ends or where two stored prefixes diverge, so N prefixes take at most 2N
 * nodes (32 bytes each) whatever their lengths. Nodes live in one growable array per
 *  family and link by 32-bit index, not pointer: growth is one realloc, a family is a
 * few blocks to free, and a link takes 4 bytes instead of 8. A lookup
 * descends comparing the node's prefix with the address under a mask (two 64-bit
 * operations) and remembers the last node that carried a tag; it visits at most one
 * node per prefix length present on the path (<= 33 for IPv4, <= 129 for IPv6, about
 * log2(N) for random data), allocates nothing and takes no lock.
 * Once a family holds 8192 prefixes (or gh_iptree_hint says it will), it is rebuilt
 * once with a directory on the first 16 address bits: 65536 slots, each with its own
 * trie of the /16-and-longer prefixes under it and the tag of the longest shorter
 * prefix covering it (shorter prefixes are painted over their slots). That removes
 * the ~16 top levels, the ones every lookup crosses, for ~580 KiB per family. A full
 * multibit trie would shave the remaining levels too, but its expansion memory depends
 * on the prefix mix (random /16../128 IPv6 blows up stride tables). Measured on the
 * shared 2-core box (test_iptree prints it): 1M random prefixes (half IPv4 /8../32,
 * half IPv6 /16../128) load in ~0.45 s into ~49 MiB; lookups take ~200-300 ns.
 *
 * Semantics:
 * - Adding a prefix that is already present replaces its tag (the later add wins), so
 *   a reload or a later list overrides an earlier one for the same prefix; the count
 *   does not change. Use distinct trees (or OR tags yourself) to combine lists.
 * - Bits of addr beyond the prefix length are ignored by gh_iptree_add (gh_cidr_parse
 *   is the strict one and rejects them in text).
 * - IPv4-mapped IPv6 (::ffff:a.b.c.d): looking one up searches the IPv4 root, and
 *   adding an IPv6 prefix of /96 or longer inside ::ffff:0:0/96 stores it as the IPv4
 *   prefix it denotes (/prefix-96). IPv4 addresses never match IPv6 prefixes shorter
 *   than /96 (::/0 does not cover IPv4; add 0.0.0.0/0 for that).
 *
 * Thread-safety: build (new, add, load) from one thread; after that the tree is
 * read-only and any number of threads may look up concurrently without locks. To
 * change a list, build a new tree and publish it (config snapshot swap), then free
 * the old one when no reader holds it.
 *
 * Called by the traffic-protection layer (tenant allow/deny lists compiled from the
 * config) and the GeoIP/ASN classifiers. Calls only libc; uses core/common.h. */
#ifndef GH_PROTECT_IPTREE_H
#define GH_PROTECT_IPTREE_H

#include "core/common.h"

#include <sys/socket.h>

typedef struct gh_iptree gh_iptree_t;

/* Longest line gh_iptree_load_* accepts, in bytes without the line ending. */
#define GH_IPTREE_MAX_LINE 256

/* An empty tree (a few hundred bytes), NULL on ENOMEM. */
gh_iptree_t *gh_iptree_new(void);
void gh_iptree_free(gh_iptree_t *t);

/* Adds family's (AF_INET: 4 bytes, AF_INET6: 16 bytes, network order) prefix/prefix
 * with tag; a duplicate prefix takes the new tag. 0, GH_EINVAL (family, prefix > 32 or
 * 128, NULL), GH_ENOMEM or GH_ELIMIT (2^31 nodes); the tree is unchanged on error. */
int gh_iptree_add(gh_iptree_t *t, int family, const uint8_t *addr, uint8_t prefix, uint32_t tag);

/* A hint that the tree will hold about nprefixes per family: from 8192 on, sets up the
 * /16 directory now (~580 KiB per family) instead of rebuilding the family when it
 * reaches 8192 prefixes. 0; GH_ENOMEM (the tree stays usable as a single trie per
 * family, only slower); GH_EINVAL for NULL. */
int gh_iptree_hint(gh_iptree_t *t, size_t nprefixes);

/* Longest stored prefix containing addr (family as above; AF_INET6 ::ffff:a.b.c.d is
 * looked up as IPv4). 1 found: *tag and *prefix_len (either may be NULL) are set, the
 * length being an IPv4 one for IPv4 and mapped addresses; 0 none; GH_EINVAL for an
 * unknown family. No allocation, no lock. */
int gh_iptree_lookup(const gh_iptree_t *t, int family, const uint8_t *addr, uint32_t *tag,
                     uint8_t *prefix_len);

/* The same for a sockaddr_in or sockaddr_in6 (a peer address as accept() gives it);
 * GH_EINVAL for other families (AF_UNIX listeners). */
int gh_iptree_lookup_sa(const gh_iptree_t *t, const struct sockaddr *sa, uint32_t *tag);

/* Parses s[0..n) (a view, need not be NUL-terminated) as "ADDR/LEN" or "ADDR":
 * dotted-quad IPv4 (exactly four decimal octets, no leading zeros, since 010 is octal
 * to inet_aton) or RFC 4291 IPv6 text (hex groups, one "::", an optional dotted-quad
 * tail; no zone "%eth0"); LEN decimal without leading zeros, <= 32 or 128; a bare
 * address is /32 or /128. No whitespace anywhere. An address with bits set beyond LEN
 * ("10.1.0.0/8") is rejected: it is usually a typo for a narrower or a different
 * network. On success sets *family (AF_INET or AF_INET6), addr (4 or 16 bytes used,
 * the rest zeroed) and *prefix, returns 0; GH_EINVAL otherwise. */
int gh_cidr_parse(const char *s, size_t n, int *family, uint8_t addr[16], uint8_t *prefix);

/* gh_cidr_parse with a diagnosis on GH_EINVAL: *off = the 0-based offset in s of the
 * offending byte, msg = a short message ("octet > 255", "host bits set beyond /8
 * (10.0.0.0/8?)"). off and msg may be NULL. */
int gh_cidr_parse_diag(const char *s, size_t n, int *family, uint8_t addr[16], uint8_t *prefix,
                       size_t *off, char *msg, size_t msglen);

/* Loads a list file into t, every entry with tag: one CIDR or address per line; '#'
 * starts a comment (whole line or after the entry); blank lines, leading and trailing
 * spaces/tabs and CRLF endings are fine; a line longer than GH_IPTREE_MAX_LINE bytes is
 * an error. The file is streamed (any size, constant memory besides the tree). Returns
 * the number of entries read (duplicates included; saturating at INT_MAX), or: GH_EINVAL with err =
 * "PATH:LINE:COL: message" (1-based; COL counts bytes) for the first bad line; GH_EIO
 * with err = "PATH: strerror" when the file cannot be opened or read; GH_ENOMEM,
 * GH_ELIMIT. On an error t keeps the entries of the lines before it: discard it. err
 * may be NULL; it is always NUL-terminated when errlen > 0. */
int gh_iptree_load_file(gh_iptree_t *t, const char *path, uint32_t tag, char *err, size_t errlen);

/* The same for a list already in memory (p[0..n), a config value or a fuzz input);
 * name stands for PATH in messages. */
int gh_iptree_load_mem(gh_iptree_t *t, const char *name, const char *p, size_t n, uint32_t tag,
                       char *err, size_t errlen);

/* Distinct prefixes stored (both families). */
size_t gh_iptree_count(const gh_iptree_t *t);
/* Bytes allocated for the tree (arrays at their capacity plus the handle). */
size_t gh_iptree_bytes(const gh_iptree_t *t);

#endif
