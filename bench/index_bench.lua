-- bench/index_bench.lua: what the search index costs the writes, and what prune does, on SQLite
-- and on Redis (a redis-server this benchmark starts on a free loopback port). Wall-clock time:
-- a write waits on the file system or on the server.
--
--   * append of one message of about 1 KiB of text, with the index / the same on the commit
--     before the index: that commit's Lua 5.4 module is built by bench/base-build.sh (once, in
--     build/bench-base/), and each build's appends run in a child process of their own
--     (bench/append_child.lua), the two builds alternating round after round; a row gives the
--     best time per append of each;
--   * prune of 10,000 sessions: sessions deleted per second, and the longest batch, timed from
--     one call of prune's progress function to the next: on SQLite one write transaction of up
--     to 64 sessions (the longest the file's write lock is held), on Redis one session's WATCH
--     and MULTI ... EXEC.
local agentsession = require "agentsession"
local system = require "system"

local M = {}

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The wall ns per append a child gives, with the module of the checkout at `root`.
local function child_append(root, kind, where, n)
  local env = string.format("LUA_PATH=%s LUA_CPATH=%s", q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
    q(root .. "/build/?.so;;"))
  local out = sh(string.format("env %s lua5.4 bench/append_child.lua %s %s %d 2>&1", env, kind, q(where), n))
  local ns = tonumber(out:match("NS ([%d%.]+)"))
  if not ns then error("bench/append_child.lua failed:\n" .. out, 0) end
  return ns
end

local function append_rows(h, dir, srv, base)
  local rounds, n = h.quick and 2 or 9, h.quick and 200 or 1000
  local runs = 0
  for _, kind in ipairs({ "sqlite", "redis" }) do
    local best = { ours = math.huge, base = math.huge }
    for round = 1, rounds do
      local order = round % 2 == 1 and { "ours", "base" } or { "base", "ours" }
      for _, which in ipairs(order) do
        runs = runs + 1
        local where = kind == "sqlite" and dir .. "/append" .. runs .. ".db"
          or string.format("%d append%d:", srv.port, runs)
        local ns = child_append(which == "ours" and "." or base, kind, where, n)
        if ns < best[which] then best[which] = ns end
        if kind == "sqlite" then
          for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(where .. suffix) end
        end
      end
    end
    h:ratio(kind .. " append ~1 KiB: with index / before it", best.ours, best.base, 1.5)
  end
end

-- n sessions of two short messages each, saved one by one; returns a time after all of them.
local function fill(mgr, n)
  local last
  for i = 1, n do
    last = mgr:save(agentsession.session{ id = string.format("prune-%05d", i), name = "old " .. i,
      tags = { i % 10 == 0 and "keep" or "t" .. i % 3 }, agent_name = "bench",
      messages = { { role = "user", content = "question " .. i .. " about the parser" },
        { role = "assistant", content = "answer " .. i .. ": the parser is fixed" } } })
  end
  while agentsession.now() <= last.updated_at do end
  return last.updated_at + 1
end

local function prune_row(h, label, mgr, n)
  local before = fill(mgr, n)
  local longest, calls = 0, 0
  local t0 = system.monotime()
  local last = t0
  local gone = mgr:prune{ before = before, keep_tag = "keep", progress = function()
    local now = system.monotime()
    if now - last > longest then longest = now - last end
    last, calls = now, calls + 1
  end }
  local total = system.monotime() - t0
  local kept = math.floor(n / 10)
  assert(#gone == n - kept and #mgr:list() == kept, label .. ": prune deleted " .. #gone)
  h:printf("%-50s %10.0f sessions/s, longest batch %6.2f ms (%d batches, %.2f s in all)\n",
    label .. string.format(" prune %d of %d sessions", #gone, n), #gone / total, longest * 1e3, calls, total)
end

--- Prints the rows with h:printf. Runs on Lua 5.4 (the build of the commit before is of it).
function M.report(h)
  package.path = "spec/?.lua;" .. package.path
  local dir = sh("mktemp -d /tmp/agentsession-index-bench-XXXXXX"):gsub("%s+$", "")
  assert(dir ~= "", "bench: mktemp -d failed")
  local srv = require("helpers.redis_server").start()
  local ok, err = pcall(function()
    h:printf("\nsearch index: appends against the commit before it, and prune " ..
      "(wall clock; redis-server on 127.0.0.1:%d)\n", srv.port)
    local base = h.quick and "skip: BENCH_QUICK (make bench builds the commit before the index)"
      or sh("sh bench/base-build.sh build/bench-base"):gsub("%s+$", "")
    if base:find("^skip") or base == "" then
      h:printf("%-50s skipped: %s\n", "append ~1 KiB: with index / before it", base)
    else
      h:printf("  (the commit before the index: %s)\n", base:match("[^/]+$"))
      append_rows(h, dir, srv, base)
    end
    local n = h.quick and 1000 or 10000
    local sq = agentsession.sqlite(dir .. "/prune.db")
    prune_row(h, "sqlite", sq, n)
    sq:close()
    local rd = agentsession.redis{ port = srv.port, prefix = "prune:" }
    prune_row(h, "redis", rd, n)
    rd:close()
  end)
  srv:stop()
  os.execute("rm -rf " .. q(dir))
  if not ok then error(err, 0) end
end

return M
