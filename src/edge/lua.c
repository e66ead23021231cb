/* lua.c: edge functions on LuaJIT (see lua.h for the contract).
 *
 * One lua_State per tenant and worker (gh_lua_t). Its allocator counts the bytes the
 * state holds and, while a call runs, refuses growth past the call's ceiling (bytes at
 * the start of the call + max_memory, never above HARD_CAP); a count hook every
 * HOOK_EVERY VM instructions enforces max_instructions. The JIT is off so that the hook
 * sees every instruction. A limit, once hit, sticks for the rest of the call: the hook
 * raises at every tick, the allocator refuses every growth, and the sandbox's pcall,
 * xpcall and coroutine.resume re-raise, so a function cannot catch its way past it.
 * r:respond / r:redirect end the function the same way (a sticky "answered" stop).
 *
 * The sandbox: each function (chunk) gets its own environment table whose metatable
 * (hidden) reads a whitelist of base functions; the library tables (string, table,
 * math, bit, os with time/clock/date only, coroutine) are copied into each environment,
 * so what one function changes there another does not see. The string metatable is
 * locked and string.dump removed; no io, debug, ffi, jit, package, load*, dofile,
 * getfenv/setfenv, collectgarbage, newproxy (no __gc finalizers: they would run with
 * hooks off) or print. Chunks are loaded as text only (bytecode can escape a sandbox).
 * Globals a function sets stay in its environment in this state: they persist from call
 * to call on one worker but are not shared between workers (each has its own state).
 *
 * The request object r is one userdata per state, reused by every call: its methods
 * are C functions that read the current request from the gh_lua_t (set for the call,
 * cleared after) and write changes through the gh_edits_* API; r.ctx is a per-request
 * table kept in the registry (gh_fn_req_t.ctx_ref) from the request to the response
 * phase. A call allocates nothing in the Lua heap unless the function does.
 *
 * Called by config.c (gh_lua_check) and session.c. Calls LuaJIT, src/rules/edits.c and
 * src/http/h1.c (gh_h1_find, gh_h1_cookie). */
#include "edge/lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define HOOK_EVERY 1000              /* VM instructions between two count hooks */
#define HARD_CAP ((size_t)64 << 20)  /* bytes a state may hold during a call, whatever max_memory says */
#define DEFAULT_INSTRUCTIONS 1000000
#define DEFAULT_MEMORY ((size_t)8 << 20)
#define MAX_ID 65535 /* function ids per state */

enum { STOP_INS = 1, STOP_MEM = 2, STOP_ANSWER = 4 }; /* why a call must end (sticky until its end) */

typedef struct {
    int env, on_req, on_resp; /* registry references, LUA_NOREF when absent */
    char name[64];            /* chunk name without '@' / '=', for messages */
} fn_t;

struct gh_lua {
    lua_State *L;
    size_t used;     /* bytes the state holds */
    size_t ceiling;  /* growth past it is refused (SIZE_MAX outside calls) */
    int limited;     /* a call (or a load) runs under the limits */
    int stop;        /* STOP_* of the current call */
    int phase;       /* GH_FN_REQUEST / GH_FN_RESPONSE of the current call (0 at load) */
    uint64_t ticks, max_ticks, max_instructions;
    size_t max_memory; /* of the current call, for the message */
    gh_fn_req_t *req;  /* the current request, NULL outside calls */
    void *r;           /* the request object's block (identity check of self) */
    int r_ref, lib_ref, envmt_ref;
    fn_t *fns;
    uint32_t nfns;
    char limit_msg[160]; /* where the instruction limit hit */
};

static char answer_sentinel; /* error object of r:respond / r:redirect */

static gh_lua_t *state_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- limits ---- */

/* The state's allocator: Lua's contract (nsize 0 frees; ptr NULL allocates). Growth is
 * refused past the ceiling during calls, and every growth once one was refused. */
static void *state_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    gh_lua_t *g = ud;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        g->used -= osize;
        return NULL;
    }
    if (nsize > osize && g->limited && ((g->stop & STOP_MEM) || g->used + (nsize - osize) > g->ceiling)) {
        g->stop |= STOP_MEM;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p && nsize > osize)
        return NULL;
    g->used = g->used - osize + nsize; /* a failed shrink keeps the block: Lua counts it at nsize */
    return p ? p : ptr;
}

