/* lua.c: edge functions on LuaJIT (see lua.h for the contract).
 *
 * One lua_State per tenant and worker (gh_lua_t). Its allocator counts the bytes the
 * state holds and, while a call runs, refuses growth past the call's ceiling (bytes at
 * the start of the call + max_memory, never above HARD_CAP); a count hook every
 * HOOK_EVERY VM instructions enforces max_instructions. The JIT is off so that the hook
 * sees every instruction. Work done in C is not instructions: string patterns are matched
 * here (below) with their steps charged to max_instructions, and the hook also enforces a
 * wall-clock cap derived from max_instructions (TIME_NS_PER_INSTRUCTION) against loops of
 * costly library calls (long string copies, table.sort, table.insert shifting a big
 * array). A limit, once hit, sticks for the rest of the call: the hook
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
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define HOOK_EVERY 1000              /* VM instructions between two count hooks */
#define HARD_CAP ((size_t)64 << 20)  /* bytes a state may hold during a call, whatever max_memory says */
#define DEFAULT_INSTRUCTIONS 1000000
#define DEFAULT_MEMORY ((size_t)8 << 20)
#define MAX_ID 65535 /* function ids per state */
#define GUARDS_NAME "=guards" /* chunk name of the sandbox's pcall wrappers */

/* Work in C library functions (copying a long string, sorting, shifting a table) is not VM
 * instructions: a call also stops after this many ns of wall-clock time per instruction it
 * may run (1,000,000 instructions: 100 ms, some 30 times what they take), at least TIME_MIN_MS. */
#define TIME_NS_PER_INSTRUCTION 100
#define TIME_MIN_MS 50

enum { STOP_INS = 1, STOP_MEM = 2, STOP_ANSWER = 4, STOP_TIME = 8 }; /* why a call must end (sticky until its end) */

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
    uint64_t deadline_ns; /* CLOCK_MONOTONIC_COARSE */
    size_t max_memory; /* of the current call, for the message */
    gh_fn_req_t *req;  /* the current request, NULL outside calls */
    void *r;           /* the request object's block (identity check of self) */
    int r_ref, lib_ref, envmt_ref;
    fn_t *fns;
    uint32_t nfns;
    char limit_msg[256]; /* where the instruction or time limit hit */
};

static char answer_sentinel; /* error object of r:respond / r:redirect */

static uint64_t coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
    if (g->stop & (STOP_INS | STOP_TIME))
        lua_pushstring(L, g->limit_msg);
    else if (g->stop & STOP_MEM)
        lua_pushliteral(L, "memory limit exceeded"); /* allocating fails: a memory error, as wanted */
    else
        lua_pushlightuserdata(L, &answer_sentinel);
    return lua_error(L);
}

static uint64_t time_budget_ms(uint64_t instructions)
{
    uint64_t ms = instructions / (1000000u / TIME_NS_PER_INSTRUCTION);
    return ms > TIME_MIN_MS ? ms : TIME_MIN_MS;
}

/* One tick of HOOK_EVERY instructions (or pattern-matching steps): past the budget or the
 * deadline, the sticky stop and its message. */
static void charge(lua_State *L, gh_lua_t *g)
{
    if (!g->limited)
        return;
    if (!g->stop) {
        if (++g->ticks <= g->max_ticks && coarse_ns() <= g->deadline_ns)
            return;
        g->stop |= g->ticks > g->max_ticks ? STOP_INS : STOP_TIME;
        /* where: the innermost Lua function of the tenant (not a C function, not the guards) */
        lua_Debug frame, *ar = NULL;
        for (int level = 0; level < 64 && lua_getstack(L, level, &frame); level++) {
            lua_getinfo(L, "Sl", &frame);
            if (frame.currentline > 0 && strcmp(frame.source, GUARDS_NAME) != 0) {
                ar = &frame;
                break;
            }
        }
        const char *where = ar ? ar->short_src : "?";
        int line = ar ? ar->currentline : 0;
        if (g->stop & STOP_INS)
            snprintf(g->limit_msg, sizeof g->limit_msg, "%s:%d: instruction limit exceeded (max_instructions %llu)",
                     where, line, (unsigned long long)g->max_instructions);
        else
            snprintf(g->limit_msg, sizeof g->limit_msg,
                     "%s:%d: time limit exceeded (%llu ms for max_instructions %llu; work in library functions counts)",
                     where, line, (unsigned long long)time_budget_ms(g->max_instructions),
                     (unsigned long long)g->max_instructions);
    }
    raise_stop(L, g);
}

