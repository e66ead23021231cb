/* test_lua.c: edge functions (src/edge/lua.c): the sandbox, the limits (instructions,
 * memory, and both when the function tries to catch them), error messages, per-function
 * globals, the request object's API and its edits, r.ctx across phases, the Lua stack
 * left balanced, and a micro-benchmark (printed only) of a trivial function.
 * Includes lua.c to reach the state's internals (the Lua stack, the registry). */
#include "edge/lua.c"

#include <stdlib.h>
#include <time.h>

#include "t.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static char err[512];
static const gh_fn_limits_t lim = {1000000, 8u << 20};

static gh_h1_header_t req_h[] = {
    {GH_STR("Host"), GH_STR("example.com")},
    {GH_STR("Cookie"), GH_STR("a=1; sid=\"xyz\"")},
    {GH_STR("X-A"), GH_STR("va")},
    {GH_STR("Case"), GH_STR("0")},
};
static gh_h1_header_t resp_h[] = {
    {GH_STR("Content-Type"), GH_STR("text/html")},
    {GH_STR("X-Up"), GH_STR("u1")},
};

static int pool_a;
static char logged[256];

static const char *variant_of(void *arg, const char *flag) { return strcmp(flag, "beta") == 0 ? "on" : NULL; }

static const void *upstream_of(void *arg, const char *name, size_t n)
{
    return n == 5 && memcmp(name, "pool1", 5) == 0 ? &pool_a : NULL;
}

static void log_to(void *arg, const char *msg, size_t n) { snprintf(logged, sizeof logged, "%.*s", (int)n, msg); }

static void req_init(gh_fn_req_t *q, gh_edits_t *e)
{
    *q = (gh_fn_req_t){
        .method = GH_STR("GET"), .path = GH_STR("/a/b"), .query = GH_STR("x=1&y=&z&x=2"),
        .host = GH_STR("example.com"), .headers = req_h, .nheaders = GH_ARRAY_LEN(req_h),
        .tenant = "acme", .route = "api", .client_ip = "192.0.2.7", .country = "FR", .ja4 = NULL,
        .variant = variant_of, .upstream = upstream_of, .log = log_to, .arg = NULL,
        .edits = e, .now_ms = 1700000000123ull,
    };
}

/* Load code as function id; the phases, or the error (printed). */
static int load(gh_lua_t *g, uint32_t id, const char *name, const char *code)
{
    int rc = gh_lua_load(g, id, name, code, strlen(code), &lim, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "  (load %s: %s)\n", name, err);
    CHECK_INT(lua_gettop(g->L), 0);
    return rc;
}

static int run(gh_lua_t *g, uint32_t id, int phase, gh_fn_req_t *q)
{
    err[0] = 0;
    int rc = gh_lua_run(g, id, phase, q, &lim, err, sizeof err);
    CHECK_INT(lua_gettop(g->L), 0);
    return rc;
}

#define CHECK_HAS(s, frag)                                                                             \
    do {                                                                                               \
        if (!strstr((s), (frag))) {                                                                    \
            t_cur_fail++;                                                                              \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, (s), (frag)); \
        }                                                                                              \
    } while (0)

/* The value of the last edit of name (resp side), or NULL. */
static const char *edit_value(const gh_edits_t *e, int resp, const char *name)
{
    for (uint32_t i = e->nh; i-- > 0;)
        if (e->h[i].resp == resp && gh_str_caseeq_lit(e->h[i].name, name))
            return e->h[i].op == GH_HE_REMOVE ? "(removed)" : e->h[i].value.p;
    return NULL;
}

