/* dns.c: DNS discovery of upstream backends with c-ares (see dns.h).
 *
 * One cache of (name, family) -> sorted address set behind one mutex. That mutex is
 * never taken on the request path: config.c reads the cache while it compiles a
 * snapshot, the refresher thread writes it. There are two c-ares channels and
 * neither is shared between threads: the synchronous one (held under sync_lock)
 * answers gh_dns_lookup misses, the refresher's own one re-resolves expired names
 * asynchronously. Both wait with poll(2) on the sockets c-ares reports through its
 * socket-state callback, because ares_fds/select cannot watch an fd above 1023.
 *
 * Each family is asked with its own ares_getaddrinfo: for AF_UNSPEC c-ares 1.18
 * returns whatever family answered when the other one failed, so a lost AAAA reply
 * would pass for "no IPv6 addresses" and make the backend set flap. Asked apart, a
 * failure of either query fails the whole refresh and the last known set is kept.
 *
 * Lock order: sync_lock, then lock. Callbacks of c-ares run without either held
 * (ares_getaddrinfo can call back before it returns), and on_change is called with
 * no lock held. */
#include "proxy/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"

#define DEF_TIMEOUT_MS 2000u
#define DEF_MIN_TTL_MS 1000u
#define DEF_MAX_TTL_MS 300000u
#define MAX_TIMEOUT_MS 60000u /* per attempt: more is a unit mistake, not a wish */
#define WARN_EVERY_MS 60000u  /* failed refreshes of one name are logged at most this often */

typedef struct {
    char *servers; /* canonical "ip:port,[ip6]:port", or NULL: the system resolver */
    uint32_t timeout_ms, min_ttl_ms, max_ttl_ms;
} settings_t;

typedef struct name {
    struct name *next;
    uint64_t id;     /* unique for the process: a refresh in flight finds its name by it */
    uint64_t gen;    /* the newest configuration generation that used the name */
    uint64_t due;    /* gh_clock_ms() at which the refresher re-resolves it */
    uint64_t warned; /* when a failed refresh was last logged, 0: never */
    int family;
    int busy;       /* a refresh is in flight */
    int unresolved; /* never answered yet: the ares status of the last try, else 0 */
    int n;
    gh_dns_addr_t *addrs; /* n of them, sorted and deduplicated */
    char host[];
} name_t;

/* A channel and the sockets it wants watched. pfd has room for one more entry than
 * n: chan_poll puts the wake-up eventfd there. */
typedef struct {
    ares_channel ch;
    struct pollfd *pfd, *ready;
    int n, cap;
} chan_t;

/* One resolution of a name: one ares_getaddrinfo per family, results merged. */
typedef struct resolve {
    struct resolve *next; /* the refresher's batch */
    int pending;          /* family queries outstanding */
    int status;           /* first failure of a family (ENOTFOUND/ENODATA are not), else ARES_SUCCESS */
    int oom;
    uint32_t ttl; /* lowest TTL (s) of what answered, UINT32_MAX: nothing did */
    gh_dns_addr_t *v;
    int n, cap;
    void (*done)(struct resolve *); /* NULL: a synchronous caller polls pending */
    uint64_t id;                    /* the refreshed name */
    int family;
    char host[];
} resolve_t;

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status = ARES_ENOTINITIALIZED;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;      /* all of d but sync and rchan */
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER; /* d.sync, d.sync_epoch */

static struct {
    settings_t set;
    int configured;
    uint64_t epoch; /* bumped by each settings change: channels built before are stale */
    name_t *names;
    uint32_t nnames;
    uint64_t next_id;
    uint64_t queries, failures, changes;
    chan_t sync;
    uint64_t sync_epoch;
    pthread_t thread;
    int running, stop;
    int wakefd;
    void (*on_change)(void *);
    void *arg;
} d = {.wakefd = -1};

/* The refresher's channel, and whether a refresh of this round changed a set. Only
 * the refresher thread touches them. */
static chan_t rchan;
static int rchanged;

static void library_init(void) { ares_init_status = ares_library_init(ARES_LIB_INIT_ALL); }

static uint64_t clamp_ttl(const settings_t *s, uint64_t ms)
{
    return ms < s->min_ttl_ms ? s->min_ttl_ms : ms > s->max_ttl_ms ? s->max_ttl_ms : ms;
}