/* Raise the error that ends a stopped call (again, when a pcall caught it). */
static int raise_stop(lua_State *L, gh_lua_t *g)
{
    if (g->stop & STOP_INS)
        lua_pushstring(L, g->limit_msg);
    else if (g->stop & STOP_MEM)
        lua_pushliteral(L, "memory limit exceeded"); /* allocating fails: a memory error, as wanted */
    else
        lua_pushlightuserdata(L, &answer_sentinel);
    return lua_error(L);
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    gh_lua_t *g = state_of(L);
    if (!g->limited)
        return;
    if (!g->stop) {
        if (++g->ticks <= g->max_ticks)
            return;
        g->stop |= STOP_INS;
        lua_getinfo(L, "Sl", ar);
        snprintf(g->limit_msg, sizeof g->limit_msg, "%s:%d: instruction limit exceeded (max_instructions %llu)",
                 ar->short_src, ar->currentline, (unsigned long long)g->max_instructions);
    }
    raise_stop(L, g);
}

static void limits_begin(gh_lua_t *g, const gh_fn_limits_t *lim)
{
    uint64_t ins = lim && lim->max_instructions ? lim->max_instructions : DEFAULT_INSTRUCTIONS;
    size_t mem = lim && lim->max_memory ? lim->max_memory : DEFAULT_MEMORY;
    g->ticks = 0;
    g->max_ticks = ins / HOOK_EVERY; /* stop when ticks * HOOK_EVERY > ins */
    g->max_instructions = ins;
    g->max_memory = mem;
    g->ceiling = g->used >= HARD_CAP || mem >= HARD_CAP - g->used ? HARD_CAP : g->used + mem;
    g->stop = 0;
    g->limited = 1;
    /* resets the hook's counter; the hook stays installed between calls (no Lua code runs
     * then), which spares switching the interpreter's dispatch mode twice per call */
    lua_sethook(g->L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void limits_end(gh_lua_t *g)
{
    g->limited = 0;
    g->ceiling = SIZE_MAX;
}

/* The message of a failed call from the error object on top (no allocation). */
static void error_text(lua_State *L, char *err, size_t errlen)
{
    switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        set_err(err, errlen, "%.*s", (int)GH_MIN(n, 4096u), s);
        break;
    }
    case LUA_TNUMBER:
        set_err(err, errlen, "%.14g", (double)lua_tonumber(L, -1));
        break;
    default:
        set_err(err, errlen, "(error object is a %s value)", luaL_typename(L, -1));
    }
}

/* Classify the end of a call or load (st: what lua_pcall / lua_cpcall returned), fill err,
 * collect garbage after a memory limit, and clear the stop. */
static int outcome(gh_lua_t *g, int st, const char *name, char *err, size_t errlen)
{
    int stop = g->stop, rc = GH_FN_OK;
    g->stop = 0;
    if (stop & STOP_INS) {
        set_err(err, errlen, "%s", g->limit_msg);
        rc = GH_FN_LIMIT;
    } else if (stop & STOP_MEM) {
        set_err(err, errlen, "%s: memory limit exceeded (max_memory %zu bytes)", name, g->max_memory);
        rc = GH_FN_LIMIT;
    } else if (st != 0 && !(stop & STOP_ANSWER)) {
        if (st == LUA_ERRMEM)
            set_err(err, errlen, "%s: out of memory", name);
        else
            error_text(g->L, err, errlen);
        rc = GH_FN_ERROR;
    }
    if (stop & STOP_MEM)
        lua_gc(g->L, LUA_GCCOLLECT, 0);
    return rc;
}

/* ---- request object helpers ---- */

/* The current request, checking that a request is current and that self is r. */
static gh_fn_req_t *req_of(lua_State *L, gh_lua_t **gp)
{
    gh_lua_t *g = state_of(L);
    if (GH_UNLIKELY(!g->req))
        return luaL_error(L, "request is over"), NULL;
    if (GH_UNLIKELY(lua_touserdata(L, 1) != g->r))
        return luaL_error(L, "call request methods with a colon: r:name(...)"), NULL;
    if (gp)
        *gp = g;
    return g->req;
}

