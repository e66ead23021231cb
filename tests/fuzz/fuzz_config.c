/* libFuzzer target for the configuration loader: any bytes must give either a
 * snapshot or errors in the FILE:LINE:COL: form, never a crash or a leak. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    int rc = gh_conf_load_string("f.yaml", (const char *)data, size, &c, &errs);
    if (rc == 0) {
        if (!c || errs.n)
            __builtin_trap();
        gh_conf_unref(c);
    } else {
        if (c || !errs.n)
            __builtin_trap();
        for (unsigned i = 0; i < errs.n; i++)
            if (strncmp(errs.msgs[i], "f.yaml:", 7) != 0)
                __builtin_trap();
    }
    gh_conf_errors_free(&errs);
    return 0;
}
