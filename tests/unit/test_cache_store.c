/* test_cache_store.c: unit tests of the shared response store (src/cache/cache.c) through
 * its public API, and of the HTTP glue (src/cache/http.c).
 *
 * Store: insert/lookup/release and reference counts (an object evicted, replaced or
 * purged while a reader holds it stays valid until released), Vary variants side by
 * side and replaced, vary misses, the memory cap and max_object, S3-FIFO (scan
 * resistance measured against plain FIFO, ghost re-admission into main), purge by tag,
 * URL, prefix and tenant (hard and soft, tenants isolated), invalidation tombstones,
 * coalescing markers, the normalisation of selecting header values, and a threaded
 * stress run whose memory accounting must balance.
 *
 * HTTP glue: cache keys (query modes, keep/drop patterns, host, headers, cookies,
 * length), the stored head and its 304 update, surrogate keys, conditional requests
 * and Range.
 *
 * The store is one per process: every test starts from an empty store (reset()) and
 * restores the default size. khash values are chosen by hand where a test needs all
 * its objects in one shard ((khash >> 56) % GH_CACHE_SHARDS picks the shard). */
#include "cache/cache.h"
#include "cache/http.h"
#include "t.h"

#include <pthread.h>
#include <stdlib.h>

#define CAP (1u << 20)
#define MAXOBJ (1u << 18)
#define T0 1700000000LL

static gh_str_t S(const char *s) { return gh_str(s, strlen(s)); }

#define H(n, v) {GH_STR(n), GH_STR(v)}

/* ---- object construction, as session.c's cache_begin_store does ---- */

typedef struct {
    const char *tenant, *host, *path; /* path with "?query" */
    const char *vary, *vvals;
    const char *tags; /* NUL-separated, tags_len bytes */
    size_t tags_len;
    const char *head;
    size_t body;
    uint64_t khash; /* 0: the hash of the key */
    const char *key; /* NULL: as gh_cache_key makes it, "tenant\nhttp\nhost\npath\nquery\n" */
    uint64_t seq;    /* 0: gh_cache_seq() now */
} ospec_t;

static const char *TENANTS[] = {"t", "u", "tt", "s"};

static void key_of(const ospec_t *sp, char *out, size_t cap)
{
    const char *path = sp->path ? sp->path : "/", *q = strchr(path, '?');
    if (sp->key)
        snprintf(out, cap, "%s", sp->key);
    else
        snprintf(out, cap, "%s\nhttp\n%s\n%.*s\n%s\n", sp->tenant ? sp->tenant : "t", sp->host ? sp->host : "a.example",
                 (int)(q ? (size_t)(q - path) : strlen(path)), path, q ? q + 1 : "");
}

/* A URL as the store's URL purge takes it ("host\npath\nquery\n", what the admin API
 * derives from http://host/path?query with the route's key rules). */
static gh_str_t U(const char *host, const char *pathq)
{
    static char buf[8][512];
    static int i;
    char *b = buf[i++ % 8];
    const char *q = strchr(pathq, '?');
    int n = snprintf(b, 512, "%s\n%.*s\n%s\n", host, (int)(q ? (size_t)(q - pathq) : strlen(pathq)), pathq,
                     q ? q + 1 : "");
    return gh_str(b, (size_t)n);
}

static uint64_t hash_of(const char *key) { return gh_cache_hash(key, strlen(key)); }

static gh_cobj_t *mk(ospec_t sp)
{
    char key[512];
    key_of(&sp, key, sizeof key);
    const char *tenant = sp.tenant ? sp.tenant : "t", *host = sp.host ? sp.host : "a.example";
    const char *path = sp.path ? sp.path : "/";
    gh_cobj_parts_t parts = {
        .key = S(key),
        .tenant = S(tenant),
        .host = S(host),
        .path = S(path),
        .vary = S(sp.vary ? sp.vary : ""),
        .vvals = S(sp.vvals ? sp.vvals : ""),
        .tags = gh_str(sp.tags ? sp.tags : "", sp.tags ? sp.tags_len : 0),
        .head = S(sp.head ? sp.head : "Content-Type: text/plain\r\n"),
    };
    gh_cobj_t *o = gh_cobj_new(&parts);
    if (!o)
        return NULL;
    const char *q = strchr(path, '?');
    o->khash = sp.khash ? sp.khash : hash_of(key);
    o->uhash = gh_cache_url_hash(S(tenant), S(host), gh_str(path, q ? (size_t)(q - path) : strlen(path)));
    o->seq = sp.seq ? sp.seq : gh_cache_seq();
    o->status = 200;
    o->facts.lifetime = 60;
    o->facts.initial_age = 0;
    o->facts.response_time = T0;
    gh_cc_init(&o->facts.cc);
    char chunk[4096];
    for (size_t done = 0; done < sp.body;) {
        size_t n = GH_MIN(sizeof chunk, sp.body - done);
        for (size_t i = 0; i < n; i++)
            chunk[i] = (char)((done + i) * 7 + (o->khash & 0xff));
        if (gh_cobj_append(o, chunk, n) < 0) {
            gh_cobj_free(o);
            return NULL;
        }
        done += n;
    }
    return o;
}

/* Insert and drop the caller's reference (the store keeps its own). */
static int put(gh_cobj_t *o)
{
    int r = gh_cache_insert(o);
    if (r < 0)
        gh_cobj_free(o);
    else
        gh_cache_release(o);
    return r;
}

/* Whether the body is the pattern mk wrote (the object is intact). */
static int body_ok(const gh_cobj_t *o, size_t len)
{
    if (o->body_len != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (o->body[i] != (char)(i * 7 + (o->khash & 0xff)))
            return 0;
    return 1;
}

static gh_cobj_t *look(ospec_t sp, const gh_h1_header_t *h, size_t n, int *uf)
{
    char key[512];
    key_of(&sp, key, sizeof key);
    int dummy;
    return gh_cache_lookup(sp.khash ? sp.khash : hash_of(key), S(key), h, n, uf ? uf : &dummy);
}

static gh_cache_stats_t stats(void)
{
    gh_cache_stats_t st;
    gh_cache_stats(&st);
    return st;
}

static void reset(void)
{
    gh_cache_setup(CAP, MAXOBJ);
    for (size_t i = 0; i < GH_ARRAY_LEN(TENANTS); i++)
        gh_cache_purge(S(TENANTS[i]), GH_PURGE_ALL, GH_STR(""), 0);
}

/* khash in shard sh, distinct low bits for i (buckets, ghost slots). */
static uint64_t kh_in(unsigned sh, uint64_t i) { return (uint64_t)sh << 56 | (i + 1) << 1; }

/* ---- store: basics ---- */

static void test_empty_and_setup(void)
{
    reset();
    CHECK(gh_cache_enabled());
    gh_cache_stats_t st = stats();
    CHECK_INT(st.cap, CAP);
    CHECK_INT(st.max_object, MAXOBJ);
    CHECK_INT(st.used, 0);
    CHECK_INT(st.objects, 0);
    CHECK_INT(gh_cache_max_object(), MAXOBJ);
    uint64_t a = gh_cache_seq(), b = gh_cache_seq();
    CHECK(b > a);
    CHECK(gh_cache_hash("abc", 3) == gh_cache_hash("abc", 3));
    CHECK(gh_cache_hash("abc", 3) != gh_cache_hash("abd", 3));
    int uf = 7;
    CHECK(look((ospec_t){.path = "/nothing"}, NULL, 0, &uf) == NULL);
    CHECK_INT(uf, 0);
}

static void test_insert_lookup_release(void)
{
    reset();
    ospec_t sp = {.path = "/a?x=1", .body = 1000, .head = "Content-Type: text/html\r\nETag: \"v1\"\r\n"};
    gh_cobj_t *o = mk(sp);
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_STR(o->etag, "\"v1\"");
    CHECK_STR(o->last_modified, "");
    CHECK_INT(o->refs, 1);
    CHECK_INT(gh_cache_insert(o), 0);
    CHECK_INT(o->refs, 2);
    CHECK(o->linked);
    CHECK_INT(o->body_len, 1000);
    gh_cache_stats_t st = stats();
    CHECK_INT(st.objects, 1);
    CHECK_INT(st.used, o->size);
    CHECK(o->size >= sizeof(gh_cobj_t) + 1000);
    CHECK_INT(st.inserts >= 1, 1);
    int uf = 0;
    gh_cobj_t *r = look(sp, NULL, 0, &uf);
    CHECK(r == o);
    CHECK_INT(uf, 1);
    CHECK_INT(o->refs, 3);
    CHECK(body_ok(r, 1000));
    gh_cache_release(r);
    CHECK_INT(o->refs, 2);
    gh_cache_release(o);
    CHECK_INT(o->refs, 1);
    /* still found after the inserter released */
    r = look(sp, NULL, 0, &uf);
    CHECK(r == o);
    if (r)
        gh_cache_release(r);
    /* another key, same hash bucket by construction: not confused */
    ospec_t other = sp;
    other.path = "/b";
    other.khash = hash_of("t\na.example\n/a?x=1");
    CHECK(look(other, NULL, 0, &uf) == NULL);
    CHECK_INT(uf, 0);
    /* the host is stored lowercased */
    gh_cobj_t *u = mk((ospec_t){.host = "A.Example", .path = "/h"});
    CHECK(u && u->host_len == 9 && !memcmp(u->host, "a.example", 9));
    gh_cobj_free(u);
    reset();
    CHECK_INT(stats().used, 0);
}

static void test_remove(void)
{
    reset();
    gh_cobj_t *o = mk((ospec_t){.path = "/rm", .body = 10});
    CHECK_INT(gh_cache_insert(o), 0);
    gh_cache_remove(o);
    CHECK(!o->linked);
    CHECK_INT(stats().objects, 0);
    CHECK_INT(stats().used, 0);
    gh_cache_remove(o); /* no longer stored: nothing */
    CHECK_INT(o->refs, 1);
    CHECK(body_ok(o, 10));
    CHECK(look((ospec_t){.path = "/rm"}, NULL, 0, NULL) == NULL);
    gh_cache_release(o);
}

static void test_refcount_purged_while_held(void)
{
    reset();
    ospec_t sp = {.path = "/held", .body = 5000};
    CHECK_INT(put(mk(sp)), 0);
    gh_cobj_t *r = look(sp, NULL, 0, NULL);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/held"), 0), 1);
    CHECK(!r->linked);
    CHECK_INT(r->refs, 1);
    CHECK_INT(stats().objects, 0);
    CHECK_INT(stats().used, 0);
    CHECK(body_ok(r, 5000)); /* ASan: still valid memory */
    CHECK(look(sp, NULL, 0, NULL) == NULL);
    gh_cache_release(r); /* frees (LSan would report a leak otherwise) */
}

static void test_refcount_evicted_while_held(void)
{
    reset();
    gh_cache_setup(64 * 1024, MAXOBJ);
    ospec_t sp = {.path = "/victim", .body = 4000};
    gh_cobj_t *r = mk(sp); /* the inserter's reference: a reader that never counted a hit */
    CHECK_INT(gh_cache_insert(r), 0);
    char p[32];
    for (int i = 0; i < 400 && r->linked; i++) {
        snprintf(p, sizeof p, "/fill%d", i);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = 4000})), 0);
    }
    CHECK(!r->linked);
    CHECK(stats().evictions > 0);
    CHECK(body_ok(r, 4000));
    CHECK(look(sp, NULL, 0, NULL) == NULL);
    gh_cache_release(r);
    reset();
}

