/* stream.c: the event stream of stream.h: a spool of framed records on local disk, a publisher
 * thread that sends the spool to NATS JetStream from a cursor, and the purge follower.
 *
 * Called by main.c (start/stop), the access-log writer and the experiments pipeline (put),
 * admin.c and cp.c (purge), the /metrics handler (metrics). Calls libnats (connection,
 * JetStream asynchronous publish, an ordered push consumer), jansson (purge JSON), zlib
 * (crc32) and core/log.
 *
 * Spool: spool_dir/seg-%016llu segment files (a new one once the current passes 64 MiB) of
 *   u32 len | u32 crc32(body) | body = u8 kind, u16 tenant_len, tenant, u16 id_len, id, json
 * (little-endian; len counts the body), and spool_dir/cursor = "SEG OFFSET\n": the first record
 * not yet acknowledged by JetStream, replaced by write-to-tmp + rename after each acknowledged
 * batch. At start the records after the cursor are checked (length, CRC, fields) and a torn or
 * invalid tail (a crash mid-write) is truncated away.
 *
 * Threads: callers of gh_stream_put append under S.mu (one writev(2) per record, so a record is
 * in the kernel when put returns). The publisher thread alone reads the spool, moves the cursor
 * and deletes segments; it owns the NATS connection, the JetStream context and the purge
 * subscription. libnats's own threads run the connection callbacks (atomics and logging only)
 * and the purge handler. The publisher makes the purge subscription before its first batch, so
 * once anything is published the follower is in place. */
#include "events/stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/common.h"
#include "core/log.h"

#define SEG_MAX (64ull << 20)                      /* rotate once a segment would pass this */
#define REC_MAX (1u << 20)                         /* json bytes of one record, at most */
#define CURSOR_SAVE_MS 1000
#define FRAME_HDR 8u                               /* u32 len + u32 crc */
#define BODY_FIXED 5u                              /* kind + tenant_len + id_len */
#define BODY_MAX (REC_MAX + BODY_FIXED + 2u * 65535u)
#define BATCH_RECS 4096
#define BATCH_BYTES (4u << 20)                     /* > FRAME_HDR + BODY_MAX: one record always fits */
#define ACK_WAIT_MS 5000                           /* a batch's acknowledgements, at most */
#define STOP_GRACE_MS 2000
#define DUP_WINDOW_NS 120000000000ll               /* JetStream duplicate window: 2 min */

typedef struct {
    const char *tenant, *id, *json;
    uint32_t tl, il, jl;
    uint8_t kind;
} rec_t;

/* The publisher's working state (its thread only). */
typedef struct {
    char *buf;                   /* BATCH_BYTES read from the spool */
    rec_t recs[BATCH_RECS];
    int n;                       /* records in the batch */
    uint64_t end;                /* the offset just past the batch in S.cseg */
    char *subj, *mid;            /* scratch for a subject and a msg id */
    size_t subj_cap, mid_cap;
} pub_t;

static struct {
    /* configuration (owned copies) */
    char *url, *stream, *prefix, *dir, *node;
    uint64_t spool_max;
    uint64_t max_age_ms, max_bytes; /* of a stream created here */
    uint32_t kinds;
    void (*on_purge)(const char *json, size_t len);

    int started;   /* atomic: between a successful start and stop */
    int accepting; /* atomic: puts accepted (under mu for the write side) */
    int stopping;  /* atomic: the publisher drains until stop_deadline */
    int64_t stop_deadline;

    /* the write end, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int waiting;
    int wfd;
    uint64_t wseg, woff;

    /* the cursor and the read side (publisher thread; start/stop when it is not running) */
    uint64_t cseg, coff;
    int rfd;
    uint64_t rseg;

    pthread_t thr;
    int thr_started;
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *psub;

    uint64_t purge_after; /* atomic: the stream's last sequence when the follower started */
    uint64_t purge_ctr;   /* atomic */

    /* statistics (atomics) */
    uint64_t appended[GH_EV_NKINDS], published, dropped, spool_bytes, purges, pub_errors;
    int connected;
    uint64_t ack_errs; /* errors reported by the async error handler for the batch in flight */
    uint64_t disc_gen; /* disconnections so far */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .wfd = -1, .rfd = -1};

/* The purge handler's guard: it runs on a libnats thread that stop does not join, so stop
 * clears `following` and waits until no handler is inside (statics, never freed). */
static int following, cb_inflight;
/* Set while stop closes the connection, so that its disconnection is not logged as a loss. */
static int closing;
/* The URL as logged (credentials replaced), read by the connection callbacks at any time. */
static char url_log[512];

#define LD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)
#define ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_SEQ_CST)
#define SUB(x, v) __atomic_sub_fetch(&(x), (v), __ATOMIC_SEQ_CST)

static const char *const kind_names[GH_EV_NKINDS] = {"access", "exposure", "event", "purge"};

const char *gh_ev_kind_name(gh_ev_kind_t k)
{
    return (unsigned)k < GH_EV_NKINDS ? kind_names[k] : "unknown";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* zlib's crc32 with a NULL buffer returns the initial value, so empty parts are skipped. */
static uint32_t crc_add(uint32_t crc, const void *p, size_t n)
{
    return n ? (uint32_t)crc32(crc, (const Bytef *)p, (uInt)n) : crc;
}

/* Copy of url with the user information ("user:pass@" or "token@") of each comma-separated URL
 * replaced by "***@", so that credentials never reach the log. */
static void redact_url(char *out, size_t cap, const char *url)
{
    size_t o = 0;
    if (!cap)
        return;
    while (*url && o + 1 < cap) {
        size_t n = strcspn(url, ",");
        const char *host = url, *end = url + n;
        const char *scheme = strstr(url, "://");
        if (scheme && scheme < end)
            host = scheme + 3;
        const char *at = NULL;
        for (const char *p = host; p < end && *p != '/'; p++)
            if (*p == '@')
                at = p;
        int k = at ? snprintf(out + o, cap - o, "%.*s***%.*s", (int)(host - url), url, (int)(end - at), at)
                   : snprintf(out + o, cap - o, "%.*s", (int)n, url);
        o += k > 0 ? (size_t)k : 0;
        if (o >= cap)
            o = cap - 1;
        url = end;
        if (*url == ',') {
            if (o + 1 < cap)
                out[o++] = ',';
            url++;
        }
    }
    out[o] = 0;
}

/* ---- the spool ---- */

static void seg_path(char *out, size_t cap, uint64_t seg)
{
    snprintf(out, cap, "%s/seg-%016llu", S.dir, (unsigned long long)seg);
}

static int mkdir_p(const char *dir)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof p)
        return -1;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return -1;
            p[i] = c;
        }
    }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* Save the cursor: write cursor.tmp, rename over cursor; fsync both when sync. */
