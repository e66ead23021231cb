-- bench/cache/zipf.lua: wrk script for bench/cache.sh's hit-ratio part.
--   wrk ... -s zipf.lua http://127.0.0.1:PORT -- PATHS_FILE MARKER_FILE
-- sends the paths of PATHS_FILE (one per line, made by zipf.py) in file order, once. When the last
-- one has been handed out, it creates MARKER_FILE and stops the thread; bench/cache.sh then ends wrk
-- with SIGINT (wrk otherwise sleeps out its -d). The few requests asked for after the stop (other
-- connections in the same event-loop pass) start over at the top of the file. done() prints
-- "ZIPF sent=N": how many requests were handed out (wrk's own count is of completed responses).
local reqs, n, marker, threads = {}, 0, nil, {}
sent = 0   -- global: read by done() through thread:get

function setup(thread) table.insert(threads, thread) end

function init(args)
    for line in io.lines(args[1]) do
        n = n + 1
        reqs[n] = wrk.format("GET", line)
    end
    marker = args[2]
end

function request()
    sent = sent + 1
    if sent == n then
        local f = io.open(marker, "w")
        if f then f:write(sent, "\n"); f:close() end
        wrk.thread:stop()
    end
    return reqs[(sent - 1) % n + 1]
end

function done(summary, latency, requests)
    local total = 0
    for _, t in ipairs(threads) do total = total + t:get("sent") end
    io.write(string.format("ZIPF sent=%d\n", total))
end
