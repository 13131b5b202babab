-- Deep comparison of Lua values for specs, stricter than luassert's `same`:
-- agentsession.conformance.same with rules of its own, so that numbers must
-- agree in subtype (integer or float, where Lua has integers) and, for floats,
-- in every bit (so -0.0 differs from 0.0), and metatables must agree (so an
-- empty array made with agentsession.array differs from an empty object).
-- On Lua 5.1, 5.2 and LuaJIT every number is a float, compared bit for bit.
-- On a difference it names the path of the first one it finds, e.g. `value[2].x`.
--
--   local deep = require("helpers.deep")
--   local ok, why = deep.compare(expected, actual [, opts])
--   deep.assert_same(expected, actual [, opts [, context]])   -- a busted failure on difference
--
-- opts (all optional):
--   root        name of the root in paths (default "value")
--   numbers     "exact" (default): same subtype (on 5.3 and later), same float bits;
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

--- math.type where Lua has it; "float" for every number elsewhere.
local function subtype(v)
  if math.type then return math.type(v) end
  return "float"
end

--- The exact text of a float: "%a" where string.format has it, else (Lua
--- 5.1) the sign, the 53-bit significand and the binary exponent.
local HAS_HEX_FLOAT = pcall(string.format, "%a", 1.5)
function M.hex(x)
  if HAS_HEX_FLOAT then return string.format("%a", x) end
  if x ~= x then return "nan" end
  if x == math.huge or x == -math.huge then return x > 0 and "inf" or "-inf" end
  local sign = (x < 0 or (x == 0 and 1 / x < 0)) and "-" or ""
  local m, e = rawget(math, "frexp")(math.abs(x)) -- Lua 5.1 has it
  return string.format("%s0x%.0fp%d", sign, m * 2 ^ 53, e - 53)
end

local function number_text(v)
  if subtype(v) == "float" then return string.format("float %.17g (%s)", v, M.hex(v)) end
  return "integer " .. v
end

local function differ(why, a, b)
  return string.format("%s: expected %s, actual %s", why, number_text(a), number_text(b))
end

-- The bytes of a float; M.hex where string.pack is missing (5.1, 5.2, LuaJIT),
-- which tells apart every two floats but NaNs.
local float_bits = M.hex
if string.pack then float_bits = function(x) return string.pack("<d", x) end end

local NUMBERS = {
  exact = function(a, b)
    if subtype(a) ~= subtype(b) then return differ("number subtypes differ", a, b) end
    if subtype(a) == "float" then
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

--- Fails unless v is an integer: math.type "integer" where Lua has integers;
--- elsewhere an integral number of magnitude at most 2^53 (what the codec
--- reads and writes as an integer literal).
function M.assert_integer(v, what)
  local luassert = require("luassert")
  if math.type then
    luassert.are.equal("integer", math.type(v), what)
  else
    luassert.are.equal("number", type(v), what)
    luassert.is_true(v == math.floor(v) and math.abs(v) <= 2 ^ 53, (what and what .. ": " or "")
      .. string.format("%.17g", v) .. " is not an integer of at most 2^53")
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
