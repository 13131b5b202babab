-- Deep comparison of Lua values for specs, stricter than luassert's `same`:
-- numbers must agree in subtype (integer or float) and, for floats, in every
-- bit (so -0.0 differs from 0.0), and metatables must agree (so an empty
-- array made with agentsession.array differs from an empty object).
-- On a difference it names the path of the first one, e.g. `value[2].x`.
--
--   local deep = require("helpers.deep")
--   local ok, why = deep.compare(expected, actual [, opts])
--   deep.assert_same(expected, actual [, opts])   -- a busted failure on difference
--
-- opts (all optional):
--   root        name of the root in paths (default "value")
--   numbers     "exact" (default): same subtype, same float bits;
--               "as_float": both converted to float, then same bits;
--               "value": equal by `==` (1 == 1.0, 0 == -0.0)
--   metatables  "same" (default): rawequal metatables;
--               "ignore": metatables are not compared
--   array_mt    with metatables = "same": when given, only "is it array_mt?"
--               is compared, so other metatables are ignored
--   empty_alike true: an empty table equals any empty table whatever the
--               metatables (for codecs that cannot tell [] from {})

local M = {}

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function child_path(path, key)
  if math.type(key) == "integer" then
    return path .. "[" .. key .. "]"
  elseif is_identifier(key) then
    return path .. "." .. key
  elseif type(key) == "string" then
    return path .. "[" .. string.format("%q", key) .. "]"
  end
  return path .. "[" .. M.describe(key) .. "]"
end

-- A short, unambiguous text for a value in failure messages.
function M.describe(v)
  local t = type(v)
  if t == "string" then
    if #v > 40 then
      return string.format("%q", v:sub(1, 40)) .. "... (" .. #v .. " bytes)"
    end
    return string.format("%q", v)
  elseif math.type(v) == "float" then
    return string.format("float %.17g (%a)", v, v)
  elseif math.type(v) == "integer" then
    return "integer " .. v
  end
  return tostring(v)
end

local function float_bits(x)
  return string.pack("<d", x)
end

local function numbers_differ(a, b, mode)
  if mode == "value" then
    if a ~= b then return "numbers differ" end
  elseif mode == "as_float" then
    if float_bits(a + 0.0) ~= float_bits(b + 0.0) then return "numbers differ as floats" end
  else
    if math.type(a) ~= math.type(b) then return "number subtypes differ" end
    if math.type(a) == "float" then
      if float_bits(a) ~= float_bits(b) then return "float bits differ" end
    elseif a ~= b then
      return "integers differ"
    end
  end
  return nil
end

local function strings_differ(a, b)
  if a == b then return nil end
  local n = math.min(#a, #b)
  for i = 1, n do
    if a:byte(i) ~= b:byte(i) then
      return string.format("strings differ at byte %d (%d vs %d bytes long)", i, #a, #b)
    end
  end
  return string.format("strings differ in length (%d vs %d bytes)", #a, #b)
end

local function key_order(x, y)
  local tx, ty = type(x), type(y)
  if tx ~= ty then return tx < ty end
  if tx == "number" or tx == "string" then return x < y end
  return tostring(x) < tostring(y)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, key_order)
  return keys
end

local function metatables_differ(a, b, opts)
  if opts.metatables == "ignore" then return nil end
  local ma, mb = getmetatable(a), getmetatable(b)
  if opts.array_mt ~= nil then
    if (ma == opts.array_mt) ~= (mb == opts.array_mt) then
      return "one table has array_mt and the other has not"
    end
  elseif not rawequal(ma, mb) then
    return "metatables differ"
  end
  return nil
end

local compare_at

local function tables_differ(a, b, path, opts, seen)
  if seen[a] == b then return nil end
  seen[a] = b
  if opts.empty_alike and next(a) == nil and next(b) == nil then return nil end
  local why = metatables_differ(a, b, opts)
  if why then return path, why end
  for _, k in ipairs(sorted_keys(a)) do
    local bv = rawget(b, k)
    if bv == nil then return child_path(path, k), "missing in actual" end
    local p, w = compare_at(rawget(a, k), bv, child_path(path, k), opts, seen)
    if p then return p, w end
  end
  for _, k in ipairs(sorted_keys(b)) do
    if rawget(a, k) == nil then return child_path(path, k), "unexpected in actual" end
  end
  return nil
end

compare_at = function(a, b, path, opts, seen)
  local ta, tb = type(a), type(b)
  local why
  if ta ~= tb then
    why = "types differ"
  elseif ta == "number" then
    why = numbers_differ(a, b, opts.numbers)
  elseif ta == "string" then
    why = strings_differ(a, b)
  elseif ta == "table" then
    return tables_differ(a, b, path, opts, seen)
  elseif not rawequal(a, b) then
    why = "values differ"
  end
  if why then
    return path, string.format("%s: expected %s, actual %s", why, M.describe(a), M.describe(b))
  end
  return nil
end

-- Returns true when `actual` equals `expected`; otherwise false and a message
-- naming the path of the first difference.
function M.compare(expected, actual, opts)
  opts = opts or {}
  local path, why = compare_at(expected, actual, opts.root or "value", opts, {})
  if path then
    return false, path .. ": " .. why
  end
  return true
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