static gh_fn_req_t *request_phase(lua_State *L, const char *what)
{
    gh_lua_t *g;
    gh_fn_req_t *q = req_of(L, &g);
    if (g->phase != GH_FN_REQUEST)
        luaL_error(L, "%s is only allowed in on_request", what);
    return q;
}

static gh_str_t arg_str(lua_State *L, int i)
{
    size_t n;
    const char *p = luaL_checklstring(L, i, &n);
    return gh_str(p, n);
}

static int push_str(lua_State *L, gh_str_t s)
{
    if (s.p)
        lua_pushlstring(L, s.p, s.n);
    else
        lua_pushnil(L);
    return 1;
}

/* s printable for an error message: quotes, backslashes and controls escaped, cut at 48 bytes. */
static const char *shown(char *buf, size_t cap, gh_str_t s)
{
    size_t o = 0, i = 0;
    for (; i < s.n && o + 8 < cap && i < 48; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (i < s.n)
        o += (size_t)snprintf(buf + o, cap - o, "...");
    buf[o] = 0;
    return buf;
}

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(gh_str_t s)
{
    if (!s.n)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!is_tchar((unsigned char)s.p[i]))
            return 0;
    return 1;
}

/* No CR, LF or NUL; extra: further bytes refused ("" none). */
static int clean(gh_str_t s, const char *extra)
{
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (c == '\r' || c == '\n' || c == 0 || strchr(extra, c))
            return 0;
    }
    return 1;
}

/* Fields that frame the message or belong to one connection: the gateway writes them, a
 * function setting them could desynchronise the client or the upstream connection. */
static int is_managed(gh_str_t n)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection", "keep-alive",
                                        "proxy-connection", "te", "trailer", "upgrade"};
    for (size_t i = 0; i < GH_ARRAY_LEN(names); i++)
        if (gh_str_caseeq_lit(n, names[i]))
            return 1;
    return 0;
}

static void check_name(lua_State *L, gh_str_t n)
{
    char b[256];
    if (!is_token(n))
        luaL_error(L, "invalid header name \"%s\"", shown(b, sizeof b, n));
    if (is_managed(n))
        luaL_error(L, "header %s is managed by the gateway", shown(b, sizeof b, n));
}

static void check_value(lua_State *L, gh_str_t n, gh_str_t v)
{
    char b[256];
    if (!clean(v, ""))
        luaL_error(L, "invalid value for header %s (CR, LF or NUL)", shown(b, sizeof b, n));
}

static void check_rc(lua_State *L, int rc)
{
    if (rc == GH_ELIMIT)
        luaL_error(L, "too many edits");
    else if (rc < 0)
        luaL_error(L, "out of memory");
}

static gh_str_t dup_str(lua_State *L, gh_edits_t *e, gh_str_t s)
{
    char *d = gh_edits_dup(e, s.p ? s.p : "", s.n);
    if (!d)
        luaL_error(L, "out of memory");
    return gh_str(d, s.n);
}

static int edit_header(lua_State *L, int resp, int op, const char *what)
{
    gh_fn_req_t *q = resp ? req_of(L, NULL) : request_phase(L, what);
    gh_str_t n = arg_str(L, 2);
    gh_str_t v = op == GH_HE_REMOVE ? GH_STR("") : arg_str(L, 3);
    check_name(L, n);
    check_value(L, n, v);
    check_rc(L, gh_edits_header(q->edits, resp, op, n, v));
    return 0;
}

/* ---- r's methods ---- */

static int r_method(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    return push_str(L, q->edits->method.p ? q->edits->method : q->method);
}

static int r_path(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    return push_str(L, q->edits->path.p ? q->edits->path : q->path);
}

static int r_query(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    gh_str_t s = q->edits->query.p ? q->edits->query : q->query;
    return push_str(L, s.p ? s : GH_STR(""));
}

enum { F_METHOD, F_PATH, F_QUERY };