/* ---- addresses ---- */

static int addr_cmp(const void *pa, const void *pb)
{
    const gh_dns_addr_t *a = pa, *b = pb;
    int a6 = a->addr.ss_family == AF_INET6, b6 = b->addr.ss_family == AF_INET6;
    if (a6 != b6)
        return a6 - b6;
    if (!a6)
        return memcmp(&((const struct sockaddr_in *)&a->addr)->sin_addr,
                      &((const struct sockaddr_in *)&b->addr)->sin_addr, sizeof(struct in_addr));
    return memcmp(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->addr)->sin6_addr, sizeof(struct in6_addr));
}

/* Sort (IPv4 first, each family by bytes), drop duplicates, keep GH_DNS_MAX_ADDRS:
 * the same answer in any order gives the same set, so a reordered answer is no change. */
static int addrs_canon(gh_dns_addr_t *v, int n)
{
    if (n < 2)
        return n;
    qsort(v, (size_t)n, sizeof(*v), addr_cmp);
    int k = 1;
    for (int i = 1; i < n; i++)
        if (addr_cmp(&v[k - 1], &v[i]) != 0)
            v[k++] = v[i];
    return GH_MIN(k, GH_DNS_MAX_ADDRS);
}

static int addrs_equal(const gh_dns_addr_t *a, int na, const gh_dns_addr_t *b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (addr_cmp(&a[i], &b[i]) != 0)
            return 0;
    return 1;
}

/* The address with port 0 and nothing else set, so that sets compare by bytes. */
static void addr_make(gh_dns_addr_t *out, int family, const void *bytes)
{
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, bytes, sizeof(sin->sin_addr));
        out->len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, bytes, sizeof(sin6->sin6_addr));
        out->len = sizeof(*sin6);
    }
}

/* ---- settings ---- */

/* Parse "ip[:port],[ip6][:port],ip6" strictly (c-ares itself accepts port 99999 and
 * takes "" for the system default) into the canonical "ip:port,[ip6]:port" form,
 * which is what settings are compared by. */
static int parse_servers(const char *in, char **out, char *err, size_t errlen)
{
    size_t entries = 1;
    for (const char *p = in; *p; p++)
        entries += *p == ',';
    size_t cap = entries * (INET6_ADDRSTRLEN + 9) + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, errlen, "dns: out of memory");
        return GH_ENOMEM;
    }
    buf[0] = 0;
    const char *p = in;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *s = p, *e = end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        int n = (int)(e - s);
        const char *why = NULL;
        char host[INET6_ADDRSTRLEN + 1];
        const char *port = NULL;
        size_t hl = 0;
        int v6 = 0;
        if (n == 0) {
            why = "empty entry";
        } else if (*s == '[') {
            const char *rb = memchr(s, ']', (size_t)n);
            v6 = 1;
            if (!rb)
                why = "missing ']'";
            else if (rb + 1 < e && rb[1] != ':')
                why = "expected ':' after ']'";
            else {
                hl = (size_t)(rb - s - 1);
                memcpy(host, s + 1, GH_MIN(hl, sizeof(host) - 1));
                port = rb + 1 < e ? rb + 2 : NULL;
            }
        } else {
            const char *c1 = memchr(s, ':', (size_t)n);
            const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(e - c1 - 1)) : NULL;
            v6 = c2 != NULL; /* two colons: a bare IPv6 address, which cannot carry a port */
            hl = c1 && !v6 ? (size_t)(c1 - s) : (size_t)n;
            memcpy(host, s, GH_MIN(hl, sizeof(host) - 1));
            port = c1 && !v6 ? c1 + 1 : NULL;
        }
        unsigned long portn = 53;
        if (!why && hl >= sizeof(host))
            why = "not an IP address";
        if (!why) {
            host[hl] = 0;
            unsigned char bytes[sizeof(struct in6_addr)];
            if (inet_pton(v6 ? AF_INET6 : AF_INET, host, bytes) != 1)
                why = v6 ? "not an IPv6 address" : "not an IP address";
            else
                inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, host, sizeof(host));
        }
        if (!why && port) {
            portn = 0;
            const char *q = port;
            while (q < e && *q >= '0' && *q <= '9' && portn <= 65535)
                portn = portn * 10 + (unsigned long)(*q++ - '0');
            if (q == port || q != e || portn == 0 || portn > 65535)
                why = "bad port (1-65535)";
        }
        if (why) {
            snprintf(err, errlen, "dns: nameservers \"%s\": \"%.*s\": %s", in, n, s, why);
            free(buf);
            return GH_EINVAL;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s%s%s%s:%lu", len ? "," : "", v6 ? "[" : "", host,
                                v6 ? "]" : "", portn);
        if (!*end)
            break;
        p = end + 1;
    }
    *out = buf;
    return 0;
}

