-- bench/bench.lua: agentsession performance against lua-cjson and a plain-Lua manager.
--
-- From the repository root, after `make`:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/bench.lua
-- (`make bench` runs exactly that.)
--
-- Options (environment):
--   BENCH_QUICK=1     short rounds, for a smoke run in tests
--   BENCH_ROUNDS=n    rounds per row (default 7; 3 when quick)
--   BENCH_TIME=s      CPU seconds per function per round (default 0.3; 0.02 when quick)
-- Arguments: Lua patterns; only rows whose name matches one of them run (all rows when none).
--
-- Every row compares ours with a rival measured in the same run, interleaved (see harness.lua).
-- Ratios are informational: the benchmark exits 0 whatever they are, and non-zero only when
-- something errors (including a failed round-trip check of the data under test).
--
-- To add a row (later issues: SQLite, Redis, append, fork), append to `rows` below:
--   { name = "...", target = 1.0, make = function(ctx) return ours_fn, rival_fn, cleanup end }
-- `make` may return nil, "reason" to skip the row (e.g. a Redis server is not running).

local agentsession = require "agentsession"
local cjson = require "cjson"
local harness = require "harness"
local conversation = require "conversation"
local PlainManager = require "plain_manager"

local h = harness.new()

---------------------------------------------------------------------------------------------------
-- Data under test

local session = conversation.session{ null = agentsession.null }
local id = session.metadata.id
local ours_text = agentsession.json.encode(session)
local cjson_text = cjson.encode(session)

-- Exact structural equality (integers stay integers, floats stay floats; metatables ignored).
local function deep_equal(a, b, path, ignore)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return false, path .. ": " .. ta .. " vs " .. tb end
  if ta == "number" then
    if math.type(a) ~= math.type(b) then
      return false, path .. ": " .. math.type(a) .. " came back as " .. math.type(b)
    end
    if a == b then return true end
    return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  if a == b then return true end
  if ta ~= "table" then return false, path .. ": values differ" end
  for k, v in pairs(a) do
    if not (ignore and ignore[k]) then
      local ok, why = deep_equal(v, b[k], path .. "." .. tostring(k), nil)
      if not ok then return false, why end
    end
  end
  for k in pairs(b) do
    if a[k] == nil and not (ignore and ignore[k]) then
      return false, path .. "." .. tostring(k) .. ": extra key"
    end
  end
  return true
end

local check_failures = {}
local function check(what, ok, why)
  if not ok then
    check_failures[#check_failures + 1] = what .. ": " .. tostring(why)
    io.stderr:write("bench: round-trip check failed: ", what, ": ", tostring(why), "\n")
  end
end

do
  check("json.decode(json.encode(session))",
    deep_equal(session, agentsession.json.decode(ours_text), "session"))
  local m = agentsession.memory()
  m:save(session)
  local back = m:resume(id)
  check("memory save+resume messages", deep_equal(session.messages, back.messages, "messages"))
  check("memory save+resume state", deep_equal(session.state, back.state, "state"))
  check("memory save+resume metadata", deep_equal(session.metadata, back.metadata, "metadata",
    { created_at = true, updated_at = true, version = true, parent_id = true }))
  m:close()
end

---------------------------------------------------------------------------------------------------
-- Rows

local sink = {} -- keeps results alive so no work can be skipped

local rows = {
  {
    name = "json.encode / cjson.encode", target = 1.0,
    make = function()
      local encode, cencode = agentsession.json.encode, cjson.encode
      return function() sink[1] = encode(session) end,
             function() sink[1] = cencode(session) end
    end,
  },
  {
    -- Both decoders read the same text (agentsession's encoding of the session).
    name = "json.decode / cjson.decode", target = 1.0,
    make = function()
      local decode, cdecode = agentsession.json.decode, cjson.decode
      return function() sink[1] = decode(ours_text) end,
             function() sink[1] = cdecode(ours_text) end
    end,
  },
  {
    name = "memory save+resume / cjson enc+dec", target = 1.25,
    make = function()
      local m = agentsession.memory()
      local cencode, cdecode = cjson.encode, cjson.decode
      return function() m:save(session); sink[1] = m:resume(id) end,
             function() sink[1] = cdecode(cencode(session)) end,
             function() m:close() end
    end,
  },
  {
    name = "memory save+resume / plain-Lua cjson manager", target = 0.6,
    make = function()
      local m = agentsession.memory()
      local p = PlainManager.new()
      return function() m:save(session); sink[1] = m:resume(id) end,
             function() p:save(session); sink[1] = p:resume(id) end,
             function() m:close() end
    end,
  },
}

---------------------------------------------------------------------------------------------------
-- Run

local patterns = { ... }
local function selected(name)
  if #patterns == 0 then return true end
  for _, p in ipairs(patterns) do
    if name:find(p) then return true end
  end
  return false
end

h:printf("agentsession benchmark (%s, lua-cjson %s)\n", _VERSION, cjson._VERSION or "?")
h:printf("conversation: %d messages, %d bytes as agentsession.json, %d bytes as cjson " ..
  "(%.1f KiB)\n", #session.messages, #ours_text, #cjson_text, #ours_text / 1024)
h:printf("timing: best of %d interleaved rounds, ~%.2f s CPU per function per round%s\n\n",
  h.rounds, h.round_time, h.quick and " (BENCH_QUICK)" or "")
h:header()

for _, row in ipairs(rows) do
  if selected(row.name) then
    local ours, rival, cleanup = row.make()
    if not ours then
      h:printf("%-" .. h.name_width .. "s skipped: %s\n", row.name, tostring(rival))
    else
      local ours_ns, rival_ns = h:compare(ours, rival)
      h:ratio(row.name, ours_ns, rival_ns, row.target)
      if cleanup then cleanup() end
      assert(sink[1] ~= nil, row.name .. ": the timed functions produced nothing")
      sink[1] = nil
    end
  end
end

if #check_failures > 0 then
  io.stderr:write(string.format("bench: %d round-trip check(s) failed; the figures above " ..
    "measure a codec that does not round-trip this data\n", #check_failures))
  os.exit(1)
end
