/* config.h: the configuration model, its YAML loader and validator.
 *
 * A configuration is loaded (libyaml), validated and compiled into one immutable,
 * refcounted snapshot (gh_conf_t): names resolved to pointers, addresses resolved,
 * regexes compiled (PCRE2, JIT), host index built for the router, per-route
 * limits and timeouts merged from global -> upstream -> route. Workers read a
 * snapshot without locks; a reload builds a new one and swaps it in
 * (src/core/worker.c). Every error names FILE:LINE:COL, the key path and a message.
 *
 * Called by main.c (run, validate, proxy), the worker reload path and tests.
 * Calls libyaml, PCRE2, getaddrinfo. */
#ifndef GH_CONFIG_CONFIG_H
#define GH_CONFIG_CONFIG_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/common.h"

typedef struct pcre2_real_code_8 gh_regex_t; /* pcre2_code */

typedef struct {
    uint32_t max_request_line; /* default 8192 -> 414 */
    uint32_t max_header_size;  /* default 32768 -> 431 */
    uint32_t max_headers;      /* default 100 -> 431 */
    uint64_t max_body_size;    /* default 100 MiB -> 413; 0 = unlimited */
} gh_conf_limits_t;

/* All in milliseconds; 0 = no limit (only allowed where documented). */
typedef struct {
    uint32_t client_header;     /* whole request head must arrive within (default 10 s) */
    uint32_t client_body;       /* max gap between body reads from the client (default 60 s) */
    uint32_t client_send;       /* max gap while the client does not read our response (default 60 s) */
    uint32_t keepalive;         /* idle client connection between requests (default 75 s) */
    uint32_t upstream_connect;  /* TCP connect to a backend (default 5 s) */
    uint32_t upstream_response; /* request sent -> response head received (default 60 s) */
    uint32_t upstream_idle;     /* max gap between upstream reads/writes in a body (default 60 s) */
    uint32_t request;           /* whole request, first byte to last (default 0 = none) */
} gh_conf_timeouts_t;

typedef struct {
    char *name; /* "host:port" as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t weight; /* default 1 */
    char *dns_name;  /* discovery: dns: the "host:port" this address came from; else NULL */
    char *tls_name;  /* upstream TLS: SNI and the name verified (the upstream's server_name, else the host) */
    void *health;    /* active health state (gh_health_t *), bound after load; NULL: not checked */
} gh_conf_backend_t;

