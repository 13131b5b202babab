-- bench/cli_bench.lua: the agentsession command, timed as the processes people run.
--
-- From the repository root, after `make`:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/cli_bench.lua
-- (`make bench` runs exactly that, after bench/bench.lua.) BENCH_QUICK=1: stores a tenth as big
-- and fewer runs, for a smoke run in tests.
--
-- Rows (wall clock of whole processes, each the best of several runs; the machine's load moves
-- them, the ratios within one run are the figures to read):
--  - dump of 20,000 sessions to /dev/null: sessions per second; and the peak resident memory
--    (VmHWM) of a process that dumps them against one that dumps 200 such sessions, and
--    against one that dumps 200 sessions holding as many bytes as the 20,000;
--  - copy of 2,000 sessions from a SQLite file into a redis-server this benchmark starts,
--    against dump to a file then restore of that file;
--  - list --limit 20 on the 20,000 sessions, against the start-up of `lua5.4 -e ''`, and where
--    the difference goes: loading argparse, the module and the command, building the parser,
--    the command's sh wrapper.
-- The sessions are agent conversations of bench/conversation.lua (a system prompt, a user
-- turn, an assistant turn; 32 variants), 3.8 KiB of JSON each. Their files live in one
-- directory under /tmp, removed at the end, also when a row fails.

local agentsession = require "agentsession"
local conversation = require "conversation"
local system = require "system"
package.path = "spec/?.lua;" .. package.path
local rs = require "helpers.redis_server"

local quick = (os.getenv("BENCH_QUICK") or "") ~= "" and os.getenv("BENCH_QUICK") ~= "0"
local MANY = quick and 2000 or 20000
local FEW = quick and 20 or 200
local COPIED = quick and 200 or 2000
local RUNS = quick and 2 or 5
local LIST_RUNS = quick and 5 or 60

local root = assert(io.popen("pwd")):read("*l")
local command = root .. "/build/bin/agentsession"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local r = os.execute(cmd)
  if not (r == true or r == 0) then error("failed: " .. cmd, 0) end
end

local dir = assert(io.popen("mktemp -d /tmp/agentsession-cli-bench-XXXXXX")):read("*l")

-- The best wall time (s) of `runs` runs of a shell command; `before` runs before each, untimed.
local function best(runs, cmd, before)
  local t = math.huge
  for _ = 1, runs do
    if before then before() end
    local t0 = system.monotime()
    sh(cmd)
    t = math.min(t, system.monotime() - t0)
  end
  return t
end

local function run(args)
  return "env -u AGENTSESSION_STORE " .. q(command) .. " " .. args .. " >/dev/null"
end

local templates = {}
for seed = 1, 32 do templates[seed] = conversation.messages{ seed = seed, count = 3, null = agentsession.null } end

local function populate(path, count, messages_of)
  local mgr = agentsession.sqlite(path)
  for i = 1, count do
    mgr:save(agentsession.session{ name = "task-" .. i, tags = { "bench", "t" .. i % 10 },
      agent_name = "code-agent", messages = messages_of(i), state = { cwd = "/home/user/project", step = i } })
  end
  mgr:close()
end

-- The peak resident memory (KiB) of a process that dumps the store to /dev/null.
local function dump_peak(path)
  local script = dir .. "/peak.lua"
  local f = assert(io.open(script, "wb"))
  f:write([[
    local status = require("agentsession.cli").main({ "--store", arg[1], "dump", "-o", "/dev/null" })
    assert(status == 0, "dump failed")
    local f = assert(io.open("/proc/self/status", "rb"))
    io.write(f:read("a"):match("VmHWM:%s*(%d+)"))
    f:close()
  ]])
  f:close()
  local low = math.huge
  for _ = 1, RUNS do
    local p = assert(io.popen("LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;")
      .. " LUA_CPATH=" .. q(root .. "/build/?.so;;") .. " lua5.4 " .. q(script) .. " " .. q(path)))
    local kib = tonumber(p:read("a"))
    p:close()
    if not kib then error("no peak memory for a dump of " .. path, 0) end
    low = math.min(low, kib)
  end
  return low
end

local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