static void test_replace_same_variant(void)
{
    reset();
    ospec_t sp = {.path = "/v", .vary = "accept-encoding", .vvals = "1gzip\n", .body = 100};
    gh_cobj_t *a = mk(sp);
    CHECK_INT(gh_cache_insert(a), 0); /* keep a reference: a reader */
    gh_cobj_t *b = mk(sp);
    CHECK_INT(gh_cache_insert(b), 0);
    CHECK(!a->linked);
    CHECK(b->linked);
    CHECK_INT(stats().objects, 1);
    CHECK_INT(stats().used, b->size);
    gh_h1_header_t h[] = {H("Accept-Encoding", "gzip")};
    int uf = 0;
    gh_cobj_t *r = look(sp, h, 1, &uf);
    CHECK(r == b);
    if (r)
        gh_cache_release(r);
    CHECK(body_ok(a, 100)); /* the replaced one is still readable by its holder */
    gh_cache_release(a);
    gh_cache_release(b);
    /* no Vary at all: a new version replaces the old one too */
    ospec_t pl = {.path = "/plain"};
    CHECK_INT(put(mk(pl)), 0);
    CHECK_INT(put(mk(pl)), 0);
    CHECK_INT(stats().objects, 2);
}

static void test_two_variants(void)
{
    reset();
    ospec_t gz = {.path = "/v2", .vary = "accept-encoding", .vvals = "1gzip\n", .body = 10};
    ospec_t br = gz, none = gz;
    br.vvals = "1br\n";
    none.vvals = "0\n";
    CHECK_INT(put(mk(gz)), 0);
    CHECK_INT(put(mk(br)), 0);
    CHECK_INT(stats().objects, 2);
    gh_h1_header_t hg[] = {H("accept-encoding", "gzip")}, hb[] = {H("Accept-Encoding", "BR")},
                   hx[] = {H("Accept-Encoding", "zstd")};
    int uf = 0;
    gh_cobj_t *r = look(gz, hg, 1, &uf);
    CHECK(r && r->vvals_len == 6 && !memcmp(r->vvals, "1gzip\n", 6));
    gh_cache_release(r);
    r = look(gz, hb, 1, &uf); /* Accept-* values compare lowercased */
    CHECK(r && r->vvals_len == 4 && !memcmp(r->vvals, "1br\n", 4));
    gh_cache_release(r);
    /* vary miss: no variant for these values, but the URI is known */
    uf = 0;
    CHECK(look(gz, hx, 1, &uf) == NULL);
    CHECK_INT(uf, 1);
    uf = 0;
    CHECK(look(gz, NULL, 0, &uf) == NULL); /* header absent */
    CHECK_INT(uf, 1);
    /* the absent-header variant is distinct from the others */
    CHECK_INT(put(mk(none)), 0);
    CHECK_INT(stats().objects, 3);
    r = look(gz, NULL, 0, &uf);
    CHECK(r && r->vvals_len == 2 && !memcmp(r->vvals, "0\n", 2));
    gh_cache_release(r);
    /* the same selecting values under a different Vary list: both kept */
    ospec_t other = gz;
    other.vary = "accept-encoding,x-device";
    other.vvals = "1gzip\n0\n";
    CHECK_INT(put(mk(other)), 0);
    CHECK_INT(stats().objects, 4);
    /* among matching variants the newest (highest seq) is returned */
    r = look(gz, hg, 1, &uf);
    CHECK(r && r->vary_len == strlen("accept-encoding,x-device"));
    gh_cache_release(r);
}

static void test_memory_cap(void)
{
    reset();
    gh_cache_stats_t st0 = stats();
    unsigned seed = 12345;
    char p[32];
    int over = 0;
    for (int i = 0; i < 3000; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t body = (seed >> 8) % 60000;
        snprintf(p, sizeof p, "/cap%d", i);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = body})), 0);
        gh_cache_stats_t st = stats();
        if (st.used > st.cap)
            over++;
    }
    CHECK_INT(over, 0);
    gh_cache_stats_t st = stats();
    CHECK(st.evictions > st0.evictions);
    CHECK_INT(st.inserts - st0.inserts, 3000);
    CHECK(st.objects > 10);
    /* a smaller cap is honoured from the next insert on */
    gh_cache_setup(CAP / 4, MAXOBJ / 4);
    CHECK_INT(put(mk((ospec_t){.path = "/shrink", .body = 10})), 0);
    CHECK(stats().used <= CAP / 4);
    /* everything accounted comes back out */
    reset();
    CHECK_INT(stats().used, 0);
    CHECK_INT(stats().objects, 0);
}

static void test_max_object(void)
{
    reset();
    gh_cobj_t *o = mk((ospec_t){.path = "/big"});
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    int r = 0;
    size_t total = 0;
    while (r == 0 && total <= MAXOBJ) {
        r = gh_cobj_append(o, buf, sizeof buf);
        if (r == 0)
            total += sizeof buf;
    }
    CHECK_INT(r, GH_ELIMIT);
    CHECK_INT(total, MAXOBJ);
    CHECK_INT(o->body_len, MAXOBJ);
    CHECK_INT(gh_cobj_append(o, buf, 1), GH_ELIMIT);
    CHECK_INT(gh_cobj_append(o, buf, 0), 0);
    /* exactly max_object is accepted */
    CHECK_INT(gh_cache_insert(o), 0);
    gh_cache_release(o);
    /* max_object lowered after the body was built: the insert refuses it */
    gh_cobj_t *b = mk((ospec_t){.path = "/big2", .body = 100000});
    CHECK(b != NULL);
    gh_cache_setup(CAP, 50000);
    CHECK_INT(gh_cache_insert(b), GH_ELIMIT);
    gh_cobj_free(b);
    CHECK(look((ospec_t){.path = "/big2"}, NULL, 0, NULL) == NULL);
    /* an object larger than the whole cap (a huge head) is refused */
    gh_cache_setup(16384, MAXOBJ);
    char *head = malloc(20000);
    memset(head, 'a', 19997);
    memcpy(head, "X: ", 3);
    memcpy(head + 19997, "\r\n", 3);
    gh_cobj_t *hh = mk((ospec_t){.path = "/hugehead", .head = head});
    free(head);
    CHECK_INT(gh_cache_insert(hh), GH_ELIMIT);
    gh_cobj_free(hh);
    /* a resize takes effect at the next insert */
    CHECK_INT(put(mk((ospec_t){.path = "/after", .body = 10})), 0);
    CHECK(stats().used <= 16384);
    reset();
}