typedef struct gh_conf_upstream {
    char *name;
    uint32_t index; /* position in gh_conf_t.upstreams */
    gh_conf_backend_t *backends;
    uint32_t nbackends; /* discovery: dns: may be 0 while a name has no address */
    int discovery;      /* GH_DISCOVERY_*: static addresses, or DNS names followed on TTL */
    int dns_family;     /* AF_UNSPEC (default), AF_INET or AF_INET6 */
    uint32_t keepalive;         /* idle connections kept per worker per backend (default 128) */
    uint32_t keepalive_timeout; /* ms an idle pooled connection is kept (default 60 s) */
    int balance;      /* GH_BALANCE_* (same values as lb.h's GH_LB_*), default round robin */
    int hash_source;  /* GH_HASH_*: what the hash policy hashes */
    char *hash_name;  /* header or cookie name for GH_HASH_HEADER / GH_HASH_COOKIE */
    size_t hash_name_len;
    struct {
        int enabled;
        char *path;          /* request target of the check (default "/") */
        uint32_t interval;   /* ms between checks (default 5 s), jittered by +-10% */
        uint32_t timeout;    /* ms for connect + response head (default 2 s) */
        uint32_t rise, fall; /* consecutive successes to go up / failures to go down (2 / 3) */
        uint16_t status_min, status_max; /* healthy statuses (default 200-399) */
    } health;
    uint32_t slow_start; /* ms over which a backend back in rotation ramps from 10% to its full weight (0 = off) */
    struct {
        uint32_t max_connections; /* open connections to the pool (0 = no limit) */
        uint32_t max_pending;     /* requests waiting for a new connection (0 = no limit) */
        uint32_t max_requests;    /* requests in flight (0 = no limit) */
    } breaker;
    struct {
        uint32_t attempts;        /* tries in all, the first included (default 3; 1 = no retries) */
        uint32_t on;              /* GH_RETRY_* conditions (default connect_failure, reset) */
        uint16_t statuses[16];    /* response statuses that are retried (none by default) */
        uint32_t nstatuses;
        int non_idempotent;       /* retry POST/PATCH/... too (never once their body was sent) */
        uint32_t per_try_timeout; /* ms for each try's response head (0 = timeouts.response) */
        uint32_t backoff_base, backoff_max; /* ms: try n waits rand[0, min(max, base * 2^(n-2))] */
        double budget_ratio;      /* retries at most this fraction of requests (default 0.2) ... */
        double budget_min_per_s;  /* ... plus this many per second (default 10) */
    } retry;
    struct {
        uint32_t consecutive_failures; /* gateway failures in a row that eject a backend (5; 0 = off) */
        uint32_t base_ejection;        /* ms, doubled on each repeat (30 s) */
        uint32_t max_ejection;         /* ms ceiling (300 s) */
        uint32_t max_ejected_percent;  /* of the pool ejected at once (50) */
    } outlier;
    struct {
        int enabled;
        char *server_name;     /* SNI and verified name for every backend (default: each backend's host) */
        char *ca;              /* CA file; NULL: the system store */
        int verify;            /* default 1; 0 = no verification (insecure) */
        char *cert, *key;      /* client certificate (mTLS), or NULL */
        int min_version;       /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
        uint64_t tag;          /* hash of these settings: pooled connections are shared only with equal tags */
    } tls;
    void *tls_client; /* gh_tls_client_t built at compile, freed with the snapshot */
    int http2;        /* speak HTTP/2 to the backends (ALPN h2 over TLS, else prior knowledge): gRPC */
    uint32_t *maglev; /* hash policy: the Maglev table (backend index per slot), in the arena */
    uint32_t maglev_size;
    void *stats; /* obs: this upstream's metrics series (gh_upstream_stats_t *), bound after load */
} gh_conf_upstream_t;

enum { GH_BALANCE_ROUND_ROBIN = 0, GH_BALANCE_LEAST_REQUEST, GH_BALANCE_PEAK_EWMA, GH_BALANCE_HASH };
enum { GH_DISCOVERY_STATIC = 0, GH_DISCOVERY_DNS };
enum { GH_RETRY_CONNECT = 1, GH_RETRY_RESET = 2, GH_RETRY_TIMEOUT = 4 };
enum { GH_HASH_CLIENT_IP = 0, GH_HASH_HEADER, GH_HASH_COOKIE, GH_HASH_PATH };

typedef struct {
    char *name;
    size_t name_len;
    char *value;
    size_t value_len;
} gh_conf_kv_t;

enum { GH_MATCH_EXACT = 1, GH_MATCH_PREFIX, GH_MATCH_REGEX, GH_MATCH_PRESENT };

typedef struct {
    char *name; /* header name */
    size_t name_len;
    int kind;   /* GH_MATCH_EXACT, GH_MATCH_REGEX or GH_MATCH_PRESENT */
    char *value;
    size_t value_len;
    gh_regex_t *re;
} gh_conf_header_match_t;

struct gh_conf_tenant;
struct gh_conf_site;

/* ---- traffic protection (applied by src/protect/protect.c) ---- */

/* What a rate limit counts by; a limit's key is the combination of its parts. */
enum { GH_RLK_IP = 1, GH_RLK_PREFIX, GH_RLK_TENANT, GH_RLK_ROUTE, GH_RLK_HEADER, GH_RLK_COOKIE, GH_RLK_QUERY,
       GH_RLK_JA4 };
enum { GH_RLA_REJECT = 0, GH_RLA_DELAY, GH_RLA_SHADOW };

typedef struct {
    int kind;     /* GH_RLK_* */
    char *name;   /* header (lowercased), cookie or query parameter name */
    size_t name_len;
    uint8_t prefix4, prefix6; /* GH_RLK_PREFIX: leading bits kept (24 / 64) */
} gh_conf_rlkey_t;