static void save_cursor(int sync)
{
    char tmp[4096], path[4096], line[64];
    snprintf(tmp, sizeof tmp, "%s/cursor.tmp", S.dir);
    snprintf(path, sizeof path, "%s/cursor", S.dir);
    int n = snprintf(line, sizeof line, "%llu %llu\n", (unsigned long long)S.cseg, (unsigned long long)S.coff);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || (sync && fsync(fd) < 0)) {
        gh_log(GH_LOG_ERROR, "stream: cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        gh_log(GH_LOG_ERROR, "stream: cannot rename %s: %s", tmp, strerror(errno));
        return;
    }
    if (sync) {
        int dfd = open(S.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
}

/* Check a record's body (len bytes after the frame header): kind, lengths; fill r. */
static int parse_body(const uint8_t *b, uint32_t len, rec_t *r)
{
    if (len < BODY_FIXED || b[0] >= GH_EV_NKINDS)
        return -1;
    uint32_t tl = get_le16(b + 1);
    if (3u + tl + 2u > len)
        return -1;
    uint32_t il = get_le16(b + 3 + tl);
    if (BODY_FIXED + tl + il > len)
        return -1;
    r->kind = b[0];
    r->tl = tl;
    r->tenant = (const char *)b + 3;
    r->il = il;
    r->id = (const char *)b + 5 + tl;
    r->jl = len - BODY_FIXED - tl - il;
    r->json = (const char *)b + BODY_FIXED + tl + il;
    return 0;
}

/* Check the records of a segment from offset `from`; truncate at the first torn or invalid one.
 * Returns the valid end (the file's size afterwards), or -1 when it cannot be read. */
static int64_t scan_segment(const char *path, uint64_t from, char *buf)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size, off = from;
    if (from > size) {
        close(fd);
        return (int64_t)size;
    }
    for (;;) {
        ssize_t n = pread(fd, buf, BATCH_BYTES, (off_t)off);
        if (n <= 0)
            break;
        size_t p = 0;
        int bad = 0;
        while (p + FRAME_HDR <= (size_t)n) {
            const uint8_t *h = (const uint8_t *)buf + p;
            uint32_t len = get_le32(h);
            rec_t r;
            if (len < BODY_FIXED || len > BODY_MAX) {
                bad = 1;
                break;
            }
            if (p + FRAME_HDR + len > (size_t)n)
                break; /* more to read (or torn) */
            if (crc_add(0, h + FRAME_HDR, len) != get_le32(h + 4) || parse_body(h + FRAME_HDR, len, &r) < 0) {
                bad = 1;
                break;
            }
            p += FRAME_HDR + len;
        }
        off += p;
        /* a record that cannot be completed: the file ends inside it */
        if (bad || (p == 0) || ((size_t)n < BATCH_BYTES && p < (size_t)n))
            break;
        if ((size_t)n < BATCH_BYTES)
            break; /* everything read up to the end */
    }
    if (off < size) {
        gh_log(GH_LOG_WARN, "stream: %s: %llu bytes of torn or invalid records at offset %llu truncated", path,
               (unsigned long long)(size - off), (unsigned long long)off);
        if (ftruncate(fd, (off_t)off) < 0) {
            gh_log(GH_LOG_ERROR, "stream: cannot truncate %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    close(fd);
    return (int64_t)off;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Open the spool: read the cursor, delete segments behind it, check the ones after it (torn
 * tails truncated), count spool_bytes and open the last segment for appending. */
static int open_spool(char *err, size_t errcap)
{
    if (mkdir_p(S.dir) < 0) {
        snprintf(err, errcap, "stream: spool directory %s: %s", S.dir, strerror(errno));
        return -1;
    }
    DIR *d = opendir(S.dir);
    if (!d) {
        snprintf(err, errcap, "stream: spool directory %s: %s", S.dir, strerror(errno));
        return -1;
    }
    uint64_t *segs = NULL;
    size_t nsegs = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned long long v;
        char tail;
        if (strncmp(de->d_name, "seg-", 4) != 0 || strlen(de->d_name) != 20 ||
            sscanf(de->d_name + 4, "%16llu%c", &v, &tail) != 1)
            continue;
        if (nsegs == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *ns = realloc(segs, nc * sizeof *ns);
            if (!ns) {
                closedir(d);
                free(segs);
                snprintf(err, errcap, "stream: out of memory");
                return -1;
            }
            segs = ns;
            cap = nc;
        }
        segs[nsegs++] = v;
    }
    closedir(d);
    if (nsegs)
        qsort(segs, nsegs, sizeof *segs, cmp_u64);

    char path[4096];
    unsigned long long cs = 0, co = 0;
    snprintf(path, sizeof path, "%s/cursor", S.dir);
    FILE *f = fopen(path, "re");
    int have = f && fscanf(f, "%llu %llu", &cs, &co) == 2;
    if (f)
        fclose(f);
    if (!have) {
        cs = nsegs ? segs[0] : 0;
        co = 0;
    }
    S.cseg = cs;
    S.coff = co;
    /* the cursor's segment may be gone (deleted after the cursor moved on): start at the next */
    size_t first = 0;
    while (first < nsegs && segs[first] < S.cseg) {
        seg_path(path, sizeof path, segs[first]);
        unlink(path);
        first++;
    }
    if (first < nsegs && segs[first] != S.cseg) {
        S.cseg = segs[first];
        S.coff = 0;
    }

    char *buf = malloc(BATCH_BYTES);
    if (!buf) {
        free(segs);
        snprintf(err, errcap, "stream: out of memory");
        return -1;
    }
    uint64_t spool = 0;
    S.wseg = S.cseg;
    for (size_t i = first; i < nsegs; i++) {
        uint64_t from = segs[i] == S.cseg ? S.coff : 0;
        seg_path(path, sizeof path, segs[i]);
        int64_t end = scan_segment(path, from, buf);
        if (end < 0) {
            snprintf(err, errcap, "stream: cannot read %s: %s", path, strerror(errno));
            free(buf);
            free(segs);
            return -1;
        }
        if (segs[i] == S.cseg && S.coff > (uint64_t)end) {
            gh_log(GH_LOG_WARN, "stream: cursor %llu %llu past the end of its segment; moved to %lld",
                   (unsigned long long)S.cseg, (unsigned long long)S.coff, (long long)end);
            S.coff = (uint64_t)end;
            from = S.coff;
        }
        spool += (uint64_t)end - from;
        S.wseg = segs[i];
    }
    free(buf);
    free(segs);

    seg_path(path, sizeof path, S.wseg);
    S.wfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    if (S.wfd < 0 || fstat(S.wfd, &st) < 0) {
        snprintf(err, errcap, "stream: cannot open %s: %s", path, strerror(errno));
        if (S.wfd >= 0)
            close(S.wfd);
        S.wfd = -1;
        return -1;
    }
    S.woff = (uint64_t)st.st_size;
    ST(S.spool_bytes, spool);
    save_cursor(0);
    if (spool)
        gh_log(GH_LOG_INFO, "stream: spool %s resumes with %llu bytes to send", S.dir, (unsigned long long)spool);
    return 0;
}

/* A new segment for appends (mu held). */
static int rotate_locked(void)
{
    char path[4096];
    seg_path(path, sizeof path, S.wseg + 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    close(S.wfd);
    S.wfd = fd;
    S.wseg++;
    S.woff = 0;
    return 0;
}

int gh_stream_put(gh_ev_kind_t kind, const char *tenant, size_t tenant_len, const char *id, size_t id_len,
                  const char *json, size_t len)
{
    if (!LD(S.accepting))
        return GH_ELIMIT;
    if ((unsigned)kind >= GH_EV_NKINDS || tenant_len > 65535 || id_len > 65535 || len > REC_MAX) {
        ADD(S.dropped, 1);
        return GH_ELIMIT;
    }
    uint32_t body = BODY_FIXED + (uint32_t)(tenant_len + id_len + len);
    uint8_t hdr[FRAME_HDR + 3], idl[2];
    hdr[FRAME_HDR] = (uint8_t)kind;
    put_le16(hdr + FRAME_HDR + 1, (uint32_t)tenant_len);
    put_le16(idl, (uint32_t)id_len);
    uint32_t crc = crc_add(0, hdr + FRAME_HDR, 3);
    crc = crc_add(crc, tenant, tenant_len);
    crc = crc_add(crc, idl, 2);
    crc = crc_add(crc, id, id_len);
    crc = crc_add(crc, json, len);
    put_le32(hdr, body);
    put_le32(hdr + 4, crc);
    struct iovec iov[5] = {{hdr, sizeof hdr}, {(void *)tenant, tenant_len}, {idl, 2}, {(void *)id, id_len},
                           {(void *)json, len}};
    uint64_t total = FRAME_HDR + (uint64_t)body;

    pthread_mutex_lock(&S.mu);
    if (!LD(S.accepting)) {
        pthread_mutex_unlock(&S.mu);
        return GH_ELIMIT;
    }
    if (LD(S.spool_bytes) + total > S.spool_max) {
        pthread_mutex_unlock(&S.mu);
        ADD(S.dropped, 1);
        return GH_ELIMIT;
    }
    if (S.woff > 0 && S.woff + total > SEG_MAX && rotate_locked() < 0) {
        int e = errno;
        pthread_mutex_unlock(&S.mu);
        gh_log(GH_LOG_ERROR, "stream: cannot start a new spool segment in %s: %s", S.dir, strerror(e));
        ADD(S.dropped, 1);
        return GH_ELIMIT;
    }
    /* one writev; a short write (disk full) is finished or undone */
    struct iovec *v = iov;
    int nv = 5;
    uint64_t done = 0;
    while (done < total) {
        ssize_t w = writev(S.wfd, v, nv);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            if (ftruncate(S.wfd, (off_t)S.woff) < 0) {
                /* the torn record stays until the next start truncates it */
            }
            pthread_mutex_unlock(&S.mu);
            gh_log(GH_LOG_ERROR, "stream: spool write in %s: %s", S.dir, strerror(e));
            ADD(S.dropped, 1);
            return GH_ELIMIT;
        }
        done += (uint64_t)w;
        size_t k = (size_t)w;
        while (nv > 0 && k >= v->iov_len) {
            k -= v->iov_len;
            v++;
            nv--;
        }
        if (nv > 0) {
            v->iov_base = (char *)v->iov_base + k;
            v->iov_len -= k;
        }
    }
    S.woff += total;
    ADD(S.spool_bytes, total);
    ADD(S.appended[kind], 1);
    if (S.waiting)
        pthread_cond_signal(&S.cond);
    pthread_mutex_unlock(&S.mu);
    return 0;
}

int gh_stream_put_many(const gh_stream_rec_t *recs, size_t n)
{
    if (!LD(S.accepting))
        return GH_ELIMIT;
    /* frames built outside the lock, into one buffer written with one write(2) */
    static __thread uint8_t *buf;
    static __thread size_t cap;
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += FRAME_HDR + BODY_FIXED + recs[i].tenant_len + recs[i].id_len + recs[i].len;
    if (need > cap) {
        uint8_t *nb = realloc(buf, need);
        if (!nb) {
            ADD(S.dropped, n);
            return GH_ENOMEM;
        }
        buf = nb;
        cap = need;
    }
    size_t off = 0, kept = 0;
    uint64_t per_kind[GH_EV_NKINDS] = {0};
    for (size_t i = 0; i < n; i++) {
        const gh_stream_rec_t *r = &recs[i];
        if ((unsigned)r->kind >= GH_EV_NKINDS || r->tenant_len > 65535 || r->id_len > 65535 || r->len > REC_MAX) {
            ADD(S.dropped, 1);
            continue;
        }
        uint8_t *h = buf + off, *b = h + FRAME_HDR;
        uint32_t body = BODY_FIXED + (uint32_t)(r->tenant_len + r->id_len + r->len);
        b[0] = (uint8_t)r->kind;
        put_le16(b + 1, (uint32_t)r->tenant_len);
        memcpy(b + 3, r->tenant, r->tenant_len);
        put_le16(b + 3 + r->tenant_len, (uint32_t)r->id_len);
        memcpy(b + 5 + r->tenant_len, r->id, r->id_len);
        memcpy(b + BODY_FIXED + r->tenant_len + r->id_len, r->json, r->len);
        put_le32(h, body);
        put_le32(h + 4, crc_add(0, b, body));
        off += FRAME_HDR + body;
        per_kind[r->kind]++;
        kept++;
    }
    if (!kept)
        return GH_ELIMIT;
    pthread_mutex_lock(&S.mu);
    if (!LD(S.accepting) || LD(S.spool_bytes) + off > S.spool_max) {
        pthread_mutex_unlock(&S.mu);
        ADD(S.dropped, kept);
        return GH_ELIMIT;
    }
    if (S.woff > 0 && S.woff + off > SEG_MAX && rotate_locked() < 0) {
        int e = errno;
        pthread_mutex_unlock(&S.mu);
        gh_log(GH_LOG_ERROR, "stream: cannot start a new spool segment in %s: %s", S.dir, strerror(e));
        ADD(S.dropped, kept);
        return GH_ELIMIT;
    }
    size_t done = 0;
    while (done < off) {
        ssize_t w = write(S.wfd, buf + done, off - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            if (ftruncate(S.wfd, (off_t)S.woff) < 0) {
                /* the torn records stay until the next start truncates them */
            }
            pthread_mutex_unlock(&S.mu);
            gh_log(GH_LOG_ERROR, "stream: spool write in %s: %s", S.dir, strerror(e));
            ADD(S.dropped, kept);
            return GH_ELIMIT;
        }
        done += (size_t)w;
    }
    S.woff += off;
    ADD(S.spool_bytes, off);
    for (int k = 0; k < GH_EV_NKINDS; k++)
        if (per_kind[k])
            ADD(S.appended[k], per_kind[k]);
    if (S.waiting)
        pthread_cond_signal(&S.cond);
    pthread_mutex_unlock(&S.mu);
    return kept == n ? 0 : GH_ELIMIT;
}

/* ---- the publisher ---- */

/* Whether everything appended has been acknowledged. */
static int spool_empty(void)
{
    pthread_mutex_lock(&S.mu);
    int e = S.cseg == S.wseg && S.coff >= S.woff;
    pthread_mutex_unlock(&S.mu);
    return e;
}

/* Open the read side on the cursor's segment. */
static int open_read(void)
{
    if (S.rfd >= 0 && S.rseg == S.cseg)
        return 0;
    if (S.rfd >= 0)
        close(S.rfd);
    char path[4096];
    seg_path(path, sizeof path, S.cseg);
    S.rfd = open(path, O_RDONLY | O_CLOEXEC);
    S.rseg = S.cseg;
    if (S.rfd < 0) {
        gh_log(GH_LOG_ERROR, "stream: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The cursor is at the end of a finished segment: move it to the next one, delete the old. */
static void next_segment(uint64_t wseg)
{
    uint64_t old = S.cseg, s = S.cseg + 1;
    char path[4096];
    for (; s < wseg; s++) { /* segment numbers are consecutive; skip a gap all the same */
        seg_path(path, sizeof path, s);
        if (access(path, F_OK) == 0)
            break;
    }
    S.cseg = s;
    S.coff = 0;
    save_cursor(0);
    seg_path(path, sizeof path, old);
    if (unlink(path) < 0 && errno != ENOENT)
        gh_log(GH_LOG_WARN, "stream: cannot delete %s: %s", path, strerror(errno));
}

/* Read the next batch after the cursor into P: >0 records, 0 nothing to send, -1 try again. */
static int read_batch(pub_t *P)
{
    pthread_mutex_lock(&S.mu);
    uint64_t wseg = S.wseg, woff = S.woff;
    pthread_mutex_unlock(&S.mu);
    P->n = 0;
    if (open_read() < 0) {
        if (S.cseg < wseg) {
            next_segment(wseg);
            return -1;
        }
        return 0;
    }
    uint64_t end = woff;
    if (S.cseg < wseg) {
        struct stat st;
        end = fstat(S.rfd, &st) == 0 ? (uint64_t)st.st_size : S.coff;
    }
    if (S.coff >= end) {
        if (S.cseg < wseg) {
            next_segment(wseg);
            return -1;
        }
        return 0;
    }
    uint64_t want = end - S.coff;
    if (want > BATCH_BYTES)
        want = BATCH_BYTES;
    ssize_t n = pread(S.rfd, P->buf, (size_t)want, (off_t)S.coff);
    if (n <= 0) {
        gh_log(GH_LOG_ERROR, "stream: spool read: %s", n < 0 ? strerror(errno) : "unexpected end");
        return -1;
    }
    size_t p = 0;
    while (P->n < BATCH_RECS && p + FRAME_HDR <= (size_t)n) {
        const uint8_t *h = (const uint8_t *)P->buf + p;
        uint32_t len = get_le32(h);
        if (len < BODY_FIXED || len > BODY_MAX || p + FRAME_HDR + len > (size_t)n) {
            if (len >= BODY_FIXED && len <= BODY_MAX && p + FRAME_HDR + len <= end - S.coff)
                break; /* complete on disk, past this read: the next batch */
            goto corrupt;
        }
        if (crc_add(0, h + FRAME_HDR, len) != get_le32(h + 4) || parse_body(h + FRAME_HDR, len, &P->recs[P->n]) < 0)
            goto corrupt;
        P->n++;
        p += FRAME_HDR + len;
    }
    P->end = S.coff + p;
    return P->n;

corrupt:
    if (P->n > 0) { /* send what is good; the bad record comes first in the next batch */
        P->end = S.coff + p;
        return P->n;
    }
    /* Damaged after the start-up check (the disk, or someone else writing): skip to the end. */
    gh_log(GH_LOG_ERROR, "stream: spool segment %llu damaged at offset %llu: %llu bytes skipped",
           (unsigned long long)S.cseg, (unsigned long long)S.coff, (unsigned long long)(end - S.coff));
    SUB(S.spool_bytes, end - S.coff);
    ADD(S.dropped, 1);
    S.coff = end;
    save_cursor(0);
    return -1;
}

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = need < 256 ? 256 : need * 2;
    char *q = realloc(*p, n);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* A tenant as a subject token: [A-Za-z0-9_-] as is, any other byte %XX; empty is "%". */
static size_t escape_token(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (n == 0) {
        out[o++] = '%';
        return o;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

/* "<kind>:<tenant>:<id>" for Nats-Msg-Id; control bytes (which would break the header) %XX. */
static size_t msg_id(char *out, const rec_t *r)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    const char *k = kind_names[r->kind];
    size_t kl = strlen(k);
    memcpy(out, k, kl);
    o = kl;
    out[o++] = ':';
    for (int part = 0; part < 2; part++) {
        const char *s = part ? r->id : r->tenant;
        uint32_t n = part ? r->il : r->tl;
        for (uint32_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f) {
                out[o++] = '%';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
            } else {
                out[o++] = (char)c;
            }
        }
        if (!part)
            out[o++] = ':';
    }
    out[o] = 0;
    return o;
}

/* The async error handler: a negative acknowledgement (or no responders) for a message. */
static void on_ack_err(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    if (ADD(S.ack_errs, 1) == 1)
        gh_log(GH_LOG_WARN, "stream: JetStream refused a record (%d, %s); the batch will be sent again",
               pae->ErrCode, pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
}

/* Publish P's batch and wait for every acknowledgement: 0 when all came back positive. */
static int publish_batch(pub_t *P)
{
    int fail = 0;
    uint64_t gen0 = LD(S.disc_gen);
    ST(S.ack_errs, 0);
    size_t plen = strlen(S.prefix);
    for (int i = 0; i < P->n && !fail; i++) {
        const rec_t *r = &P->recs[i];
        if (grow(&P->subj, &P->subj_cap, plen + 16 + 3 * (size_t)r->tl + 1) < 0 ||
            grow(&P->mid, &P->mid_cap, 16 + 3 * ((size_t)r->tl + r->il) + 1) < 0) {
            fail = 1;
            break;
        }
        size_t o = (size_t)snprintf(P->subj, P->subj_cap, "%s.%s", S.prefix, kind_names[r->kind]);
        if (r->kind != GH_EV_PURGE) {
            P->subj[o++] = '.';
            o += escape_token(P->subj + o, r->tenant, r->tl);
        }
        P->subj[o] = 0;
        msg_id(P->mid, r);
        natsMsg *m = NULL;
        natsStatus s = natsMsg_Create(&m, P->subj, NULL, r->json, (int)r->jl);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Nats-Msg-Id", P->mid);
        if (s == NATS_OK)
            s = js_PublishMsgAsync(S.js, &m, NULL);
        natsMsg_Destroy(m); /* NULL when the library took it */
        if (s == NATS_MAX_PAYLOAD) {
            /* larger than the server accepts: it never will, so it is dropped, not retried */
            gh_log(GH_LOG_ERROR, "stream: a %s record of %u bytes (id %s) exceeds the NATS max payload; dropped",
                   kind_names[r->kind], r->jl, P->mid);
            ADD(S.dropped, 1);
        } else if (s != NATS_OK) {
            fail = 1;
        }
    }
    /* wait for the acknowledgements, giving up early when the connection dropped (their
     * replies are lost) or stop's grace period is over */
    int64_t start = now_ms();
    natsStatus s = NATS_OK;
    for (;;) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 100;
        s = js_PublishAsyncComplete(S.js, &po);
        if (s == NATS_OK || fail)
            break;
        int64_t t = now_ms();
        if (t - start >= ACK_WAIT_MS || LD(S.disc_gen) != gen0 || (LD(S.stopping) && t >= S.stop_deadline))
            break;
    }
    if (s != NATS_OK || fail) {
        natsMsgList pl;
        if (js_PublishAsyncGetPendingList(&pl, S.js) == NATS_OK)
            natsMsgList_Destroy(&pl);
        return -1;
    }
    return LD(S.ack_errs) ? -1 : 0;
}

/* P's batch is acknowledged: move the cursor past it. */
static void ack_batch(pub_t *P)
{
    SUB(S.spool_bytes, P->end - S.coff);
    ADD(S.published, (uint64_t)P->n);
    S.coff = P->end;
    /* the cursor file is replaced at most once a second while records flow (and when the
     * spool empties): after a crash the records of that second are sent again, and removed
     * as duplicates (JetStream's window, the consumers' ids) */
    static int64_t saved_ms;
    int64_t now = now_ms();
    if (now - saved_ms >= CURSOR_SAVE_MS || spool_empty()) {
        save_cursor(0);
        saved_ms = now;
    }
}

/* The stream exists (created when missing); its last sequence in *last_seq. 0 or -1. */
static int ensure_stream(uint64_t *last_seq)
{
    jsStreamInfo *si = NULL;
    jsErrCode je = 0;
    natsStatus s = js_GetStreamInfo(&si, S.js, S.stream, NULL, &je);
    if (s == NATS_NOT_FOUND) {
        char subj[1024];
        snprintf(subj, sizeof subj, "%s.>", S.prefix);
        const char *subjects[1] = {subj};
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = S.stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Duplicates = DUP_WINDOW_NS;
        sc.MaxAge = (int64_t)S.max_age_ms * 1000000; /* ns; 0: unlimited */
        sc.MaxBytes = S.max_bytes ? (int64_t)S.max_bytes : -1;
        s = js_AddStream(&si, S.js, &sc, NULL, &je);
        if (s == NATS_OK)
            gh_log(GH_LOG_INFO, "stream: JetStream stream %s created (subjects %s)", S.stream, subj);
        else
            gh_log(GH_LOG_WARN, "stream: cannot create JetStream stream %s: %s (%d)", S.stream,
                   nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), (int)je);
    }
    if (s != NATS_OK) {
        jsStreamInfo_Destroy(si);
        return -1;
    }
    *last_seq = si ? si->State.LastSeq : 0;
    jsStreamInfo_Destroy(si);
    return 0;
}

/* A purge from the stream: handed to on_purge unless this node made it. */
static void on_purge_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    ADD(cb_inflight, 1);
    if (!LD(following)) {
        SUB(cb_inflight, 1);
        natsMsg_Destroy(msg);
        return;
    }
    const char *data = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    int skip = 0;
    /* an ordered consumer that restarts before it saw anything starts again at sequence 1:
     * the purges made before this node started are not ours to apply */
    jsMsgMetaData *md = NULL;
    if (natsMsg_GetMetaData(&md, msg) == NATS_OK) {
        skip = md->Sequence.Stream <= LD(S.purge_after);
        jsMsgMetaData_Destroy(md);
    }
    json_error_t je;
    json_t *o = skip ? NULL : json_loadb(data ? data : "", data ? (size_t)len : 0, 0, &je);
    if (!skip && !json_is_object(o)) {
        gh_log(GH_LOG_WARN, "stream: a purge that is not a JSON object ignored");
        skip = 1;
    }
    if (!skip) {
        const char *node = json_string_value(json_object_get(o, "node"));
        if (!(node && strcmp(node, S.node) == 0)) {
            if (S.on_purge)
                S.on_purge(data, (size_t)len);
            ADD(S.purges, 1);
        }
    }
    json_decref(o);
    SUB(cb_inflight, 1);
    natsMsg_Destroy(msg);
}

/* Follow "<prefix>.purge" with an ordered consumer delivering new messages. 0 or -1. */
static int follow_purges(uint64_t last_seq)
{
    char subj[1024];
    snprintf(subj, sizeof subj, "%s.purge", S.prefix);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = S.stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverNew;
    jsErrCode je = 0;
    ST(S.purge_after, last_seq);
    natsStatus s = js_Subscribe(&S.psub, S.js, subj, on_purge_msg, NULL, NULL, &so, &je);
    if (s != NATS_OK) {
        gh_log(GH_LOG_WARN, "stream: cannot follow %s: %s (%d)", subj,
               nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), (int)je);
        S.psub = NULL;
        return -1;
    }
    gh_log(GH_LOG_INFO, "stream: following purges on %s", subj);
    return 0;
}

static void on_connected(natsConnection *nc, void *closure)
{
    ST(S.connected, 1);
    gh_log(GH_LOG_INFO, "stream: connected to NATS %s", url_log);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    ADD(S.disc_gen, 1);
    if (__atomic_exchange_n(&S.connected, 0, __ATOMIC_SEQ_CST) && !LD(closing))
        gh_log(GH_LOG_WARN, "stream: disconnected from NATS %s; records wait in the spool", url_log);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    ST(S.connected, 1);
    gh_log(GH_LOG_INFO, "stream: reconnected to NATS %s", url_log);
}

static void on_closed(natsConnection *nc, void *closure) { ST(S.connected, 0); }

static void on_async_err(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    gh_log(GH_LOG_DEBUG, "stream: NATS: %s", natsStatus_GetText(err));
}

/* The connection (connecting in the background when NATS is not reachable yet) and the
 * JetStream context. 0 or -1 (the options are unusable: logged). */
static int connect_nats(void)
{
    natsStatus s = natsOptions_Create(&S.opts);
    /* the servers, split at commas */
    const char *servers[64];
    char *copy = strdup(S.url);
    int n = 0;
    if (!copy)
        s = NATS_NO_MEMORY;
    for (char *save = NULL, *t = copy ? strtok_r(copy, ", ", &save) : NULL; t && n < 64; t = strtok_r(NULL, ", ", &save))
        servers[n++] = t;
    if (s == NATS_OK && n == 0)
        s = NATS_INVALID_ARG;
    char name[256];
    snprintf(name, sizeof name, "gatehouse-%s", S.node);
    if (s == NATS_OK)
        s = natsOptions_SetServers(S.opts, servers, n);
    if (s == NATS_OK)
        s = natsOptions_SetName(S.opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(S.opts, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(S.opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(S.opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(S.opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(S.opts, on_disconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(S.opts, on_reconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(S.opts, on_closed, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(S.opts, on_async_err, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(S.opts, true, on_connected, NULL);
    if (s == NATS_OK) {
        s = natsConnection_Connect(&S.nc, S.opts);
        if (s == NATS_OK) {
            on_connected(S.nc, NULL);
        } else if (s == NATS_NOT_YET_CONNECTED) {
            gh_log(GH_LOG_WARN, "stream: NATS %s not reachable yet; records wait in the spool", url_log);
            s = NATS_OK;
        }
    }
    if (s == NATS_OK) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = 1000;
        jo.PublishAsync.ErrHandler = on_ack_err;
        s = natsConnection_JetStream(&S.js, S.nc, &jo);
    }
    free(copy);
    if (s != NATS_OK) {
        gh_log(GH_LOG_ERROR, "stream: cannot connect to NATS %s: %s; records wait in the spool", url_log,
               natsStatus_GetText(s));
        jsCtx_Destroy(S.js);
        S.js = NULL;
        natsConnection_Destroy(S.nc);
        S.nc = NULL;
        return -1;
    }
    return 0;
}

static int past_deadline(void) { return LD(S.stopping) && now_ms() >= S.stop_deadline; }

static void *publisher(void *arg)
{
    pub_t *P = calloc(1, sizeof *P);
    if (P)
        P->buf = malloc(BATCH_BYTES);
    if (!P || !P->buf) {
        gh_log(GH_LOG_ERROR, "stream: out of memory; the publisher does not run");
        free(P);
        return NULL;
    }
    connect_nats();
    int ready = 0, failures = 0;
    uint64_t last_seq = 0;
    int64_t next_stream_try = 0, next_sub_try = 0;
    for (;;) {
        if (LD(S.stopping) && (past_deadline() || spool_empty()))
            break;
        if (!S.js || !LD(S.connected)) {
            nap_ms(20);
            continue;
        }
        int64_t t = now_ms();
        if (!ready) {
            if (t < next_stream_try) {
                nap_ms(20);
                continue;
            }
            if (ensure_stream(&last_seq) < 0) {
                next_stream_try = t + 250;
                continue;
            }
            ready = 1;
        }
        if (!S.psub && S.on_purge && t >= next_sub_try && follow_purges(last_seq) < 0)
            next_sub_try = t + 1000;
        int n = read_batch(P);
        if (n < 0)
            continue;
        if (n == 0) {
            if (LD(S.stopping))
                break;
            pthread_mutex_lock(&S.mu);
            if (S.cseg == S.wseg && S.coff >= S.woff) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                S.waiting = 1;
                pthread_cond_timedwait(&S.cond, &S.mu, &ts);
                S.waiting = 0;
            }
            pthread_mutex_unlock(&S.mu);
            continue;
        }
        if (publish_batch(P) == 0) {
            ack_batch(P);
            failures = 0;
            continue;
        }
        ADD(S.pub_errors, 1);
        ready = 0; /* check the stream again (deleted? JetStream restarting?) */
        failures++;
        int wait = 50 << (failures < 5 ? failures : 5); /* 100 ms .. 1.6 s */
        for (int w = 0; w < wait && !past_deadline(); w += 20)
            nap_ms(20);
    }
    save_cursor(1);
    free(P->buf);
    free(P->subj);
    free(P->mid);
    free(P);
    return NULL;
}

/* ---- start, stop ---- */

static void free_conf(void)
{
    free(S.url);
    free(S.stream);
    free(S.prefix);
    free(S.dir);
    free(S.node);
    S.url = S.stream = S.prefix = S.dir = S.node = NULL;
}

int gh_stream_start(const gh_stream_conf_t *c, char *err, size_t errcap)
{
    if (LD(S.started)) {
        snprintf(err, errcap, "stream: already started");
        return -1;
    }
    if (!c || !c->url || !c->stream || !c->prefix || !c->spool_dir || !c->node || !*c->url || !*c->stream ||
        !*c->prefix || !*c->spool_dir) {
        snprintf(err, errcap, "stream: url, stream, prefix, spool_dir and node are required");
        return -1;
    }
    S.url = strdup(c->url);
    S.stream = strdup(c->stream);
    S.prefix = strdup(c->prefix);
    S.dir = strdup(c->spool_dir);
    S.node = strdup(c->node);
    if (!S.url || !S.stream || !S.prefix || !S.dir || !S.node) {
        free_conf();
        snprintf(err, errcap, "stream: out of memory");
        return -1;
    }
    size_t dl = strlen(S.dir);
    while (dl > 1 && S.dir[dl - 1] == '/')
        S.dir[--dl] = 0;
    S.spool_max = c->spool_max ? c->spool_max : (1ull << 30);
    S.max_age_ms = c->max_age_ms;
    S.max_bytes = c->max_bytes;
    S.kinds = c->kinds;
    S.on_purge = c->on_purge;
    redact_url(url_log, sizeof url_log, S.url);
    for (int k = 0; k < GH_EV_NKINDS; k++)
        ST(S.appended[k], 0);
    ST(S.published, 0);
    ST(S.dropped, 0);
    ST(S.purges, 0);
    ST(S.pub_errors, 0);
    ST(S.connected, 0);
    ST(S.stopping, 0);
    S.cseg = S.coff = S.wseg = S.woff = 0;
    S.rfd = S.wfd = -1;
    S.nc = NULL;
    S.js = NULL;
    S.opts = NULL;
    S.psub = NULL;
    if (open_spool(err, errcap) < 0) {
        if (S.wfd >= 0)
            close(S.wfd);
        S.wfd = -1;
        free_conf();
        return -1;
    }
    ST(following, 1);
    ST(closing, 0);
    ST(S.accepting, 1);
    int e = pthread_create(&S.thr, NULL, publisher, NULL);
    if (e) {
        ST(S.accepting, 0);
        ST(following, 0);
        close(S.wfd);
        S.wfd = -1;
        free_conf();
        snprintf(err, errcap, "stream: cannot start the publisher: %s", strerror(e));
        return -1;
    }
    S.thr_started = 1;
    ST(S.started, 1);
    return 0;
}

void gh_stream_stop(void)
{
    if (!__atomic_exchange_n(&S.started, 0, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&S.mu);
    ST(S.accepting, 0);
    S.stop_deadline = now_ms() + STOP_GRACE_MS;
    ST(S.stopping, 1);
    pthread_cond_signal(&S.cond);
    pthread_mutex_unlock(&S.mu);
    if (S.thr_started)
        pthread_join(S.thr, NULL);
    S.thr_started = 0;
    uint64_t left = LD(S.spool_bytes);
    if (left)
        gh_log(GH_LOG_INFO, "stream: stopped with %llu bytes in the spool (sent after the next start)",
               (unsigned long long)left);

    /* no purge handler may run past this point (it reads S.node and calls on_purge) */
    ST(following, 0);
    ST(closing, 1);
    if (S.nc) {
        natsConnection_Close(S.nc);
        gh_log(GH_LOG_INFO, "stream: connection to NATS %s closed", url_log);
    }
    for (int i = 0; i < 2000 && LD(cb_inflight) > 0; i++)
        nap_ms(1);
    natsSubscription_Destroy(S.psub);
    S.psub = NULL;
    jsCtx_Destroy(S.js);
    S.js = NULL;
    natsConnection_Destroy(S.nc);
    S.nc = NULL;
    natsOptions_Destroy(S.opts);
    S.opts = NULL;
    ST(S.connected, 0);

    pthread_mutex_lock(&S.mu);
    if (S.wfd >= 0) {
        (void)fsync(S.wfd);
        close(S.wfd);
    }
    S.wfd = -1;
    pthread_mutex_unlock(&S.mu);
    if (S.rfd >= 0)
        close(S.rfd);
    S.rfd = -1;
    free_conf();
    S.on_purge = NULL;
}

int gh_stream_on(gh_ev_kind_t kind)
{
    if (!LD(S.started) || (unsigned)kind >= GH_EV_NKINDS)
        return 0;
    return kind == GH_EV_PURGE || (S.kinds & (1u << kind)) != 0;
}

int gh_stream_purge(const char *json, size_t len)
{
    if (!LD(S.started))
        return GH_ELIMIT;
    json_error_t je;
    json_t *o = json_loadb(json, len, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return GH_EINVAL;
    }
    json_object_set_new(o, "node", json_string(S.node));
    const char *tenant = json_string_value(json_object_get(o, "tenant"));
    char *text = json_dumps(o, JSON_COMPACT);
    if (!text) {
        json_decref(o);
        return GH_ENOMEM;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char id[512];
    int il = snprintf(id, sizeof id, "%s-%llu-%lld%09ld", S.node, (unsigned long long)ADD(S.purge_ctr, 1),
                      (long long)ts.tv_sec, ts.tv_nsec);
    if (il < 0 || (size_t)il >= sizeof id)
        il = (int)sizeof id - 1;
    int r = gh_stream_put(GH_EV_PURGE, tenant ? tenant : "", tenant ? strlen(tenant) : 0, id, (size_t)il, text,
                          strlen(text));
    free(text);
    json_decref(o);
    return r;
}

void gh_stream_stats(gh_stream_stats_t *s)
{
    memset(s, 0, sizeof *s);
    for (int k = 0; k < GH_EV_NKINDS; k++)
        s->appended[k] = LD(S.appended[k]);
    s->published = LD(S.published);
    s->dropped = LD(S.dropped);
    s->spool_bytes = LD(S.spool_bytes);
    s->purges_received = LD(S.purges);
    s->publish_errors = LD(S.pub_errors);
    s->connected = LD(S.connected);
}

size_t gh_stream_metrics(char *out, size_t cap)
{
    gh_stream_stats_t st;
    gh_stream_stats(&st);
    size_t o = 0;
    int ok = 1;
#define PUT(...)                                                      \
    do {                                                              \
        int k_ = ok ? snprintf(out + o, cap - o, __VA_ARGS__) : -1;   \
        if (k_ < 0 || (size_t)k_ >= cap - o)                          \
            ok = 0;                                                   \
        else                                                          \
            o += (size_t)k_;                                          \
    } while (0)
    if (!out || cap == 0)
        return 0;
    PUT("# HELP gatehouse_stream_records_total Records appended to the event spool, by kind.\n"
        "# TYPE gatehouse_stream_records_total counter\n");
    for (int k = 0; k < GH_EV_NKINDS; k++)
        PUT("gatehouse_stream_records_total{kind=\"%s\"} %llu\n", kind_names[k], (unsigned long long)st.appended[k]);
    PUT("# HELP gatehouse_stream_published_total Records acknowledged by JetStream.\n"
        "# TYPE gatehouse_stream_published_total counter\ngatehouse_stream_published_total %llu\n",
        (unsigned long long)st.published);
    PUT("# HELP gatehouse_stream_dropped_total Records refused: spool full or record too large.\n"
        "# TYPE gatehouse_stream_dropped_total counter\ngatehouse_stream_dropped_total %llu\n",
        (unsigned long long)st.dropped);
    PUT("# HELP gatehouse_stream_spool_bytes Bytes of records in the spool not yet acknowledged.\n"
        "# TYPE gatehouse_stream_spool_bytes gauge\ngatehouse_stream_spool_bytes %llu\n",
        (unsigned long long)st.spool_bytes);
    PUT("# HELP gatehouse_stream_publish_errors_total Batches that failed and were sent again.\n"
        "# TYPE gatehouse_stream_publish_errors_total counter\ngatehouse_stream_publish_errors_total %llu\n",
        (unsigned long long)st.publish_errors);
    PUT("# HELP gatehouse_stream_purges_received_total Purges from other nodes applied.\n"
        "# TYPE gatehouse_stream_purges_received_total counter\ngatehouse_stream_purges_received_total %llu\n",
        (unsigned long long)st.purges_received);
    PUT("# HELP gatehouse_stream_connected Whether the stream is connected to NATS.\n"
        "# TYPE gatehouse_stream_connected gauge\ngatehouse_stream_connected %d\n",
        st.connected);
#undef PUT
    if (!ok) {
        out[0] = 0;
        return 0;
    }
    return o;
}
