-- Property test of the JSON codec and of every store: thousands of random JSON
-- values, generated from a fixed seed, must come back exactly as they went in.
local agentsession = require("agentsession")
local cjson = require("cjson")
local deep = require("helpers.deep")
local interp = require("helpers.interp")
local number_type = require("agentsession.conformance.support").number_type

local json = agentsession.json
local array = agentsession.array
local array_mt = agentsession.array_mt

local SEED = 12345
local CASES = 3000
local MAX_DEPTH = 6

-- Numbers that Debian's lua-cjson 2.1.0 writes exactly: it prints every
-- number as a double with "%.14g".
local function cjson_exact(x)
  return tonumber(string.format("%.14g", x)) == x
end

-- A random integer in [m, n]: math.random where Lua has integers; elsewhere
-- from a random float, since Lua 5.1 takes the bounds as C ints.
local random_in = math.random
if not interp.has_integers then
  random_in = function(m, n) return m + math.floor(math.random() * (n - m + 1)) end
end

-- 64 random bits as an integer (Lua 5.3 and later): math.random(0) on 5.4,
-- two 32-bit halves (wrapping around) on 5.3.
local HAS_RANDOM_0 = pcall(math.random, 0)
local function random_bits()
  if HAS_RANDOM_0 then return math.random(0) end
  return math.random(0, 4294967295) * 4294967296 + math.random(0, 4294967295)
end