/* The object just inserted is there for the next lookup, whatever its shard holds. */
static void test_fresh_insert_kept(void)
{
    reset();
    char p[32];
    int lost = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(p, sizeof p, "/large%d", i);
        gh_cobj_t *o = mk((ospec_t){.path = p, .body = 200000});
        CHECK_INT(gh_cache_insert(o), 0);
        if (!o->linked) /* observed through the inserter's reference: no hit counted */
            lost++;
        gh_cache_release(o);
        CHECK(stats().used <= CAP);
    }
    if (lost)
        fprintf(stderr, "test_fresh_insert_kept: %d of 40 large objects (200 KB, cap 1 MB) evicted by "
                        "their own insert\n", lost);
    CHECK_INT(lost, 0);
    reset();
}

/* ---- S3-FIFO ---- */

#define SCAN_BODY 1000
#define SCAN_CAP_OBJS 100
#define HOT 20
#define SCAN 1000

/* Size of one object of the scan tests (all the same: fixed-width keys). */
static uint64_t scan_obj_size(void)
{
    gh_cobj_t *o = mk((ospec_t){.path = "/probe000000", .body = SCAN_BODY, .khash = kh_in(3, 999999)});
    CHECK_INT(gh_cache_insert(o), 0);
    uint64_t sz = o->size;
    gh_cache_remove(o);
    gh_cache_release(o);
    return sz;
}

/* Plain FIFO of `cap` objects over the same sequence: how many hot objects survive. */
static int fifo_hot_survivors(int hot, int scan, int cap)
{
    /* insertion order: hot 0..hot-1, then scan; FIFO keeps the last cap inserted */
    int total = hot + scan, kept = 0;
    for (int i = 0; i < hot; i++)
        if (i >= total - cap)
            kept++;
    return kept;
}

static void test_s3fifo_scan_resistance_one_shard(void)
{
    reset();
    uint64_t sz = scan_obj_size();
    gh_cache_setup(sz * SCAN_CAP_OBJS + sz / 2, MAXOBJ);
    char p[32];
    ospec_t hot[HOT];
    char hot_paths[HOT][32];
    for (int i = 0; i < HOT; i++) {
        snprintf(hot_paths[i], sizeof hot_paths[i], "/hot%08d", i);
        hot[i] = (ospec_t){.path = hot_paths[i], .body = SCAN_BODY, .khash = kh_in(3, (uint64_t)i)};
        CHECK_INT(put(mk(hot[i])), 0);
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < HOT; i++) {
            gh_cobj_t *r = look(hot[i], NULL, 0, NULL);
            CHECK(r != NULL);
            gh_cache_release(r);
        }
    gh_cobj_t *holders[HOT];
    for (int i = 0; i < HOT; i++) /* observe without hitting: hold a reference */
        holders[i] = look(hot[i], NULL, 0, NULL);
    for (int i = 0; i < SCAN; i++) {
        snprintf(p, sizeof p, "/scan%07d", i);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = SCAN_BODY, .khash = kh_in(3, (uint64_t)(1000 + i))})), 0);
    }
    int kept = 0;
    for (int i = 0; i < HOT; i++) {
        if (holders[i] && holders[i]->linked)
            kept++;
        gh_cache_release(holders[i]);
    }
    int fifo = fifo_hot_survivors(HOT, SCAN, SCAN_CAP_OBJS);
    gh_cache_stats_t st = stats();
    CHECK(st.objects <= SCAN_CAP_OBJS);
    CHECK(st.objects >= SCAN_CAP_OBJS - 2);
    CHECK_INT(fifo, 0);      /* FIFO (and LRU: the hot set was not touched during the scan) keeps none */
    CHECK(kept >= HOT - 1); /* S3-FIFO keeps the hot set */
    if (kept < HOT - 1)
        fprintf(stderr, "scan one shard: S3-FIFO kept %d/%d hot, FIFO %d\n", kept, HOT, fifo);
    reset();
}

/* The same over all shards with real key hashes. */
static void test_s3fifo_scan_resistance_all_shards(void)
{
    reset();
    enum { NHOT = 60, NSCAN = 4000 };
    char p[32];
    gh_cobj_t *holders[NHOT];
    for (int i = 0; i < NHOT; i++) {
        snprintf(p, sizeof p, "/hotx%d", i);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = 2000})), 0);
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NHOT; i++) {
            snprintf(p, sizeof p, "/hotx%d", i);
            gh_cobj_t *r = look((ospec_t){.path = p}, NULL, 0, NULL);
            CHECK(r != NULL);
            if (k == 0)
                gh_cache_release(r);
            else
                holders[i] = r;
        }
    for (int i = 0; i < NSCAN; i++) {
        snprintf(p, sizeof p, "/scanx%d", i);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = 2000})), 0);
    }
    int kept = 0;
    for (int i = 0; i < NHOT; i++) {
        if (holders[i] && holders[i]->linked)
            kept++;
        gh_cache_release(holders[i]);
    }
    /* ~430 objects fit; FIFO over 4060 inserts keeps none of the first 60 */
    CHECK_INT(fifo_hot_survivors(NHOT, NSCAN, 430), 0);
    CHECK(kept >= NHOT * 9 / 10);
    if (kept < NHOT * 9 / 10)
        fprintf(stderr, "scan all shards: S3-FIFO kept %d/%d hot\n", kept, NHOT);
    reset();
}

static void test_s3fifo_ghost_readmission(void)
{
    reset();
    uint64_t sz = scan_obj_size();
    gh_cache_setup(sz * SCAN_CAP_OBJS + sz / 2, MAXOBJ);
    char p[32];
    int n = 0;
    ospec_t a = {.path = "/ghost00000a", .body = SCAN_BODY, .khash = kh_in(5, 77777)};
    gh_cobj_t *o = mk(a);
    CHECK_INT(gh_cache_insert(o), 0);
    CHECK_INT(o->queue, 0); /* new: the small queue */
    /* push it out unused */
    while (o->linked && n < 1000) {
        snprintf(p, sizeof p, "/gscan%06d", n);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = SCAN_BODY, .khash = kh_in(5, (uint64_t)n)})), 0);
        n++;
    }
    CHECK(!o->linked);
    CHECK(n < 2 * SCAN_CAP_OBJS);
    gh_cache_release(o);
    /* back again: the ghost sends it to main; a newcomer goes to small */
    gh_cobj_t *again = mk(a);
    CHECK_INT(gh_cache_insert(again), 0);
    CHECK_INT(again->queue, 1);
    gh_cobj_t *fresh = mk((ospec_t){.path = "/newcomer000", .body = SCAN_BODY, .khash = kh_in(5, 88888)});
    CHECK_INT(gh_cache_insert(fresh), 0);
    CHECK_INT(fresh->queue, 0);
    /* a scan of twice the cap: the newcomer leaves, the re-admitted one stays */
    for (int i = 0; i < 2 * SCAN_CAP_OBJS; i++, n++) {
        snprintf(p, sizeof p, "/gscan%06d", n);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = SCAN_BODY, .khash = kh_in(5, (uint64_t)n)})), 0);
    }
    CHECK(again->linked);
    CHECK(!fresh->linked);
    /* the ghost entry was consumed: a second re-insert of an evicted newcomer key
     * remembers it, and a never-seen key does not */
    gh_cache_release(again);
    gh_cache_release(fresh);
    gh_cobj_t *fresh2 = mk((ospec_t){.path = "/newcomer000", .body = SCAN_BODY, .khash = kh_in(5, 88888)});
    CHECK_INT(gh_cache_insert(fresh2), 0);
    CHECK_INT(fresh2->queue, 1);
    gh_cache_release(fresh2);
    reset();
}

/* An object hit while in small is promoted to main when it reaches the tail. */
static void test_s3fifo_promotion(void)
{
    reset();
    uint64_t sz = scan_obj_size();
    gh_cache_setup(sz * SCAN_CAP_OBJS + sz / 2, MAXOBJ);
    char p[32];
    ospec_t a = {.path = "/promote0000", .body = SCAN_BODY, .khash = kh_in(7, 55555)};
    gh_cobj_t *o = mk(a);
    CHECK_INT(gh_cache_insert(o), 0);
    gh_cobj_t *r = look(a, NULL, 0, NULL);
    CHECK(r == o);
    gh_cache_release(r);
    CHECK_INT(o->freq, 1);
    for (int i = 0; i < 3 * SCAN_CAP_OBJS; i++) {
        snprintf(p, sizeof p, "/pscan%06d", i);
        CHECK_INT(put(mk((ospec_t){.path = p, .body = SCAN_BODY, .khash = kh_in(7, (uint64_t)i)})), 0);
    }
    CHECK(o->linked);
    CHECK_INT(o->queue, 1);
    /* freq saturates at 3 */
    for (int i = 0; i < 10; i++) {
        r = look(a, NULL, 0, NULL);
        gh_cache_release(r);
    }
    CHECK_INT(o->freq, 3);
    gh_cache_release(o);
    reset();
}

