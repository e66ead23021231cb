/* err.c: names and messages of the GH_E* codes (common.h). */
#include "core/common.h"

#include <string.h>

static const char *const err_names[] = {
    "OK",
#define X(name, msg) #name,
    GH_ERRORS(X)
#undef X
};

static const char *const err_msgs[] = {
    "ok",
#define X(name, msg) msg,
    GH_ERRORS(X)
#undef X
};

const char *gh_err_name(int code)
{
    int i = code ? gh_err_index(code) : 0;
    return (i >= 0 && i < GH_E__COUNT) ? err_names[i] : "UNKNOWN";
}

const char *gh_err_msg(int code)
{
    if (code < 0 && code > -GH_ERR_BASE)
        return strerror(-code);
    int i = code ? gh_err_index(code) : 0;
    return (i >= 0 && i < GH_E__COUNT) ? err_msgs[i] : "unknown error";
}