/* set_method / set_path / set_query: the value validated, then copied into the edits. */
static int set_field(lua_State *L, int which)
{
    static const char *const what[] = {"set_method", "set_path", "set_query"};
    gh_fn_req_t *q = request_phase(L, what[which]);
    gh_str_t v = arg_str(L, 2);
    int ok;
    if (which == F_METHOD)
        ok = is_token(v);
    else if (which == F_PATH)
        ok = v.n && v.p[0] == '/' && clean(v, " #?");
    else
        ok = clean(v, " #");
    char b[256];
    if (!ok)
        luaL_error(L, "%s: invalid value \"%s\"", what[which], shown(b, sizeof b, v));
    gh_edits_t *e = q->edits;
    check_rc(L, gh_edits_set(e, which == F_METHOD ? &e->method : which == F_PATH ? &e->path : &e->query, v));
    return 0;
}

static int r_set_method(lua_State *L) { return set_field(L, F_METHOD); }
static int r_set_path(lua_State *L) { return set_field(L, F_PATH); }
static int r_set_query(lua_State *L) { return set_field(L, F_QUERY); }

static int r_query_arg(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    gh_str_t name = arg_str(L, 2);
    gh_str_t s = q->edits->query.p ? q->edits->query : q->query;
    const char *p = s.p, *end = s.p + s.n;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == name.n && !memcmp(p, name.p, name.n))
            return push_str(L, eq ? gh_str(eq + 1, (size_t)(stop - eq - 1)) : GH_STR(""));
        p = amp ? amp + 1 : end;
    }
    lua_pushnil(L);
    return 1;
}

static int r_header(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    gh_str_t name = arg_str(L, 2), v;
    if (gh_edits_req_header(q->edits, name, &v))
        return push_str(L, v);
    const gh_h1_header_t *h = gh_h1_find(q->headers, q->nheaders, name);
    return push_str(L, h ? h->value : GH_STR_NULL);
}

static int r_set_header(lua_State *L) { return edit_header(L, 0, GH_HE_SET, "set_header"); }
static int r_add_header(lua_State *L) { return edit_header(L, 0, GH_HE_APPEND, "add_header"); }
static int r_remove_header(lua_State *L) { return edit_header(L, 0, GH_HE_REMOVE, "remove_header"); }
static int r_set_response_header(lua_State *L) { return edit_header(L, 1, GH_HE_SET, NULL); }
static int r_add_response_header(lua_State *L) { return edit_header(L, 1, GH_HE_APPEND, NULL); }
static int r_remove_response_header(lua_State *L) { return edit_header(L, 1, GH_HE_REMOVE, NULL); }

static int r_cookie(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    return push_str(L, gh_h1_cookie(q->headers, q->nheaders, arg_str(L, 2)));
}

static int r_tenant(lua_State *L) { return lua_pushstring(L, req_of(L, NULL)->tenant), 1; }
static int r_route(lua_State *L) { return lua_pushstring(L, req_of(L, NULL)->route), 1; }
static int r_client_ip(lua_State *L) { return lua_pushstring(L, req_of(L, NULL)->client_ip), 1; }
static int r_country(lua_State *L) { return lua_pushstring(L, req_of(L, NULL)->country), 1; }
static int r_ja4(lua_State *L) { return lua_pushstring(L, req_of(L, NULL)->ja4), 1; }

static int r_host(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    gh_str_t v;
    if (gh_edits_req_header(q->edits, GH_STR("host"), &v) && v.p)
        return push_str(L, v);
    return push_str(L, q->host);
}

static int r_variant(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    const char *flag = luaL_checkstring(L, 2);
    lua_pushstring(L, q->variant ? q->variant(q->arg, flag) : NULL);
    return 1;
}

/* End the call as answered (GH_FN_OK): a sticky stop the sandbox's pcall re-raises. */
static int answered(lua_State *L)
{
    gh_lua_t *g = state_of(L);
    g->stop |= STOP_ANSWER;
    return raise_stop(L, g);
}