static void count_hook(lua_State *L, lua_Debug *ar) { charge(L, state_of(L)); }

/* Charge the work of a C function about to run: steps counted as instructions. */
static void charge_steps(lua_State *L, uint64_t steps)
{
    gh_lua_t *g = state_of(L);
    if (!g->limited)
        return;
    g->ticks += steps / HOOK_EVERY;
    charge(L, g);
}

static void limits_begin(gh_lua_t *g, const gh_fn_limits_t *lim)
{
    uint64_t ins = lim && lim->max_instructions ? lim->max_instructions : DEFAULT_INSTRUCTIONS;
    size_t mem = lim && lim->max_memory ? lim->max_memory : DEFAULT_MEMORY;
    g->ticks = 0;
    g->max_ticks = ins / HOOK_EVERY; /* stop when ticks * HOOK_EVERY > ins */
    g->max_instructions = ins;
    g->deadline_ns = coarse_ns() + time_budget_ms(ins) * 1000000u;
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
    if (stop & (STOP_INS | STOP_TIME)) {
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

/* ---- string patterns with a budget ----
 *
 * LuaJIT's string.find/match/gmatch/gsub run in C, where the count hook never fires, and
 * Lua patterns backtrack: string.find(("a"):rep(20), ("a-"):rep(20) .. "b") runs for
 * minutes. These replacements implement the same pattern language (Lua 5.1 manual 5.4.1:
 * classes, sets, the four quantifiers, anchors, captures and position captures, %1-%9, %b,
 * %f) and charge every HOOK_EVERY matching steps as HOOK_EVERY instructions, so a pattern
 * is stopped by max_instructions like a Lua loop. */

#define PM_MAXCAPTURES 32
#define PM_MAXDEPTH 200 /* nested quantifiers / captures being matched */
enum { PM_UNFINISHED = -1, PM_POSITION = -2 };

typedef struct {
    lua_State *L;
    gh_lua_t *g;
    const char *s0, *s_end, *p_end; /* the subject, the pattern's end */
    int level, depth;
    unsigned steps;
    struct {
        const char *init;
        ptrdiff_t len; /* or PM_UNFINISHED / PM_POSITION */
    } cap[PM_MAXCAPTURES];
} pm_t;

static inline void pm_step(pm_t *m)
{
    if (GH_UNLIKELY(++m->steps % HOOK_EVERY == 0))
        charge(m->L, m->g);
}

static void pm_init(pm_t *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    m->L = L;
    m->g = state_of(L);
    m->s0 = s;
    m->s_end = s + ls;
    m->p_end = p + lp;
    m->level = m->depth = 0;
    m->steps = 0;
}

static int pm_class(int c, int cl)
{
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break;
    default: return cl == c; /* %. %% %( ...: the character itself */
    }
    return isupper(cl) ? !r : r != 0;
}

/* c in the set [...] that p (at '[') to close (at ']') spells. */
static int pm_set(int c, const char *p, const char *close)
{
    int in = 1;
    p++;
    if (*p == '^') {
        in = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == '%' && p + 1 < close) {
            p++;
            if (pm_class(c, (unsigned char)*p))
                return in;
        } else if (p[1] == '-' && p + 2 < close) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return in;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return in;
        }
    }
    return !in;
}

/* The end of the single-character class starting at p. */
static const char *pm_class_end(pm_t *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= m->p_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (p < m->p_end && *p == '^')
            p++;
        do { /* a ']' first in the set is literal */
            if (p >= m->p_end)
                luaL_error(m->L, "malformed pattern (missing ']')");
            if (*p++ == '%' && p < m->p_end)
                p++;
        } while (p >= m->p_end || *p != ']');
        return p + 1;
    }
    return p;
}