static int settings_from(const gh_dns_conf_t *c, settings_t *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->timeout_ms = c && c->timeout_ms ? c->timeout_ms : DEF_TIMEOUT_MS;
    s->min_ttl_ms = c && c->min_ttl_ms ? c->min_ttl_ms : DEF_MIN_TTL_MS;
    s->max_ttl_ms = c && c->max_ttl_ms ? c->max_ttl_ms : DEF_MAX_TTL_MS;
    if (s->timeout_ms > MAX_TIMEOUT_MS) {
        snprintf(err, errlen, "dns: timeout %u ms is above %u ms", s->timeout_ms, MAX_TIMEOUT_MS);
        return GH_EINVAL;
    }
    if (s->min_ttl_ms > s->max_ttl_ms) {
        snprintf(err, errlen, "dns: min_ttl %u ms is above max_ttl %u ms", s->min_ttl_ms, s->max_ttl_ms);
        return GH_EINVAL;
    }
    if (c && c->nameservers)
        return parse_servers(c->nameservers, &s->servers, err, errlen);
    return 0;
}

static int settings_eq(const settings_t *a, const settings_t *b)
{
    return a->timeout_ms == b->timeout_ms && a->min_ttl_ms == b->min_ttl_ms && a->max_ttl_ms == b->max_ttl_ms &&
           (a->servers && b->servers ? !strcmp(a->servers, b->servers) : a->servers == b->servers);
}

static int settings_copy(settings_t *to, const settings_t *from)
{
    *to = *from;
    if (from->servers && !(to->servers = strdup(from->servers)))
        return GH_ENOMEM;
    return 0;
}

/* ---- channels ---- */

static int chan_grow(chan_t *c)
{
    int cap = c->cap ? c->cap * 2 : 8;
    struct pollfd *p = realloc(c->pfd, (size_t)cap * sizeof(*p));
    if (!p)
        return -1;
    c->pfd = p;
    if (!(p = realloc(c->ready, (size_t)cap * sizeof(*p))))
        return -1;
    c->ready = p;
    c->cap = cap;
    return 0;
}

/* c-ares says which sockets it wants watched; we keep the list for poll(2). */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    chan_t *c = data;
    int i = 0;
    while (i < c->n && c->pfd[i].fd != fd)
        i++;
    if (!readable && !writable) {
        if (i < c->n)
            c->pfd[i] = c->pfd[--c->n];
        return;
    }
    if (i == c->n) {
        if (c->n + 2 > c->cap && chan_grow(c) < 0)
            return; /* unwatched: its query ends by c-ares' timeout */
        c->pfd[c->n++].fd = fd;
    }
    c->pfd[i].events = (short)((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
    c->pfd[i].revents = 0;
}

static int ares_to_gh(int status)
{
    switch (status) {
    case ARES_ENOMEM:
        return GH_ENOMEM;
    case ARES_ETIMEOUT:
    case ARES_ECANCELLED:
        return GH_ETIMEOUT;
    case ARES_EBADNAME:
    case ARES_EBADSTR:
        return GH_EINVAL;
    default:
        return GH_EIO;
    }
}

/* Open c on settings s. With our own nameservers the lookups are DNS only, without
 * the search list (names are taken as given: /etc/resolv.conf belongs to the
 * other resolver); with the system's, /etc/hosts first as getaddrinfo(3) would. */
static int chan_open(chan_t *c, const settings_t *s, char *err, size_t errlen)
{
    pthread_once(&ares_once, library_init);
    if (ares_init_status != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(ares_init_status));
        return GH_EIO;
    }
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    char lookups[3];
    snprintf(lookups, sizeof lookups, "%s", s->servers ? "b" : "fb");
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB;
    o.timeout = (int)s->timeout_ms;
    o.tries = GH_DNS_TRIES;
    o.lookups = lookups;
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = c;
    if (s->servers) {
        mask |= ARES_OPT_DOMAINS;
        o.domains = NULL;
        o.ndomains = 0;
    }
    int rc = ares_init_options(&c->ch, &o, mask);
    if (rc == ARES_SUCCESS && s->servers)
        if ((rc = ares_set_servers_ports_csv(c->ch, s->servers)) != ARES_SUCCESS)
            ares_destroy(c->ch);
    if (rc != ARES_SUCCESS) {
        c->ch = NULL;
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
        return rc == ARES_EBADSTR ? GH_EINVAL : ares_to_gh(rc);
    }
    return 0;
}

