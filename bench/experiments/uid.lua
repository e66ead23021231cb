-- bench/experiments/uid.lua: wrk script for bench/experiments.sh's part "proxy".
--   wrk ... -s uid.lua http://127.0.0.1:PORT -- POOL SEED [PATH]
-- sends GET PATH (default /) with "Cookie: uid=<16 hex digits>", so that the route's flag
-- (unit: cookie:uid) sees many units. POOL > 0: POOL requests with distinct random uids are
-- formatted once in init (the script costs wrk little) and each request picks one of them at random:
-- units come back (a 10 s run at ~25,000 req/s visits each of 100,000 units ~2.5 times). POOL = 0: a
-- new random uid for every request (every request a first exposure; wrk.format per request).
-- SEED (with the time) seeds Lua's generator: each run has its own uids.
local reqs, n, path = {}, 0, "/"

local function uid()
    return string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

function init(args)
    n = tonumber(args[1] or "100000")
    math.randomseed(os.time() + tonumber(args[2] or "0") * 7919)
    path = args[3] or "/"
    for k = 1, n do reqs[k] = wrk.format("GET", path, { Cookie = "uid=" .. uid() }) end
end

function request()
    if n > 0 then return reqs[math.random(n)] end
    return wrk.format("GET", path, { Cookie = "uid=" .. uid() })
end