#define GH_RL_MAX_KEYS 6
typedef struct {
    char *name;
    char *where;   /* "tenant", "tenant/site" or "tenant/site/route": where it is declared */
    uint64_t id;   /* hash of where and name: a limit keeps its state across reloads */
    gh_conf_rlkey_t keys[GH_RL_MAX_KEYS];
    uint32_t nkeys;
    uint32_t quota;    /* requests per period, as written ("100/s": 100) */
    uint32_t period_s; /* 1, 60 or 3600 */
    uint32_t burst;    /* requests above the steady rate allowed at once */
    int action;        /* GH_RLA_* */
    uint32_t max_delay;/* ms: the longest a delayed request waits (delay) */
    int global;        /* shared by every node through Redis (protection.redis) */
    uint64_t interval_ns, tolerance_ns; /* GCRA emission interval and tolerance */
} gh_conf_ratelimit_t;

enum { GH_ACL_ALLOW = 1, GH_ACL_DENY = 2 };
typedef struct {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t prefix;
} gh_cidr_t;

typedef struct {
    gh_cidr_t *cidrs;   /* inline entries as written ... */
    uint8_t *tags;      /* ... each GH_ACL_ALLOW or GH_ACL_DENY */
    uint32_t ncidrs;
    uint32_t *list_idx; /* named lists referenced ("list:NAME"): index into protect.lists ... */
    uint8_t *list_tags; /* ... and whether each allows or denies */
    uint32_t nlists;
    void *tree;         /* gh_iptree_t of the inline entries, built at compile; NULL: none */
    int has_allow;      /* an address that no allow entry matches is refused */
    uint16_t *cc_allow, *cc_deny; /* countries ('D' << 8 | 'E'); cc_allow: only these */
    uint32_t ncc_allow, ncc_deny;
} gh_conf_acl_t;

typedef struct {
    int enabled;
    uint32_t window;     /* ms of behaviour the score looks at (60 s) */
    uint32_t log, challenge, tarpit, block; /* score thresholds 1..100; 0 = that action off */
    uint32_t difficulty; /* proof-of-work bits of the challenge (16) */
    uint32_t cookie_ttl; /* s a solved challenge's pass cookie lasts (3600) */
    uint32_t tarpit_delay; /* ms a tarpitted request is held before its answer (5 s) */
} gh_conf_bots_t;

/* One scope's protection (a tenant's, a site's or a route's). */
typedef struct {
    gh_conf_acl_t acl;
    gh_conf_ratelimit_t *limits;
    uint32_t nlimits;
    gh_conf_bots_t bots; /* the most specific scope with bots: decides */
} gh_conf_protect_t;

/* A route's HTTP cache policy (src/cache). */
enum { GH_CQ_SORTED = 0, GH_CQ_AS_IS, GH_CQ_IGNORE };
typedef struct {
    uint32_t default_ttl, max_ttl; /* seconds; 0 = RFC heuristic only / no cap */
    uint32_t lock_timeout;         /* ms a miss waits for another's fetch of the key (5 s) */
    int strip_set_cookie;          /* 0: a response with Set-Cookie is not stored (bypass) */
    int key_host;                  /* Host in the key (1) */
    int query;                     /* GH_CQ_* */
    char **query_keep, **query_drop; /* parameter names; "utm_*" a prefix */
    uint32_t nquery_keep, nquery_drop;
    char **key_headers, **key_cookies;
    uint32_t nkey_headers, nkey_cookies;
} gh_conf_cache_t;

#define GH_EXP_METRICS_MAX 64u /* metrics of one experiment */

/* An experiment's metric (src/experiments): where a unit's value comes from after its exposure. */
enum { GH_XK_CONVERSION = 1, GH_XK_MEAN, GH_XK_RATIO };
enum { GH_XS_EVENT = 1, GH_XS_PATH, GH_XS_REQUESTS, GH_XS_ERRORS, GH_XS_LATENCY, GH_XS_BYTES };
typedef struct {
    int source;      /* GH_XS_* */
    char *event;     /* GH_XS_EVENT: the event definition's name */
    char *field;     /* ... a numeric payload field summed (NULL: each event counts 1) */
    char *path;      /* GH_XS_PATH: a path prefix (a request to it counts 1) */
    size_t path_len;
    uint64_t event_h; /* hash of event (gh_exp_hash) */
} gh_conf_xsource_t;

