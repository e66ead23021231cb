/* geoip.h: client country from a MaxMind DB file (GeoIP2/GeoLite2 Country or City, DB-IP
 * and other databases in the same format), through libmaxminddb.
 *
 * The database is opened with MMDB_MODE_MMAP: the file is mapped read-only, nothing is
 * copied, and a lookup walks the mapped search tree (one node per address bit, 32 for
 * IPv4 in an IPv6 database after the cached ::/96 start) and decodes one map path. The
 * answer is country.iso_code, or registered_country.iso_code when the record has no
 * country (anycast and satellite ranges), as the two letters upper-cased; a record
 * whose code is not two ASCII letters counts as unknown.
 *
 * Thread-safety: open and close from one thread; between them any number of threads
 * may look up concurrently (libmaxminddb's lookups only read the mapping and the
 * handle). Reloading a database = open the new file, publish the new handle with the
 * config snapshot, close the old one when no reader holds it.
 *
 * Called by the traffic-protection layer (country allow/deny rules, the GEO variable
 * of the rule engine, the access log). Calls libmaxminddb (pkg-config libmaxminddb)
 * and libc. No allocation on lookups. */
#ifndef GH_PROTECT_GEOIP_H
#define GH_PROTECT_GEOIP_H

#include "core/common.h"

#include <sys/socket.h>

typedef struct gh_geoip gh_geoip_t;

/* Maps the database at path. NULL on failure with err = "PATH: reason" (libmaxminddb's
 * message: missing file, not a MaxMind DB, unsupported format version, ...); err may be
 * NULL, else it is always NUL-terminated when errlen > 0. */
gh_geoip_t *gh_geoip_open(const char *path, char *err, size_t errlen);
void gh_geoip_close(gh_geoip_t *g);

/* Country of a sockaddr_in or sockaddr_in6 (an IPv4-mapped ::ffff:a.b.c.d is looked up
 * as the IPv4 address). 1 found, cc = two upper-case letters and a NUL ("US"); 0
 * unknown (no record, no code, or an IPv6 address in an IPv4-only database), cc = "";
 * GH_EINVAL for another address family or NULLs, GH_EIO for a corrupt database. */
int gh_geoip_country(const gh_geoip_t *g, const struct sockaddr *sa, char cc[3]);

/* The same for raw address bytes (AF_INET: 4, AF_INET6: 16, network order). */
int gh_geoip_country_ip(const gh_geoip_t *g, int family, const uint8_t *addr, char cc[3]);

/* The database's metadata: database_type ("GeoIP2-Country"; owned by g) and build
 * time (seconds since the epoch). Either pointer may be NULL. */
void gh_geoip_info(const gh_geoip_t *g, const char **type, uint64_t *build_epoch);

#endif
