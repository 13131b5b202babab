-- bench/redis_bench.lua: the Redis store's operations per second against a
-- redis-server this benchmark starts on a free loopback port, beside the
-- floor of that same server: redis-benchmark's PING rate with one client and
-- no pipelining, i.e. round trips per second. Wall-clock time, since a round
-- trip is mostly waiting.
--
-- Round trips per operation are counted, not assumed: mgr:stats() gives the
-- store's count of requests answered by the server.

local agentsession = require "agentsession"
local system = require "system"

local M = {}

-- Runs fn repeatedly for about `seconds` of wall time (after a short warm-up);
-- returns operations per second and round trips per operation.
local function rate(mgr, fn, seconds)
  for _ = 1, 50 do fn() end
  local n, trips = 0, mgr:stats().round_trips
  local t0 = system.monotime()
  local t1
  repeat
    for _ = 1, 20 do fn() end
    n = n + 20
    t1 = system.monotime()
  until t1 - t0 >= seconds
  return n / (t1 - t0), (mgr:stats().round_trips - trips) / n
end

local function ping_rate(srv, requests)
  local cmd = string.format("redis-benchmark -h %s -p %d -c 1 -P 1 -n %d -t ping -q 2>&1",
    srv.host, srv.port, requests)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  -- "PING_MBULK: 25000.00 requests per second, p50=0.031 msec" (carriage returns between updates)
  local mbulk = out:match("PING_MBULK:%s*([%d%.]+) requests per second")
  if not mbulk then error("redis-benchmark gave no PING_MBULK rate:\n" .. out, 0) end
  return tonumber(mbulk), cmd
end