/* ---- purge ---- */

static void purge_fixture(const char *tenant)
{
    static const struct {
        const char *host, *path, *tags;
        size_t tags_len;
    } objs[] = {
        {"a.example", "/x?q=1", "a\0b", 4},   {"a.example", "/xy", "b", 2},      {"a.example", "/x/z", "ab", 3},
        {"a.example", "/y", NULL, 0},         {"b.example", "/x?q=1", "c\0a", 4}, {"a.example", "/x", NULL, 0},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(objs); i++)
        CHECK_INT(put(mk((ospec_t){.tenant = tenant, .host = objs[i].host, .path = objs[i].path,
                                   .tags = objs[i].tags, .tags_len = objs[i].tags_len, .body = 10})),
                  0);
}

static int has(const char *tenant, const char *host, const char *path)
{
    gh_cobj_t *r = look((ospec_t){.tenant = tenant, .host = host, .path = path}, NULL, 0, NULL);
    gh_cache_release(r);
    return r != NULL;
}

static void test_purge_tag(void)
{
    reset();
    purge_fixture("t");
    uint64_t p0 = stats().purged;
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR("b"), 0), 2);
    CHECK(!has("t", "a.example", "/x?q=1"));
    CHECK(!has("t", "a.example", "/xy"));
    CHECK(has("t", "a.example", "/x/z")); /* "ab" is not "b" nor "a" */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR("a"), 0), 1); /* b.example's */
    CHECK(!has("t", "b.example", "/x?q=1"));
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR("nope"), 0), 0);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR("A"), 0), 0); /* tags are exact */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR(""), 0), 0);
    CHECK_INT(stats().objects, 3);
    CHECK_INT(stats().purged - p0, 3);
}

static void test_purge_url(void)
{
    reset();
    purge_fixture("t");
    /* two variants of one URL both go */
    CHECK_INT(put(mk((ospec_t){.path = "/x?q=1", .vary = "x", .vvals = "1a\n"})), 0);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/x?q=1"), 0), 2);
    CHECK(!has("t", "a.example", "/x?q=1"));
    CHECK(has("t", "b.example", "/x?q=1"));
    CHECK(has("t", "a.example", "/x"));
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/x?q=2"), 0), 0);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("A.EXAMPLE", "/x"), 0), 0); /* keys are lowercased before */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/x?"), 0), 1); /* an empty query is none */
    CHECK(!has("t", "a.example", "/x"));
    CHECK(has("t", "a.example", "/xy"));
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/X/z"), 0), 0); /* path case */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.exampl", "/x/z"), 0), 0);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, GH_STR(""), 0), 0);
}

static void test_purge_prefix(void)
{
    reset();
    purge_fixture("t");
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_PREFIX, GH_STR("a.example/x"), 0), 4);
    CHECK(!has("t", "a.example", "/x?q=1"));
    CHECK(!has("t", "a.example", "/xy"));
    CHECK(!has("t", "a.example", "/x/z"));
    CHECK(!has("t", "a.example", "/x"));
    CHECK(has("t", "a.example", "/y"));
    CHECK(has("t", "b.example", "/x?q=1"));
    /* a host alone is the whole host; a longer host name is another host */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_PREFIX, GH_STR("b.example.org/"), 0), 0);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_PREFIX, GH_STR("b.exampl"), 0), 0);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_PREFIX, GH_STR("B.example"), 0), 1);
    CHECK_INT(stats().objects, 1);
}

static void test_purge_all_and_tenants(void)
{
    reset();
    purge_fixture("t");
    purge_fixture("u");
    purge_fixture("tt");
    CHECK_INT(stats().objects, 18);
    /* every kind stays within its tenant */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR("b"), 0), 2);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/y"), 0), 1);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_PREFIX, GH_STR("a.example/x/"), 0), 1);
    CHECK_INT(stats().objects, 14);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_ALL, GH_STR("ignored"), 0), 2);
    CHECK_INT(stats().objects, 12);
    CHECK(has("u", "a.example", "/xy"));
    CHECK(has("tt", "a.example", "/y"));
    CHECK_INT(gh_cache_purge(GH_STR(""), GH_PURGE_ALL, GH_STR(""), 0), 0);
    CHECK_INT(gh_cache_purge(GH_STR("u"), GH_PURGE_ALL, GH_STR(""), 0), 6);
    CHECK_INT(gh_cache_purge(GH_STR("tt"), GH_PURGE_ALL, GH_STR(""), 0), 6);
    CHECK_INT(stats().objects, 0);
    CHECK_INT(stats().used, 0);
}

static void test_purge_soft(void)
{
    reset();
    purge_fixture("t");
    purge_fixture("u");
    uint64_t used = stats().used;
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_TAG, GH_STR("a"), 1), 2);
    CHECK_INT(stats().objects, 12);
    CHECK_INT(stats().used, used);
    gh_cobj_t *r = look((ospec_t){.path = "/x?q=1"}, NULL, 0, NULL);
    CHECK(r && r->soft == 1);
    gh_cache_release(r);
    r = look((ospec_t){.path = "/xy"}, NULL, 0, NULL);
    CHECK(r && r->soft == 0);
    gh_cache_release(r);
    r = look((ospec_t){.tenant = "u", .path = "/x?q=1"}, NULL, 0, NULL); /* other tenant untouched */
    CHECK(r && r->soft == 0);
    gh_cache_release(r);
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_ALL, GH_STR(""), 1), 6);
    r = look((ospec_t){.path = "/y"}, NULL, 0, NULL);
    CHECK(r && r->soft == 1);
    gh_cache_release(r);
    CHECK_INT(stats().objects, 12);
    /* a hard purge still removes soft-purged objects */
    CHECK_INT(gh_cache_purge(GH_STR("t"), GH_PURGE_URL, U("a.example", "/y"), 0), 1);
    CHECK_INT(stats().objects, 11);
}

/* ---- invalidation ---- */

static void test_invalidate(void)
{
    reset();
    ospec_t a = {.path = "/inv?x=1"}, b = {.path = "/inv?x=2"}, c = {.path = "/inv2"},
            d = {.tenant = "u", .path = "/inv?x=1"};
    CHECK_INT(put(mk(a)), 0);
    CHECK_INT(put(mk(b)), 0);
    CHECK_INT(put(mk(c)), 0);
    CHECK_INT(put(mk(d)), 0);
    uint64_t started = gh_cache_seq(); /* a fetch that started before the invalidation */
    gh_cache_invalidate(GH_STR("t"), GH_STR("A.EXAMPLE"), GH_STR("/inv"));
    int uf = 1;
    CHECK(look(a, NULL, 0, &uf) == NULL); /* every query of the path */
    CHECK_INT(uf, 0);
    CHECK(look(b, NULL, 0, NULL) == NULL);
    CHECK(has("t", "a.example", "/inv2")); /* another path */
    CHECK(has("u", "a.example", "/inv?x=1")); /* another tenant */
    CHECK_INT(stats().objects, 2); /* the invalid ones were dropped when met */
    /* stored by the fetch that started before: still invalid */
    ospec_t late = a;
    late.seq = started;
    CHECK_INT(put(mk(late)), 0);
    CHECK(look(a, NULL, 0, NULL) == NULL);
    /* a fetch started after the invalidation is returned */
    CHECK_INT(put(mk(a)), 0);
    gh_cobj_t *r = look(a, NULL, 0, &uf);
    CHECK(r != NULL);
    CHECK_INT(uf, 1);
    gh_cache_release(r);
    /* a newer fetch of a variant meets an invalid older variant: it takes its place */
    ospec_t v1 = {.path = "/invv", .vary = "x", .vvals = "1a\n"}, v2 = v1;
    v2.vvals = "1b\n";
    CHECK_INT(put(mk(v1)), 0);
    gh_cache_invalidate(GH_STR("t"), GH_STR("a.example"), GH_STR("/invv"));
    uint64_t objs = stats().objects;
    CHECK_INT(put(mk(v2)), 0);
    CHECK_INT(stats().objects, objs); /* v1 removed, v2 added */
    gh_h1_header_t ha[] = {H("x", "a")};
    CHECK(look(v1, ha, 1, NULL) == NULL);
}

/* ---- coalescing ---- */

static uint32_t woken[16];
static int nwoken;
static void waker(uint32_t w)
{
    if (nwoken < 16)
        woken[nwoken] = w;
    nwoken++;
}