/* Ends every query still out (callbacks see ARES_EDESTRUCTION), then frees. */
static void chan_close(chan_t *c)
{
    if (c->ch)
        ares_destroy(c->ch);
    free(c->pfd);
    free(c->ready);
    memset(c, 0, sizeof(*c));
}

/* Wait up to timeout_ms (-1: until c-ares' next timer) for the channel's sockets or
 * wakefd, then let c-ares read what is ready and run its timeouts. */
static void chan_poll(chan_t *c, int wakefd, int timeout_ms)
{
    struct timeval tv, *tp = ares_timeout(c->ch, NULL, &tv);
    if (tp) {
        long long ms = (long long)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000; /* up: no busy loop */
        if (timeout_ms < 0 || ms < timeout_ms)
            timeout_ms = (int)ms;
    }
    if (wakefd >= 0 && c->n + 1 > c->cap && chan_grow(c) < 0) {
        wakefd = -1; /* no slot for it: a short nap instead */
        if (timeout_ms < 0 || timeout_ms > 10)
            timeout_ms = 10;
    }
    int n = c->n;
    if (wakefd >= 0)
        c->pfd[n] = (struct pollfd){.fd = wakefd, .events = POLLIN};
    if (poll(c->pfd, (nfds_t)(n + (wakefd >= 0)), timeout_ms) < 0)
        return;
    /* c-ares may close and open sockets while it processes, which edits pfd */
    int nr = 0;
    for (int i = 0; i < n; i++)
        if (c->pfd[i].revents)
            c->ready[nr++] = c->pfd[i];
    if (wakefd >= 0 && c->pfd[n].revents) {
        uint64_t v;
        ssize_t r = read(wakefd, &v, sizeof v);
        (void)r;
    }
    for (int i = 0; i < nr; i++) {
        short ev = c->ready[i].revents;
        ares_socket_t fd = c->ready[i].fd;
        ares_process_fd(c->ch, ev & (POLLIN | POLLERR | POLLHUP) ? fd : ARES_SOCKET_BAD,
                        ev & POLLOUT ? fd : ARES_SOCKET_BAD);
    }
    if (!nr)
        ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

/* ---- resolutions ---- */

static resolve_t *resolve_new(const char *host, int family, uint64_t id, void (*done)(resolve_t *))
{
    size_t hl = strlen(host);
    resolve_t *r = calloc(1, sizeof(*r) + hl + 1);
    if (!r)
        return NULL;
    memcpy(r->host, host, hl + 1);
    r->family = family;
    r->id = id;
    r->done = done;
    r->status = ARES_SUCCESS;
    r->ttl = UINT32_MAX;
    return r;
}

static void resolve_free(resolve_t *r)
{
    if (r) {
        free(r->v);
        free(r);
    }
}

static int nfamilies(int family) { return family == AF_UNSPEC ? 2 : 1; }

static void family_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    resolve_t *r = arg;
    (void)timeouts;
    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_cname *c = res->cnames; c; c = c->next)
            if (c->ttl >= 0 && (uint32_t)c->ttl < r->ttl)
                r->ttl = (uint32_t)c->ttl;
        for (struct ares_addrinfo_node *a = res->nodes; a; a = a->ai_next) {
            if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
                continue;
            if (r->n == r->cap) {
                int cap = r->cap ? r->cap * 2 : 8;
                gh_dns_addr_t *v = realloc(r->v, (size_t)cap * sizeof(*v));
                if (!v) {
                    r->oom = 1;
                    break;
                }
                r->v = v;
                r->cap = cap;
            }
            if (a->ai_family == AF_INET)
                addr_make(&r->v[r->n++], AF_INET, &((const struct sockaddr_in *)a->ai_addr)->sin_addr);
            else
                addr_make(&r->v[r->n++], AF_INET6, &((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
            if (a->ai_ttl >= 0 && (uint32_t)a->ai_ttl < r->ttl)
                r->ttl = (uint32_t)a->ai_ttl;
        }
    } else if (status != ARES_SUCCESS && status != ARES_ENOTFOUND && status != ARES_ENODATA) {
        /* an authoritative "no such name / no such record" is an answer; the rest are not.
         * A destroyed channel wins: such a result must not count as a failure. */
        if (r->status == ARES_SUCCESS || status == ARES_EDESTRUCTION)
            r->status = status;
    }
    if (res)
        ares_freeaddrinfo(res);
    if (--r->pending == 0 && r->done)
        r->done(r);
}

/* Ask every family of r. r may be finished (and freed by its done) before this
 * returns, so it is not touched after the last call. */
static void resolve_start(resolve_t *r, ares_channel ch)
{
    int fams[2], nf = 0;
    if (r->family != AF_INET6)
        fams[nf++] = AF_INET;
    if (r->family != AF_INET)
        fams[nf++] = AF_INET6;
    r->pending = nf;
    for (int i = 0; i < nf; i++) {
        struct ares_addrinfo_hints h;
        memset(&h, 0, sizeof(h));
        h.ai_flags = ARES_AI_NOSORT; /* we sort ourselves; c-ares' RFC 6724 sort connects a socket per address */
        h.ai_family = fams[i];
        ares_getaddrinfo(ch, r->host, NULL, &h, family_done, r);
    }
}

/* ---- the cache (lock held) ---- */

static name_t *find_name(const char *host, int family)
{
    for (name_t *e = d.names; e; e = e->next)
        if (e->family == family && !strcasecmp(e->host, host))
            return e;
    return NULL;
}

static name_t *find_id(uint64_t id)
{
    for (name_t *e = d.names; e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

static void name_free(name_t *e)
{
    free(e->addrs);
    free(e);
}

static void names_flush(void)
{
    while (d.names) {
        name_t *e = d.names;
        d.names = e->next;
        name_free(e);
    }
    d.nnames = 0;
}

/* Replace e's addresses with v[0..n) (already canonical). */
static int name_set(name_t *e, const gh_dns_addr_t *v, int n)
{
    gh_dns_addr_t *a = NULL;
    if (n && !(a = malloc((size_t)n * sizeof(*a))))
        return GH_ENOMEM;
    if (n)
        memcpy(a, v, (size_t)n * sizeof(*a));
    free(e->addrs);
    e->addrs = a;
    e->n = n;
    return 0;
}

/* When a name answered with ttl_s (UINT32_MAX: no address, so no TTL) is due again. */
static uint64_t next_due(uint64_t now, uint32_t ttl_s)
{
    uint64_t ms = ttl_s == UINT32_MAX ? 0 : (uint64_t)ttl_s * 1000u;
    return now + clamp_ttl(&d.set, ms);
}

static void wake_locked(void)
{
    if (d.wakefd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(d.wakefd, &one, sizeof one);
        (void)w;
    }
}

/* ---- public API: configuration and lookups ---- */

int gh_dns_configure(const gh_dns_conf_t *conf, char *err, size_t errlen)
{
    settings_t s;
    int rc = settings_from(conf, &s, err, errlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&sync_lock);
    pthread_mutex_lock(&lock);
    int same = d.configured && settings_eq(&s, &d.set);
    pthread_mutex_unlock(&lock);
    if (same) {
        pthread_mutex_unlock(&sync_lock);
        free(s.servers);
        return 0;
    }
    /* build the new synchronous channel first: it is also c-ares' word on the settings */
    chan_close(&d.sync);
    if ((rc = chan_open(&d.sync, &s, err, errlen)) != 0) {
        pthread_mutex_unlock(&sync_lock);
        free(s.servers);
        return rc;
    }
    pthread_mutex_lock(&lock);
    free(d.set.servers);
    d.set = s;
    d.configured = 1;
    d.sync_epoch = ++d.epoch;
    names_flush();
    wake_locked(); /* the refresher rebuilds its channel */
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&sync_lock);
    return 0;
}

static int ensure_configured(char *err, size_t errlen)
{
    pthread_mutex_lock(&lock);
    int done = d.configured;
    pthread_mutex_unlock(&lock);
    return done ? 0 : gh_dns_configure(NULL, err, errlen);
}

/* Copy e's addresses of the cache to out (lock held); a name that could not be
 * resolved yet gives its error again, without asking (the refresher does). */
static int name_copy(name_t *e, uint64_t gen, gh_dns_addr_t *out, int max, char *err, size_t errlen)
{
    if (gen > e->gen)
        e->gen = gen;
    if (e->unresolved) {
        snprintf(err, errlen, "dns: %s: %s (retrying in the background)", e->host, ares_strerror(e->unresolved));
        return ares_to_gh(e->unresolved);
    }
    int n = GH_MIN(e->n, max);
    if (n)
        memcpy(out, e->addrs, (size_t)n * sizeof(*out));
    return n;
}

int gh_dns_lookup(const char *host, int family, uint64_t gen, gh_dns_addr_t *out, int max, char *err,
                  size_t errlen)
{
    if (!host || !*host || strlen(host) > 254 || !out || max < 1 ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)) {
        snprintf(err, errlen, "dns: %s: invalid lookup", host ? host : "(null)");
        return GH_EINVAL;
    }
    /* an address needs no resolver, no cache entry and no refresh */
    unsigned char bytes[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, bytes) == 1) {
        if (family == AF_INET6)
            return 0;
        addr_make(out, AF_INET, bytes);
        return 1;
    }
    if (inet_pton(AF_INET6, host, bytes) == 1) {
        if (family == AF_INET)
            return 0;
        addr_make(out, AF_INET6, bytes);
        return 1;
    }
    int rc = ensure_configured(err, errlen);
    if (rc)
        return rc;

    pthread_mutex_lock(&lock);
    name_t *e = find_name(host, family);
    if (e) {
        int n = name_copy(e, gen, out, max, err, errlen);
        pthread_mutex_unlock(&lock);
        return n;
    }
    pthread_mutex_unlock(&lock);

    pthread_mutex_lock(&sync_lock);
    pthread_mutex_lock(&lock);
    if ((e = find_name(host, family)) != NULL) { /* resolved by another caller meanwhile */
        int n = name_copy(e, gen, out, max, err, errlen);
        pthread_mutex_unlock(&lock);
        pthread_mutex_unlock(&sync_lock);
        return n;
    }
    settings_t s;
    rc = settings_copy(&s, &d.set);
    uint64_t epoch = d.epoch;
    pthread_mutex_unlock(&lock);
    if (!rc && (!d.sync.ch || d.sync_epoch != epoch)) {
        chan_close(&d.sync);
        if ((rc = chan_open(&d.sync, &s, err, errlen)) == 0)
            d.sync_epoch = epoch;
    }
    resolve_t *r = rc ? NULL : resolve_new(host, family, 0, NULL);
    if (!rc && !r)
        rc = GH_ENOMEM;
    if (rc) {
        if (rc == GH_ENOMEM)
            snprintf(err, errlen, "dns: %s: out of memory", host);
        free(s.servers);
        pthread_mutex_unlock(&sync_lock);
        return rc;
    }

    /* bounded by timeout x tries in all: c-ares doubles the wait of a later try,
     * and with several servers it would try each, so the deadline is ours */
    uint64_t deadline = gh_clock_ms() + (uint64_t)s.timeout_ms * GH_DNS_TRIES;
    resolve_start(r, d.sync.ch);
    while (r->pending) {
        uint64_t now = gh_clock_ms();
        if (now >= deadline) {
            ares_cancel(d.sync.ch); /* calls back with ARES_ECANCELLED */
            if (r->pending)
                chan_close(&d.sync); /* cannot happen; if it did, this ends them for sure */
            break;
        }
        chan_poll(&d.sync, -1, (int)GH_MIN(deadline - now, (uint64_t)INT32_MAX));
    }
    free(s.servers);

    /* the name is cached either way: a failed one is retried by the refresher, and
     * until then a lookup (a recompile after on_change) does not wait for it again */
    int n, failed = r->oom || r->status != ARES_SUCCESS;
    int status = r->oom ? ARES_ENOMEM : r->status == ARES_ECANCELLED ? ARES_ETIMEOUT : r->status;
    if (failed) {
        n = ares_to_gh(status);
        snprintf(err, errlen, "dns: %s: %s", host, ares_strerror(status));
    } else {
        r->n = addrs_canon(r->v, r->n);
        n = GH_MIN(r->n, max);
        if (n)
            memcpy(out, r->v, (size_t)n * sizeof(*out));
    }
    pthread_mutex_lock(&lock);
    d.queries += (uint64_t)nfamilies(family);
    d.failures += (uint64_t)failed;
    size_t hl = strlen(host);
    name_t *ne = d.epoch == epoch ? calloc(1, sizeof(*ne) + hl + 1) : NULL;
    if (ne && name_set(ne, r->v, failed ? 0 : r->n) == 0) {
        uint64_t now = gh_clock_ms();
        memcpy(ne->host, host, hl + 1);
        ne->id = ++d.next_id;
        ne->gen = gen;
        ne->family = family;
        ne->unresolved = failed ? status : 0;
        ne->due = failed ? now + d.set.min_ttl_ms : next_due(now, r->n ? r->ttl : UINT32_MAX);
        ne->next = d.names;
        d.names = ne;
        d.nnames++;
        wake_locked(); /* it may be due before the refresher's next wake-up */
    } else {
        free(ne); /* not cached: the next lookup asks again */
    }
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&sync_lock);
    resolve_free(r);
    return n;
}

