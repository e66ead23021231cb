-- bench/flags/ofrep.lua: wrk script for bench/flags.sh's OFREP part.
--   wrk ... -s ofrep.lua http://127.0.0.1:PORT -- FLAG_KEY API_KEY BODIES_FILE
-- sends POST /ofrep/v1/evaluate/flags/FLAG_KEY with X-API-Key and Content-Type: application/json,
-- the bodies ({"context": {...}}, one per line of BODIES_FILE) in turn. The requests are formatted
-- once in init (no Lua per response: wrk's own "Non-2xx or 3xx responses" counts errors), so the
-- script costs wrk little.
local reqs, n, i = {}, 0, 0

function init(args)
    local key, apikey, file = args[1], args[2], args[3]
    local headers = { ["X-API-Key"] = apikey, ["Content-Type"] = "application/json" }
    local path = "/ofrep/v1/evaluate/flags/" .. key
    for line in io.lines(file) do
        if #line > 0 then
            n = n + 1
            reqs[n] = wrk.format("POST", path, headers, line)
        end
    end
    if n == 0 then error("no request bodies in " .. file) end
    -- start each connection at a different body (wrk gives every thread its own Lua state; with one
    -- thread this just spreads the contexts)
    i = math.random(0, n - 1)
end

function request()
    i = i % n + 1
    return reqs[i]
end