static void test_coalescing(void)
{
    reset();
    gh_cache_set_waker(waker);
    nwoken = 0;
    gh_str_t key = GH_STR("t\nhttp\na.example\n/c\n\n");
    uint64_t kh = gh_cache_hash(key.p, key.n);
    int leader = -1;
    gh_cfetch_t *f = gh_cache_fetch_join(kh, key, 3, &leader);
    CHECK(f != NULL);
    CHECK_INT(leader, 1);
    CHECK_INT(gh_cache_fetch_is_done(f), 0);
    gh_cfetch_t *w1 = gh_cache_fetch_join(kh, key, 7, &leader);
    CHECK(w1 == f);
    CHECK_INT(leader, 0);
    gh_cfetch_t *w2 = gh_cache_fetch_join(kh, key, 200, &leader);
    CHECK(w2 == f);
    CHECK_INT(leader, 0);
    /* another key (same hash even): its own marker */
    gh_cfetch_t *g = gh_cache_fetch_join(kh, GH_STR("t\nhttp\na.example\n/d\n\n"), 7, &leader);
    CHECK(g != NULL && g != f);
    CHECK_INT(leader, 1);
    CHECK_INT(nwoken, 0);
    gh_cache_fetch_done(f);
    CHECK_INT(nwoken, 2);
    CHECK(woken[0] == 7 && woken[1] == 200);
    CHECK_INT(gh_cache_fetch_is_done(w1), 1);
    /* done: a new miss of the key leads a new fetch */
    gh_cfetch_t *f2 = gh_cache_fetch_join(kh, key, 9, &leader);
    CHECK(f2 != NULL && leader == 1);
    gh_cache_fetch_put(w1);
    CHECK_INT(gh_cache_fetch_is_done(w2), 1);
    gh_cache_fetch_put(w2); /* the last reference: freed (ASan/LSan) */
    /* a waiter that gives up before the leader is done */
    gh_cfetch_t *w3 = gh_cache_fetch_join(kh, key, 11, &leader);
    CHECK(w3 == f2 && leader == 0);
    gh_cache_fetch_put(w3);
    nwoken = 0;
    gh_cache_fetch_done(f2); /* gave up, still woken (harmless): a bit per worker */
    CHECK(nwoken <= 1);
    /* the same worker waiting twice is woken once */
    gh_cfetch_t *f3 = gh_cache_fetch_join(kh, key, 1, &leader);
    gh_cfetch_t *a1 = gh_cache_fetch_join(kh, key, 5, &leader), *a2 = gh_cache_fetch_join(kh, key, 5, &leader);
    CHECK(a1 == f3 && a2 == f3);
    nwoken = 0;
    gh_cache_fetch_done(f3);
    CHECK_INT(nwoken, 1);
    gh_cache_fetch_put(a1);
    gh_cache_fetch_put(a2);
    /* the leader done with no waiter frees at once */
    nwoken = 0;
    gh_cache_fetch_done(g);
    CHECK_INT(nwoken, 0);
    gh_cache_set_waker(NULL);
}

/* ---- selecting header values ---- */

static int vv(const char *vary, const gh_h1_header_t *h, size_t n, char *out, size_t cap)
{
    return gh_cache_vary_values(S(vary), h, n, out, cap);
}

#define CHECK_VV(vary, hs, want)                                            \
    do {                                                                    \
        char o_[256];                                                       \
        int l_ = vv((vary), (hs), GH_ARRAY_LEN(hs), o_, sizeof o_);         \
        CHECK(l_ >= 0);                                                     \
        CHECK_STR(gh_str(o_, l_ < 0 ? 0 : (size_t)l_), (want));             \
    } while (0)

static void test_vary_values(void)
{
    gh_h1_header_t ows[] = {H("Accept-Encoding", "gzip ,  br\t,deflate")};
    CHECK_VV("accept-encoding", ows, "1gzip,br,deflate\n");
    gh_h1_header_t lines[] = {H("accept-encoding", "gzip"), H("X-Other", "1"), H("ACCEPT-ENCODING", "br")};
    CHECK_VV("accept-encoding", lines, "1gzip,br\n");
    gh_h1_header_t one[] = {H("Accept-Encoding", "gzip, br")};
    CHECK_VV("accept-encoding", one, "1gzip,br\n"); /* same as two lines */
    gh_h1_header_t empty[] = {H("Accept-Encoding", "")};
    CHECK_VV("accept-encoding", empty, "1\n");
    gh_h1_header_t none[] = {H("X-Other", "gzip")};
    CHECK_VV("accept-encoding", none, "0\n"); /* absent differs from empty */
    gh_h1_header_t lang[] = {H("Accept-Language", "EN-us, Fr;q=0.5"), H("X-Device", "Mobile  Phone")};
    CHECK_VV("accept-language,x-device", lang, "1en-us,fr;q=0.5\n1Mobile Phone\n");
    CHECK_VV("x-device,accept-language", lang, "1Mobile Phone\n1en-us,fr;q=0.5\n");
    CHECK_VV("x-device,missing", lang, "1Mobile Phone\n0\n");
    gh_h1_header_t acc[] = {H("Accept", "Text/HTML")};
    CHECK_VV("accept", acc, "1text/html\n");
    gh_h1_header_t inner[] = {H("X-A", "a  \t b ,c")};
    CHECK_VV("x-a", inner, "1a b,c\n");
    char out[64];
    CHECK_INT(vv("", one, 1, out, sizeof out), 0);
    /* the cap: -1 when it does not fit, never a byte past cap */
    int l = vv("accept-encoding", one, 1, out, sizeof out);
    CHECK_INT(l, 9);
    for (int cap = 0; cap <= l; cap++) {
        memset(out, '#', sizeof out);
        int r = vv("accept-encoding", one, 1, out, (size_t)cap);
        CHECK_INT(r, cap == l ? l : -1);
        for (size_t i = (size_t)cap; i < sizeof out; i++)
            if (out[i] != '#') {
                CHECK(!"byte written past cap");
                break;
            }
    }
}

/* ---- threads: accounting balances, nothing freed early ---- */

typedef struct {
    int id;
    int errors;
} thr_t;

static void *stress(void *arg)
{
    thr_t *t = arg;
    unsigned seed = (unsigned)t->id * 7919u + 1;
    char p[32];
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        snprintf(p, sizeof p, "/st%u", r % 300);
        ospec_t sp = {.path = p, .tenant = (r & 1) ? "t" : "u", .body = (r >> 9) % 3000,
                      .tags = "tg", .tags_len = 3};
        switch (r % 10) {
        case 0: case 1: case 2: {
            gh_cobj_t *o = mk(sp);
            if (!o || put(o) != 0)
                t->errors++;
            break;
        }
        case 9:
            if (r % 97 == 0)
                gh_cache_purge(S(sp.tenant), GH_PURGE_TAG, GH_STR("tg"), (r >> 4) & 1);
            else if (r % 89 == 0)
                gh_cache_invalidate(S(sp.tenant), GH_STR("a.example"), S(p));
            else if (r % 83 == 0)
                gh_cache_purge(S(sp.tenant), GH_PURGE_PREFIX, GH_STR("a.example/st1"), 0);
            break;
        default: {
            gh_cobj_t *o = look(sp, NULL, 0, NULL);
            if (o) {
                if (o->tenant_len != 1 || o->path_len != strlen(p) || memcmp(o->path, p, o->path_len) ||
                    !body_ok(o, o->body_len))
                    t->errors++;
                gh_cache_release(o);
            }
        }
        }
    }
    return NULL;
}