void gh_dns_prune(uint64_t gen)
{
    pthread_mutex_lock(&lock);
    for (name_t **pp = &d.names; *pp;) {
        name_t *e = *pp;
        if (e->gen < gen) {
            *pp = e->next;
            name_free(e);
            d.nnames--;
        } else {
            pp = &e->next;
        }
    }
    pthread_mutex_unlock(&lock);
}

void gh_dns_stats(gh_dns_stats_t *out)
{
    pthread_mutex_lock(&lock);
    out->queries = d.queries;
    out->failures = d.failures;
    out->changes = d.changes;
    out->names = d.nnames;
    pthread_mutex_unlock(&lock);
}

/* ---- the refresher ---- */

/* A refresh ended (refresher thread, no lock held). A changed set is logged and
 * noted for on_change; a failure keeps the set and is retried after min_ttl. */
static void refresh_done(resolve_t *r)
{
    int ok = r->status == ARES_SUCCESS && !r->oom, changed = 0, warn = 0, was = 0, n = 0;
    uint32_t retry = 0;
    if (ok)
        r->n = addrs_canon(r->v, r->n);
    pthread_mutex_lock(&lock);
    name_t *e = find_id(r->id); /* gone when pruned or flushed meanwhile */
    if (e) {
        uint64_t now = gh_clock_ms();
        e->busy = 0;
        was = e->n;
        if (r->status == ARES_EDESTRUCTION) {
            e->due = now; /* the channel was rebuilt under it: ask the new one */
        } else if (ok && (e->unresolved ? r->n == 0 : addrs_equal(e->addrs, e->n, r->v, r->n))) {
            e->unresolved = 0; /* from "failed" to "no address": nothing for a rebuild to use */
            e->due = next_due(now, r->n ? r->ttl : UINT32_MAX);
        } else if (ok && name_set(e, r->v, r->n) == 0) {
            e->unresolved = 0;
            d.changes++;
            changed = 1;
            n = e->n;
            e->due = next_due(now, r->n ? r->ttl : UINT32_MAX);
        } else {
            if (e->unresolved)
                e->unresolved = r->oom ? ARES_ENOMEM : r->status;
            d.failures++;
            retry = d.set.min_ttl_ms;
            e->due = now + retry;
            if (!e->warned || now - e->warned >= WARN_EVERY_MS) {
                e->warned = now;
                warn = 1;
            }
        }
    }
    pthread_mutex_unlock(&lock);
    if (changed) {
        gh_log(GH_LOG_INFO, "dns: %s: %d addresses (was %d)", r->host, n, was);
        rchanged = 1;
    } else if (warn) {
        gh_log(GH_LOG_WARN, "dns: %s: refresh failed (%s); keeping %d addresses, retrying in %u ms", r->host,
               r->status != ARES_SUCCESS ? ares_strerror(r->status) : "out of memory", was, retry);
    }
    resolve_free(r);
}

