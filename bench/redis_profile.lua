-- bench/redis_profile.lua: where the time of the Redis store's small operations goes,
-- against a redis-server it starts on a free loopback port (Linux: it reads /proc).
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/redis_profile.lua [pairs] [burst seconds]
--
-- The operations are those of bench/redis_bench.lua's rows: append of one message to a pool
-- of 100 sessions of 10 messages, resume{ last = 1 } of the 120-message session, and
-- list{ limit = 20 } of 202 sessions (the append pool under a prefix of its own, so that list
-- reads the same sessions as the bench's row). Each operation runs in `pairs` bursts of
-- `burst` seconds (default 10 of 0.3), each burst between two runs of the floor,
-- `redis-benchmark -c 1 -P 1 -n 3000 -t ping_mbulk`: the PING rate of the same server next to
-- each burst, since on a shared machine it moves from one second to the next. For each
-- operation it prints the median over the bursts of its rate over the PING rate beside it,
-- and over all bursts the wall time per call, the CPU time of this process (user, system)
-- and of the server (user, system) per call, from /proc/<pid>/stat, and the time of the
-- server's script (EVALSHA) or transaction (EXEC) per call, from INFO commandstats after
-- CONFIG RESETSTAT; the same split for PING (redis-benchmark's CPU is that of the child
-- processes this one waited for, its start included). Wall and CPU times are totals over
-- the bursts divided by the calls; the rest of a call's wall time is time neither process
-- ran: the wake-ups between the two.

local agentsession = require "agentsession"
local system = require "system"
local conversation = require "conversation"

package.path = "spec/?.lua;" .. package.path
local redis_server = require "helpers.redis_server"

local npairs = tonumber(arg[1] or "") or 10
local burst = tonumber(arg[2] or "") or 0.3

-- utime, stime, cutime and cstime of a process, in seconds (clock ticks of 1/100 s).
local function cpu(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then error("redis_profile: no /proc/" .. pid .. "/stat (Linux only)", 0) end
  local text = f:read("*a")
  f:close()
  local v = {}
  for w in text:gsub("^.-%) ", ""):gmatch("%S+") do v[#v + 1] = tonumber(w) or 0 end
  return { user = v[12] / 100, sys = v[13] / 100, cuser = v[14] / 100, csys = v[15] / 100 }
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

local srv = redis_server.start()
local ok, err = pcall(function()
  local function cli(...)
    return (srv:cli(...))
  end
  local ping_n = 5000
  local function ping()
    local p = assert(io.popen(string.format("redis-benchmark -h %s -p %d -c 1 -P 1 -n %d -t ping_mbulk -q 2>&1",
      srv.host, srv.port, ping_n)))
    local out = p:read("*a")
    p:close()
    local rate = tonumber(out:match("PING_MBULK:%s*([%d%.]+) requests per second"))
    if not rate then error("redis-benchmark gave no PING_MBULK rate:\n" .. out, 0) end
    return rate
  end

  local session = conversation.session{ null = agentsession.null }
  local function messages(n)
    local t = {}
    for i = 1, n do t[i] = session.messages[(i - 1) % #session.messages + 1] end
    return t
  end
  local mgr = agentsession.redis{ host = srv.host, port = srv.port, prefix = "bench:" }
  local pool = agentsession.redis{ host = srv.host, port = srv.port, prefix = "bench-append:" }
  mgr:save(agentsession.session{ id = "bench-big", name = "bench", tags = { "bench" },
    agent_name = "bench", messages = session.messages, state = session.state })
  for i = 1, 200 do
    mgr:save(agentsession.session{ id = string.format("bench-list-%03d", i), tags = { "t" },
      agent_name = "bench", messages = messages(2) })
  end
  for k = 1, 100 do pool:save(agentsession.session{ id = "s" .. k, messages = messages(10) }) end
  local one, k = { session.messages[1] }, 0
  local ops = {
    { "append 1 msg to a 10-msg session", function()
      k = k % 100 + 1
      return pool:append("s" .. k, one)
    end },
    { "resume{last=1}, 120-msg session", function() return mgr:resume("bench-big", { last = 1 }) end },
    { "list{limit=20} of 202 sessions", function() return mgr:list{ limit = 20 } end },
  }

  print(string.format("redis-server %s on %s:%d; %d bursts of %.1f s per operation, each between two runs of",
    cli("INFO", "server"):match("redis_version:([%w%.]+)") or "?", srv.host, srv.port, npairs, burst))
  print(string.format("  redis-benchmark -c 1 -P 1 -n %d -t ping_mbulk (us per call; CPU from /proc, script from %s)",
    ping_n, "INFO commandstats"))
  print(string.format("%-34s %8s %8s %7s %7s %7s %7s %7s %7s %6s", "operation", "of floor", "calls/s",
    "wall", "cli usr", "cli sys", "srv usr", "srv sys", "script", "rest"))
  local pings = { n = 0, rates = {}, time = 0, cuser = 0, csys = 0, suser = 0, ssys = 0 }
  local function timed_ping()
    local me, s = cpu("self"), cpu(srv.pid)
    local rate = ping()
    local me1, s1 = cpu("self"), cpu(srv.pid)
    pings.n = pings.n + ping_n
    pings.rates[#pings.rates + 1] = rate
    pings.time = pings.time + ping_n / rate
    pings.cuser = pings.cuser + me1.cuser - me.cuser
    pings.csys = pings.csys + me1.csys - me.csys
    pings.suser = pings.suser + s1.user - s.user
    pings.ssys = pings.ssys + s1.sys - s.sys
    return rate
  end
  for _, op in ipairs(ops) do
    local name, fn = op[1], op[2]
    for _ = 1, 50 do fn() end
    cli("CONFIG", "RESETSTAT")
    local ratios, rates = {}, {}
    local n, wall, cu, cs, su, ss = 0, 0, 0, 0, 0, 0
    for _ = 1, npairs do
      local before = timed_ping()
      local me, s = cpu("self"), cpu(srv.pid)
      local calls, t0 = 0, system.monotime()
      local t1
      repeat
        for _ = 1, 10 do fn() end
        calls = calls + 10
        t1 = system.monotime()
      until t1 - t0 >= burst
      local me1, s1 = cpu("self"), cpu(srv.pid)
      local after = timed_ping()
      n, wall = n + calls, wall + (t1 - t0)
      cu, cs = cu + me1.user - me.user, cs + me1.sys - me.sys
      su, ss = su + s1.user - s.user, ss + s1.sys - s.sys
      rates[#rates + 1] = calls / (t1 - t0)
      ratios[#ratios + 1] = rates[#rates] / ((before + after) / 2)
    end
    local stats = cli("INFO", "commandstats")
    local script = stats:match("cmdstat_evalsha:[^\r\n]*usec_per_call=([%d%.]+)")
      or stats:match("cmdstat_exec:[^\r\n]*usec_per_call=([%d%.]+)")
    local us = 1e6 / n
    print(string.format("%-34s %8.2f %8.0f %7.1f %7.1f %7.1f %7.1f %7.1f %7s %6.1f", name, median(ratios),
      median(rates), wall * us, cu * us, cs * us, su * us, ss * us,
      script and string.format("%.1f", tonumber(script)) or "?", (wall - cu - cs - su - ss) * us))
  end
  local us = 1e6 / pings.n
  print(string.format("%-34s %8.2f %8.0f %7.1f %7.1f %7.1f %7.1f %7.1f %7s %6.1f", "redis-benchmark PING (the floor)",
    1, median(pings.rates), pings.time * us, pings.cuser * us, pings.csys * us, pings.suser * us,
    pings.ssys * us, "", (pings.time - pings.cuser - pings.csys - pings.suser - pings.ssys) * us))
  mgr:close()
  pool:close()
end)
srv:stop()
if not ok then error(err, 0) end
