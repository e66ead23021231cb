-- bench/cache/hot.lua: wrk script for bench/cache.sh's cache-hit part.
--   wrk ... -s hot.lua http://127.0.0.1:PORT -- PREFIX COUNT
-- sends GET PREFIX0 .. PREFIX(COUNT-1) in turn (pre-formatted requests, so the script costs wrk
-- little), e.g. /h/s/0 .. /h/s/15: a small hot set that is all in the cache after the warm-up.
local reqs, n, i = {}, 0, 0

function init(args)
    local prefix, count = args[1], tonumber(args[2])
    for k = 0, count - 1 do reqs[k + 1] = wrk.format("GET", prefix .. k) end
    n = count
end

function request()
    i = i % n + 1
    return reqs[i]
end
