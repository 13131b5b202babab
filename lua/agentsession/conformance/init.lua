-- agentsession.conformance: the behavioural suite of the contract (API.md),
-- runnable against any manager.
--
--   local conformance = require("agentsession.conformance")
--   local passed, failed, failures = conformance.run(function() return make_my_manager() end)
--
-- `run(new_manager [, opts])` calls `new_manager()` once per check for a
-- fresh, empty manager, runs the check against it and closes it. It raises
-- nothing (except when `new_manager` is not a function) and prints nothing
-- unless `opts.verbose`. It returns the number of checks passed, the number
-- failed, and an array of one-line descriptions "<check name>: <why>".
--
-- opts:
--   verbose  print "ok  <name>" / "FAIL <name>: <why>" per check and a summary
--   only     a Lua pattern: run only the checks whose name matches
--   skip     a Lua pattern: do not run the checks whose name matches
--            (for example skip = "^too_large:" leaves out the 17 MiB sessions)
-- Other keys are ignored.
--
-- `checks` is the array of every check, in the order run() runs them:
-- { name = "<family>: <what>", fn = function(mgr, ctx) } (and slow = true on
-- the too_large ones). Each family is a file of this package, named after it.
--
-- `same(expected, actual [, mode [, root]])` is the deep comparison the checks
-- use: it returns true, or false and one line naming the path of a difference
-- (from `root`, "value" by default). Numbers must have the same value and, on
-- Lua 5.3 and later, the same math.type (1 ~= 1.0; -0.0 == 0.0), null is
-- compared as a value, tables by their keys and values. mode:
--   nil     metatables are ignored
--   "json"  an empty table must be [] (array_mt) or {} (no array_mt) alike
--   "meta"  every table must have the same metatable
--   { tables = nil | "json" | "meta" | function, numbers = function }
--           rules of one's own: `tables(exp, act)` gets two tables and
--           `numbers(exp, act)` two numbers; each returns nil when they may
--           be equal and a reason otherwise.
--
-- Pure Lua, for Lua 5.1 to 5.4 and LuaJIT; depends on require("agentsession")
-- only (and, when present, the standard `debug` library to find a protected
-- `__close` metamethod). Where Lua has no integer subtype (5.1, 5.2, LuaJIT)
-- the checks of values hold integers to 2^53, as the codec does.

local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local is_error = agentsession.is_error
local safe_tostring, describe_error, fail = support.safe_tostring, support.describe_error, support.fail

local M = { VERSION = 1, same = support.same }

-- The families, in the order their checks run.
local FAMILIES = {
  "save", "resume", "values", "timestamps", "version", "list", "fork", "rewind", "labels", "delete",
  "window", "errors", "append", "op_id", "expect_version", "export_import", "lineage", "search",
  "prune", "too_large", "close",
}

local checks = {}
M.checks = checks
for _, family in ipairs(FAMILIES) do
  for _, c in ipairs(require("agentsession.conformance." .. family)) do checks[#checks + 1] = c end
end

---------------------------------------------------------------------------
-- Running
---------------------------------------------------------------------------

local MAX_LINE = 300

local function one_line(s)
  s = s:gsub("[\r\n\t]+", " ")
  if #s > MAX_LINE then s = s:sub(1, MAX_LINE - 3) .. "..." end
  return s
end

local function reason_of(err)
  if support.is_failure(err) then return err.message end
  return "raised " .. (is_error(err) and describe_error(err) or safe_tostring(err))
end

local function close_quietly(m)
  if m ~= nil then pcall(function() return m:close() end) end
end

local function run_one(c, new_manager)
  local ok, mgr = pcall(new_manager)
  if not ok then return false, "new_manager() raised " .. safe_tostring(mgr) end
  if mgr == nil then return false, "new_manager() returned nil" end
  local extra = {}
  local ctx = {
    new_manager = new_manager,
    open = function()
      local m = new_manager()
      if m == nil then fail("new_manager() returned nil") end
      extra[#extra + 1] = m
      return m
    end,
  }
  local passed, err = pcall(c.fn, mgr, ctx)
  close_quietly(mgr)
  for _, m in ipairs(extra) do close_quietly(m) end
  if passed then return true end
  return false, reason_of(err)
end

local function matches(name, pattern)
  if type(pattern) ~= "string" then return nil end
  local ok, found = pcall(string.find, name, pattern)
  if not ok then return nil, found end
  return found ~= nil
end

--- Runs the checks against managers made by `new_manager()`; returns
--- passed, failed, failures.
function M.run(new_manager, opts)
  if type(new_manager) ~= "function" then
    error("bad argument #1 to 'run' (function expected, got " .. type(new_manager) .. ")", 2)
  end
  if type(opts) ~= "table" then opts = {} end
  local verbose = opts.verbose and true or false
  local out = verbose and print or function() end
  local passed, failed, failures = 0, 0, {}
  local function record_failure(line)
    failed = failed + 1
    failures[#failures + 1] = line
    out("FAIL " .. line)
  end
  for _, c in ipairs(checks) do
    local selected = true
    if opts.only ~= nil then
      local m, bad = matches(c.name, opts.only)
      if bad then record_failure(one_line("opts.only: " .. safe_tostring(bad))) return passed, failed, failures end
      selected = m == true
    end
    if selected and opts.skip ~= nil then
      local m, bad = matches(c.name, opts.skip)
      if bad then record_failure(one_line("opts.skip: " .. safe_tostring(bad))) return passed, failed, failures end
      selected = m ~= true
    end
    if selected then
      local ok, why = run_one(c, new_manager)
      if ok then
        passed = passed + 1
        out("ok  " .. c.name)
      else
        record_failure(one_line(c.name .. ": " .. tostring(why)))
      end
    end
  end
  out(string.format("agentsession.conformance: %d passed, %d failed", passed, failed))
  return passed, failed, failures
end

return M