static void test_threads(void)
{
    reset();
    gh_cache_setup(256 * 1024, MAXOBJ);
    pthread_t th[4];
    thr_t ts[4];
    for (int i = 0; i < 4; i++) {
        ts[i] = (thr_t){i, 0};
        pthread_create(&th[i], NULL, stress, &ts[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(ts[i].errors, 0);
    }
    /* one more insert settles any overshoot of racing inserts */
    CHECK_INT(put(mk((ospec_t){.path = "/settle", .body = 1})), 0);
    CHECK(stats().used <= 256 * 1024);
    reset();
    CHECK_INT(stats().objects, 0);
    CHECK_INT(stats().used, 0);
}

/* ======== http.c ======== */

static gh_conf_tenant_t tenant = {.name = "acme"};
static gh_conf_cache_t ccfg;
static gh_conf_route_t route = {.tenant = &tenant, .cache = &ccfg};
static gh_h1_header_t hbuf[128];

static int parse_req(const char *raw, gh_h1_request_t *m)
{
    gh_h1_limits_t lim = {8192, 65536, 128};
    int st = 0;
    int r = gh_h1_parse_request(raw, strlen(raw), &lim, m, hbuf, 128, &st);
    if (r <= 0)
        fprintf(stderr, "parse_req %d (%d): %s\n", r, st, raw);
    return r;
}

static void cfg_default(void)
{
    memset(&ccfg, 0, sizeof ccfg);
    ccfg.key_host = 1;
    ccfg.query = GH_CQ_SORTED;
}

/* The key of a request to a.example with this target and extra header lines. */
static int key_for(const char *target, const char *extra, int https, char *out, size_t cap)
{
    char raw[4096];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: A.Example:8080\r\n%s\r\n", target, extra ? extra : "");
    gh_h1_request_t m;
    if (parse_req(raw, &m) <= 0)
        return -2;
    return gh_cache_key(&route, &m, https, out, cap);
}

#define CHECK_KEY(target, extra, https, want)                      \
    do {                                                           \
        char k_[2048];                                             \
        int l_ = key_for((target), (extra), (https), k_, sizeof k_); \
        CHECK(l_ >= 0);                                            \
        CHECK_STR(gh_str(k_, l_ < 0 ? 0 : (size_t)l_), (want));     \
    } while (0)

static void test_key_basic(void)
{
    cfg_default();
    CHECK_KEY("/p", NULL, 0, "acme\nhttp\na.example:8080\n/p\n\n");
    CHECK_KEY("/p", NULL, 1, "acme\nhttps\na.example:8080\n/p\n\n");
    CHECK_KEY("/P?", NULL, 0, "acme\nhttp\na.example:8080\n/P\n\n"); /* path case kept */
    ccfg.key_host = 0;
    CHECK_KEY("/p?a=1", NULL, 0, "acme\nhttp\n\n/p\na=1\n");
    cfg_default();
    /* absolute-form: the authority is the host */
    char k[256];
    gh_h1_request_t m;
    if (parse_req("GET http://B.example/z?y=1 HTTP/1.1\r\nHost: B.example\r\n\r\n", &m) > 0) {
        int l = gh_cache_key(&route, &m, 0, k, sizeof k);
        CHECK_STR(gh_str(k, l < 0 ? 0 : (size_t)l), "acme\nhttp\nb.example\n/z\ny=1\n");
    }
}

static void test_key_query(void)
{
    cfg_default();
    /* sorted by name, stably: repeated names keep their order */
    CHECK_KEY("/p?b=2&a=1&c=3&a=0", NULL, 0, "acme\nhttp\na.example:8080\n/p\na=1&a=0&b=2&c=3\n");
    CHECK_KEY("/p?c=3&a=0&b=2&a=1", NULL, 0, "acme\nhttp\na.example:8080\n/p\na=0&a=1&b=2&c=3\n");
    CHECK_KEY("/p?ab=1&a=2&a", NULL, 0, "acme\nhttp\na.example:8080\n/p\na=2&a&ab=1\n");
    CHECK_KEY("/p?a=1&&b=2&", NULL, 0, "acme\nhttp\na.example:8080\n/p\na=1&b=2\n"); /* empty dropped */
    CHECK_KEY("/p?B=1&a=1", NULL, 0, "acme\nhttp\na.example:8080\n/p\nB=1&a=1\n");   /* bytewise */
    ccfg.query = GH_CQ_AS_IS;
    CHECK_KEY("/p?b=2&a=1&&c", NULL, 0, "acme\nhttp\na.example:8080\n/p\nb=2&a=1&c\n");
    ccfg.query = GH_CQ_IGNORE;
    CHECK_KEY("/p?b=2&a=1", NULL, 0, "acme\nhttp\na.example:8080\n/p\n\n");
    /* keep: only these (prefix patterns) */
    cfg_default();
    char *keep[] = {"id", "v_*"};
    ccfg.query_keep = keep;
    ccfg.nquery_keep = 2;
    CHECK_KEY("/p?v_b=3&utm_source=x&id=1&vx=2&v_=0&idx=9", NULL, 0,
              "acme\nhttp\na.example:8080\n/p\nid=1&v_=0&v_b=3\n");
    CHECK_KEY("/p?utm=1", NULL, 0, "acme\nhttp\na.example:8080\n/p\n\n");
    /* drop: these removed */
    cfg_default();
    char *drop[] = {"utm_*", "fbclid"};
    ccfg.query_drop = drop;
    ccfg.nquery_drop = 2;
    CHECK_KEY("/p?utm_source=x&b=1&utm=2&fbclid=3&fbclidx=4&utm_=5", NULL, 0,
              "acme\nhttp\na.example:8080\n/p\nb=1&fbclidx=4&utm=2\n");
    /* a pattern "*" keeps everything */
    cfg_default();
    char *all[] = {"*"};
    ccfg.query_keep = all;
    ccfg.nquery_keep = 1;
    CHECK_KEY("/p?z=1&a=2", NULL, 0, "acme\nhttp\na.example:8080\n/p\na=2&z=1\n");
    cfg_default();
}

static void test_key_headers_cookies(void)
{
    cfg_default();
    char *hs[] = {"X-Device", "Accept-Language"};
    char *cs[] = {"lang", "sid"};
    ccfg.key_headers = hs;
    ccfg.nkey_headers = 2;
    ccfg.key_cookies = cs;
    ccfg.nkey_cookies = 2;
    const char *base = "acme\nhttp\na.example:8080\n/p\n\n";
    char want[512];
    snprintf(want, sizeof want, "%sh:mobile\nh:\nc:=fr\nc:\n", base);
    CHECK_KEY("/p", "x-device: mobile\r\nCookie: a=1; lang=fr\r\n", 0, want);
    snprintf(want, sizeof want, "%sh:a,b\nh:de\nc:=\nc:=\"q\"\n", base);
    CHECK_KEY("/p", "X-Device: a\r\nAccept-Language: de\r\nX-DEVICE: b\r\nCookie: lang=; sid=\"\"q\"\"\r\n", 0,
              want);
    snprintf(want, sizeof want, "%sh:\nh:\nc:\nc:\n", base);
    CHECK_KEY("/p", NULL, 0, want);
    /* cookie names are case-sensitive; the value of the first match counts */
    snprintf(want, sizeof want, "%sh:\nh:\nc:=en\nc:\n", base);
    CHECK_KEY("/p", "Cookie: LANG=xx; lang=en\r\nCookie: lang=de\r\n", 0, want);
    /* a header value with a comma and two lines of one value give the same key (one field) */
    char k1[512], k2[512];
    int l1 = key_for("/p", "X-Device: a,b\r\n", 0, k1, sizeof k1);
    int l2 = key_for("/p", "X-Device: a\r\nX-Device: b\r\n", 0, k2, sizeof k2);
    CHECK(l1 > 0 && l1 == l2 && !memcmp(k1, k2, (size_t)l1));
    cfg_default();
}

static void test_key_limits(void)
{
    cfg_default();
    char k[256];
    int l = key_for("/p?a=1", NULL, 0, k, sizeof k);
    CHECK(l > 0);
    for (int cap = l - 3; cap <= l + 1; cap++) {
        memset(k, '#', sizeof k);
        int r = key_for("/p?a=1", NULL, 0, k, (size_t)cap);
        CHECK_INT(r, cap >= l ? l : -1);
        for (int i = cap; i < (int)sizeof k; i++)
            if (k[i] != '#') {
                CHECK(!"key written past cap");
                break;
            }
    }
    /* longer than GH_CACHE_KEY_MAX */
    char *target = malloc(9000), *big = malloc(GH_CACHE_KEY_MAX);
    target[0] = '/';
    memset(target + 1, 'x', 8990);
    target[8991] = 0;
    char raw[9100];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
    gh_h1_request_t m;
    gh_h1_limits_t lim = {16384, 65536, 128};
    int st;
    if (gh_h1_parse_request(raw, strlen(raw), &lim, &m, hbuf, 128, &st) > 0)
        CHECK_INT(gh_cache_key(&route, &m, 0, big, GH_CACHE_KEY_MAX), -1);
    else
        CHECK(!"long request did not parse");
    /* more parameters than the key keeps apart: not cached (-1), not a lossy key */
    char *q = target;
    size_t n = 0;
    n += (size_t)sprintf(q + n, "/p?");
    for (int i = 0; i < 130; i++)
        n += (size_t)sprintf(q + n, "p%d=1&", i);
    q[n - 1] = 0;
    CHECK_INT(key_for(q, NULL, 0, big, GH_CACHE_KEY_MAX), -1);
    /* ... unless the route ignores the query, or drops them */
    ccfg.query = GH_CQ_IGNORE;
    CHECK(key_for(q, NULL, 0, big, GH_CACHE_KEY_MAX) > 0);
    cfg_default();
    free(target);
    free(big);
}

/* ---- stored head ---- */

static gh_cc_t cc_of(const char *s)
{
    gh_cc_t cc;
    gh_cc_init(&cc);
    gh_cc_parse(&cc, S(s));
    return cc;
}

static void test_stored_head(void)
{
    gh_h1_header_t h[] = {
        H("Content-Type", "text/html"),
        H("Connection", "close, X-Hop"),
        H("Keep-Alive", "timeout=5"),
        H("Transfer-Encoding", "chunked"),
        H("Content-Length", "5"),
        H("Age", "3"),
        H("X-Hop", "1"),
        H("Set-Cookie", "a=b"),
        H("Cache-Control", "private=\"x-user\", max-age=60"),
        H("X-User", "bob"),
        H("TE", "trailers"),
        H("Trailer", "X-T"),
        H("Upgrade", "h2c"),
        H("Proxy-Connection", "keep-alive"),
        H("Proxy-Authenticate", "Basic"),
        H("ETag", "\"x\""),
        H("x-after", "v"),
    };
    gh_cc_t cc = cc_of(h[8].value.p);
    CHECK(cc.flags & GH_CC_PRIVATE_FIELDS);
    char out[1024], d[30];
    gh_http_date_fmt(T0, d);
    char want[1024];
    snprintf(want, sizeof want,
             "Content-Type: text/html\r\nCache-Control: private=\"x-user\", max-age=60\r\nETag: \"x\"\r\n"
             "x-after: v\r\nDate: %s\r\n",
             d);
    int l = gh_cache_stored_head(h, GH_ARRAY_LEN(h), &cc, 1, T0, out, sizeof out);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l), want);
    /* without strip, Set-Cookie stays */
    snprintf(want, sizeof want,
             "Content-Type: text/html\r\nSet-Cookie: a=b\r\nCache-Control: private=\"x-user\", max-age=60\r\n"
             "ETag: \"x\"\r\nx-after: v\r\nDate: %s\r\n",
             d);
    l = gh_cache_stored_head(h, GH_ARRAY_LEN(h), &cc, 0, T0, out, sizeof out);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l), want);
    /* the origin's Date is kept, none added; no private list: X-User stays */
    gh_h1_header_t h2[] = {H("date", "Sun, 06 Nov 1994 08:49:37 GMT"), H("X-User", "bob")};
    gh_cc_t plain = cc_of("max-age=1");
    l = gh_cache_stored_head(h2, 2, &plain, 1, T0, out, sizeof out);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l), "date: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-User: bob\r\n");
    /* private list of several, any case */
    gh_h1_header_t h3[] = {H("X-A", "1"), H("x-b", "2"), H("X-C", "3")};
    gh_cc_t pc = cc_of("private=\"X-a, X-B\"");
    l = gh_cache_stored_head(h3, 3, &pc, 1, T0, out, sizeof out);
    snprintf(want, sizeof want, "X-C: 3\r\nDate: %s\r\n", d);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l), want);
    /* Connection names case-insensitively, several Connection lines */
    gh_h1_header_t h4[] = {H("connection", "x-one"), H("X-One", "1"), H("Connection", "X-TWO"), H("x-two", "2"),
                           H("X-Three", "3")};
    l = gh_cache_stored_head(h4, 5, &plain, 1, T0, out, sizeof out);
    snprintf(want, sizeof want, "X-Three: 3\r\nDate: %s\r\n", d);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l), want);
    /* cap */
    int full = gh_cache_stored_head(h3, 3, &plain, 1, T0, out, sizeof out);
    CHECK(full > 0);
    memset(out, '#', sizeof out);
    CHECK_INT(gh_cache_stored_head(h3, 3, &plain, 1, T0, out, (size_t)full - 1), -1);
    CHECK(out[full - 1] == '#');
    CHECK_INT(gh_cache_stored_head(h3, 3, &plain, 1, T0, out, (size_t)full), full);
}

