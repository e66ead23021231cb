/* evlog.c: see evlog.h. Called by exp.c (the experiments pipeline thread) and
 * tests/unit/test_exp_log.c; calls libc (open, pread, write, fdatasync, ftruncate), core/crc32c and
 * zlib's crc32 (logs of version 1). */
#include "experiments/evlog.h"

#include "core/common.h"
#include "core/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The version is the file's: one written by version 1 (zlib's CRC-32) keeps it, new files get 2
 * (CRC-32C: the crc32 instruction, ~20 times cheaper per byte). */
static const char MAGIC1[8] = "GHXLOG1\n", MAGIC2[8] = "GHXLOG2\n";
#define MAGIC_LEN 8u
#define HDR 8u /* per frame: length, CRC */

struct gh_evlog {
    int fd;
    int version;     /* 1: zlib's CRC-32, 2: CRC-32C */
    uint64_t size;   /* flushed bytes */
    uint8_t *buf;    /* pending frame: HDR reserved, then records */
    size_t len, cap; /* len counts HDR */
    char *path;
};

static uint32_t frame_crc(int version, const uint8_t *lenbytes, const uint8_t *p, size_t n)
{
    if (version == 2)
        return gh_crc32c(gh_crc32c(0, lenbytes, 4), p, n);
    uLong c = crc32(0L, lenbytes, 4);
    while (n) { /* crc32 takes uInt lengths */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int read_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Walk the frames of [HDR_MAGIC, end): to fn when given. Returns 0 with *good the end of the last
 * valid frame and *bad 1 when a bad frame stopped the walk; negative on a read error. */
static int walk(int fd, int version, uint64_t end, gh_evlog_frame_fn fn, void *arg, uint64_t *good, int *bad,
                uint64_t *frames)
{
    uint64_t off = MAGIC_LEN;
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    *bad = 0;
    while (off < end) {
        uint8_t h[HDR];
        if (end - off < HDR) {
            *bad = 1;
            break;
        }
        if ((rc = read_all(fd, h, HDR, off)) < 0)
            break;
        uint32_t n = rd32(h);
        if (n > GH_EVLOG_MAX_FRAME || n > end - off - HDR) {
            *bad = 1;
            break;
        }
        if (n > cap) {
            size_t nc = cap ? cap : 1u << 20;
            while (nc < n)
                nc *= 2;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = nc;
        }
        if ((rc = read_all(fd, buf, n, off + HDR)) < 0)
            break;
        if (frame_crc(version, h, buf, n) != rd32(h + 4)) {
            *bad = 1;
            break;
        }
        off += HDR + n;
        if (frames)
            (*frames)++;
        if (fn && fn(arg, buf, n))
            break;
    }
    free(buf);
    *good = off;
    return rc;
}

/* Whether [from, to) of fd holds only zero bytes (a file extended by the file system after a
 * crash, before the data reached the disk). */
static int all_zero(int fd, uint64_t from, uint64_t to)
{
    uint8_t b[65536];
    while (from < to) {
        size_t n = to - from < sizeof b ? (size_t)(to - from) : sizeof b;
        if (read_all(fd, b, n, from) < 0)
            return 0;
        for (size_t i = 0; i < n; i++)
            if (b[i])
                return 0;
        from += n;
    }
    return 1;
}

int gh_evlog_open(gh_evlog_t **out, const char *path, gh_evlog_stat_t *st, char *err, size_t errcap)
{
    gh_evlog_stat_t dummy;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    *out = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errcap, "experiments log %s: %s", path, strerror(e));
        return -e;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errcap, "experiments log %s: %s", path, strerror(e));
        return -e;
    }
    uint64_t size = (uint64_t)sb.st_size;
    int rc = 0, version = 2;
    if (size < MAGIC_LEN) { /* new (or torn while being created) */
        if (ftruncate(fd, 0) < 0 || pwrite(fd, MAGIC2, MAGIC_LEN, 0) != (ssize_t)MAGIC_LEN || fdatasync(fd) < 0) {
            rc = -errno;
            snprintf(err, errcap, "experiments log %s: %s", path, strerror(errno));
            close(fd);
            return rc;
        }
        size = MAGIC_LEN;
    } else {
        char m[MAGIC_LEN];
        if ((rc = read_all(fd, (uint8_t *)m, sizeof m, 0)) == 0 && !memcmp(m, MAGIC1, sizeof m))
            version = 1;
        else if (rc < 0 || memcmp(m, MAGIC2, sizeof m)) {
            snprintf(err, errcap, "experiments log %s: %s", path, rc < 0 ? gh_err_msg(rc) : "not an experiments log (bad magic)");
            close(fd);
            return rc < 0 ? rc : -EINVAL;
        }
        uint64_t good = 0;
        int bad = 0;
        if ((rc = walk(fd, version, size, NULL, NULL, &good, &bad, &st->frames)) < 0) {
            snprintf(err, errcap, "experiments log %s: %s", path, gh_err_msg(rc));
            close(fd);
            return rc;
        }
        if (bad) {
            /* the bad frame is the tail when it reaches the end of the file (or its header is
             * cut): a torn append; else acknowledged frames follow it: corruption */
            uint8_t h[HDR];
            int tail = size - good < HDR;
            if (!tail && read_all(fd, h, HDR, good) == 0)
                tail = (uint64_t)rd32(h) >= size - good - HDR || all_zero(fd, good, size);
            if (!tail) {
                snprintf(err, errcap,
                         "experiments log %s: frame at offset %llu fails its CRC and %llu bytes follow it: the log is "
                         "corrupt (not a torn write); move it aside to start empty, or cut it there with truncate -s %llu",
                         path, (unsigned long long)good, (unsigned long long)(size - good), (unsigned long long)good);
                close(fd);
                return -EIO;
            }
            if (ftruncate(fd, (off_t)good) < 0 || fdatasync(fd) < 0) {
                rc = -errno;
                snprintf(err, errcap, "experiments log %s: cutting the torn tail: %s", path, strerror(errno));
                close(fd);
                return rc;
            }
            st->torn_bytes = size - good;
            size = good;
        }
    }
    gh_evlog_t *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        close(fd);
        snprintf(err, errcap, "out of memory");
        return -ENOMEM;
    }
    l->fd = fd;
    l->version = version;
    l->size = size;
    l->len = HDR;
    st->bytes = size;
    *out = l;
    return 0;
}

