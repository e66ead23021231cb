/* fuzz_spool.c: libFuzzer target for the event stream's spool as read back after a crash
 * (src/events/stream.c, included here to reach its internals): whatever the bytes of a segment
 * file, scan_segment keeps a prefix made only of whole, valid records (checked here by walking it
 * again with parse_body and the CRC) and truncates the rest. Crashes and leaks are ASan's. */
#include "events/stream.c"

static char seg_file[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!seg_file[0])
        snprintf(seg_file, sizeof seg_file, "/dev/shm/gh-fuzz-seg-%d", (int)getpid());
    int fd = open(seg_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    ssize_t w = write(fd, data, size);
    close(fd);
    if (w != (ssize_t)size)
        return 0;
    static char *buf;
    if (!buf && !(buf = malloc(BATCH_BYTES)))
        return 0;
    gh_log_level = GH_LOG_ERROR; /* the truncation warnings are expected here */
    int64_t end = scan_segment(seg_file, 0, buf);
    if (end < 0 || (uint64_t)end > size)
        __builtin_trap();
    struct stat st;
    if (stat(seg_file, &st) < 0 || st.st_size != end)
        __builtin_trap();
    for (int64_t p = 0; p < end;) { /* what was kept is whole records */
        if (end - p < FRAME_HDR)
            __builtin_trap();
        uint32_t len = get_le32(data + p);
        rec_t r;
        if ((uint64_t)(end - p - FRAME_HDR) < len || crc_add(0, data + p + FRAME_HDR, len) != get_le32(data + p + 4) ||
            parse_body(data + p + FRAME_HDR, len, &r) < 0)
            __builtin_trap();
        p += FRAME_HDR + len;
    }
    unlink(seg_file);
    return 0;
}