#define CHECK_EDIT(e, resp, name, want)                                                                  \
    do {                                                                                                 \
        const char *got_ = edit_value((e), (resp), (name));                                              \
        if (!got_ || strcmp(got_, (want)) != 0) {                                                        \
            t_cur_fail++;                                                                                \
            fprintf(stderr, "%s:%d: edit %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, (name),       \
                    got_ ? got_ : "(none)", (want));                                                      \
        }                                                                                                \
    } while (0)

/* A well-behaved function answers correctly (after a failure, on the same state). */
static void check_well(gh_lua_t *g, uint32_t id)
{
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    CHECK_INT(run(g, id, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_EDIT(e, 1, "x-well", "a,b,c");
    gh_edits_free(e);
}

static const char *well_code = "function on_request(r)\n"
                               "  local t = {}\n"
                               "  for _, v in ipairs({'a', 'b', 'c'}) do t[#t + 1] = v end\n"
                               "  r:set_response_header('x-well', table.concat(t, ','))\n"
                               "end\n";

static void check_well_load(gh_lua_t *g)
{
    CHECK_INT(load(g, 99, "=t/well", well_code), GH_FN_REQUEST);
    check_well(g, 99);
}

static void test_check(void)
{
    const char *both = "function on_request(r) end\nfunction on_response(r) end\n";
    CHECK_INT(gh_lua_check("=t/both", both, strlen(both), &lim, err, sizeof err), GH_FN_REQUEST | GH_FN_RESPONSE);
    const char *resp = "local n = 0\nfunction on_response(r) n = n + 1 end\n";
    CHECK_INT(gh_lua_check("=t/resp", resp, strlen(resp), &lim, err, sizeof err), GH_FN_RESPONSE);
    CHECK_INT(gh_lua_check("=t/req", well_code, strlen(well_code), NULL, err, sizeof err), GH_FN_REQUEST);

    static const struct {
        const char *code, *frag;
    } bad[] = {
        {"function on_request(r)\n  x = (\nend\n", "t/bad:3:"},
        {"x = 1\n", "t/bad: defines neither on_request nor on_response"},
        {"on_request = 5\n", "t/bad: on_request is not a function (a number value)"},
        {"function on_request(r) end\non_response = 'x'\n", "on_response is not a function (a string value)"},
        {"\n\nerror('boom')\n", "t/bad:3: boom"},
        {"while true do end\n", "t/bad:1: instruction limit exceeded"},
        {"local t = {} for i = 1, 1e9 do t[i] = i end\n", "instruction limit exceeded"},
        {"local s = 'x' while true do s = s .. s end\n", "t/bad: memory limit exceeded (max_memory 8388608 bytes)"},
        {"local m = require('os')\n", "attempt to call global 'require'"},
        {"\033LJ\002\000function", "t/bad: binary (bytecode) chunks are not accepted"},
        {"local f = io.open('/etc/passwd')\n", "attempt to index global 'io'"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        err[0] = 0;
        size_t len = bad[i].code[0] == '\033' ? 12 : strlen(bad[i].code);
        CHECK_INT(gh_lua_check("=t/bad", bad[i].code, len, &lim, err, sizeof err), GH_FN_ERROR);
        CHECK_HAS(err, bad[i].frag);
    }
    /* file chunk names */
    const char *boom = "function on_request(r)\nend\nerror('boom')\n";
    CHECK_INT(gh_lua_check("@fns/x.lua", boom, strlen(boom), &lim, err, sizeof err), GH_FN_ERROR);
    CHECK_HAS(err, "fns/x.lua:3: boom");
    /* a short err buffer: truncated, NUL-terminated */
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK_INT(gh_lua_check("@fns/x.lua", boom, strlen(boom), &lim, small, sizeof small), GH_FN_ERROR);
    CHECK(memchr(small, 0, sizeof small) != NULL);
    CHECK(strncmp(small, "fns/x.l", 7) == 0);
}

static void test_sandbox(void)
{
    const char *code =
        "local bad = {}\n"
        "local function none(name, v) if v ~= nil then bad[#bad + 1] = name end end\n"
        "local function want(name, ok) if not ok then bad[#bad + 1] = name end end\n"
        "function on_request(r)\n"
        "  none('io', io) none('debug', debug) none('jit', jit) none('ffi', ffi) none('package', package)\n"
        "  none('require', require) none('module', module) none('load', load) none('loadstring', loadstring)\n"
        "  none('loadfile', loadfile) none('dofile', dofile) none('getfenv', getfenv) none('setfenv', setfenv)\n"
        "  none('collectgarbage', collectgarbage) none('gcinfo', gcinfo) none('newproxy', newproxy)\n"
        "  none('print', print) none('string.dump', string.dump) none('(\"\").dump', ('').dump)\n"
        "  none('os.execute', os.execute) none('os.getenv', os.getenv) none('os.exit', os.exit)\n"
        "  none('os.remove', os.remove) none('os.rename', os.rename) none('os.tmpname', os.tmpname)\n"
        "  none('table.maxn', table.maxn) none('string.gfind', string.gfind)\n"
        "  want('string mt', getmetatable('') == false) want('env mt', getmetatable(_G) == false)\n"
        "  want('r mt', getmetatable(r) == false) want('_G', _G.string == string and _G == _G._G)\n"
        "  want('setmetatable _G', not pcall(setmetatable, _G, {}))\n"
        "  want('os', type(os.time()) == 'number' and type(os.clock()) == 'number' and #os.date('!%Y') == 4)\n"
        "  want('bit', bit.band(6, 3) == 2 and bit.bxor(1, 3) == 2)\n"
        "  want('math', math.floor(2.5) == 2 and math.max(1, 3) == 3)\n"
        "  want('table', table.concat({'a', 'b'}, ',') == 'a,b')\n"
        "  want('string', ('%d'):format(7) == '7' and ('ab'):upper() == 'AB' and string.rep('x', 3) == 'xxx')\n"
        "  want('base', tostring(12) == '12' and tonumber('7') == 7 and select('#', 1, 2) == 2 and unpack({1}) == 1)\n"
        "  local co = coroutine.create(function(x) local y = coroutine.yield(x + 1) return y * 2 end)\n"
        "  local ok1, a = coroutine.resume(co, 1)\n"
        "  local ok2, b = coroutine.resume(co, 5)\n"
        "  want('coroutine', ok1 and a == 2 and ok2 and b == 10)\n"
        "  local w = coroutine.wrap(function() coroutine.yield(1) end)\n"
        "  want('wrap', w() == 1)\n"
        "  want('pcall', select(2, pcall(error, 'e', 0)) == 'e' and select(2, pcall(function() return 3 end)) == 3)\n"
        "  want('xpcall', select(2, xpcall(function() error('q', 0) end, function(m) return m .. '!' end)) == 'q!')\n"
        "  r:set_response_header('x-bad', table.concat(bad, ','))\n"
        "end\n";
    gh_lua_t *g = gh_lua_new();
    CHECK(g != NULL);
    CHECK_INT(load(g, 0, "=t/sandbox", code), GH_FN_REQUEST);
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    CHECK_INT(run(g, 0, GH_FN_REQUEST, &q), GH_FN_OK);
    if (err[0])
        fprintf(stderr, "  (%s)\n", err);
    CHECK_EDIT(e, 1, "x-bad", "");
    gh_edits_free(e);
    gh_lua_free(g);
}

/* limits: each failure, then the same state runs a well-behaved function. The memory cases get
 * plenty of instructions (with the default 1,000,000 a table fill stops at about 4 MiB). */
static void test_limits(void)
{
    static const gh_fn_limits_t roomy = {1000000000ull, 8u << 20};
    static const struct {
        const char *code;
        int rc;
        const char *frag;
    } cases[] = {
        {"function on_request(r)\n  while true do end\nend\n", GH_FN_LIMIT, "t/lim:2: instruction limit exceeded"},
        {"function on_request(r)\n  local t = {} for i = 1, 1e9 do t[i] = i end\nend\n", GH_FN_LIMIT,
         "t/lim: memory limit exceeded"},
        {"function on_request(r)\n  error('x')\nend\n", GH_FN_ERROR, "t/lim:2: x"},
        /* catching the limit does not help */
        {"function on_request(r)\n  while true do pcall(function() while true do end end) end\nend\n", GH_FN_LIMIT,
         "instruction limit exceeded"},
        {"function on_request(r)\n  while true do xpcall(function() while true do end end, function(e) return e end) "
         "end\nend\n",
         GH_FN_LIMIT, "instruction limit exceeded"},
        {"function on_request(r)\n  while true do\n    local co = coroutine.create(function() while true do end end)\n"
         "    coroutine.resume(co)\n  end\nend\n",
         GH_FN_LIMIT, "instruction limit exceeded"},
        {"function on_request(r)\n  while true do pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end) "
         "end\nend\n",
         GH_FN_LIMIT, "memory limit exceeded"},
        {"function on_request(r)\n  local s = string.rep('x', 100 * 1024 * 1024)\nend\n", GH_FN_LIMIT,
         "memory limit exceeded"},
        {"function on_request(r)\n  local s = 'x' while true do s = s .. s end\nend\n", GH_FN_LIMIT,
         "memory limit exceeded"},
        {"local function f() return f() end\nfunction on_request(r)\n  f()\nend\n", GH_FN_LIMIT,
         "instruction limit exceeded"},
        {"local function f() f() end\nfunction on_request(r)\n  f()\nend\n", GH_FN_ERROR, "stack overflow"},
        /* work in library functions: charged (table), or stopped by the time cap (a string copy
         * whose result is interned already allocates nothing and is one VM instruction) */
        {"function on_request(r)\n  local s = string.rep('x', 3e6) while true do local y = s .. 'a' end\nend\n",
         GH_FN_LIMIT, "limit exceeded"},
        {"function on_request(r)\n  local s = string.rep('x', 3e6) local keep = s .. 'a'\n"
         "  while true do local y = s .. 'a' end\nend\n",
         GH_FN_LIMIT, "t/lim:3: time limit exceeded (100 ms for max_instructions 1000000"},
        {"function on_request(r)\n  local t = {} for i = 1, 1e5 do t[i] = i end\n"
         "  while true do table.insert(t, 1, 0) end\nend\n",
         GH_FN_LIMIT, "t/lim:3: instruction limit exceeded"},
        {"function on_request(r)\n  local t = {} for i = 1, 1e5 do t[i] = i end\n"
         "  while true do table.sort(t) end\nend\n",
         GH_FN_LIMIT, "t/lim:3: instruction limit exceeded"},
        {"function on_request(r)\n  local t = {} for i = 1, 1e4 do t[i] = 'abc' end\n"
         "  while true do table.concat(t, ',') end\nend\n",
         GH_FN_LIMIT, "t/lim:3: instruction limit exceeded"},
        {"function on_request(r)\n  local t = {5, 3, 9} table.sort(t) table.insert(t, 1, 0) table.remove(t, 2)\n"
         "  r:set_response_header('x-t', table.concat(t, ','))\nend\n",
         GH_FN_OK, ""},
        {"function on_request(r)\n  error({})\nend\n", GH_FN_ERROR, "(error object is a table value)"},
        {"function on_request(r)\n  error(42)\nend\n", GH_FN_ERROR, "42"},
    };
    gh_lua_t *g = gh_lua_new();
    CHECK_INT(load(g, 0, "=t/well", well_code), GH_FN_REQUEST);
    check_well(g, 0);
    size_t base = gh_lua_memory(g);
    CHECK(base > 0);
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        CHECK_INT(load(g, 1, "=t/lim", cases[i].code), GH_FN_REQUEST);
        gh_edits_t *e = gh_edits_new();
        gh_fn_req_t q;
        req_init(&q, e);
        int mem = strstr(cases[i].frag, "memory") != NULL;
        err[0] = 0;
        double t0 = now_ns();
        int rc = gh_lua_run(g, 1, GH_FN_REQUEST, &q, mem ? &roomy : &lim, err, sizeof err);
        double ms = (now_ns() - t0) / 1e6;
        CHECK(ms < 1500); /* every case stops soon */
        CHECK_INT(lua_gettop(g->L), 0);
        if (rc != cases[i].rc)
            fprintf(stderr, "  (case %zu: %s)\n", i, err);
        CHECK_INT(rc, cases[i].rc);
        CHECK_HAS(err, cases[i].frag);
        gh_edits_free(e);
        check_well(g, 0);
        check_well(g, 0);
        /* after a memory limit the garbage is collected: the state is back near where it was (LuaJIT
         * halves its concatenation buffer and stacks at each collection, so some of that lingers) */
        if (mem)
            CHECK(gh_lua_memory(g) < base + (2u << 20));
    }
    for (int i = 0; i < 4; i++) /* each collection halves LuaJIT's string buffer */
        lua_gc(g->L, LUA_GCCOLLECT, 0);
    CHECK(gh_lua_memory(g) < base + (1u << 20));
    gh_lua_free(g);
}

/* max_memory above the hard cap: the state still stops at 64 MiB */
static void test_hard_cap(void)
{
    gh_lua_t *g = gh_lua_new();
    const char *code = "function on_request(r)\n  local t = {} for i = 1, 1e9 do t[i] = i end\nend\n";
    CHECK_INT(load(g, 0, "=t/cap", code), GH_FN_REQUEST);
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    gh_fn_limits_t big = {4000000000ull, (size_t)1 << 30};
    CHECK_INT(gh_lua_run(g, 0, GH_FN_REQUEST, &q, &big, err, sizeof err), GH_FN_LIMIT);
    CHECK_HAS(err, "memory limit exceeded");
    CHECK(gh_lua_memory(g) < HARD_CAP);
    CHECK_INT(lua_gettop(g->L), 0);
    gh_edits_free(e);
    gh_lua_free(g);
}

/* every function its own globals; globals persist from call to call */
static void test_isolation(void)
{
    const char *f0 = "count = 0\n"
                     "function on_request(r)\n"
                     "  count = count + 1\n"
                     "  shared = 'f0'\n"
                     "  string.upper = nil\n"
                     "  string.extra = 1\n"
                     "  math = nil\n"
                     "  r:set_response_header('x-count', count)\n"
                     "end\n";
    const char *f1 = "function on_request(r)\n"
                     "  r:set_response_header('x-seen', tostring(shared) .. ',' .. tostring(count) .. ',' ..\n"
                     "    tostring(string.extra) .. ',' .. string.upper('a') .. ('b'):upper() .. ',' .. math.abs(-1))\n"
                     "end\n";
    gh_lua_t *g = gh_lua_new();
    CHECK_INT(load(g, 0, "=t/f0", f0), GH_FN_REQUEST);
    CHECK_INT(load(g, 1, "=t/f1", f1), GH_FN_REQUEST);
    for (int i = 1; i <= 3; i++) {
        gh_edits_t *e = gh_edits_new();
        gh_fn_req_t q;
        req_init(&q, e);
        CHECK_INT(run(g, 0, GH_FN_REQUEST, &q), GH_FN_OK);
        CHECK_INT(run(g, 1, GH_FN_REQUEST, &q), GH_FN_OK);
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        CHECK_EDIT(e, 1, "x-count", want);
        CHECK_EDIT(e, 1, "x-seen", "nil,nil,nil,AB,1");
        gh_edits_free(e);
    }
    /* reloading an id replaces the function (and its globals) */
    CHECK_INT(load(g, 0, "=t/f0", f0), GH_FN_REQUEST);
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    CHECK_INT(run(g, 0, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_EDIT(e, 1, "x-count", "1");
    /* an unknown id, a phase it does not define */
    CHECK_INT(run(g, 7, GH_FN_REQUEST, &q), GH_FN_ERROR);
    CHECK_HAS(err, "not loaded");
    CHECK_INT(run(g, 1, GH_FN_RESPONSE, &q), GH_FN_OK);
    CHECK_INT(gh_lua_load(g, 1u << 20, "=t/x", f1, strlen(f1), &lim, err, sizeof err), GH_FN_ERROR);
    gh_edits_free(e);
    gh_lua_free(g);
}

static void test_request_api(void)
{
    const char *code =
        "function on_request(r)\n"
        "  local out = {}\n"
        "  local function add(k, v) out[#out + 1] = k .. '=' .. tostring(v) end\n"
        "  add('m', r:method()) add('p', r:path()) add('q', r:query())\n"
        "  add('x', r:query_arg('x')) add('y', r:query_arg('y'))\n"
        "  add('z', r:query_arg('z')) add('w', r:query_arg('w'))\n"
        "  add('h', r:header('x-a')) add('hn', r:header('nope')) add('c', r:cookie('sid')) add('cn', r:cookie('no'))\n"
        "  add('t', r:tenant()) add('rt', r:route()) add('ip', r:client_ip()) add('co', r:country())\n"
        "  add('ja4', r:ja4()) add('host', r:host()) add('v', r:variant('beta')) add('vn', r:variant('other'))\n"
        "  add('st', r:status()) add('now', r:now())\n"
        "  add('up', r:set_upstream('pool1')) add('upn', r:set_upstream('nope'))\n"
        "  r:set_header('X-A', 'new') add('h2', r:header('x-a'))\n"
        "  r:add_header('X-B', 7) add('b', r:header('x-b'))\n"
        "  r:remove_header('x-a') add('h3', r:header('X-A'))\n"
        "  r:set_header('Host', 'other.example') add('host2', r:host())\n"
        "  r:set_path('/new') r:set_query('k=v&x') r:set_method('POST')\n"
        "  add('p2', r:path()) add('q2', r:query()) add('m2', r:method()) add('k', r:query_arg('k'))\n"
        "  add('x2', r:query_arg('x'))\n"
        "  r:log('hello ' .. 1)\n"
        "  r:set_response_header('x-out', table.concat(out, ';'))\n"
        "end\n";
    gh_lua_t *g = gh_lua_new();
    CHECK_INT(load(g, 0, "=t/api", code), GH_FN_REQUEST);
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    CHECK_INT(run(g, 0, GH_FN_REQUEST, &q), GH_FN_OK);
    if (err[0])
        fprintf(stderr, "  (%s)\n", err);
    CHECK_EDIT(e, 1, "x-out",
               "m=GET;p=/a/b;q=x=1&y=&z&x=2;x=1;y=;z=;w=nil;h=va;hn=nil;c=xyz;cn=nil;t=acme;rt=api;ip=192.0.2.7;"
               "co=FR;ja4=nil;host=example.com;v=on;vn=nil;st=nil;now=1700000000.123;up=true;upn=false;h2=new;"
               "b=7;h3=nil;host2=other.example;p2=/new;q2=k=v&x;m2=POST;k=v;x2=");
    CHECK_STR(e->path, "/new");
    CHECK_STR(e->query, "k=v&x");
    CHECK_STR(e->method, "POST");
    CHECK(e->upstream == &pool_a);
    CHECK(strcmp(logged, "hello 1") == 0);
    CHECK_EDIT(e, 0, "x-a", "(removed)");
    CHECK_EDIT(e, 0, "x-b", "7");
    CHECK_INT(e->status, 0);
    /* request-side edits in order, with their ops */
    CHECK_INT(e->nh, 5);
    CHECK_INT(e->h[0].op, GH_HE_SET);
    CHECK_INT(e->h[1].op, GH_HE_APPEND);
    CHECK_INT(e->h[2].op, GH_HE_REMOVE);
    CHECK_INT(e->h[4].resp, 1);
    gh_edits_free(e);
    gh_lua_free(g);
}

static void test_validation(void)
{
    static const struct {
        const char *lua, *frag;
    } cases[] = {
        {"r:set_header('bad name', 'v')", "invalid header name \"bad name\""},
        {"r:set_header('x', 'a\\r\\nb')", "invalid value for header x (CR, LF or NUL)"},
        {"r:set_response_header('x', 'a\\0b')", "CR, LF or NUL"},
        {"r:add_header('', 'v')", "invalid header name"},
        {"r:set_header('x\\n', 'v')", "invalid header name \"x\\x0a\""},
        {"r:set_path('nope')", "set_path: invalid value \"nope\""},
        {"r:set_path('/a?b')", "set_path: invalid value"},
        {"r:set_path('/a b')", "set_path: invalid value"},
        {"r:set_path('/a#b')", "set_path: invalid value"},
        {"r:set_query('a#b')", "set_query: invalid value"},
        {"r:set_query('a\\rb')", "set_query: invalid value"},
        {"r:set_method('GE T')", "set_method: invalid value"},
        {"r:set_method('')", "set_method: invalid value"},
        {"r:set_header('Content-Length', '5')", "header Content-Length is managed by the gateway"},
        {"r:set_response_header('transfer-encoding', 'chunked')", "managed by the gateway"},
        {"r:respond(700)", "status must be 200..599"},
        {"r:respond(200, 'b', {['bad name'] = 'v'})", "invalid header name"},
        {"r:respond(200, 'b', {x = {}})", "headers must map names to strings"},
        {"r:respond(200, 'b', 5)", "table expected"},
        {"r:redirect('/x', 200)", "status must be 301, 302, 303, 307 or 308"},
        {"r:redirect('/x\\r\\n')", "redirect: invalid location"},
        {"r:redirect('')", "redirect: invalid location"},
        {"r:set_header('x', {})", "string expected"},
        {"r:set_header('x')", "string expected"},
        {"r.path()", "colon"},
        {"r.path(5)", "colon"},
        {"r.x = 1", "r is read-only"},
        {"r:nope()", "nope"},
        {"for i = 1, 300 do r:add_header('x' .. i, 'v') end", "too many edits"},
        {"r:set_header('x', string.rep('a', 2 * 1024 * 1024))", "out of memory"},
    };
    gh_lua_t *g = gh_lua_new();
    char code[512];
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        snprintf(code, sizeof code, "function on_request(r)\n  %s\nend\n", cases[i].lua);
        CHECK_INT(load(g, (uint32_t)i, "=t/v", code), GH_FN_REQUEST);
        gh_edits_t *e = gh_edits_new();
        gh_fn_req_t q;
        req_init(&q, e);
        CHECK_INT(run(g, (uint32_t)i, GH_FN_REQUEST, &q), GH_FN_ERROR);
        CHECK_HAS(err, cases[i].frag);
        CHECK_HAS(err, "t/v:2:");
        CHECK_INT(e->status, 0);
        gh_edits_free(e);
    }
    gh_lua_free(g);
}

static void test_respond(void)
{
    static const char *codes[] = {
        "function on_request(r)\n"
        "  r:set_response_header('x-before', '1')\n"
        "  r:respond(403, 'denied', {['X-Reason'] = 'geo', ['Cache-Control'] = 0})\n"
        "  r:set_response_header('x-after', '1')\n"
        "end\n",
        "function on_request(r)\n"
        "  pcall(r.respond, r, 204)\n"
        "  r:set_response_header('x-after', '1')\n"
        "end\n",
        "function on_request(r)\n"
        "  r:respond(200, '{}', {['content-type'] = 'application/json'})\n"
        "end\n",
        "function on_request(r)\n"
        "  r:redirect('https://example.org/x?y=1')\n"
        "end\n",
        "function on_request(r)\n"
        "  local co = coroutine.wrap(function() r:redirect('/moved', 308) end)\n"
        "  while true do pcall(co) end\n"
        "end\n",
    };
    gh_lua_t *g = gh_lua_new();
    for (uint32_t i = 0; i < GH_ARRAY_LEN(codes); i++)
        CHECK_INT(load(g, i, "=t/resp", codes[i]), GH_FN_REQUEST);
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    CHECK_INT(run(g, 0, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_INT(e->status, 403);
    CHECK_STR(e->body, "denied");
    CHECK(e->ctype.p && strcmp(e->ctype.p, "text/plain; charset=utf-8") == 0);
    CHECK(e->location.p == NULL);
    CHECK_EDIT(e, 1, "x-before", "1");
    CHECK_EDIT(e, 1, "x-reason", "geo");
    CHECK_EDIT(e, 1, "cache-control", "0");
    CHECK(edit_value(e, 1, "x-after") == NULL);
    gh_edits_free(e);

    e = gh_edits_new();
    req_init(&q, e);
    CHECK_INT(run(g, 1, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_INT(e->status, 204);
    CHECK_STR(e->body, "");
    CHECK(e->ctype.p == NULL);
    CHECK(edit_value(e, 1, "x-after") == NULL);
    gh_edits_free(e);

    e = gh_edits_new();
    req_init(&q, e);
    CHECK_INT(run(g, 2, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_INT(e->status, 200);
    CHECK(e->ctype.p == NULL); /* the function's own Content-Type edit is the one */
    CHECK_EDIT(e, 1, "content-type", "application/json");
    gh_edits_free(e);

    e = gh_edits_new();
    req_init(&q, e);
    CHECK_INT(run(g, 3, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_INT(e->status, 302);
    CHECK_STR(e->location, "https://example.org/x?y=1");
    gh_edits_free(e);

    e = gh_edits_new();
    req_init(&q, e);
    CHECK_INT(run(g, 4, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK_INT(e->status, 308);
    CHECK_STR(e->location, "/moved");
    gh_edits_free(e);
    gh_lua_free(g);
}

static void test_phases_ctx(void)
{
    const char *code =
        "function on_request(r)\n"
        "  r.ctx.n = 41\n"
        "  r.ctx.list = {'a'}\n"
        "  r:set_response_header('x-set-early', 'e')\n"
        "end\n"
        "function on_response(r)\n"
        "  local out = {}\n"
        "  local function add(k, v) out[#out + 1] = k .. '=' .. tostring(v) end\n"
        "  add('n', r.ctx.n) add('l', r.ctx.list and r.ctx.list[1]) add('same', r.ctx == r.ctx)\n"
        "  add('st', r:status()) add('ct', r:response_header('content-type')) add('up', r:response_header('x-up'))\n"
        "  add('early', r:response_header('x-set-early'))\n"
        "  r:remove_response_header('x-up') add('up2', r:response_header('x-up'))\n"
        "  r:add_response_header('x-new', 'a') add('new', r:response_header('x-new'))\n"
        "  r:set_response_header('content-type', 'text/plain') add('ct2', r:response_header('Content-Type'))\n"
        "  local ok, e = pcall(r.respond, r, 200, 'x')\n"
        "  add('respond', not ok and e:match('only allowed in on_request'))\n"
        "  ok, e = pcall(r.set_path, r, '/x') add('set_path', not ok and e:match('only allowed in on_request'))\n"
        "  ok, e = pcall(r.set_upstream, r, 'pool1') add('set_upstream', not ok)\n"
        "  r:set_response_header('x-out', table.concat(out, ';'))\n"
        "end\n";
    gh_lua_t *g = gh_lua_new();
    CHECK_INT(load(g, 0, "=t/ctx", code), GH_FN_REQUEST | GH_FN_RESPONSE);
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    CHECK_INT(run(g, 0, GH_FN_REQUEST, &q), GH_FN_OK);
    CHECK(q.ctx_ref > 0);
    q.status = 201;
    q.resp_headers = resp_h;
    q.nresp_headers = GH_ARRAY_LEN(resp_h);
    CHECK_INT(run(g, 0, GH_FN_RESPONSE, &q), GH_FN_OK);
    if (err[0])
        fprintf(stderr, "  (%s)\n", err);
    CHECK_EDIT(e, 1, "x-out",
               "n=41;l=a;same=true;st=201;ct=text/html;up=u1;early=e;up2=nil;new=a;ct2=text/plain;"
               "respond=only allowed in on_request;set_path=only allowed in on_request;set_upstream=true");
    /* respond in the response phase, uncaught: an error */
    const char *bad = "function on_response(r)\n  r:respond(200)\nend\n";
    CHECK_INT(load(g, 1, "=t/ctx2", bad), GH_FN_RESPONSE);
    CHECK_INT(run(g, 1, GH_FN_RESPONSE, &q), GH_FN_ERROR);
    CHECK_HAS(err, "t/ctx2:2: respond is only allowed in on_request");
    /* done: the reference released; a new request gets a new table */
    int ref = q.ctx_ref;
    gh_lua_done(g, &q);
    CHECK_INT(q.ctx_ref, 0);
    gh_lua_done(g, &q); /* twice: nothing */
    CHECK_INT(lua_gettop(g->L), 0);
    gh_edits_free(e);
    e = gh_edits_new();
    req_init(&q, e);
    q.status = 200;
    CHECK_INT(run(g, 0, GH_FN_RESPONSE, &q), GH_FN_OK);
    CHECK_HAS(edit_value(e, 1, "x-out"), "n=nil;l=nil;same=true;st=200");
    CHECK(q.ctx_ref > 0);
    CHECK_INT(q.ctx_ref, ref); /* the registry slot was reused */
    gh_lua_done(g, &q);
    gh_edits_free(e);
    gh_lua_free(g);
}

/* r used with no request current (only reachable from C: no Lua runs between calls) */
static void test_request_over(void)
{
    gh_lua_t *g = gh_lua_new();
    lua_State *L = g->L;
    CHECK_INT(luaL_loadstring(L, "local r = ... return r:path()"), 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->r_ref);
    CHECK(lua_pcall(L, 1, 1, 0) != 0);
    CHECK_HAS(lua_tostring(L, -1), "request is over");
    lua_settop(L, 0);
    CHECK_INT(luaL_loadstring(L, "local r = ... return r.ctx"), 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->r_ref);
    CHECK(lua_pcall(L, 1, 1, 0) != 0);
    CHECK_HAS(lua_tostring(L, -1), "request is over");
    lua_settop(L, 0);
    gh_lua_free(g);
}


/* The budgeted pattern functions (string.find/match/gmatch/gsub) against LuaJIT's own, on
 * random patterns and subjects: the same results, and an error where LuaJIT errs. */
static const char *probe_lua =
    "local function ser(ok, ...)\n"
    "  if not ok then return 'err' end\n"
    "  local t = {'ok', select('#', ...)}\n"
    "  for i = 1, select('#', ...) do local v = select(i, ...) t[#t + 1] = type(v) .. ':' .. tostring(v) end\n"
    "  return table.concat(t, '|')\n"
    "end\n"
    "function probe(s, p, init)\n"
    "  local out = {}\n"
    "  out[1] = ser(pcall(string.find, s, p, init))\n"
    "  out[2] = ser(pcall(string.match, s, p, init))\n"
    "  out[3] = ser(pcall(function()\n"
    "    local r, n = {}, 0\n"
    "    for a, b in s:gmatch(p) do\n"
    "      n = n + 1 if n > 50 then break end r[#r + 1] = tostring(a) .. ',' .. tostring(b)\n"
    "    end\n"
    "    return table.concat(r, ';')\n"
    "  end))\n"
    "  out[4] = ser(pcall(string.gsub, s, p, '<%0|%1>'))\n"
    "  out[5] = ser(pcall(string.gsub, s, p, function(a, b) return b and (tostring(a) .. tostring(b)) or nil end))\n"
    "  out[6] = ser(pcall(string.gsub, s, p, {a = 'A', ['1'] = 7}, 2))\n"
    "  out[7] = ser(pcall(string.find, s, p, init, true))\n"
    "  out[8] = ser(pcall(string.gsub, s, p, '%'))\n"
    "  return table.concat(out, '\\n')\n"
    "end\n";

static char *probe_run(lua_State *L, const char *s, const char *p, int init)
{
    lua_getglobal(L, "probe");
    lua_pushstring(L, s);
    lua_pushstring(L, p);
    lua_pushinteger(L, init);
    if (lua_pcall(L, 3, 1, 0) != 0) {
        lua_pop(L, 1);
        return NULL;
    }
    size_t n;
    const char *v = lua_tolstring(L, -1, &n);
    char *r = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        r[i] = v[i] ? v[i] : '@';
    r[n] = 0;
    lua_pop(L, 1);
    return r;
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void test_patterns_same(void)
{
    static const char *tok[] = {"a",   "b",    "1",      " ",      ".",     "%a",   "%d",    "%s",   "%w",   "%p",
                                "%A",  "[ab]", "[^a]",   "[a-c]",  "[%d_]", "[]a]", "(",     ")",    "()",   "%1",
                                "%2",  "%b()", "%f[%w]", "%f[%W]", "^",     "$",    "*",     "+",    "-",    "?",
                                "%",   "[",    "%%",     "%.",     "[^]",   "x",    "%z",    "[%a-]", "[a-]", "%b",
                                "%f",  "%f[",  "[^%d]",  "%3",     "(()",   "%bab", "[%]]",  "]",    "%u",   "%L"};
    static const char alpha[] = "ab1 (_).xA";
    static const char *fixed[][2] = {
        {"  trim me  ", "^%s*(.-)%s*$"}, {"key=value; k2=v2", "(%w+)=(%w+)"}, {"f(a(b)c)d", "%b()"},
        {"THE (quick) fox", "%f[%a]%a+"}, {"hello world", "o"},            {"abc", ""},
        {"a.b.c", "."},                   {"a.b.c", "%."},                 {"x=1,y=22", "()=(%d+)()"},
        {"aaa", "a-b"},                   {"[x]", "[]]"},                  {"abab", "(ab)%1"},
    };
    lua_State *ref = luaL_newstate();
    luaL_openlibs(ref);
    CHECK_INT(luaL_dostring(ref, probe_lua), 0);
    gh_lua_t *g = gh_lua_new();
    CHECK_INT(luaL_dostring(g->L, probe_lua), 0); /* the state's own globals: string is the budgeted one */
    int bad = 0, n = 0;
    for (int it = 0; it < 40000 + (int)GH_ARRAY_LEN(fixed); it++) {
        char p[96] = "", s[32] = "";
        int init = 1;
        if (it < (int)GH_ARRAY_LEN(fixed)) {
            snprintf(s, sizeof s, "%s", fixed[it][0]);
            snprintf(p, sizeof p, "%s", fixed[it][1]);
        } else {
            int np = (int)(rnd() % 11), ns = (int)(rnd() % 20);
            for (int i = 0; i < np; i++)
                strcat(p, tok[rnd() % GH_ARRAY_LEN(tok)]);
            for (int i = 0; i < ns; i++)
                s[i] = alpha[rnd() % 10];
            init = (int)(rnd() % 17) - 8;
        }
        char *a = probe_run(ref, s, p, init), *b = probe_run(g->L, s, p, init);
        n++;
        if (!a || !b || strcmp(a, b) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "patterns differ: s=\"%s\" p=\"%s\" init=%d\nLuaJIT:\n%s\nours:\n%s\n", s, p, init,
                        a ? a : "(probe failed)", b ? b : "(probe failed)");
        }
        free(a);
        free(b);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(lua_gettop(g->L), 0);
    lua_close(ref);
    gh_lua_free(g);
}

/* Backtracking patterns run in C, where the count hook never fires: the matcher's steps are
 * charged to max_instructions instead. */
static void test_patterns_budget(void)
{
    static const struct {
        const char *lua;
        int rc;
        const char *frag;
    } cases[] = {
        {"string.find(string.rep('a', 30), string.rep('a-', 30) .. 'b')", GH_FN_LIMIT, "t/pat:2: instruction limit"},
        {"for w in string.rep('a', 1e5):gmatch('a*a*a*b') do end", GH_FN_LIMIT, "instruction limit"},
        {"while true do pcall(string.match, string.rep('a', 40), string.rep('a*', 40) .. 'b') end", GH_FN_LIMIT,
         "t/pat:2: instruction limit"},
        {"string.gsub('abc', '%w', function(c) while true do end end)", GH_FN_LIMIT, "instruction limit"},
        {"string.rep('x', 1e5):gsub('.', '%0%0')", GH_FN_OK, ""},
        {"assert(('  x  '):match('^%s*(.-)%s*$') == 'x')", GH_FN_OK, ""},
        {"string.find('a', '%')", GH_FN_ERROR, "malformed pattern"},
        {"string.find('a', '[a')", GH_FN_ERROR, "missing ']'"},
        {"string.gsub('a', '(a)', '%2')", GH_FN_ERROR, "invalid capture index"},
        {"string.find(string.rep('a', 300), string.rep('a?', 300))", GH_FN_ERROR, "pattern too complex"},
        {"string.gsub('a', 'a', {a = {}})", GH_FN_ERROR, "invalid replacement value (a table)"},
    };
    gh_lua_t *g = gh_lua_new();
    char code[512];
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        snprintf(code, sizeof code, "function on_request(r)\n  %s\nend\n", cases[i].lua);
        CHECK_INT(load(g, 0, "=t/pat", code), GH_FN_REQUEST);
        gh_edits_t *e = gh_edits_new();
        gh_fn_req_t q;
        req_init(&q, e);
        double t0 = now_ns();
        int rc = run(g, 0, GH_FN_REQUEST, &q);
        double ms = (now_ns() - t0) / 1e6;
        if (rc != cases[i].rc)
            fprintf(stderr, "  (case %zu: %s)\n", i, err);
        CHECK_INT(rc, cases[i].rc);
        CHECK_HAS(err, cases[i].frag);
        CHECK(ms < 2000); /* LuaJIT's own matcher takes minutes on the first three */
        gh_edits_free(e);
    }
    check_well_load(g);
    gh_lua_free(g);
}

static void reset_edits(gh_edits_t *e)
{
    e->nh = 0;
    e->bytes = 0;
    for (gh_edits_chunk_t *c = e->mem; c; c = c->next)
        c->used = 0;
}

static void bench_one(gh_lua_t *g, uint32_t id, const char *what, int n)
{
    gh_edits_t *e = gh_edits_new();
    gh_fn_req_t q;
    req_init(&q, e);
    int bad = 0;
    for (int i = 0; i < 1000; i++) { /* warm up */
        reset_edits(e);
        bad += gh_lua_run(g, id, GH_FN_REQUEST, &q, &lim, err, sizeof err) != GH_FN_OK;
    }
    size_t mem0 = gh_lua_memory(g);
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        reset_edits(e);
        bad += gh_lua_run(g, id, GH_FN_REQUEST, &q, &lim, err, sizeof err) != GH_FN_OK;
    }
    double t1 = now_ns();
    CHECK_INT(bad, 0);
    CHECK_INT(lua_gettop(g->L), 0);
    printf("bench: %-40s %7.0f ns/call (state %zu -> %zu bytes)\n", what, (t1 - t0) / n, mem0, gh_lua_memory(g));
    gh_edits_free(e);
}

static void bench(void)
{
    gh_lua_t *g = gh_lua_new();
    CHECK_INT(load(g, 0, "=t/trivial", "function on_request(r) r:set_response_header(\"x-edge\", \"1\") end"),
              GH_FN_REQUEST);
    CHECK_INT(load(g, 1, "=t/empty", "function on_request(r) end"), GH_FN_REQUEST);
    CHECK_INT(load(g, 2, "=t/typical",
                   "function on_request(r)\n"
                   "  if r:path():sub(1, 3) == '/a/' and r:header('x-a') then\n"
                   "    r:set_header('x-user', r:cookie('sid') or 'anon')\n"
                   "    r.ctx.t = r:now()\n"
                   "  end\n"
                   "end\n"),
              GH_FN_REQUEST);
    bench_one(g, 1, "empty on_request", 200000);
    bench_one(g, 0, "r:set_response_header('x-edge', '1')", 200000);
    bench_one(g, 2, "path/header/cookie/set_header/r.ctx", 200000);
    gh_lua_free(g);
}

int main(void)
{
    RUN(test_check);
    RUN(test_sandbox);
    RUN(test_limits);
    RUN(test_hard_cap);
    RUN(test_isolation);
    RUN(test_request_api);
    RUN(test_validation);
    RUN(test_respond);
    RUN(test_phases_ctx);
    RUN(test_request_over);
    RUN(test_patterns_same);
    RUN(test_patterns_budget);
    RUN(bench);
    return t_done("test_lua");
}
