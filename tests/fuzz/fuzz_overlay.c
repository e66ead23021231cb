/* libFuzzer target for the control plane's layer over the file (gh_conf_load_layered): any
 * bytes as the API's JSON objects must give a snapshot or errors, each "api: PATH: message"
 * (or about the file, FILE:LINE:COL), never a crash or a leak. Tenant API keys put their
 * request bodies into this JSON, so it is attacker-controlled. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static const char file[] = "listeners: [{listen: \"127.0.0.1:8080\"}]\n"
                           "upstreams: {app: {backends: [\"127.0.0.1:9000\"]}}\n"
                           "tenants:\n  - name: f\n    sites: [{name: s, hosts: [f.test], routes: [{name: r, upstream: app}]}]\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    int rc = gh_conf_load_layered("f.yaml", file, sizeof file - 1, (const char *)data, size, &c, &errs);
    if (rc == 0) {
        if (!c || errs.n)
            __builtin_trap();
        gh_conf_unref(c);
    } else if (rc == GH_ECONFIG) {
        if (c || !errs.n)
            __builtin_trap();
        for (unsigned i = 0; i < errs.n; i++)
            if (strncmp(errs.msgs[i], "api: ", 5) != 0 && strncmp(errs.msgs[i], "f.yaml:", 7) != 0)
                __builtin_trap();
    }
    gh_conf_errors_free(&errs);
    return 0;
}