typedef struct {
    char *name;
    int kind;              /* GH_XK_* */
    gh_conf_xsource_t num; /* the value (conversion: converted when > 0) */
    gh_conf_xsource_t den; /* GH_XK_RATIO: the denominator */
    int direction;         /* +1 an increase is good (default), -1 a decrease is good */
    int guardrail;
    int cuped;             /* GH_XK_MEAN on events: the same value before exposure as covariate */
} gh_conf_xmetric_t;

/* Whether a part of metric mt (den 0: its number, 1: its denominator, which only a ratio has) is
 * observed at the edge rather than taken from events: what the workers send and the pipeline
 * applies per request (config.c, src/experiments/exp.c). */
static inline int gh_conf_xpart_edge(const gh_conf_xmetric_t *mt, int den)
{
    const gh_conf_xsource_t *s = !den ? &mt->num : mt->kind == GH_XK_RATIO ? &mt->den : NULL;
    return s && s->source >= GH_XS_PATH;
}

typedef struct {
    char *id;          /* unique in the tenant */
    char *flag;        /* the tenant's flag whose variants are compared */
    char **variants;   /* control first, then the treatments */
    double *weights;   /* the planned allocation (SRM check), normalized */
    uint32_t nvariants;
    int64_t start_ms, stop_ms; /* exposures counted in [start, stop) (0: open) */
    double alpha;      /* 0.05 */
    double n_star;     /* sequential tuning: units at which the interval is tightest (5000) */
    gh_conf_xmetric_t *metrics;
    uint32_t nmetrics;
} gh_conf_experiment_t;

/* A service level objective (src/obs/slo.c) on a tenant's requests (all its routes) or one
 * route's: `slos: [{name, objective, target, threshold, window}]`. */
enum { GH_SLO_AVAILABILITY = 1, GH_SLO_LATENCY };
typedef struct {
    char *name;            /* unique among the SLOs of its tenant or route */
    int objective;         /* GH_SLO_*: availability (not 5xx is good), latency (under threshold) */
    double target;         /* the share of good requests to meet, e.g. 0.999 */
    uint32_t threshold_ms; /* GH_SLO_LATENCY: a request faster than this is good */
    uint32_t window_ms;    /* the SLO window (30d; 10m..49d); alert windows scale with it */
} gh_conf_slo_t;

/* A route's flag: evaluated per request, its variant steering the request (src/flags). */
typedef struct {
    char *name;                        /* the variant */
    struct gh_conf_upstream *upstream; /* NULL: the route's */
    char *path_prefix;                 /* prepended to the path sent upstream, or NULL */
    size_t path_prefix_len;
    gh_conf_kv_t *req_headers, *resp_headers;
    uint32_t nreq_headers, nresp_headers;
} gh_conf_flagvariant_t;

typedef struct {
    char *key;              /* the tenant's flag */
    gh_conf_rlkey_t unit;   /* where the unit (targetingKey) comes from: cookie (generated when
                             * missing), header, query parameter or client address */
    uint32_t cookie_max_age; /* s, for a generated unit cookie (1 year) */
    char *variant_header;   /* sent upstream and to the client with the variant, or NULL */
    int exposure;           /* log the exposure (flag, variant) in the access log (1) */
    gh_conf_flagvariant_t *variants;
    uint32_t nvariants;
    uint64_t key_xh;        /* gh_exp_hash of key (src/experiments' records) */
    int experimented;       /* one of the tenant's experiments is on this flag */
} gh_conf_routeflag_t;

/* An edge function attached to a route (src/edge/lua.h): LuaJIT code run in the request
 * phase, the response-header phase, or both, in its tenant's Lua state on each worker. */
enum { GH_FN_FAIL = 0, GH_FN_CONTINUE };
typedef struct {
    uint32_t id;         /* its number among the tenant's functions (the Lua state's function id) */
    char *chunkname;     /* "@FILE" or "=tenant/route" (inline) */
    char *code;
    size_t code_len;
    int phases;          /* GH_FN_REQUEST | GH_FN_RESPONSE it defines (checked at load) */
    int on_error;        /* GH_FN_FAIL: the request gets 500; GH_FN_CONTINUE: it goes on unchanged */
    uint64_t max_instructions; /* per invocation (1,000,000) */
    uint64_t max_memory;       /* bytes per invocation (8 MiB) */
    void *stats;         /* counters: calls, errors, limit hits (gh_fn_stats_t, obs), bound after load */
} gh_conf_function_t;

