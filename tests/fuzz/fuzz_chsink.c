/* fuzz_chsink.c: libFuzzer target for what the ClickHouse sink reads (src/events/chsink.c,
 * included here to reach its internals):
 *  - a message body from the stream rewritten into a row (make_row, parse_time): the first byte
 *    picks the table, the rest is the body; a row that is accepted has a non-empty tenant and
 *    id, and its time is canonical (24 bytes, ending in 'Z') and parses back to itself;
 *  - a chunked HTTP answer from ClickHouse (dechunk): the decoded length never exceeds the input.
 * Beyond that, crashes and leaks are ASan's to find. */
#include "events/chsink.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* 1: a record as a row */
    const table_t *t = &tables[data[0] % T_N];
    json_t *obj = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (json_is_object(obj)) {
        json_t *row = NULL;
        const char *tn = NULL, *id = NULL;
        size_t tl = 0, il = 0;
        if (make_row(t, obj, "sub", 3, 1795000000000LL, &row, &tn, &tl, &id, &il) == 0) {
            if (!tl || !il)
                __builtin_trap();
            const char *tm = json_string_value(json_object_get(row, "time"));
            if (!tm || strlen(tm) != 24 || tm[23] != 'Z')
                __builtin_trap();
            int64_t ms = parse_time(tm, 24);
            char again[80];
            format_time(again, sizeof again, ms);
            if (ms < 0 || strcmp(again, tm))
                __builtin_trap();
            json_decref(row);
        }
    }
    json_decref(obj);
    /* 2: a chunked answer */
    char *copy = malloc(size);
    if (copy) {
        memcpy(copy, data, size);
        size_t out = 0;
        if (dechunk(copy, size, &out) == 1 && out > size)
            __builtin_trap();
        free(copy);
    }
    return 0;
}
