/* err.c: names and messages of the GH_E* codes (common.h). */
#include "core/common.h"

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
    int i = -code;
    return (i >= 0 && i < GH_E__COUNT) ? err_names[i] : "UNKNOWN";
}

const char *gh_err_msg(int code)
{
    int i = -code;
    return (i >= 0 && i < GH_E__COUNT) ? err_msgs[i] : "unknown error";
}