typedef struct gh_conf_route {
    char *name; /* default "route<N>" */
    int analytics;          /* traffic analytics (src/obs/analytics.c) for this route */
    uint64_t analytics_key; /* ... its windows' key: a hash of tenant and route names */
    struct gh_conf_site *site;
    struct gh_conf_tenant *tenant;
    /* match */
    int path_kind; /* 0 = any path, GH_MATCH_EXACT, GH_MATCH_PREFIX, GH_MATCH_REGEX */
    char *path;
    size_t path_len;
    gh_regex_t *path_re;
    uint32_t methods; /* bit (1u << enum gh_h1_method); 0 = any; GH_M_OTHER bit = unknown methods */
    gh_conf_header_match_t *headers;
    uint32_t nheaders;
    char **ja4;      /* TLS client fingerprints (JA4) that match, "...*" a prefix; NULL: any client */
    uint32_t nja4;
    /* action: exactly one of upstream / respond */
    gh_conf_upstream_t *upstream;
    int has_respond;
    struct {
        int status;
        char *body;
        size_t body_len;
        gh_conf_kv_t *headers;
        uint32_t nheaders;
    } respond;
    /* protection in force: tenant's, site's, own (NULL where a scope declares none) */
    const gh_conf_protect_t *prot[3];
    const gh_conf_bots_t *bots; /* the most specific scope's bot defence, or NULL */
    gh_conf_cache_t *cache;     /* caching on: its policy; NULL: off */
    gh_conf_routeflag_t *flag;  /* a flag splitting this route's traffic, or NULL */
    gh_conf_function_t *function; /* its edge function, or NULL */
    /* merged settings */
    uint64_t max_body_size;
    gh_conf_timeouts_t timeouts;
    void *stats; /* obs: this route's metrics series (gh_route_stats_t *), bound after load */
    gh_conf_slo_t *slos; /* this route's SLOs (src/obs/slo.c) */
    uint32_t nslos;
} gh_conf_route_t;

typedef struct {
    char *name;   /* lowercased; "*.example.com" stored as ".example.com" with wildcard = 1 */
    size_t len;
    int wildcard; /* matches any name ending in .example.com (not example.com itself) */
    int any;      /* "*": catch-all */
} gh_conf_host_t;

typedef struct gh_conf_site {
    char *name; /* default: first host */
    struct gh_conf_tenant *tenant;
    gh_conf_host_t *hosts;
    uint32_t nhosts;
    gh_conf_route_t *routes;
    uint32_t nroutes;
    char *tls_cert, *tls_key; /* PEM files of this site's certificate (its hosts are its SNI names) */
    int https_redirect;       /* a request over plain HTTP gets 308 to https:// */
    char *hsts;               /* Strict-Transport-Security value added over TLS, or NULL */
    gh_conf_protect_t *prot;  /* NULL: none declared */
    struct gh_ruleset *rules; /* request rules (src/rules): YAML rules, then _headers, then _redirects; or NULL */
} gh_conf_site_t;