static void *refresher_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    uint64_t chan_epoch = 0;
    uint64_t warned_chan = 0;
    pthread_mutex_lock(&lock);
    while (!d.stop) {
        uint64_t now = gh_clock_ms();
        if (!rchan.ch || chan_epoch != d.epoch) {
            settings_t s;
            uint64_t epoch = d.epoch;
            int rc = settings_copy(&s, &d.set);
            uint32_t retry = d.set.min_ttl_ms;
            pthread_mutex_unlock(&lock);
            chan_close(&rchan); /* refreshes still out end with ARES_EDESTRUCTION */
            char err[160] = "dns: out of memory";
            if (!rc)
                rc = chan_open(&rchan, &s, err, sizeof err);
            free(s.servers);
            if (rc) {
                if (!warned_chan || now - warned_chan >= WARN_EVERY_MS) {
                    warned_chan = now;
                    gh_log(GH_LOG_WARN, "%s (refresher; retrying in %u ms)", err, retry);
                }
                int fd = d.wakefd; /* stable while the thread runs */
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, (int)retry) > 0) {
                    uint64_t v;
                    ssize_t rd = read(fd, &v, sizeof v);
                    (void)rd;
                }
                pthread_mutex_lock(&lock);
                continue;
            }
            pthread_mutex_lock(&lock);
            chan_epoch = epoch;
            continue; /* the settings may have changed again meanwhile */
        }
        /* start the refreshes that are due; note when the next one is */
        resolve_t *batch = NULL;
        uint64_t next = UINT64_MAX;
        for (name_t *e = d.names; e; e = e->next) {
            if (e->busy)
                continue;
            if (e->due > now) {
                next = GH_MIN(next, e->due);
                continue;
            }
            resolve_t *r = resolve_new(e->host, e->family, e->id, refresh_done);
            if (!r) {
                e->due = now + d.set.min_ttl_ms;
                next = GH_MIN(next, e->due);
                continue;
            }
            e->busy = 1;
            d.queries += (uint64_t)nfamilies(e->family);
            r->next = batch;
            batch = r;
        }
        int wakefd = d.wakefd;
        pthread_mutex_unlock(&lock);
        while (batch) {
            resolve_t *r = batch;
            batch = r->next;
            resolve_start(r, rchan.ch);
        }
        now = gh_clock_ms();
        int timeout = next == UINT64_MAX ? -1 : next <= now ? 0 : (int)GH_MIN(next - now, (uint64_t)INT32_MAX);
        chan_poll(&rchan, wakefd, timeout);
        if (rchanged) {
            rchanged = 0;
            if (d.on_change)
                d.on_change(d.arg);
        }
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    chan_close(&rchan);
    return NULL;
}