static int r_respond(lua_State *L)
{
    gh_fn_req_t *q = request_phase(L, "respond");
    gh_edits_t *e = q->edits;
    lua_Integer st = luaL_checkinteger(L, 2);
    if (st < 200 || st > 599)
        return luaL_error(L, "respond: status must be 200..599");
    gh_str_t body = lua_isnoneornil(L, 3) ? GH_STR("") : arg_str(L, 3);
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_settop(L, 4);
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            int vt = lua_type(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING || (vt != LUA_TSTRING && vt != LUA_TNUMBER))
                return luaL_error(L, "respond: headers must map names to strings");
            size_t nn, vn;
            const char *np = lua_tolstring(L, -2, &nn), *vp = lua_tolstring(L, -1, &vn);
            gh_str_t n = gh_str(np, nn), v = gh_str(vp, vn);
            check_name(L, n);
            check_value(L, n, v);
            check_rc(L, gh_edits_header(e, 1, GH_HE_SET, n, v));
            lua_pop(L, 1);
        }
    }
    e->body = dup_str(L, e, body);
    e->location = GH_STR_NULL;
    e->ctype = GH_STR_NULL;
    if (body.n && !gh_edits_drops(e, 1, GH_STR("content-type")))
        e->ctype = dup_str(L, e, GH_STR("text/plain; charset=utf-8"));
    e->status = (int)st;
    return answered(L);
}

static int r_redirect(lua_State *L)
{
    gh_fn_req_t *q = request_phase(L, "redirect");
    gh_edits_t *e = q->edits;
    gh_str_t loc = arg_str(L, 2);
    lua_Integer st = luaL_optinteger(L, 3, 302);
    char b[256];
    if (!loc.n || !clean(loc, ""))
        return luaL_error(L, "redirect: invalid location \"%s\"", shown(b, sizeof b, loc));
    if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308)
        return luaL_error(L, "redirect: status must be 301, 302, 303, 307 or 308");
    e->location = dup_str(L, e, loc);
    e->body = GH_STR_NULL;
    e->ctype = GH_STR_NULL;
    e->status = (int)st;
    return answered(L);
}

static int r_set_upstream(lua_State *L)
{
    gh_fn_req_t *q = request_phase(L, "set_upstream");
    gh_str_t name = arg_str(L, 2);
    const void *u = q->upstream ? q->upstream(q->arg, name.p, name.n) : NULL;
    if (u)
        q->edits->upstream = u;
    lua_pushboolean(L, u != NULL);
    return 1;
}

static int r_status(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    if (q->status > 0)
        lua_pushinteger(L, q->status);
    else
        lua_pushnil(L);
    return 1;
}

/* A response field after the edits: the last set or removal of the name wins; else the field
 * received; else the first value appended. */
static int r_response_header(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    gh_str_t name = arg_str(L, 2), appended = GH_STR_NULL;
    const gh_edits_t *e = q->edits;
    for (uint32_t i = e->nh; i-- > 0;) {
        const gh_hedit_t *h = &e->h[i];
        if (!h->resp || !gh_str_caseeq(h->name, name))
            continue;
        if (h->op == GH_HE_APPEND) {
            appended = h->value;
            continue;
        }
        return push_str(L, h->op == GH_HE_SET ? h->value : GH_STR_NULL);
    }
    const gh_h1_header_t *h = q->resp_headers ? gh_h1_find(q->resp_headers, q->nresp_headers, name) : NULL;
    return push_str(L, h ? h->value : appended);
}

static int r_log(lua_State *L)
{
    gh_fn_req_t *q = req_of(L, NULL);
    gh_str_t m = arg_str(L, 2);
    if (q->log)
        q->log(q->arg, m.p, m.n);
    return 0;
}

static int r_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)req_of(L, NULL)->now_ms / 1000.0);
    return 1;
}

/* __index of the methods table: r.ctx, made on first use for the current request. */
static int r_ctx(lua_State *L)
{
    size_t n;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
    if (!k || n != 3 || memcmp(k, "ctx", 3) != 0)
        return 0;
    gh_lua_t *g = state_of(L);
    if (!g->req)
        return luaL_error(L, "request is over");
    if (g->req->ctx_ref <= 0) {
        lua_newtable(L);
        g->req->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->req->ctx_ref);
    return 1;
}

static int r_newindex(lua_State *L) { return luaL_error(L, "r is read-only (keep per-request data in r.ctx)"); }