typedef struct gh_conf_tenant {
    char *name;
    uint64_t name_xh;         /* gh_exp_hash of name (src/experiments' records) */
    gh_conf_site_t *sites;
    uint32_t nsites;
    gh_conf_protect_t *prot;  /* NULL: none declared */
    uint32_t max_concurrent;  /* requests in flight (0 = no cap) */
    char *cache_targeted;     /* the tenant's targeted cache field (RFC 9213), e.g. Acme-Cache-Control, or NULL */
    struct {
        void *set;            /* gh_flagset_t compiled at load (src/flags), or NULL: no flags */
        char *file;           /* the flagd definition it came from (watched), or NULL: inline */
        int64_t mtime_ns, size; /* the file as loaded */
        char **api_keys;      /* OFREP keys that map to this tenant */
        uint32_t napi_keys;
        uint64_t limit_interval_ns, limit_tolerance_ns; /* GCRA of evaluation requests (OFREP, gRPC); 0: none */
    } flags;
    uint64_t quota_minute, quota_day; /* requests per minute / per day (0 = none) */
    struct {
        int enabled;
        double multiple;      /* enter when the rate exceeds multiple x baseline (4) ... */
        double min_rate;      /* ... and at least this (req/s, 50) */
        uint32_t concurrency; /* or when this many requests are in flight (0 = not used) */
        uint32_t latency;     /* or when upstream latency (EWMA) exceeds this, ms (0 = not used) */
        uint32_t hold;        /* ms at least in flood mode; left after hold below the bound (10 s) */
        uint32_t per_ip_quota, per_ip_period; /* per-IP limit in flood mode ("10/s") */
        uint64_t per_ip_interval_ns, per_ip_tolerance_ns;
    } flood;
    void *state; /* protect.c's lasting per-tenant state (counters, flood mode), bound at load */
    gh_conf_experiment_t *experiments;
    uint32_t nexperiments;
    int xedges;        /* one of its experiments has an edge-observed metric: requests are observed */
    uint32_t xpath_max; /* the longest path prefix of those metrics (bytes of a request's path kept) */
    gh_conf_slo_t *slos; /* SLOs over all the tenant's routes (src/obs/slo.c) */
    uint32_t nslos;
    gh_conf_function_t **functions; /* its routes' edge functions, by id */
    uint32_t nfunctions;
    uint32_t index; /* position in gh_conf_t.tenants (per-tenant state of a worker) */
} gh_conf_tenant_t;

enum { GH_LISTEN_PROXY = 1, GH_LISTEN_ADMIN, GH_LISTEN_DEMO, GH_LISTEN_OFREP, GH_LISTEN_GRPC };

typedef struct {
    char *name;
    char *listen; /* as written: "127.0.0.1:8080", "[::1]:8080", ":8080" */
    int role;     /* GH_LISTEN_* */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t backlog; /* default 4096 */
    struct {
        int enabled;
        char *cert, *key;       /* the default certificate (optional when sites have theirs) */
        int min_version;        /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
        char *ciphers, *ciphersuites; /* NULL: secure defaults (tls.h) */
        int session_tickets;    /* default 1 */
        int alpn_h2, alpn_h1;   /* ALPN protocols offered (default both, h2 preferred) */
    } tls;
    void *tls_server; /* gh_tls_server_t built at compile, freed with the snapshot */
    int h2c;          /* cleartext HTTP/2 with prior knowledge is accepted (proxy listeners) */
} gh_conf_listener_t;

/* A tenant API key (control plane) that works on the flag listeners: the SHA-256 of the whole
 * token, its tenant, scopes (cp.h GH_SCOPE_*) and expiry (Unix seconds, 0: none). */
enum { GH_SCOPE_READ = 1, GH_SCOPE_WRITE = 2, GH_SCOPE_ADMIN = 4, GH_SCOPE_FLAGS = 8, GH_SCOPE_EVENTS = 16 };
typedef struct {
    uint8_t hash[32];
    const char *tenant;
    unsigned scopes;
    int64_t expires;
} gh_conf_key_t;

