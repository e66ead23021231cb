/* fuzz_events.c: libFuzzer target for the experiments' event parser (POST /v1/events:publish,
 * src/experiments/exp.c): any body either is refused as a whole (400/413) or gives events whose
 * names, units and ids are non-empty and bounded, payloads JSON objects, times not in the
 * future, and per-event errors with ascending indexes (gh_exp_parse_check traps nothing itself:
 * its -1000 is turned into a trap here). Leaks are ASan's to find. */
#include "experiments/exp.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t nev = 0, nerr = 0;
    char err[300];
    int rc = gh_exp_parse_check((const char *)data, size, 1795000000000LL, &nev, &nerr, err, sizeof err);
    if (rc == -1000)
        __builtin_trap();
    if (rc < 0 && rc != -400 && rc != -413 && rc != -500)
        __builtin_trap();
    if (rc == 0 && nev + nerr > 1000)
        __builtin_trap();
    return 0;
}