static const luaL_Reg r_methods[] = {
    {"method", r_method},
    {"set_method", r_set_method},
    {"path", r_path},
    {"set_path", r_set_path},
    {"query", r_query},
    {"set_query", r_set_query},
    {"query_arg", r_query_arg},
    {"header", r_header},
    {"set_header", r_set_header},
    {"add_header", r_add_header},
    {"remove_header", r_remove_header},
    {"cookie", r_cookie},
    {"tenant", r_tenant},
    {"route", r_route},
    {"client_ip", r_client_ip},
    {"country", r_country},
    {"ja4", r_ja4},
    {"host", r_host},
    {"variant", r_variant},
    {"respond", r_respond},
    {"redirect", r_redirect},
    {"set_upstream", r_set_upstream},
    {"set_response_header", r_set_response_header},
    {"add_response_header", r_add_response_header},
    {"remove_response_header", r_remove_response_header},
    {"status", r_status},
    {"response_header", r_response_header},
    {"log", r_log},
    {"now", r_now},
    {NULL, NULL},
};

/* ---- the sandbox (built once per state, in protected mode) ---- */

static int stopped(lua_State *L)
{
    lua_pushboolean(L, state_of(L)->stop != 0);
    return 1;
}

/* pcall, xpcall and coroutine.resume that re-raise a stop (limit or answer) they caught. */
static const char guards_lua[] = "local pcall, xpcall, resume, stopped, error = ...\n"
                                 "local function pass(ok, ...)\n"
                                 "  if not ok and stopped() then error((...), 0) end\n"
                                 "  return ok, ...\n"
                                 "end\n"
                                 "return function(...) return pass(pcall(...)) end,\n"
                                 "  function(...) return pass(xpcall(...)) end,\n"
                                 "  function(...) return pass(resume(...)) end\n";

static const char *const base_names[] = {"assert", "error",        "ipairs",       "next",     "pairs",
                                         "rawequal", "rawget",     "rawset",       "select",   "setmetatable",
                                         "getmetatable", "tonumber", "tostring",   "type",     "unpack",
                                         "_VERSION"};

static void open_lib(lua_State *L, lua_CFunction f, const char *name)
{
    lua_pushcfunction(L, f);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

/* A copy of table at index src, pushed. */
static void copy_table(lua_State *L, int src)
{
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* libs[name] = a copy of the global library name (index of libs: li). */
static void add_lib(lua_State *L, int li, const char *name)
{
    lua_getglobal(L, name);
    copy_table(L, lua_gettop(L));
    lua_setfield(L, li, name);
    lua_pop(L, 1);
}

static int setup(lua_State *L)
{
    gh_lua_t *g = lua_touserdata(L, 1);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    open_lib(L, luaopen_base, "");
    open_lib(L, luaopen_string, LUA_STRLIBNAME);
    open_lib(L, luaopen_table, LUA_TABLIBNAME);
    open_lib(L, luaopen_math, LUA_MATHLIBNAME);
    open_lib(L, luaopen_bit, LUA_BITLIBNAME);
    open_lib(L, luaopen_os, LUA_OSLIBNAME);
    lua_settop(L, 0);

    /* strings' methods: the real string table, without dump, behind a locked metatable */
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_settop(L, 0);

    /* the guards */
    if (luaL_loadbuffer(L, guards_lua, sizeof guards_lua - 1, "=guards") != 0)
        return lua_error(L);
    lua_getglobal(L, "pcall");
    lua_getglobal(L, "xpcall");
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "resume");
    lua_remove(L, -2);
    lua_pushcfunction(L, stopped);
    lua_getglobal(L, "error");
    lua_call(L, 5, 3); /* 1: pcall 2: xpcall 3: resume */

    /* the base every environment reads through its metatable */
    lua_newtable(L); /* 4 */
    for (size_t i = 0; i < GH_ARRAY_LEN(base_names); i++) {
        lua_getglobal(L, base_names[i]);
        lua_setfield(L, 4, base_names[i]);
    }
    lua_pushvalue(L, 1);
    lua_setfield(L, 4, "pcall");
    lua_pushvalue(L, 2);
    lua_setfield(L, 4, "xpcall");
    lua_createtable(L, 0, 2); /* 5: the environments' metatable */
    lua_pushvalue(L, 4);
    lua_setfield(L, 5, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, 5, "__metatable");
    g->envmt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* the libraries copied into each environment */
    lua_newtable(L); /* 5 */
    add_lib(L, 5, LUA_STRLIBNAME);
    add_lib(L, 5, LUA_TABLIBNAME);
    add_lib(L, 5, LUA_MATHLIBNAME);
    add_lib(L, 5, LUA_BITLIBNAME);
    add_lib(L, 5, LUA_COLIBNAME);
    lua_getfield(L, 5, LUA_COLIBNAME);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "resume");
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_getglobal(L, LUA_OSLIBNAME);
    static const char *const os_names[] = {"time", "clock", "date"};
    for (size_t i = 0; i < GH_ARRAY_LEN(os_names); i++) {
        lua_getfield(L, -1, os_names[i]);
        lua_setfield(L, -3, os_names[i]);
    }
    lua_pop(L, 1);
    lua_setfield(L, 5, LUA_OSLIBNAME);
    g->lib_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* r: a userdata whose hidden metatable reads the methods, then r.ctx */
    g->r = lua_newuserdata(L, 1);
    int r = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_newtable(L);
    luaL_register(L, NULL, r_methods);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, r_ctx);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, r_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, r);
    g->r_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* make the registry's free list exist: gh_lua_done's luaL_unref then never allocates */
    lua_pushboolean(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, luaL_ref(L, LUA_REGISTRYINDEX));
    return 0;
}