static void test_updated_head(void)
{
    const char *stored = "Content-Type: text/html\r\nETag: \"1\"\r\nDate: D1\r\nCache-Control: max-age=60\r\n"
                         "X-Multi: a\r\nX-Keep: k\r\n";
    gh_h1_header_t h[] = {H("ETag", "\"2\""),     H("date", "D2"),         H("Cache-Control", "max-age=120"),
                          H("Content-Length", "0"), H("Connection", "keep-alive"), H("Age", "5"),
                          H("X-Multi", "b"),      H("X-Multi", "c"),       H("Transfer-Encoding", "chunked")};
    char out[1024];
    int l = gh_cache_updated_head(S(stored), h, GH_ARRAY_LEN(h), out, sizeof out);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l),
              "Content-Type: text/html\r\nX-Keep: k\r\nETag: \"2\"\r\ndate: D2\r\nCache-Control: max-age=120\r\n"
              "X-Multi: b\r\nX-Multi: c\r\n");
    /* no fields: the stored lines unchanged */
    l = gh_cache_updated_head(S(stored), NULL, 0, out, sizeof out);
    CHECK_STR(gh_str(out, l < 0 ? 0 : (size_t)l), stored);
    /* cap */
    l = gh_cache_updated_head(S(stored), h, GH_ARRAY_LEN(h), out, sizeof out);
    CHECK_INT(gh_cache_updated_head(S(stored), h, GH_ARRAY_LEN(h), out, (size_t)l - 1), -1);
    CHECK_INT(gh_cache_updated_head(S(stored), h, GH_ARRAY_LEN(h), out, (size_t)l), l);
}

/* RFC 9111 3.2: fields the update must not add are not taken from the 304, and a stored
 * field the 304 repeats but may not change stays as stored. */
static void test_updated_head_exceptions(void)
{
    const char *stored = "Content-Type: text/html\r\nContent-Encoding: gzip\r\nETag: \"1\"\r\n";
    /* a 304 repeating Content-Encoding (as some origins do): the stored one is kept */
    gh_h1_header_t ce[] = {H("Content-Encoding", "gzip"), H("ETag", "\"1\"")};
    char out[1024];
    int l = gh_cache_updated_head(S(stored), ce, 2, out, sizeof out);
    gh_str_t got = gh_str(out, l < 0 ? 0 : (size_t)l);
    int has_ce = got.n && memmem(got.p, got.n, "Content-Encoding: gzip\r\n", 24) != NULL;
    if (!has_ce)
        fprintf(stderr, "updated head lost Content-Encoding: \"%.*s\"\n", (int)got.n, got.p);
    CHECK(has_ce);
    /* fields the 304's Connection names are hop-by-hop: not stored (3.1) */
    gh_h1_header_t conn[] = {H("Connection", "X-Hop"), H("X-Hop", "1"), H("ETag", "\"1\"")};
    l = gh_cache_updated_head(S(stored), conn, 3, out, sizeof out);
    got = gh_str(out, l < 0 ? 0 : (size_t)l);
    int has_hop = got.n && memmem(got.p, got.n, "X-Hop", 5) != NULL;
    if (has_hop)
        fprintf(stderr, "updated head took a Connection-listed field: \"%.*s\"\n", (int)got.n, got.p);
    CHECK(!has_hop);
}

/* ---- tags ---- */

static void test_tags(void)
{
    gh_h1_header_t h[] = {H("Cache-Tag", "a, b c"), H("X-Other", "zz"), H("surrogate-key", "d\t,e,,"),
                          H("CACHE-TAG", "")};
    char out[256];
    int l = gh_cache_tags(h, GH_ARRAY_LEN(h), out, sizeof out);
    CHECK_INT(l, 10);
    CHECK(l == 10 && !memcmp(out, "a\0b\0c\0d\0e\0", 10));
    gh_h1_header_t none[] = {H("X-Cache-Tag", "a"), H("Surrogate-Control", "b")};
    CHECK_INT(gh_cache_tags(none, 2, out, sizeof out), 0);
    /* at most GH_CACHE_MAX_TAGS */
    char many[2048];
    size_t n = 0;
    for (int i = 0; i < GH_CACHE_MAX_TAGS + 10; i++)
        n += (size_t)sprintf(many + n, "t%d ", i);
    gh_h1_header_t hm[] = {{GH_STR("Cache-Tag"), gh_str(many, n)}, H("Surrogate-Key", "more")};
    char big[4096];
    l = gh_cache_tags(hm, 2, big, sizeof big);
    int count = 0;
    for (int i = 0; i < l; i++)
        count += big[i] == 0;
    CHECK_INT(count, GH_CACHE_MAX_TAGS);
    CHECK(l > 0 && big[l - 1] == 0);
    /* a small buffer: whole tags only */
    memset(out, '#', sizeof out);
    l = gh_cache_tags(h, 1, out, 5);
    CHECK_INT(l, 4);
    CHECK(!memcmp(out, "a\0b\0", 4));
    CHECK(out[5] == '#');
}

/* ---- conditionals ---- */

static gh_cobj_t *obj_with_head(const char *head, int status)
{
    gh_cobj_parts_t parts = {.key = GH_STR("k"), .tenant = GH_STR("t"), .host = GH_STR("h"), .path = GH_STR("/"),
                             .head = S(head)};
    gh_cobj_t *o = gh_cobj_new(&parts);
    if (o)
        o->status = status;
    return o;
}

#define LM "Sun, 06 Nov 1994 08:49:37 GMT"
#define LM_LATER "Sun, 06 Nov 1994 08:49:38 GMT"
#define LM_EARLIER "Sun, 06 Nov 1994 08:49:36 GMT"

static int nm1(const gh_cobj_t *o, const char *name, const char *value)
{
    gh_h1_header_t h[] = {{S(name), S(value)}};
    return gh_cache_not_modified(h, 1, o);
}

