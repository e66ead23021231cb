/* lua.h: edge functions: LuaJIT code attached to routes, run in the request phase,
 * the response-header phase, or both.
 *
 * A function is a Lua chunk that defines on_request(r) and/or on_response(r). Each
 * tenant's functions run in their own lua_State per worker (gh_lua_t), every function
 * (chunk) with its own global environment over a sandboxed base (no io, os but time,
 * clock and date, no require, load, loadstring, dofile, no debug, ffi or jit; string, table, math,
 * bit, pairs, ... are there). The JIT compiler is off in these states: the interpreter
 * honours the instruction-count hook that enforces the per-invocation limit, compiled
 * traces would not.
 *
 * Limits per invocation: max_instructions (checked every 1000 VM instructions) and
 * max_memory (bytes the state may grow by during the call; the state's allocator
 * refuses past it, which raises a Lua memory error). Work done inside library functions
 * is charged too (string patterns per matching step, table.sort/insert/remove/concat per
 * element), and a call stops after max_instructions x 100 ns of wall-clock time (at least
 * 50 ms) whatever it spends it on (GH_FN_LIMIT). A function that errors or
 * exceeds a limit returns GH_FN_ERROR / GH_FN_LIMIT with a message; the state stays
 * usable (a full GC runs after a memory error).
 *
 * The API a function sees (r is the same object in both phases of one request):
 *   r:method() r:set_method(m) r:path() r:set_path(p) r:query() r:set_query(q)
 *   r:query_arg(name)            -> value or nil (first occurrence, not decoded)
 *   r:header(name)               -> value or nil (after this request's edits so far)
 *   r:set_header(n, v) r:add_header(n, v) r:remove_header(n)   (request sent upstream)
 *   r:cookie(name)               -> value or nil
 *   r:tenant() r:route() r:client_ip() r:country() r:ja4() r:host()   (country/ja4 may be nil)
 *   r:variant(flag)              -> the request's variant of a flag, or nil
 *   r:respond(status, body [, headers table])   answer now (request phase only; ends it)
 *   r:redirect(location [, status=302])         the same, a redirect
 *   r:set_upstream(name)         -> true, or false when the tenant has no such pool
 *   r:set_response_header(n, v) r:add_response_header(n, v) r:remove_response_header(n)
 *   r:status()                   -> response status (response phase; nil before)
 *   r:response_header(name)      -> value or nil (response phase)
 *   r:log(msg)                   logged at info with the tenant and route
 *   r:now()                      -> Unix time in seconds (float, ms precision)
 *   r.ctx                        a table kept from the request phase to the response phase
 * Values must be strings (numbers are converted); names and values with CR, LF or NUL,
 * and names that are not HTTP tokens, raise an error. Framing and
 * hop-by-hop names (Content-Length, Transfer-Encoding, Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Upgrade) raise an error too: the gateway writes those.
 * What changes the request sent upstream (set_method/path/query, set/add/remove_header,
 * set_upstream, respond, redirect) raises an error in on_response.
 *
 * Called by config.c (gh_lua_check at load) and session.c (per worker and tenant).
 * Calls LuaJIT. */
#ifndef GH_EDGE_LUA_H
#define GH_EDGE_LUA_H

#include "core/common.h"
#include "http/h1.h"
#include "rules/edits.h"

enum { GH_FN_REQUEST = 1, GH_FN_RESPONSE = 2 }; /* phases (a bit mask where several) */
enum { GH_FN_OK = 0, GH_FN_ERROR = -1, GH_FN_LIMIT = -2 };

typedef struct {
    uint64_t max_instructions; /* per invocation (default 1,000,000) */
    size_t max_memory;         /* bytes a call may add to its state (default 8 MiB) */
} gh_fn_limits_t;

/* Check a function at configuration load: it must compile, its top level must run within
 * the limits (it may only define things), and it must define on_request and/or
 * on_response as functions. chunkname is "@FILE" for a file (messages read "FILE:LINE:
 * ..."), or "=NAME" for inline code. Returns the phases it defines (GH_FN_* mask, > 0),
 * or GH_FN_ERROR with the message in err. */
int gh_lua_check(const char *chunkname, const char *code, size_t len, const gh_fn_limits_t *lim, char *err,
                 size_t errlen);

typedef struct gh_lua gh_lua_t;

/* One tenant's state on one worker. NULL on OOM. */
gh_lua_t *gh_lua_new(void);
void gh_lua_free(gh_lua_t *L);
/* Load function number id (0..) of this state: compile and run its top level. Functions
 * are loaded once, before the first call. Returns the phases (> 0) or GH_FN_ERROR. */
int gh_lua_load(gh_lua_t *L, uint32_t id, const char *chunkname, const char *code, size_t len,
                const gh_fn_limits_t *lim, char *err, size_t errlen);

/* What a running function sees of its request. Filled by the session. */
typedef struct gh_fn_req {
    gh_str_t method, path, query, host; /* as received */
    const gh_h1_header_t *headers;      /* request header fields as received */
    uint32_t nheaders;
    const char *tenant, *route, *client_ip; /* NUL-terminated */
    const char *country, *ja4;              /* or NULL */
    const char *(*variant)(void *arg, const char *flag);   /* or NULL */
    const void *(*upstream)(void *arg, const char *name, size_t n); /* pool by name, or NULL */
    void *arg;
    /* response phase */
    int status;
    const gh_h1_header_t *resp_headers;
    uint32_t nresp_headers;
    /* where the function's changes go (the session creates it; never NULL in a call) */
    gh_edits_t *edits;
    /* the function's own: r.ctx (a registry reference, 0: none yet); released by gh_lua_done */
    int ctx_ref;
    uint64_t now_ms; /* wall clock, ms */
    void (*log)(void *arg, const char *msg, size_t n); /* r:log, or NULL */
} gh_fn_req_t;

/* Run function id's phase (GH_FN_REQUEST or GH_FN_RESPONSE) for req. GH_FN_OK (the function
 * may have answered: req->edits->status != 0), GH_FN_ERROR or GH_FN_LIMIT with err set. A
 * phase the function does not define is GH_FN_OK without running anything. */
int gh_lua_run(gh_lua_t *L, uint32_t id, int phase, gh_fn_req_t *req, const gh_fn_limits_t *lim, char *err,
               size_t errlen);
/* The request is over: release what the function kept for it (r.ctx). */
void gh_lua_done(gh_lua_t *L, gh_fn_req_t *req);
/* Bytes the state holds now (metrics). */
size_t gh_lua_memory(const gh_lua_t *L);

#endif