gh_lua_t *gh_lua_new(void)
{
    gh_lua_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->ceiling = SIZE_MAX;
    g->r_ref = g->lib_ref = g->envmt_ref = LUA_NOREF;
    g->L = lua_newstate(state_alloc, g);
    if (!g->L) {
        free(g);
        return NULL;
    }
    if (lua_cpcall(g->L, setup, g) != 0) {
        lua_close(g->L);
        free(g);
        return NULL;
    }
    lua_settop(g->L, 0);
    return g;
}

void gh_lua_free(gh_lua_t *g)
{
    if (!g)
        return;
    lua_close(g->L);
    free(g->fns);
    free(g);
}

size_t gh_lua_memory(const gh_lua_t *g) { return g ? g->used : 0; }

/* ---- loading ---- */

typedef struct {
    gh_lua_t *g;
    const char *chunkname, *code, *name;
    size_t len;
    fn_t fn;
    int phases;
} load_t;

/* A new environment, pushed: its own copies of the libraries, _G, the base behind it. */
static void new_env(lua_State *L, gh_lua_t *g)
{
    lua_createtable(L, 0, 16);
    int env = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->lib_ref);
    lua_pushnil(L);
    while (lua_next(L, env + 1)) {
        lua_pushvalue(L, -2);
        copy_table(L, lua_gettop(L) - 1);
        lua_rawset(L, env);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->envmt_ref);
    lua_setmetatable(L, env);
}