static int pm_single(pm_t *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->s_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return pm_class(c, (unsigned char)p[1]);
    case '[': return pm_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *pm_match(pm_t *m, const char *s, const char *p);

static const char *pm_max_expand(pm_t *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (pm_single(m, s + i, p, ep)) {
        pm_step(m);
        i++;
    }
    for (; i >= 0; i--) { /* the longest run first, then shorter ones */
        const char *r = pm_match(m, s + i, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

static const char *pm_min_expand(pm_t *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = pm_match(m, s, ep + 1);
        if (r)
            return r;
        if (!pm_single(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *pm_open(pm_t *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= PM_MAXCAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->level].init = s;
    m->cap[m->level].len = what;
    m->level++;
    const char *r = pm_match(m, s, p);
    if (!r)
        m->level--;
    return r;
}

static const char *pm_close(pm_t *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->cap[l].len != PM_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[l].len = s - m->cap[l].init;
    const char *r = pm_match(m, s, p);
    if (!r)
        m->cap[l].len = PM_UNFINISHED;
    return r;
}

static const char *pm_balance(pm_t *m, const char *s, const char *p)
{
    if (p + 1 >= m->p_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->s_end || *s != p[0])
        return NULL;
    int depth = 1;
    while (++s < m->s_end) {
        pm_step(m);
        if (*s == p[1]) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == p[0]) {
            depth++;
        }
    }
    return NULL;
}

static const char *pm_backref(pm_t *m, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->cap[l].len == PM_UNFINISHED)
        luaL_error(m->L, "invalid capture index");
    ptrdiff_t len = m->cap[l].len;
    if (len >= 0 && m->s_end - s >= len && memcmp(m->cap[l].init, s, (size_t)len) == 0)
        return s + len;
    return NULL;
}

/* The end of the match of p at s, or NULL. */
static const char *pm_match(pm_t *m, const char *s, const char *p)
{
    const char *r = NULL;
    if (++m->depth > PM_MAXDEPTH)
        luaL_error(m->L, "pattern too complex");
    for (;;) {
        pm_step(m);
        if (p == m->p_end) {
            r = s;
            break;
        }
        if (*p == '(') {
            int pos = p + 1 < m->p_end && p[1] == ')';
            r = pm_open(m, s, p + 1 + pos, pos ? PM_POSITION : PM_UNFINISHED);
            break;
        }
        if (*p == ')') {
            r = pm_close(m, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == m->p_end) {
            r = s == m->s_end ? s : NULL;
            break;
        }
        if (*p == '%' && p + 1 < m->p_end) {
            if (p[1] == 'b') {
                s = pm_balance(m, s, p + 2);
                if (!s)
                    break;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (p >= m->p_end || *p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = pm_class_end(m, p);
                int prev = s == m->s0 ? 0 : (unsigned char)s[-1];
                int cur = s < m->s_end ? (unsigned char)*s : 0;
                if (pm_set(prev, p, ep - 1) || !pm_set(cur, p, ep - 1))
                    break;
                p = ep;
                continue;
            }
            if (isdigit((unsigned char)p[1])) {
                s = pm_backref(m, s, (unsigned char)p[1]);
                if (!s)
                    break;
                p += 2;
                continue;
            }
        }
        const char *ep = pm_class_end(m, p);
        int ok = pm_single(m, s, p, ep);
        char q = ep < m->p_end ? *ep : 0;
        if (q == '?') {
            if (ok && (r = pm_match(m, s + 1, ep + 1)))
                break;
            p = ep + 1;
            continue;
        }
        if (q == '*') {
            r = pm_max_expand(m, s, p, ep);
            break;
        }
        if (q == '+') {
            r = ok ? pm_max_expand(m, s + 1, p, ep) : NULL;
            break;
        }
        if (q == '-') {
            r = pm_min_expand(m, s, p, ep);
            break;
        }
        if (!ok)
            break;
        s++;
        p = ep;
    }
    m->depth--;
    return r;
}

/* Capture i of the match s..e pushed (the whole match when the pattern has none). */
static void pm_push_one(pm_t *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index");
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == PM_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    if (len == PM_POSITION)
        lua_pushinteger(m->L, m->cap[i].init - m->s0 + 1);
    else
        lua_pushlstring(m->L, m->cap[i].init, (size_t)len);
}

/* The captures pushed (s NULL: none when the pattern has none); their number. */
static int pm_push_all(pm_t *m, const char *s, const char *e)
{
    int n = m->level == 0 && s ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        pm_push_one(m, i, s, e);
    return n;
}

static int pm_plain(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strchr("^$*+?.([%-", p[i]) && p[i])
            return 0;
    return 1;
}

static int str_find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls), *p = luaL_checklstring(L, 2, &lp);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    if (init < 0)
        init += (lua_Integer)ls + 1;
    init = init < 1 ? 0 : init - 1;
    if ((size_t)init > ls) /* LuaJIT (Lua 5.1): past the end starts at the end */
        init = (lua_Integer)ls;
    if (find && (lua_toboolean(L, 4) || pm_plain(p, lp))) {
        const char *f = lp ? memmem(s + init, ls - (size_t)init, p, lp) : s + init;
        if (!f) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushinteger(L, f - s + 1);
        lua_pushinteger(L, (lua_Integer)(f - s) + (lua_Integer)lp);
        return 2;
    }
    int anchor = lp && *p == '^';
    pm_t m;
    pm_init(&m, L, s, ls, p + anchor, lp - (size_t)anchor);
    const char *s1 = s + init;
    do {
        m.level = m.depth = 0;
        const char *e = pm_match(&m, s1, p + anchor);
        if (e) {
            if (!find)
                return pm_push_all(&m, s1, e);
            lua_pushinteger(L, s1 - s + 1);
            lua_pushinteger(L, e - s);
            return pm_push_all(&m, NULL, NULL) + 2;
        }
        pm_step(&m);
    } while (s1++ < m.s_end && !anchor);
    lua_pushnil(L);
    return 1;
}

static int str_find(lua_State *L) { return str_find_aux(L, 1); }
static int str_match(lua_State *L) { return str_find_aux(L, 0); }

static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls), *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    pm_t m;
    pm_init(&m, L, s, ls, p, lp);
    for (const char *src = s + lua_tointeger(L, lua_upvalueindex(3)); src <= m.s_end; src++) {
        m.level = m.depth = 0;
        const char *e = pm_match(&m, src, p);
        if (e) {
            lua_pushinteger(L, (e - s) + (e == src)); /* after an empty match, move on by one */
            lua_replace(L, lua_upvalueindex(3));
            return pm_push_all(&m, src, e);
        }
        pm_step(&m);
    }
    return 0;
}

static int str_gmatch(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* Append the replacement of the match s..e (repl at index 3, of type tr). */
static void gsub_add(pm_t *m, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = m->L;
    if (tr == LUA_TSTRING || tr == LUA_TNUMBER) {
        size_t l;
        const char *r = lua_tolstring(L, 3, &l);
        for (size_t i = 0; i < l; i++) {
            pm_step(m);
            if (r[i] != '%') {
                luaL_addchar(b, r[i]);
            } else if (!isdigit((unsigned char)r[++i])) { /* "%x": x; a final '%': the NUL after it (5.1) */
                luaL_addchar(b, r[i]);
            } else if (r[i] == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                pm_push_one(m, r[i] - '1', s, e);
                luaL_addvalue(b);
            }
        }
        return;
    }
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        lua_call(L, pm_push_all(m, s, e), 1);
    } else {
        pm_push_one(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b);
}

static int str_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls), *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1), n = 0;
    luaL_argcheck(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                  "string/function/table expected");
    int anchor = lp && *p == '^';
    pm_t m;
    pm_init(&m, L, s, ls, p + anchor, lp - (size_t)anchor);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *src = s;
    while (n < max) {
        m.level = m.depth = 0;
        const char *e = pm_match(&m, src, p + anchor);
        if (e) {
            n++;
            gsub_add(&m, &b, src, e, tr);
        }
        pm_step(&m);
        if (e && e > src)
            src = e;
        else if (src < m.s_end)
            luaL_addchar(&b, *src++);
        else
            break;
        if (anchor)
            break;
    }
    luaL_addlstring(&b, src, (size_t)(m.s_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

/* table.sort, insert, remove and concat charged before they run: sorting n elements costs
 * n log n comparisons, the others move or read up to n elements, all in C. */
enum { TW_SORT, TW_SHIFT, TW_CONCAT };

static int table_charged(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
    uint64_t n = lua_type(L, 1) == LUA_TTABLE ? lua_objlen(L, 1) : 0;
    if (kind == TW_CONCAT && lua_gettop(L) >= 4 && lua_isnumber(L, 3) && lua_isnumber(L, 4)) {
        lua_Number i = lua_tonumber(L, 3), j = lua_tonumber(L, 4);
        n = j >= i ? (uint64_t)GH_MIN(j - i + 1, 1e15) : 0; /* (a huge range fails in concat itself) */
    }
    uint64_t steps = n;
    if (kind == TW_SORT)
        for (uint64_t k = n; k > 1; k >>= 1)
            steps += n;
    charge_steps(L, steps);
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L);
}

/* In the table library at index t: name wrapped (kind: TW_*). */
static void table_charge(lua_State *L, int t, const char *name, int kind)
{
    lua_getfield(L, t, name);
    lua_pushinteger(L, kind);
    lua_pushcclosure(L, table_charged, 2);
    lua_setfield(L, t, name);
}

static const luaL_Reg str_patterns[] = {
    {"find", str_find}, {"match", str_match}, {"gmatch", str_gmatch}, {"gsub", str_gsub}, {NULL, NULL},
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

static const char *const base_names[] = {
    "assert", "error", "ipairs", "next", "pairs", "rawequal", "rawget", "rawset", "select",
    "tonumber", "setmetatable", "getmetatable", "tostring", "type", "unpack", "_VERSION",
};

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

/* The real string and table libraries made safe: string.dump gone, the budgeted pattern
 * functions, the charged table functions, the strings' metatable locked. */
static void harden_libs(lua_State *L)
{
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pushnil(L);
    lua_setfield(L, -2, "gfind");
    luaL_register(L, NULL, str_patterns);
    lua_getglobal(L, LUA_TABLIBNAME);
    int t = lua_gettop(L);
    table_charge(L, t, "sort", TW_SORT);
    table_charge(L, t, "insert", TW_SHIFT);
    table_charge(L, t, "remove", TW_SHIFT);
    table_charge(L, t, "concat", TW_CONCAT);
    lua_pushnil(L);
    lua_setfield(L, t, "maxn"); /* walks the hash part too, whose size we cannot charge */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_settop(L, 0);
}

/* Pushes the guarded pcall, xpcall and coroutine.resume. */
static void push_guards(lua_State *L)
{
    if (luaL_loadbuffer(L, guards_lua, sizeof guards_lua - 1, GUARDS_NAME) != 0)
        lua_error(L);
    lua_getglobal(L, "pcall");
    lua_getglobal(L, "xpcall");
    lua_getglobal(L, LUA_COLIBNAME);
    lua_getfield(L, -1, "resume");
    lua_remove(L, -2);
    lua_pushcfunction(L, stopped);
    lua_getglobal(L, "error");
    lua_call(L, 5, 3);
}

/* The environments' metatable (a reference): __index the base, hidden. pcall, xpcall at
 * stack indexes pi, pi + 1. */
static int make_env_mt(lua_State *L, int pi)
{
    lua_newtable(L);
    int base = lua_gettop(L);
    for (size_t i = 0; i < GH_ARRAY_LEN(base_names); i++) {
        lua_getglobal(L, base_names[i]);
        lua_setfield(L, base, base_names[i]);
    }
    lua_pushvalue(L, pi);
    lua_setfield(L, base, "pcall");
    lua_pushvalue(L, pi + 1);
    lua_setfield(L, base, "xpcall");
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return ref;
}

/* The library templates copied into each environment (a reference); the guarded resume at
 * stack index ri. */
static int make_libs(lua_State *L, int ri)
{
    lua_newtable(L);
    int libs = lua_gettop(L);
    add_lib(L, libs, LUA_STRLIBNAME);
    add_lib(L, libs, LUA_TABLIBNAME);
    add_lib(L, libs, LUA_MATHLIBNAME);
    add_lib(L, libs, LUA_BITLIBNAME);
    add_lib(L, libs, LUA_COLIBNAME);
    lua_getfield(L, libs, LUA_COLIBNAME);
    lua_pushvalue(L, ri);
    lua_setfield(L, -2, "resume");
    lua_pop(L, 1);
    static const char *const os_names[] = {"time", "clock", "date"};
    lua_createtable(L, 0, 3);
    lua_getglobal(L, LUA_OSLIBNAME);
    for (size_t i = 0; i < GH_ARRAY_LEN(os_names); i++) {
        lua_getfield(L, -1, os_names[i]);
        lua_setfield(L, -3, os_names[i]);
    }
    lua_pop(L, 1);
    lua_setfield(L, libs, LUA_OSLIBNAME);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* r (a reference): a userdata whose hidden metatable reads the methods, then r.ctx. */
static int make_r(lua_State *L, gh_lua_t *g)
{
    g->r = lua_newuserdata(L, 1);
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
    lua_setmetatable(L, -2);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int setup(lua_State *L)
{
    gh_lua_t *g = lua_touserdata(L, 1);
    if (!luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF))
        return luaL_error(L, "cannot turn the JIT compiler off");
    lua_settop(L, 0);
    open_lib(L, luaopen_base, "");
    open_lib(L, luaopen_string, LUA_STRLIBNAME);
    open_lib(L, luaopen_table, LUA_TABLIBNAME);
    open_lib(L, luaopen_math, LUA_MATHLIBNAME);
    open_lib(L, luaopen_bit, LUA_BITLIBNAME);
    open_lib(L, luaopen_os, LUA_OSLIBNAME);
    harden_libs(L);
    push_guards(L); /* 1: pcall 2: xpcall 3: resume */
    g->envmt_ref = make_env_mt(L, 1);
    g->lib_ref = make_libs(L, 3);
    g->r_ref = make_r(L, g);
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
    int skip = chunkname[0] == '@' || chunkname[0] == '=';
    snprintf(ld.fn.name, sizeof ld.fn.name, "%s", chunkname + skip);
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
