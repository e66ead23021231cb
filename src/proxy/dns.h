/* dns.h: DNS discovery of upstream backends (c-ares).
 *
 * An upstream with `discovery: dns` names its backends by host name; every address
 * a name resolves to becomes a backend, and the name is re-resolved when its TTL
 * runs out so that a DNS change (a Kubernetes headless service scaling, a failover)
 * is followed without a reload.
 *
 * The module keeps a cache of names -> sorted address sets. The configuration
 * loader (main thread) asks it with gh_dns_lookup: a cached answer is returned at
 * once, an unknown name is resolved synchronously (bounded by the resolver timeout).
 * A refresher thread, with its own c-ares channel, re-resolves each cached name
 * when its TTL (clamped to [min_ttl, max_ttl]) expires. When the address set of a
 * name changes it calls the change callback (from its own thread); the main thread
 * then recompiles the configuration from the snapshot's source text and publishes
 * it like a reload. Failures (timeout, SERVFAIL, refused) keep the last known
 * addresses and are retried after min_ttl; an authoritative "no such name" or
 * "no addresses" empties the set.
 *
 * Called by config.c (gh_dns_configure, gh_dns_lookup), main.c (start, watch,
 * stop) and tests. Calls c-ares. */
#ifndef GH_PROXY_DNS_H
#define GH_PROXY_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GH_DNS_MAX_ADDRS 64 /* addresses kept per name */

typedef struct {
    struct sockaddr_storage addr; /* port 0: the caller sets it */
    socklen_t len;
} gh_dns_addr_t;

typedef struct {
    const char *nameservers; /* "127.0.0.1:5353,[::1]:53" or NULL: /etc/resolv.conf */
    uint32_t timeout_ms;     /* per query attempt (default 2000) */
    uint32_t min_ttl_ms;     /* floor of the refresh interval (default 1000) */
    uint32_t max_ttl_ms;     /* ceiling of the refresh interval (default 300000) */
} gh_dns_conf_t;

/* Set (or change) the resolver settings. Idempotent when nothing changed; a change
 * flushes the cache. 0, or GH_EINVAL with a message in err (bad nameserver list). */
int gh_dns_configure(const gh_dns_conf_t *conf, char *err, size_t errlen);

/* The addresses of host (family AF_UNSPEC, AF_INET or AF_INET6), sorted (IPv4
 * first, then IPv6, each in byte order) and deduplicated, at most max of them.
 * From the cache when known, else resolved now (blocking up to the timeout) and
 * cached. Marks the name as used by generation `gen` (see gh_dns_prune).
 * Returns the count (0: the name has no address), or a negative GH_E* code with a
 * message in err when it could not be resolved (timeout, server failure). */
int gh_dns_lookup(const char *host, int family, uint64_t gen, gh_dns_addr_t *out, int max, char *err,
                  size_t errlen);

/* Forget names not used by generation gen or later (after a configuration built
 * with gen has been published). */
void gh_dns_prune(uint64_t gen);

/* Start the refresher thread; on_change is called (from that thread) after a
 * name's address set changed. gh_dns_stop ends it and frees everything. */
int gh_dns_start(void (*on_change)(void *), void *arg);
void gh_dns_stop(void);

/* Counters for /metrics (all names): queries sent, failures, changes seen. */
typedef struct {
    uint64_t queries, failures, changes;
    uint32_t names;
} gh_dns_stats_t;
void gh_dns_stats(gh_dns_stats_t *out);

/* Details of the contract above:
 * - Each query is tried GH_DNS_TRIES times per nameserver (c-ares `tries`); a
 *   synchronous lookup gives up after timeout_ms * GH_DNS_TRIES in all (GH_ETIMEOUT).
 *   Other failures: GH_EIO (SERVFAIL, refused, unreachable server), GH_ENOMEM,
 *   GH_EINVAL (bad arguments or host name).
 * - With nameservers set, names are asked as given (no /etc/hosts, no search list
 *   of /etc/resolv.conf); without, /etc/hosts is read first, then the system's DNS.
 * - A host that is an IPv4 or IPv6 literal is answered at once, without the cache.
 * - The cache is keyed by (name, family); AF_UNSPEC asks A and AAAA apart and a
 *   failure of either is a failure of the whole lookup or refresh.
 * - A name with no address is cached too and re-asked every min_ttl, so a name
 *   that appears later is found without a reload.
 * - So is a name whose lookup failed: later lookups return the same error at once,
 *   without asking (a recompile after on_change does not wait on a dead server
 *   again), while the refresher retries it every min_ttl; once it has addresses
 *   that is a change (on_change is called).
 * - gh_dns_configure also rejects timeout_ms above 60000 and min_ttl > max_ttl
 *   (GH_EINVAL); zero fields take the defaults; a failed call changes nothing.
 * - on_change is called once per round of refreshes that changed any set; it must
 *   not call gh_dns_stop. Calls other than gh_dns_lookup/prune/stats come from one
 *   thread (the main thread). */
#define GH_DNS_TRIES 2

#endif