--- Prints the Redis rows with h:printf. `session` is the benchmark conversation;
--- `make_messages(n)` gives n messages of it.
function M.report(h, session, make_messages)
  package.path = "spec/?.lua;" .. package.path
  local srv = require("helpers.redis_server").start()
  local seconds = h.quick and 0.2 or 1.5
  local ok, err = pcall(function()
    local mgr = agentsession.redis{ host = srv.host, port = srv.port, prefix = "bench:" }
    local floor, cmd = ping_rate(srv, h.quick and 5000 or 100000)

    local big = agentsession.session{ id = "bench-big", name = "bench", tags = { "bench" },
      agent_name = "bench", messages = session.messages, state = session.state }
    local small = agentsession.session{ id = "bench-small", name = "bench", tags = { "bench" },
      agent_name = "bench", messages = make_messages(10), state = session.state }
    mgr:save(big)
    mgr:save(small)
    for i = 1, 200 do
      mgr:save(agentsession.session{ id = string.format("bench-list-%03d", i), tags = { "t" },
        agent_name = "bench", messages = make_messages(2) })
    end
    local bytes = #agentsession.json.encode(session.messages)

    h:printf("\nredis store, one client, against redis-server %s on 127.0.0.1:%d " ..
      "(wall clock, ~%.1f s per row)\n", srv:cli("INFO", "server"):match("redis_version:([%w%.]+)") or "?",
      srv.port, seconds)
    h:printf("  floor: %s\n", cmd:gsub(" 2>&1$", ""))
    h:printf("  %-44s %10s %10s %12s %9s\n", "operation", "ops/s", "trips/op", "floor ops/s",
      "of floor")
    local function row(name, fn, m)
      local ops, trips = rate(m or mgr, fn, seconds)
      local f = floor / trips
      h:printf("  %-44s %10.0f %10.2f %12.0f %9.2f\n", name, ops, trips, f, ops / f)
      return ops
    end
    h:printf("  %-44s %10.0f %10s %12s %9s\n", "redis-benchmark PING (the floor)", floor, "1.00",
      string.format("%.0f", floor), "1.00")
    row("resume, 10 msgs", function() return mgr:resume("bench-small") end)
    row(string.format("resume, %d msgs (%.0f KiB)", #session.messages, bytes / 1024),
      function() return mgr:resume("bench-big") end)
    row("resume{last=1}, same session", function() return mgr:resume("bench-big", { last = 1 }) end)
    row("save, 10 msgs", function() return mgr:save(small) end)
    row(string.format("save, %d msgs (%.0f KiB)", #session.messages, bytes / 1024),
      function() return mgr:save(big) end)
    row("list{limit=20} of 202 sessions", function() return mgr:list{ limit = 20 } end)
    row("list{tag=,limit=20} of 202 sessions", function() return mgr:list{ tag = "t", limit = 20 } end)
    row("tag + untag (two writes)", function()
      mgr:tag("bench-small", "x")
      return mgr:untag("bench-small", "x")
    end)
    -- append: to sessions of 3,000 and of 10 messages (pools, each appended to in turn)
    local one = { make_messages(1)[1] }
    local pools = 0
    local function pool(n, count, opts)
      local ids, msgs = {}, make_messages(n)
      pools = pools + 1
      for k = 1, count do
        ids[k] = mgr:save(agentsession.session{ id = "bench-append-" .. pools .. "-" .. n .. "-" .. k,
          messages = msgs }).id
      end
      local k = 0
      return function()
        k = k % #ids + 1
        return mgr:append(ids[k], one, opts)
      end
    end
    local small_ops = row("append 1 msg to a 10-msg session", pool(10, 100))
    local big_ops = row("append 1 msg to a 3000-msg session", pool(3000, 5))
    h:printf("  %-44s %10.2f   (time per append, target <= 1.50)\n",
      "append ratio: 3000-msg / 10-msg session", small_ops / big_ops)
    local with_state = row("append 1 msg + state to a 10-msg session", pool(10, 100, { state = session.state }))
    h:printf("  %-44s %10.2f   (time per append, informational)\n",
      "append ratio: with state / without", small_ops / with_state)
    -- a window's save: resume{ last = 20 }, one more message, save
    local function windows(n, count)
      -- sessions of n messages that end with the same messages as the 3,000-message ones
      local all, ids, msgs = make_messages(3000), {}, {}
      for i = 1, n do msgs[i] = all[3000 - n + i] end
      for k = 1, count do
        ids[k] = mgr:save(agentsession.session{ id = "bench-window-" .. n .. "-" .. k,
          messages = msgs }).id
      end
      local k = 0
      return function()
        k = k % #ids + 1
        local w = mgr:resume(ids[k], { last = 20 })
        w.messages[#w.messages + 1] = one[1]
        return mgr:save(w)
      end
    end
    local small_w = row("window save, 1 new msg, 30-msg session", windows(30, 5))
    local big_w = row("window save, 1 new msg, 3000-msg session", windows(3000, 5))
    h:printf("  %-44s %10.2f   (time per save, target <= 1.50)\n",
      "window save ratio: 3000-msg / 30-msg session", small_w / big_w)
    -- search: a word in ten sessions of a store of 20,000 and of one of 200
    local function store_of(n)
      local m = agentsession.redis{ host = srv.host, port = srv.port, prefix = "bench-search-" .. n .. ":" }
      for i = 1, n do
        m:save(agentsession.session{ id = string.format("s-%06d", i), tags = { "t" .. i % 10 },
          messages = { { role = "user", content = "Please look at issue #" .. i .. " and fix it." },
            { role = "assistant", content = "Done: the " .. (i % (n / 10) == 0 and "zephyrine " or "")
              .. "fix for issue #" .. i .. " is committed." } } })
      end
      assert(#m:search("zephyrine") == 10, "redis search: not the ten sessions")
      return m
    end
    local big_n = h.quick and 2000 or 20000
    local big_s, small_s = store_of(big_n), store_of(200)
    local search_big = row(string.format("search, a word in 10 of %d sessions", big_n),
      function() return big_s:search("zephyrine") end, big_s)
    local search_small = row("search, a word in 10 of 200 sessions",
      function() return small_s:search("zephyrine") end, small_s)
    h:printf("  %-44s %10.2f   (time per search, target <= 2.00)\n",
      string.format("search ratio: %d / 200 sessions", big_n), search_small / search_big)
    big_s:close()
    small_s:close()
    mgr:close()
  end)
  srv:stop()
  if not ok then error(err, 0) end
end

return M