typedef struct gh_conf {
    int refs; /* atomic; gh_conf_ref/unref */
    char *path; /* the file it came from ("<proxy>" for quick mode) */
    char *source; /* the YAML text it was built from (NULL in quick mode): a DNS change rebuilds from it */
    size_t source_len;
    gh_conf_key_t *keys; /* tenants' API keys with flag or event scopes (from the control plane) */
    uint32_t nkeys;
    char *overlay; /* JSON of the API-defined objects layered over source, or NULL (gh_conf_load_layered) */
    size_t overlay_len;
    uint64_t dns_gen; /* the DNS cache generation its names were looked up with (dns.h) */
    struct {
        char *nameservers; /* "ip:port,..." or NULL: /etc/resolv.conf */
        uint32_t timeout, min_ttl, max_ttl; /* ms */
    } resolver;
    int uses_dns; /* some upstream has discovery: dns */
    struct {
        uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS (100) */
        uint32_t initial_window_size;    /* per stream (65535) */
        uint32_t max_header_list_size;   /* decoded header list (32 KiB) */
        uint32_t max_resets;             /* client RST_STREAMs per connection per 10 s (200) */
        uint32_t max_control_frames;     /* SETTINGS, PING, PRIORITY, WINDOW_UPDATE, each, per 10 s (1000) */
        uint32_t max_continuations;      /* CONTINUATION frames per header block (16) */
    } http2;
    uint32_t workers; /* default: number of online CPUs */
    char *pid_file;   /* optional */
    uint32_t drain_timeout; /* ms to finish in-flight requests on SIGTERM (default 30 s) */
    uint32_t flagd_grpc_keepalive; /* ms between keep_alive events on a flagd EventStream (15 s) */
    gh_conf_limits_t limits;
    gh_conf_timeouts_t timeouts;
    gh_cidr_t *trusted_proxies;
    uint32_t ntrusted_proxies;
    struct {
        int enabled; /* default 1 */
        char *path;  /* default "-" = stdout */
        uint64_t max_size; /* rotate the file past this many bytes (0: never) */
        uint32_t keep;     /* rotated files kept (5) */
        char *syslog;      /* to syslog instead of the file: "/dev/log" (a datagram socket) or host:port (UDP) */
        uint32_t facility; /* syslog facility (local0 = 16) */
        char *tag;         /* APP-NAME ("gatehouse") */
    } access_log;
    char *exposure_log; /* JSON lines of flag exposures (routes' flags with exposure on), or NULL */
    char *node; /* this node's name: record sources, purge origins (default: the host name) */
    struct { /* the event stream (src/events); read at start: a reload keeps the running settings */
        struct {
            char *url;       /* NATS servers, "nats://host:port[,...]"; NULL: no stream */
            char *stream;    /* JetStream stream ("GATEHOUSE") */
            char *prefix;    /* subject prefix ("gatehouse") */
            char *spool_dir; /* ("gatehouse-spool") */
            uint64_t spool_max; /* (1 GiB) */
            uint32_t kinds;  /* bit per gh_ev_kind_t published (access, exposure, event) */
            uint32_t max_age; /* ms: retention of a stream created here (7 days; 0: none) */
            uint64_t max_bytes; /* size bound of a stream created here (0: none) */
        } nats;
        struct {
            char *url;       /* ClickHouse HTTP interface; NULL: no sink */
            char *database;  /* ("gatehouse") */
            char *user, *password; /* or NULL; the password kept out of logs */
            char *consumer;  /* durable consumer ("gatehouse-clickhouse") */
            uint32_t batch;  /* (10000) */
            uint32_t flush_ms; /* (1 s) */
        } clickhouse;
    } events;
    struct { /* tracing: W3C Trace Context and OTLP/HTTP export (obs/trace.c); absent: off */
        int enabled;
        char *endpoint;     /* collector base URL, http:// or https:// ("http://127.0.0.1:4318") */
        double sample_ratio; /* new traces sampled (0.01) */
        char *service_name; /* "gatehouse" */
        int respect_parent; /* a caller's sampled flag decides (1) */
        uint32_t batch;     /* spans per export, at most (512) */
        int protocol;       /* GH_TRACE_PROTO_* of obs/trace.h: 0 http/json (default), 1 http/protobuf */
        char *ca_file;      /* PEM CAs an https:// collector is verified against (NULL: the system's) */
    } tracing;
    struct {
        char *store;                     /* the control plane's store: a SQLite path or postgres:// URL, or NULL */
        uint32_t rate_quota, rate_period; /* admin API requests per caller (100/s) */
        uint32_t burst;                  /* (200) */
    } admin;
    char *admin_key;    /* the operator key of the admin API (Authorization: Bearer), or NULL */
    int via; /* add Via to forwarded requests (default 1) */
    gh_conf_listener_t *listeners; /* proxy, admin and demo listeners */
    uint32_t nlisteners;
    gh_conf_upstream_t *upstreams;
    uint32_t nupstreams;
    gh_conf_tenant_t *tenants;
    uint32_t ntenants;
    struct {
        uint32_t max_keys;      /* rate-limit state table (1,000,000; takes effect at start) */
        uint8_t secret[64];     /* HMAC key of challenge tokens and pass cookies */
        uint32_t secret_len;    /* 0: random per process start (set by protect.c) */
        uint32_t per_ip_conns;  /* concurrent connections per client address (0 = no cap) */
        uint32_t max_requests;  /* requests per connection (0 = no cap) */
        uint32_t body_min_rate; /* bytes/s a request body must average after 5 s (0 = off) */
        uint32_t send_min_rate; /* bytes/s a client must read a response at, after 5 s (0 = off) */
        char *redis_host;       /* global limits: Redis at host:port, or NULL */
        int redis_port;
        char *redis_password;   /* AUTH, or NULL (kept out of logs) */
        uint32_t redis_sync;    /* ms between syncs (50) */
        int redis_fail_open;    /* Redis unreachable: admit (1, default) or refuse (0) */
        char *geoip;            /* MaxMind country database, or NULL */
        void *geoip_db;         /* gh_geoip_t opened at load */
        struct gh_conf_iplist {
            char *name, *file;
            void *tree;         /* gh_iptree_t loaded at compile */
            int64_t mtime_ns;   /* the file as loaded: a change reloads it (gh_protect_lists_changed) */
            int64_t size;
        } *lists;
        uint32_t nlists;
        gh_cidr_t *good_bots;   /* verified good bots' ranges (not scored, never challenged) */
        uint32_t ngood_bots;
        void *good_bots_tree;   /* gh_iptree_t built at compile, or NULL */
        int used;               /* some scope declares protection */
    } protect;
    struct {
        uint64_t memory;     /* cap on stored bytes (256 MiB) */
        uint64_t max_object; /* largest body stored (min(16 MiB, memory / 8)) */
        int used;            /* some route caches */
    } cache;
    uint32_t nflag_files; /* tenants whose flags come from a file (watched) */
    struct gh_conf_owned *owned; /* flag sets and rule sets built (freed with the snapshot, or on a failed load) */
    struct {
        char *store;     /* SQLite database of exposures and events ("gatehouse-experiments.db") */
        char *audit_log; /* JSON lines of every exposure and event, or NULL */
        int used;        /* some tenant has experiments */
    } exp;
    void *router; /* host index, built at compile (router.c) */
    void *arena;  /* owns everything above */
} gh_conf_t;