local function body()
  local many, few, few_large = dir .. "/many.db", dir .. "/few.db", dir .. "/few-large.db"
  local t0 = system.monotime()
  populate(many, MANY, function(i) return templates[i % #templates + 1] end)
  populate(few, FEW, function(i) return templates[i % #templates + 1] end)
  local per = math.floor(MANY / FEW)
  populate(few_large, FEW, function(i)
    local msgs = {}
    for k = 1, per do
      for _, m in ipairs(templates[(i + k) % #templates + 1]) do msgs[#msgs + 1] = m end
    end
    return msgs
  end)
  print(string.format("\nagentsession command (wall clock of whole processes, best of %d runs%s)", RUNS,
    quick and "; BENCH_QUICK: stores a tenth as big" or ""))
  print(string.format("  (stores made in %.1f s: %d sessions, %.1f MiB; %d, %.1f MiB; %d, %.1f MiB)",
    system.monotime() - t0, MANY, file_size(many) / 1048576, FEW, file_size(few) / 1048576, FEW,
    file_size(few_large) / 1048576))

  local dump = best(RUNS, run("--store " .. q(many) .. " dump -o /dev/null"))
  print(string.format("  %-52s %8.2f s  %8.0f sessions/s", "dump of " .. MANY .. " sessions", dump, MANY / dump))
  local peak_many, peak_few, peak_large = dump_peak(many), dump_peak(few), dump_peak(few_large)
  print(string.format("  %-52s %8d KiB", "peak memory, dump of " .. MANY, peak_many))
  print(string.format("  %-52s %8d KiB  ratio %.2f", "peak memory, dump of " .. FEW, peak_few, peak_many / peak_few))
  print(string.format("  %-52s %8d KiB  ratio %.2f", "peak memory, dump of " .. FEW .. " as large in bytes",
    peak_large, peak_many / peak_large))

  local srv = rs.start()
  local prefixes = 0
  local function fresh()
    prefixes = prefixes + 1
    return srv:url(0, "bench" .. prefixes .. ":")
  end
  local source = dir .. "/copied.db"
  populate(source, COPIED, function(i) return templates[i % #templates + 1] end)
  local copy, through = math.huge, math.huge
  for _ = 1, RUNS do
    copy = math.min(copy, best(1, run("--store " .. q(source) .. " copy --to " .. q(fresh()))))
    local target, file = fresh(), dir .. "/copied.jsonl"
    through = math.min(through, best(1, run("--store " .. q(source) .. " dump -o " .. q(file)) .. " && "
      .. run("--store " .. q(target) .. " restore " .. q(file))))
    os.remove(file)
  end
  srv:stop()
  print(string.format("  %-52s %8.2f s  %8.0f sessions/s", "copy of " .. COPIED .. " sessions, SQLite -> Redis", copy,
    COPIED / copy))
  print(string.format("  %-52s %8.2f s  ratio %.2f", "dump to a file, then restore of it into Redis", through,
    copy / through))

  -- The start: list against the bare interpreter, and where the difference goes, each row
  -- adding a step to the one above it. The commands take turns, round after round, so that
  -- the machine's load falls on all alike; each keeps its best round.
  local function lua(code) return "env -u AGENTSESSION_STORE lua5.4 -e " .. q(code) .. " >/dev/null" end
  local paths = "LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;") .. " LUA_CPATH="
    .. q(root .. "/build/?.so;;")
  local starts = {
    { "list --limit 20 on " .. MANY .. " sessions", run("--store " .. q(many) .. " list --limit 20") },
    { "lua5.4 -e '' (the interpreter's start)", lua("") },
    { "  lua5.4 -e 'require \"argparse\"'", lua('require "argparse"') },
    { "  and require \"agentsession\"", paths .. " " .. lua('require "argparse" require "agentsession"') },
    { "  and require \"agentsession.cli\"",
      paths .. " " .. lua('require "argparse" require "agentsession" require "agentsession.cli"') },
    { "  lua5.4 bin/agentsession --version (and its parser)",
      paths .. " env -u AGENTSESSION_STORE lua5.4 bin/agentsession --version >/dev/null" },
    { "  build/bin/agentsession --version (and its sh wrapper)", run("--version") },
  }
  local times = {}
  for _ = 1, LIST_RUNS do
    for i, start in ipairs(starts) do times[i] = math.min(times[i] or math.huge, best(1, start[2])) end
  end
  for i, start in ipairs(starts) do
    local ratio = i == 2 and string.format("  ratio %.1f", times[1] / times[2]) or ""
    print(string.format("  %-52s %8.1f ms%s", start[1], times[i] * 1000, ratio))
  end
end

local ok, err = pcall(body)
rs.stop_all()
os.execute("rm -rf " .. q(dir))
if not ok then
  io.stderr:write("cli_bench: ", tostring(err), "\n")
  os.exit(1)
end