local function pick(list)
  return list[math.random(#list)]
end

-- The UTF-8 bytes of a code point.
local function utf8_char(c)
  if c < 0x80 then return string.char(c) end
  if c < 0x800 then return string.char(0xC0 + math.floor(c / 0x40), 0x80 + c % 0x40) end
  if c < 0x10000 then
    return string.char(0xE0 + math.floor(c / 0x1000), 0x80 + math.floor(c / 0x40) % 0x40, 0x80 + c % 0x40)
  end
  return string.char(0xF0 + math.floor(c / 0x40000), 0x80 + math.floor(c / 0x1000) % 0x40,
    0x80 + math.floor(c / 0x40) % 0x40, 0x80 + c % 0x40)
end

local ESCAPES = { "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\0", "\127" }
local MULTIBYTE_RANGES = {
  { 0x80, 0x7FF }, { 0x800, 0xD7FF }, { 0xE000, 0xFFFF }, { 0x10000, 0x10FFFF },
}
local FIXED_CHARACTERS = { "é", "日", "€", "😀", "\226\128\168", "\239\187\191", "\244\143\191\191" }

local function random_piece()
  local r = math.random(10)
  if r <= 5 then
    return string.char(math.random(32, 126))
  elseif r == 6 then
    return pick(ESCAPES)
  elseif r == 7 then
    return string.char(math.random(0, 31))
  elseif r <= 9 then
    local range = pick(MULTIBYTE_RANGES)
    return utf8_char(math.random(range[1], range[2]))
  end
  return pick(FIXED_CHARACTERS)
end

local function random_string(max_pieces)
  local r = math.random(50)
  local n
  if r <= 5 then
    n = 0
  elseif r == 50 then
    n = math.random(50, 400)
  else
    n = math.random(1, max_pieces)
  end
  local pieces = {}
  for i = 1, n do pieces[i] = random_piece() end
  return table.concat(pieces)
end

-- The integers at the edges: of 64 bits where Lua has integers, else of 2^53.
local EXTREME_INTEGERS = {
  0, 1, -1, 2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1, 1 - 2 ^ 53, 2 ^ 52 + 1, 99999999999999, -99999999999999,
}
if interp.has_integers then
  EXTREME_INTEGERS = {
    0, 1, -1, math.maxinteger, math.mininteger, math.maxinteger - 1, math.mininteger + 1,
    9007199254740992, 9007199254740993, -9007199254740993, 4611686018427387904, 99999999999999, -99999999999999,
  }
end

local function random_integer(plain)
  local r = math.random(4)
  if plain then
    if r <= 2 then return math.random(-1000, 1000) end
    return random_in(-99999999999999, 99999999999999)
  end
  if r == 1 then
    return math.random(-1000, 1000)
  elseif r == 2 then
    return random_in(-2147483648, 2147483647)
  elseif r == 3 then
    if not interp.has_integers then return random_in(-(2 ^ 53), 2 ^ 53) end
    return random_bits()
  end
  return pick(EXTREME_INTEGERS)
end

local SPECIAL_FLOATS = {
  0.0, -1 / math.huge, 1.0, -1.0, 0.1, 0.5, 1 / 3, -2 / 3, 5e-324, -5e-324, 2.2250738585072014e-308,
  1.7976931348623157e308, -1.7976931348623157e308, 2.0 ^ 53, 2.0 ^ 53 + 2, 2.0 ^ 63, 2.0 ^ 64,
  -(2.0 ^ 63), 1e300, 1e-300, 1e16, 1e22, 123.456, 0.1 + 0.2,
} -- -1 / math.huge: -0.0 made at run time, as Lua 5.1 would merge the constants 0.0 and -0.0

-- A float of random bits, NaNs and infinities excepted: from 64 random bits
-- where string.pack exists; elsewhere from a random sign, exponent field
-- (0 to 2046) and 52-bit fraction.
local function random_float_bits()
  if not string.pack then
    local fraction = math.floor(math.random() * 2 ^ 26) * 2 ^ 26 + math.floor(math.random() * 2 ^ 26)
    local exponent = random_in(0, 2046)
    local x = exponent == 0 and fraction * 2 ^ -1074 or (2 ^ 52 + fraction) * 2 ^ (exponent - 1075)
    return math.random(2) == 1 and x or -x
  end
  while true do
    local x = string.unpack("<d", string.pack("<i8", random_bits()))
    if x == x and x ~= math.huge and x ~= -math.huge then return x end
  end
end

local function random_float(plain)
  local r = math.random(5)
  local x
  if r == 1 then
    x = pick(SPECIAL_FLOATS)
  elseif r == 2 then
    x = (math.random() - 0.5) * 10.0 ^ math.random(-30, 30)
  elseif r == 3 then
    x = math.random(-1000000, 1000000) + 0.0
  elseif r == 4 then
    x = math.random(-10000, 10000) / 100.0
  else
    x = random_float_bits()
  end
  if plain and not cjson_exact(x) then
    x = tonumber(string.format("%.12g", x)) + 0.0
    if not cjson_exact(x) then x = 0.5 end
  end
  return x
end

local generate

local function random_array(depth, plain)
  local t = {}
  for i = 1, math.random(0, 5) do t[i] = generate(depth + 1, plain) end
  return array(t)
end

local function random_object(depth, plain)
  local t = {}
  for _ = 1, math.random(0, 5) do t[random_string(6)] = generate(depth + 1, plain) end
  return t
end

-- A random JSON value; `plain` keeps to numbers lua-cjson writes exactly.
generate = function(depth, plain)
  local container_chance = depth == 0 and 0.7 or (0.45 - 0.06 * depth)
  if depth < MAX_DEPTH and math.random() < container_chance then
    if math.random(2) == 1 then return random_array(depth, plain) end
    return random_object(depth, plain)
  end
  local r = math.random(20)
  if r <= 6 then
    return random_string(12)
  elseif r <= 11 then
    return random_integer(plain)
  elseif r <= 16 then
    return random_float(plain)
  elseif r <= 18 then
    return math.random(2) == 1
  end
  return agentsession.null
end

math.randomseed(SEED)
local general, plain = {}, {}
for i = 1, CASES do general[i] = generate(0, false) end
for i = 1, CASES do plain[i] = generate(0, true) end

local function context(set_name, i, v)
  local ok, text = pcall(json.encode, v)
  if not ok then text = "(json.encode failed)" end
  if #text > 300 then text = text:sub(1, 300) .. "..." end
  return string.format("seed %d, %s case %d, value %s", SEED, set_name, i, text)
end

-- Fails the test (printing the seed) unless `ok`.
local function check(ok, why, set_name, i, v)
  if not ok then
    local where = context(set_name, i, v)
    print("\nproperty failed: " .. where)
    assert.is_true(false, where .. "\n" .. tostring(why))
  end
end

-- Calls f(...) and fails the test (printing the seed) if it raises.
local function attempt(set_name, i, v, f, ...)
  local ok, result = pcall(f, ...)
  if not ok then
    local err = type(result) == "table" and tostring(result.kind) .. ": " .. tostring(result.message)
      or tostring(result)
    check(false, "raised " .. err, set_name, i, v)
  end
  return result
end

local SETS = { { "general", general }, { "plain", plain } }

describe("property (seed " .. SEED .. ", " .. CASES .. " values per set)", function()
  it("generates values of every kind", function()
    local seen = {}
    local function visit(v)
      local kind = number_type(v) or type(v)
      if type(v) == "table" then
        kind = getmetatable(v) == array_mt and "array" or "object"
        if next(v) == nil then kind = "empty " .. kind end
        for _, child in pairs(v) do visit(child) end
      end
      seen[kind] = true
    end
    for _, v in ipairs(general) do visit(v) end
    for _, kind in ipairs({ "integer", "float", "string", "boolean", "userdata", "array", "object",
                            "empty array", "empty object" }) do
      assert.is_true(seen[kind], "no " .. kind .. " generated")
    end
  end)

  it("decode(encode(v)) equals v exactly", function()
    for _, set in ipairs(SETS) do
      local name, values = set[1], set[2]
      for i, v in ipairs(values) do
        local text = attempt(name, i, v, json.encode, v)
        assert.is_string(text)
        local back = attempt(name, i, v, json.decode, text)
        local ok, why = deep.compare(v, back)
        check(ok, why, name, i, v)
      end
    end
  end)

  it("lua-cjson reads what encode writes as the same value", function()
    local opts = { numbers = "as_float", metatables = "ignore" }
    for _, set in ipairs(SETS) do
      local name, values = set[1], set[2]
      for i, v in ipairs(values) do
        local text = attempt(name, i, v, json.encode, v)
        local theirs = attempt(name, i, v, cjson.decode, text)
        local ok, why = deep.compare(v, theirs, opts)
        check(ok, why, name, i, v)
      end
    end
  end)

  it("lua-cjson reads what encode writes as it reads its own text, for plain documents", function()
    for i, v in ipairs(plain) do
      local ours = cjson.decode(attempt("plain", i, v, json.encode, v))
      local own = cjson.decode(cjson.encode(v))
      local ok, why = deep.compare(own, ours)
      check(ok, why, "plain", i, v)
    end
  end)

  it("decode reads what lua-cjson writes as v up to number subtype, for plain documents", function()
    local opts = { numbers = "value", array_mt = array_mt, empty_alike = true }
    for i, v in ipairs(plain) do
      local back = attempt("plain", i, v, json.decode, cjson.encode(v))
      local ok, why = deep.compare(v, back, opts)
      check(ok, why, "plain", i, v)
    end
  end)

  for _, store in ipairs(require("helpers.stores")) do
    it("every value round-trips through the " .. store.name .. " store as a message and as the state",
      function()
        local mgr = store.new()
        for _, set in ipairs(SETS) do
          local name, values = set[1], set[2]
          for i, v in ipairs(values) do
            local s = agentsession.session({})
            s.messages = array({ v, { role = "user", content = v } })
            s.state = v
            attempt(name, i, v, mgr.save, mgr, s)
            local back = attempt(name, i, v, mgr.resume, mgr, s.metadata.id)
            local ok, why = deep.compare(s.messages, back.messages, { root = "messages" })
            check(ok, why, name, i, v)
            ok, why = deep.compare(v, back.state, { root = "state" })
            check(ok, why, name, i, v)
            mgr:delete(s.metadata.id)
          end
        end
        mgr:close()
      end)
  end
end)