/* Collected errors, each "FILE:LINE:COL: key.path: message". */
typedef struct {
    char **msgs;
    uint32_t n;
} gh_conf_errors_t;

/* Whether a watched file (ip lists are protect.c's; flag definitions) changed since c was built. */
int gh_conf_flag_files_changed(const gh_conf_t *c);

/* Load, validate and compile a YAML file. 0 and *out on success (refs = 1);
 * GH_ECONFIG with every error found in errs otherwise. */
int gh_conf_load_file(const char *path, gh_conf_t **out, gh_conf_errors_t *errs);
/* Same from memory; name is used in messages in place of a file name. */
int gh_conf_load_string(const char *name, const char *yaml, size_t len, gh_conf_t **out,
                        gh_conf_errors_t *errs);
/* Same, with the API's objects layered over the file: overlay is JSON
 * {"upstreams": {NAME: {...}}, "tenants": [{...}]}, its upstreams joining the file's
 * upstreams map and its tenants the file's tenants list (clashing names are errors).
 * Errors in layered objects read "api: key.path: message". overlay NULL: as above. */
int gh_conf_load_layered(const char *name, const char *yaml, size_t len, const char *overlay, size_t overlay_len,
                         gh_conf_t **out, gh_conf_errors_t *errs);
int gh_conf_load_file_layered(const char *path, const char *overlay, size_t overlay_len, gh_conf_t **out,
                              gh_conf_errors_t *errs);
/* Quick mode: one proxy listener at from, one upstream of the to addresses, one
 * catch-all route. Errors as above. */
int gh_conf_quick(const char *from, const char *const *to, int nto, gh_conf_t **out,
                  gh_conf_errors_t *errs);
void gh_conf_errors_free(gh_conf_errors_t *errs);

void gh_conf_ref(gh_conf_t *c);
void gh_conf_unref(gh_conf_t *c);

/* "127.0.0.1:80", "[::1]:80", ":80" (all IPv4 addresses), "localhost:80" -> sockaddr. */
int gh_conf_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* The observer TLS listeners built from now on call with each ClientHello (the
 * session's JA4 fingerprinting; set by main before the first load). */
struct ssl_st;
void gh_conf_set_tls_hello(void (*fn)(struct ssl_st *, void *));
/* Whether addr is inside one of the trusted-proxy CIDRs. */
int gh_conf_is_trusted(const gh_conf_t *c, const struct sockaddr *addr);

#endif
