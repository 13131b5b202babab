-- bench/harness.lua: a small timing harness for the agentsession benchmarks.
--
--   local harness = require "harness"
--   local h = harness.new()                       -- reads BENCH_QUICK, BENCH_ROUNDS, BENCH_TIME
--   local ours, rival = h:compare(function() ... end, function() ... end)   -- ns per op
--   h:header()
--   h:ratio("json.encode / cjson.encode", ours, rival, 1.0)
--
-- Method: each function is first calibrated to an iteration count that takes about
-- `round_time` seconds (or a fixed `count`). Then `rounds` rounds are run; in each round every
-- function runs its count once, the rivals alternating (forward order on odd rounds, reverse on
-- even ones) so that drifting machine load hits them alike. A full garbage collection precedes
-- each timed batch, so one function's garbage is not collected on the other's clock (the garbage
-- a function makes inside its own batch is collected on its own clock, as in real use). The
-- result is the best (minimum) per-op time over the rounds: the least disturbed measurement.
-- Time is CPU time of the process (os.clock), or what the option `clock` gives (a function
-- returning seconds: wall time, for calls that wait on a server).
--
-- Ratios are informational: nothing here fails on a ratio.

local M = {}
M.__index = M

local clock = os.clock
local unpack = table.unpack or rawget(_G, "unpack")

local function env_number(name)
  local v = os.getenv(name)
  if v and v ~= "" then return tonumber(v) end
  return nil
end

-- opts: quick (bool), rounds (int), round_time (s), count (fixed iterations), out (file),
-- clock (a function returning seconds; default os.clock)
function M.new(opts)
  opts = opts or {}
  local quick = opts.quick
  if quick == nil then
    local q = os.getenv("BENCH_QUICK")
    quick = q ~= nil and q ~= "" and q ~= "0"
  end
  local self = setmetatable({}, M)
  self.quick = quick
  self.rounds = opts.rounds or env_number("BENCH_ROUNDS") or (quick and 3 or 7)
  self.round_time = opts.round_time or env_number("BENCH_TIME") or (quick and 0.02 or 0.3)
  self.count = opts.count
  self.clock = opts.clock or clock
  self.out = opts.out or io.stdout
  self.name_width = opts.name_width or 44
  return self
end

-- Number of iterations of fn that take about `seconds` of CPU time (at least 1), or of the
-- time `timer` gives.
function M.calibrate(fn, seconds, timer)
  timer = timer or clock
  fn() -- warm up: caches, lazily built tables, string interning
  local n = 1
  while true do
    collectgarbage("collect")
    local t0 = timer()
    for _ = 1, n do fn() end
    local dt = timer() - t0
    if dt >= seconds / 4 or n >= 2 ^ 30 then
      if dt <= 0 then return n end
      return math.max(1, math.floor(n * seconds / dt + 0.5))
    end
    n = n * (dt > 0 and math.min(10, math.max(2, math.ceil(seconds / 4 / dt))) or 10)
  end
end

local function time_batch(fn, n, timer)
  collectgarbage("collect")
  local t0 = timer()
  for _ = 1, n do fn() end
  return (timer() - t0) / n
end

-- compare(fn1, fn2, ...) -> ns/op for each function, measured in interleaved rounds.
function M:compare(...)
  local fns = { ... }
  local counts, best = {}, {}
  for i, fn in ipairs(fns) do
    counts[i] = self.count or M.calibrate(fn, self.round_time, self.clock)
    best[i] = math.huge
  end
  local k = #fns
  for round = 1, self.rounds do
    for j = 1, k do
      local i = (round % 2 == 1) and j or (k + 1 - j)
      local t = time_batch(fns[i], counts[i], self.clock)
      if t < best[i] then best[i] = t end
    end
  end
  for i = 1, k do best[i] = best[i] * 1e9 end
  return unpack(best, 1, k)
end

-- measure(fn) -> ns/op
function M:measure(fn)
  return (self:compare(fn))
end

-- Human-readable duration from nanoseconds, always 10 characters wide.
function M.format_time(ns)
  if ns ~= ns or ns == math.huge then return string.format("%10s", "-") end
  if ns < 1e3 then return string.format("%7.1f ns", ns) end
  if ns < 1e7 then return string.format("%7.1f us", ns / 1e3) end
  if ns < 1e9 then return string.format("%7.1f ms", ns / 1e6) end
  return string.format("%7.2f s ", ns / 1e9)
end

function M:printf(fmt, ...)
  self.out:write(string.format(fmt, ...))
end

function M:header()
  self:printf("%-" .. self.name_width .. "s %10s %10s  %5s\n", "ratio (ours / rival)", "ours",
    "rival", "ratio")
  self:printf("%s\n", string.rep("-", self.name_width + 52))
end

-- Print one ratio row: name, our time, rival time, ratio, target, verdict. Returns the ratio.
function M:ratio(name, ours_ns, rival_ns, target)
  local r = ours_ns / rival_ns
  local verdict = ""
  local target_text = ""
  if target then
    target_text = string.format("(target <= %.2f)", target)
    -- judged on the ratio as printed (two decimals), so "1.00" never reads "over target"
    verdict = math.floor(r * 100 + 0.5) <= math.floor(target * 100 + 0.5) and "ok"
      or "over target"
  end
  self:printf("%-" .. self.name_width .. "s %s %s  %5.2f  %s  %s\n", name,
    M.format_time(ours_ns), M.format_time(rival_ns), r, target_text, verdict)
  self.out:flush()
  return r
end

-- Print one plain timing row (no rival).
function M:row(name, ns, note)
  self:printf("%-" .. self.name_width .. "s %s%s\n", name, M.format_time(ns),
    note and ("  " .. note) or "")
  self.out:flush()
end

return M