void gh_evlog_close(gh_evlog_t *l)
{
    if (!l)
        return;
    close(l->fd);
    free(l->buf);
    free(l->path);
    free(l);
}

int gh_evlog_replay(gh_evlog_t *l, gh_evlog_frame_fn fn, void *arg)
{
    uint64_t good = 0;
    int bad = 0;
    int rc = walk(l->fd, l->version, l->size, fn, arg, &good, &bad, NULL);
    return rc < 0 ? rc : bad ? -EIO : 0;
}

uint8_t *gh_evlog_put(gh_evlog_t *l, size_t n)
{
    if (l->len + n > l->cap) {
        size_t nc = l->cap ? l->cap : 1u << 16;
        while (nc < l->len + n)
            nc *= 2;
        uint8_t *nb = realloc(l->buf, nc);
        if (!nb)
            return NULL;
        l->buf = nb;
        l->cap = nc;
    }
    uint8_t *p = l->buf + l->len;
    l->len += n;
    return p;
}

size_t gh_evlog_pending(const gh_evlog_t *l) { return l->len - HDR; }

void gh_evlog_unput(gh_evlog_t *l, size_t mark)
{
    if (mark + HDR < l->len)
        l->len = mark + HDR;
}

uint64_t gh_evlog_size(const gh_evlog_t *l) { return l->size; }

int gh_evlog_flush(gh_evlog_t *l, int sync)
{
    size_t n = l->len - HDR;
    if (n) {
        if (n > GH_EVLOG_MAX_FRAME) {
            l->len = HDR;
            return -EFBIG;
        }
        wr32(l->buf, (uint32_t)n);
        wr32(l->buf + 4, frame_crc(l->version, l->buf, l->buf + HDR, n));
        size_t done = 0;
        while (done < l->len) { /* one write(2); more only when the kernel takes part of it */
            ssize_t w = pwrite(l->fd, l->buf + done, l->len - done, (off_t)(l->size + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = w < 0 ? errno : EIO;
                if (ftruncate(l->fd, (off_t)l->size) < 0) { /* a partial frame would be a torn tail; cut it now */
                }
                l->len = HDR;
                return -e;
            }
            done += (size_t)w;
        }
        l->size += l->len;
        l->len = HDR;
    }
    if (sync && fdatasync(l->fd) < 0) {
        /* not durable: the frame is cut again, so that the file never holds what its writer was
         * told failed (the caller answers 503 and the client retries) */
        int e = errno;
        if (n && ftruncate(l->fd, (off_t)(l->size - HDR - n)) == 0)
            l->size -= HDR + n;
        return -e;
    }
    return 0;
}
