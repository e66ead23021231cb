/* evlog.h: the experiments' append-only log: frames of opaque records, each framed with its
 * length and a CRC, appended with one write(2) per frame and made durable with
 * fdatasync when asked. The caller (exp.c, the experiments pipeline thread) fills a pending
 * frame with records (gh_evlog_put), writes it (gh_evlog_flush) and replays the whole file at
 * start and after a configuration change (gh_evlog_replay). Single-threaded: one owner.
 *
 * File: an 8-byte magic "GHXLOG2\n", then frames: u32 length (little-endian), u32 CRC-32C
 * (core/crc32c.h) of the length's 4 bytes followed by the payload, the payload. A file of version 1
 * (magic "GHXLOG1\n", the same frames with zlib's CRC-32) is read and appended to as version 1. Opening checks every frame: a bad frame
 * that is the last one (its length reaches the end of the file, or only zero bytes follow the last
 * good frame: a torn write, the process or the machine died during an append, or the file system
 * extended the file with zeros) is cut off with ftruncate; a bad frame followed by more data is
 * corruption, and gh_evlog_open fails rather than silently drop later, acknowledged frames.
 * Calls only libc, core/crc32c and zlib's crc32. */
#ifndef GH_EXPERIMENTS_EVLOG_H
#define GH_EXPERIMENTS_EVLOG_H

#include <stddef.h>
#include <stdint.h>

#define GH_EVLOG_MAX_FRAME (256u << 20) /* bytes of one frame's payload */

typedef struct gh_evlog gh_evlog_t;

typedef struct {
    uint64_t frames, bytes;  /* valid frames and file bytes after open */
    uint64_t torn_bytes;     /* bytes cut off the tail by open (0: clean) */
} gh_evlog_stat_t;

/* A frame's payload, in file order. Return 0 to go on, nonzero to stop the replay. */
typedef int (*gh_evlog_frame_fn)(void *arg, const uint8_t *p, size_t n);

/* Open (create) the log at path, check it and cut a torn tail. 0, or a negative errno / GH_E*
 * with why in err. */
int gh_evlog_open(gh_evlog_t **out, const char *path, gh_evlog_stat_t *st, char *err, size_t errcap);
void gh_evlog_close(gh_evlog_t *l);

/* Every frame written so far (flushed), in order, to fn. 0, or negative on a read error. */
int gh_evlog_replay(gh_evlog_t *l, gh_evlog_frame_fn fn, void *arg);

/* n bytes at the end of the pending frame (not yet written), or NULL when out of memory. */
uint8_t *gh_evlog_put(gh_evlog_t *l, size_t n);
/* Bytes in the pending frame; gh_evlog_unput(l, mark) drops what was put after mark. */
size_t gh_evlog_pending(const gh_evlog_t *l);
void gh_evlog_unput(gh_evlog_t *l, size_t mark);
/* Write the pending frame with one write(2) (nothing when empty), then fdatasync when sync (also
 * when the frame was empty: earlier unsynced frames become durable). 0, or a negative errno: the
 * file is cut back to its size before the frame, and the pending frame is dropped. */
int gh_evlog_flush(gh_evlog_t *l, int sync);
/* The file's size (flushed frames). */
uint64_t gh_evlog_size(const gh_evlog_t *l);

#endif
