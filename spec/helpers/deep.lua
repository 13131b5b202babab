-- Deep comparison of Lua values for specs, stricter than luassert's `same`:
-- agentsession.conformance.same with rules of its own, so that numbers must
-- agree in subtype (integer or float) and, for floats, in every bit (so -0.0
-- differs from 0.0), and metatables must agree (so an empty array made with
-- agentsession.array differs from an empty object).
-- On a difference it names the path of the first one it finds, e.g. `value[2].x`.
--
--   local deep = require("helpers.deep")
--   local ok, why = deep.compare(expected, actual [, opts])
--   deep.assert_same(expected, actual [, opts [, context]])   -- a busted failure on difference
--
-- opts (all optional):
--   root        name of the root in paths (default "value")
--   numbers     "exact" (default): same subtype, same float bits;
--               "as_float": both converted to float, then same bits;
--               "value": equal by `==` (1 == 1.0, 0 == -0.0)
--   metatables  "same" (default): rawequal metatables;
--               "json": an empty table is [] (array_mt) or {} alike, other
--               metatables are not compared;
--               "ignore": metatables are not compared
--   array_mt    with metatables = "same": when given, only "is it array_mt?"
--               is compared, so other metatables are ignored
--   empty_alike true: an empty table equals any empty table whatever the
--               metatables (for codecs that cannot tell [] from {})

local same = require("agentsession.conformance").same

local M = {}

local function number_text(v)
  if math.type(v) == "float" then return string.format("float %.17g (%a)", v, v) end
  return "integer " .. v
end

local function differ(why, a, b)
  return string.format("%s: expected %s, actual %s", why, number_text(a), number_text(b))
end

local function float_bits(x)
  return string.pack("<d", x)
end

local NUMBERS = {
  exact = function(a, b)
    if math.type(a) ~= math.type(b) then return differ("number subtypes differ", a, b) end
    if math.type(a) == "float" then
      if float_bits(a) ~= float_bits(b) then return differ("float bits differ", a, b) end
    elseif a ~= b then
      return differ("integers differ", a, b)
    end
    return nil
  end,
  as_float = function(a, b)
    if float_bits(a + 0.0) ~= float_bits(b + 0.0) then return differ("numbers differ as floats", a, b) end
    return nil
  end,
  value = function(a, b)
    if a ~= b then return differ("numbers differ", a, b) end
    return nil
  end,
}

-- The rule for two tables: nil when they may be equal, else why not.
local function metatable_rule(opts)
  if opts.metatables == "ignore" then return nil end
  if opts.metatables == "json" then return "json" end
  local array_mt = opts.array_mt
  if array_mt ~= nil then
    return function(a, b)
      if (getmetatable(a) == array_mt) ~= (getmetatable(b) == array_mt) then
        return "one table has array_mt and the other has not"
      end
      return nil
    end
  end
  return function(a, b)
    if not rawequal(getmetatable(a), getmetatable(b)) then return "metatables differ" end
    return nil
  end
end

local function rules_of(opts)
  local tables = metatable_rule(opts)
  if opts.empty_alike and tables == "json" then
    tables = nil -- "json" compares the metatables of empty tables only
  elseif opts.empty_alike and tables ~= nil then
    local mt_rule = tables
    tables = function(a, b)
      if next(a) == nil and next(b) == nil then return nil end
      return mt_rule(a, b)
    end
  end
  local numbers = NUMBERS[opts.numbers or "exact"]
  if numbers == nil then error("deep: unknown numbers mode " .. tostring(opts.numbers), 3) end
  return { tables = tables, numbers = numbers }
end

-- Returns true when `actual` equals `expected`; otherwise false and a message
-- naming the path of a difference.
function M.compare(expected, actual, opts)
  opts = opts or {}
  return same(expected, actual, rules_of(opts), opts.root)
end

-- A busted/luassert failure (with `context` prepended) when the values differ.
function M.assert_same(expected, actual, opts, context)
  local ok, why = M.compare(expected, actual, opts)
  if not ok then
    local luassert = require("luassert")
    luassert.is_true(ok, (context and context .. ": " or "") .. why)
  end
end

--- A deep copy of v, metatables kept (shared, not copied).
function M.copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.copy(x) end
  return setmetatable(out, getmetatable(v))
end

return M