static void test_not_modified(void)
{
    gh_cobj_t *o = obj_with_head("ETag: \"abc\"\r\nLast-Modified: " LM "\r\n", 200);
    gh_cobj_t *w = obj_with_head("etag: W/\"abc\"\r\n", 200);
    gh_cobj_t *bare = obj_with_head("Last-Modified: " LM "\r\n", 200);
    CHECK_STR(o->etag, "\"abc\"");
    CHECK_STR(o->last_modified, LM);
    CHECK_STR(w->etag, "W/\"abc\"");
    CHECK_INT(nm1(o, "If-None-Match", "\"abc\""), 1);
    CHECK_INT(nm1(o, "if-none-match", "W/\"abc\""), 1); /* weak comparison */
    CHECK_INT(nm1(w, "If-None-Match", "\"abc\""), 1);
    CHECK_INT(nm1(w, "If-None-Match", "W/\"abc\""), 1);
    CHECK_INT(nm1(o, "If-None-Match", "\"x\", \"abc\""), 1);
    CHECK_INT(nm1(o, "If-None-Match", "\"x\",W/\"abc\" "), 1);
    CHECK_INT(nm1(o, "If-None-Match", "\"x\""), 0);
    CHECK_INT(nm1(o, "If-None-Match", "\"ABC\""), 0);
    CHECK_INT(nm1(o, "If-None-Match", "abc"), 0); /* not a quoted tag */
    CHECK_INT(nm1(o, "If-None-Match", "\"ab"), 0);
    CHECK_INT(nm1(o, "If-None-Match", "\"a,bc\", \"abc\""), 1);
    CHECK_INT(nm1(o, "If-None-Match", "*"), 1);
    CHECK_INT(nm1(o, "If-None-Match", ""), 0);
    CHECK_INT(nm1(bare, "If-None-Match", "\"abc\""), 0);
    gh_h1_header_t two[] = {H("If-None-Match", "\"x\""), H("If-None-Match", "\"abc\"")};
    CHECK_INT(gh_cache_not_modified(two, 2, o), 1);
    /* If-Modified-Since, only without If-None-Match */
    CHECK_INT(nm1(o, "If-Modified-Since", LM), 1);
    CHECK_INT(nm1(o, "If-Modified-Since", LM_LATER), 1);
    CHECK_INT(nm1(o, "If-Modified-Since", LM_EARLIER), 0);
    CHECK_INT(nm1(o, "If-Modified-Since", "yesterday"), 0);
    CHECK_INT(nm1(w, "If-Modified-Since", LM_LATER), 0); /* no Last-Modified */
    CHECK_INT(nm1(bare, "If-Modified-Since", LM), 1);
    gh_h1_header_t both[] = {H("If-None-Match", "\"x\""), H("If-Modified-Since", LM_LATER)};
    CHECK_INT(gh_cache_not_modified(both, 2, o), 0);
    gh_h1_header_t both2[] = {H("If-Modified-Since", LM_EARLIER), H("If-None-Match", "\"abc\"")};
    CHECK_INT(gh_cache_not_modified(both2, 2, o), 1);
    CHECK_INT(gh_cache_not_modified(NULL, 0, o), 0);
    o->status = 404; /* IMS applies to a 200 only */
    CHECK_INT(nm1(o, "If-Modified-Since", LM_LATER), 0);
    gh_cobj_free(o);
    gh_cobj_free(w);
    gh_cobj_free(bare);
}

/* ---- Range ---- */

static int rng(const gh_cobj_t *o, const char *range, const char *if_range, uint64_t len, uint64_t *off,
               uint64_t *cnt)
{
    gh_h1_header_t h[2];
    size_t n = 0;
    if (range)
        h[n++] = (gh_h1_header_t){GH_STR("Range"), S(range)};
    if (if_range)
        h[n++] = (gh_h1_header_t){GH_STR("If-Range"), S(if_range)};
    *off = *cnt = 12345;
    return gh_cache_range(h, n, o, len, off, cnt);
}

#define CHECK_RANGE(range, ifr, len, want, woff, wcnt)                   \
    do {                                                               \
        uint64_t off_, cnt_;                                           \
        int r_ = rng(o, (range), (ifr), (len), &off_, &cnt_);          \
        CHECK_INT(r_, (want));                                         \
        if (r_ == 1 && (want) == 1) {                                  \
            CHECK_INT(off_, (woff));                                   \
            CHECK_INT(cnt_, (wcnt));                                   \
        }                                                              \
    } while (0)

static void test_range(void)
{
    gh_cobj_t *o = obj_with_head("ETag: \"e\"\r\nLast-Modified: " LM "\r\n", 200);
    CHECK_RANGE("bytes=0-9", NULL, 100, 1, 0, 10);
    CHECK_RANGE("bytes=10-10", NULL, 100, 1, 10, 1);
    CHECK_RANGE("bytes=-10", NULL, 100, 1, 90, 10);
    CHECK_RANGE("bytes=-200", NULL, 100, 1, 0, 100);
    CHECK_RANGE("bytes=90-", NULL, 100, 1, 90, 10);
    CHECK_RANGE("bytes=0-", NULL, 100, 1, 0, 100);
    CHECK_RANGE("bytes=50-500", NULL, 100, 1, 50, 50);
    CHECK_RANGE("bytes=99-99", NULL, 100, 1, 99, 1);
    CHECK_RANGE("BYTES=1-2", NULL, 100, 1, 1, 2); /* the unit is case-insensitive */
    CHECK_RANGE("bytes= 1-2 ", NULL, 100, 1, 1, 2);
    CHECK_RANGE("bytes=0-9999999999999999999", NULL, 100, 1, 0, 100);
    CHECK_RANGE("bytes=-9999999999999999999", NULL, 100, 1, 0, 100);
    /* unsatisfiable */
    CHECK_RANGE("bytes=100-", NULL, 100, -1, 0, 0);
    CHECK_RANGE("bytes=100-200", NULL, 100, -1, 0, 0);
    CHECK_RANGE("bytes=-0", NULL, 100, -1, 0, 0);
    CHECK_RANGE("bytes=0-", NULL, 0, -1, 0, 0);
    CHECK_RANGE("bytes=0-0", NULL, 0, -1, 0, 0);
    /* ignored: the whole 200 */
    CHECK_RANGE(NULL, NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=0-1,5-6", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=0-1, 5-6", NULL, 100, 0, 0, 0);
    CHECK_RANGE("items=0-1", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=5-3", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=a-b", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=5", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=-", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=+1-2", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=1-2-3", NULL, 100, 0, 0, 0);
    CHECK_RANGE("bytes=99999999999999999999-", NULL, 100, 0, 0, 0); /* overflow: invalid */
    /* If-Range */
    CHECK_RANGE("bytes=0-9", "\"e\"", 100, 1, 0, 10);
    CHECK_RANGE("bytes=0-9", "\"x\"", 100, 0, 0, 0);
    CHECK_RANGE("bytes=0-9", "W/\"e\"", 100, 0, 0, 0); /* weak never matches */
    CHECK_RANGE("bytes=0-9", LM, 100, 1, 0, 10);
    CHECK_RANGE("bytes=0-9", LM_LATER, 100, 0, 0, 0);
    CHECK_RANGE("bytes=0-9", "junk", 100, 0, 0, 0);
    CHECK_RANGE("bytes=100-", "\"x\"", 100, 0, 0, 0); /* mismatch: whole, not 416 */
    gh_cobj_t *weak = obj_with_head("ETag: W/\"e\"\r\n", 200);
    uint64_t off, cnt;
    CHECK_INT(rng(weak, "bytes=0-1", "W/\"e\"", 10, &off, &cnt), 0);
    CHECK_INT(rng(weak, "bytes=0-1", "\"e\"", 10, &off, &cnt), 0);
    CHECK_INT(rng(weak, "bytes=0-1", NULL, 10, &off, &cnt), 1);
    o->status = 404;
    CHECK_RANGE("bytes=0-9", NULL, 100, 0, 0, 0);
    gh_cobj_free(o);
    gh_cobj_free(weak);
}

int main(void)
{
    if (gh_cache_setup(CAP, MAXOBJ) != 0) {
        fprintf(stderr, "gh_cache_setup failed\n");
        return 1;
    }
    RUN(test_empty_and_setup);
    RUN(test_insert_lookup_release);
    RUN(test_remove);
    RUN(test_refcount_purged_while_held);
    RUN(test_refcount_evicted_while_held);
    RUN(test_replace_same_variant);
    RUN(test_two_variants);
    RUN(test_memory_cap);
    RUN(test_max_object);
    RUN(test_fresh_insert_kept);
    RUN(test_s3fifo_scan_resistance_one_shard);
    RUN(test_s3fifo_scan_resistance_all_shards);
    RUN(test_s3fifo_ghost_readmission);
    RUN(test_s3fifo_promotion);
    RUN(test_purge_tag);
    RUN(test_purge_url);
    RUN(test_purge_prefix);
    RUN(test_purge_all_and_tenants);
    RUN(test_purge_soft);
    RUN(test_invalidate);
    RUN(test_coalescing);
    RUN(test_vary_values);
    RUN(test_threads);
    RUN(test_key_basic);
    RUN(test_key_query);
    RUN(test_key_headers_cookies);
    RUN(test_key_limits);
    RUN(test_stored_head);
    RUN(test_updated_head);
    RUN(test_updated_head_exceptions);
    RUN(test_tags);
    RUN(test_not_modified);
    RUN(test_range);
    reset();
    return t_done("test_cache_store");
}