/* env[name] (index env) as a registry reference; a phase bit when it is a function. */
static int phase_ref(lua_State *L, int env, const char *fname, const char *name, int bit, int *phases)
{
    lua_pushstring(L, fname);
    lua_rawget(L, env);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (!lua_isfunction(L, -1))
        luaL_error(L, "%s: %s is not a function (a %s value)", name, fname, luaL_typename(L, -1));
    *phases |= bit;
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int load_body(lua_State *L)
{
    load_t *ld = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (luaL_loadbufferx(L, ld->code, ld->len, ld->chunkname, "t") != 0)
        return lua_error(L);
    new_env(L, ld->g); /* 2 */
    lua_pushvalue(L, 2);
    lua_setfenv(L, 1);
    lua_pushvalue(L, 1);
    lua_call(L, 0, 0);
    ld->fn.on_req = phase_ref(L, 2, "on_request", ld->name, GH_FN_REQUEST, &ld->phases);
    ld->fn.on_resp = phase_ref(L, 2, "on_response", ld->name, GH_FN_RESPONSE, &ld->phases);
    if (!ld->phases)
        return luaL_error(L, "%s: defines neither on_request nor on_response", ld->name);
    lua_pushvalue(L, 2);
    ld->fn.env = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void fn_release(lua_State *L, fn_t *fn)
{
    luaL_unref(L, LUA_REGISTRYINDEX, fn->env);
    luaL_unref(L, LUA_REGISTRYINDEX, fn->on_req);
    luaL_unref(L, LUA_REGISTRYINDEX, fn->on_resp);
    fn->env = fn->on_req = fn->on_resp = LUA_NOREF;
}

static int fns_reserve(gh_lua_t *g, uint32_t id)
{
    if (id < g->nfns)
        return 0;
    uint32_t n = GH_MAX(id + 1, g->nfns * 2);
    fn_t *f = realloc(g->fns, n * sizeof *f);
    if (!f)
        return -1;
    for (uint32_t i = g->nfns; i < n; i++)
        f[i] = (fn_t){LUA_NOREF, LUA_NOREF, LUA_NOREF, ""};
    g->fns = f;
    g->nfns = n;
    return 0;
}

int gh_lua_load(gh_lua_t *g, uint32_t id, const char *chunkname, const char *code, size_t len,
                const gh_fn_limits_t *lim, char *err, size_t errlen)
{
    if (!chunkname)
        chunkname = "=function";
    load_t ld = {.g = g, .chunkname = chunkname, .code = code, .len = len,
                 .fn = {LUA_NOREF, LUA_NOREF, LUA_NOREF, ""}};
    snprintf(ld.fn.name, sizeof ld.fn.name, "%s", chunkname[0] == '@' || chunkname[0] == '=' ? chunkname + 1 : chunkname);
    ld.name = ld.fn.name;
    if (!g || !code) {
        set_err(err, errlen, "%s: no code", ld.name);
        return GH_FN_ERROR;
    }
    if (len && code[0] == LUA_SIGNATURE[0]) { /* LuaJIT does not verify bytecode: text only */
        set_err(err, errlen, "%s: binary (bytecode) chunks are not accepted", ld.name);
        return GH_FN_ERROR;
    }
    if (id > MAX_ID || fns_reserve(g, id) < 0) {
        set_err(err, errlen, "%s: %s", ld.name, id > MAX_ID ? "function id too large" : "out of memory");
        return GH_FN_ERROR;
    }
    lua_State *L = g->L;
    int top = lua_gettop(L);
    g->req = NULL;
    g->phase = 0;
    limits_begin(g, lim);
    int st = lua_cpcall(L, load_body, &ld);
    limits_end(g);
    int rc = outcome(g, st, ld.name, err, errlen);
    lua_settop(L, top);
    if (rc != GH_FN_OK || st != 0) {
        if (rc == GH_FN_OK) /* a stop that was not an error (an answer at load: impossible, no r) */
            set_err(err, errlen, "%s: load failed", ld.name);
        fn_release(L, &ld.fn);
        return GH_FN_ERROR;
    }
    fn_release(L, &g->fns[id]);
    g->fns[id] = ld.fn;
    return ld.phases;
}

int gh_lua_check(const char *chunkname, const char *code, size_t len, const gh_fn_limits_t *lim, char *err,
                 size_t errlen)
{
    gh_lua_t *g = gh_lua_new();
    if (!g) {
        set_err(err, errlen, "out of memory");
        return GH_FN_ERROR;
    }
    int rc = gh_lua_load(g, 0, chunkname, code, len, lim, err, errlen);
    gh_lua_free(g);
    return rc;
}

/* ---- running ---- */

int gh_lua_run(gh_lua_t *g, uint32_t id, int phase, gh_fn_req_t *req, const gh_fn_limits_t *lim, char *err,
               size_t errlen)
{
    if (GH_UNLIKELY(!g || id >= g->nfns || g->fns[id].env == LUA_NOREF || !req || !req->edits ||
                    (phase != GH_FN_REQUEST && phase != GH_FN_RESPONSE))) {
        set_err(err, errlen, "function %u: %s", id, !req || !req->edits ? "no request" : "not loaded");
        return GH_FN_ERROR;
    }
    const fn_t *fn = &g->fns[id];
    int ref = phase == GH_FN_REQUEST ? fn->on_req : fn->on_resp;
    if (ref == LUA_NOREF)
        return GH_FN_OK;
    lua_State *L = g->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->r_ref);
    g->req = req;
    g->phase = phase;
    limits_begin(g, lim);
    int st = lua_pcall(L, 1, 0, 0);
    limits_end(g);
    g->req = NULL;
    g->phase = 0;
    int rc = outcome(g, st, fn->name, err, errlen);
    lua_settop(L, top);
    return rc;
}

void gh_lua_done(gh_lua_t *g, gh_fn_req_t *req)
{
    if (!req || req->ctx_ref <= 0)
        return;
    if (g)
        luaL_unref(g->L, LUA_REGISTRYINDEX, req->ctx_ref);
    req->ctx_ref = 0;
}