int gh_dns_start(void (*on_change)(void *), void *arg)
{
    char err[160];
    if (d.running)
        return GH_EINVAL;
    int rc = ensure_configured(err, sizeof err);
    if (rc) {
        gh_log(GH_LOG_ERROR, "%s", err);
        return rc;
    }
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&lock);
    d.wakefd = fd;
    d.stop = 0;
    d.on_change = on_change;
    d.arg = arg;
    pthread_mutex_unlock(&lock);
    if ((rc = pthread_create(&d.thread, NULL, refresher_main, NULL)) != 0) {
        pthread_mutex_lock(&lock);
        d.wakefd = -1;
        pthread_mutex_unlock(&lock);
        close(fd);
        return -rc;
    }
    d.running = 1;
    return 0;
}

void gh_dns_stop(void)
{
    if (d.running) {
        pthread_mutex_lock(&lock);
        d.stop = 1;
        wake_locked();
        pthread_mutex_unlock(&lock);
        pthread_join(d.thread, NULL);
        d.running = 0;
        close(d.wakefd);
    }
    pthread_mutex_lock(&sync_lock);
    chan_close(&d.sync);
    pthread_mutex_lock(&lock);
    names_flush();
    free(d.set.servers);
    memset(&d, 0, sizeof(d));
    d.wakefd = -1;
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&sync_lock);
}
