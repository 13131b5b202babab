-- bench/cluster_bench.lua: the Redis store on a Redis Cluster of 3 masters (and 3 replicas)
-- that this benchmark starts on loopback ports (spec/helpers/redis_cluster.lua):
--   - list{ limit = 20 } on a store of 20,000 sessions against one of 200 (the shards' merge
--     reads a page per shard, so the ratio should stay near 1; target at most 2.0);
--   - appends per second from 4 client processes against 1 (each process appends to its own
--     sessions, spread over the masters): the scaling, reported.
-- Wall-clock time. Run by bench/bench.lua on Lua 5.4; alone:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 -e 'require("cluster_bench").report(require("harness").new{})'

local agentsession = require "agentsession"
local system = require "system"

local M = {}

local CHILD = [[
local agentsession = require "agentsession"
local system = require "system"
local seeds, prefix, start, seconds, who = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
local cluster = {}
for s in seeds:gmatch("[^,]+") do cluster[#cluster + 1] = s end
local mgr = agentsession.redis{ cluster = cluster, prefix = prefix, timeout_ms = 30000 }
local ids = {}
for i = 1, 16 do
  ids[i] = mgr:save(agentsession.session{ id = who .. "-" .. i, agent_name = "bench" }).id
end
local msg = { { role = "assistant", content = "the parser returns a table of tokens when the input is valid" } }
while system.monotime() < start do system.sleep(0.001) end
local n, k = 0, 0
while system.monotime() < start + seconds do
  k = k % #ids + 1
  mgr:append(ids[k], msg)
  n = n + 1
end
print("APPENDS " .. n .. " " .. (system.monotime() - start))
]]

-- Seconds per call of fn, over about `seconds` of wall time after a warm-up.
local function time_per(fn, seconds)
  for _ = 1, 20 do fn() end
  local n, t0 = 0, system.monotime()
  local t1
  repeat
    for _ = 1, 10 do fn() end
    n = n + 10
    t1 = system.monotime()
  until t1 - t0 >= seconds
  return (t1 - t0) / n
end

-- Appends per second of `procs` processes appending at once for `seconds`.
local function append_rate(cluster, prefix, procs, seconds, child_path)
  local lua = os.getenv("BENCH_LUA") or "lua5.4"
  local start = system.monotime() + 1.5 -- after every child has connected and saved its sessions
  local cmd = {}
  for i = 1, procs do
    cmd[#cmd + 1] = string.format("%s %s %s %s %.6f %g c%d-%d &", lua, child_path,
      table.concat(cluster:seeds(), ","), prefix, start, seconds, procs, i)
  end
  local p = assert(io.popen(table.concat(cmd, " ") .. " wait"))
  local out = p:read("*a")
  p:close()
  local total, got = 0, 0
  for n, t in out:gmatch("APPENDS (%d+) ([%d%.]+)") do
    total = total + tonumber(n) / tonumber(t)
    got = got + 1
  end
  if got ~= procs then error("cluster bench: " .. got .. " of " .. procs .. " children reported:\n" .. out, 0) end
  return total
end

function M.report(h)
  package.path = "spec/?.lua;" .. package.path
  local cluster = require("helpers.redis_cluster").start()
  local child_path = os.tmpname()
  local ok, err = pcall(function()
    local f = assert(io.open(child_path, "w"))
    f:write(CHILD)
    f:close()
    local seconds = h.quick and 0.2 or 1.5
    local function store(prefix)
      return agentsession.redis{ cluster = cluster:seeds(), prefix = prefix, timeout_ms = 30000 }
    end
    h:printf("\nredis store on a Redis Cluster of %d masters and %d replicas on loopback " ..
      "(wall clock, ~%.1f s per row)\n", #cluster:masters(), #cluster:replicas(), seconds)
    local big, small = store("bench-big:"), store("bench-small:")
    local n_big = h.quick and 2000 or 20000
    for i = 1, n_big do
      big:save(agentsession.session{ id = string.format("s-%06d", i), agent_name = "bench",
        tags = { "t" .. i % 10 }, messages = { { role = "user", content = "message " .. i } } })
      if i <= 200 then
        small:save(agentsession.session{ id = string.format("s-%06d", i), agent_name = "bench",
          tags = { "t" .. i % 10 }, messages = { { role = "user", content = "message " .. i } } })
      end
    end
    local per_masters = {}
    for _, m in ipairs(cluster:masters()) do
      per_masters[#per_masters + 1] = tostring(cluster:count_keys(m, "bench-big:*meta"))
    end
    h:printf("  sessions of the %d-session store per master: %s\n", n_big, table.concat(per_masters, ", "))
    local t_big = time_per(function() return big:list{ limit = 20 } end, seconds)
    local t_small = time_per(function() return small:list{ limit = 20 } end, seconds)
    local trips0 = big:stats().round_trips
    big:list{ limit = 20 }
    local trips = big:stats().round_trips - trips0
    h:printf("  %-52s %10.1f us  (%d round trips)\n", "list{limit=20} of " .. n_big .. " sessions",
      t_big * 1e6, trips)
    h:printf("  %-52s %10.1f us\n", "list{limit=20} of 200 sessions", t_small * 1e6)
    h:printf("  %-52s %10.2f   (target <= 2.00)\n", "list ratio: " .. n_big .. " / 200 sessions", t_big / t_small)
    local t_tag = time_per(function() return big:list{ tag = "t3", limit = 20 } end, seconds)
    h:printf("  %-52s %10.1f us\n", "list{tag=,limit=20} of " .. n_big .. " sessions", t_tag * 1e6)
    local one = append_rate(cluster, "bench-append1:", 1, seconds * 2, child_path)
    local four = append_rate(cluster, "bench-append4:", 4, seconds * 2, child_path)
    h:printf("  %-52s %10.0f\n", "append ops/s, 1 client process", one)
    h:printf("  %-52s %10.0f\n", "append ops/s, 4 client processes", four)
    h:printf("  %-52s %10.2f   (reported; the machine's cores serve clients and masters alike)\n",
      "append scaling: 4 processes / 1", four / one)
  end)
  os.remove(child_path)
  cluster:stop()
  if not ok then error(err, 0) end
end

return M
