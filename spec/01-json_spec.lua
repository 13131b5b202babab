-- agentsession.json: the exact-round-trip codec, rule by rule.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local interp = require("helpers.interp")

local json = agentsession.json
local null = agentsession.null
local array = agentsession.array
local array_mt = agentsession.array_mt

local hex = deep.hex

-- -0.0 made at run time: Lua 5.1 merges the constants 0, 0.0 and -0.0 of a function.
local NEG_ZERO = -1 / math.huge

local function round_trip(v)
  return json.decode(json.encode(v))
end

-- Calls f(...) expecting an agentsession error of `kind`; returns the error.
local function raises(kind, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error, the call succeeded")
  assert.is_table(err, "expected an error table, got: " .. tostring(err))
  assert.are.equal(kind, err.kind, tostring(err.message))
  assert.is_true(agentsession.is_error(err, kind))
  assert.is_string(err.message)
  return err
end

local function refused_on_encode(v)
  return raises("invalid", json.encode, v)
end

local function refused_on_decode(text)
  return raises("invalid", json.decode, text)
end

local function nested_arrays(depth)
  local t = array()
  for _ = 2, depth do t = array({ t }) end
  return t
end

local function nested_objects(depth)
  local t = {}
  for _ = 2, depth do t = { a = t } end
  return t
end

describe("json integers", function()
  if not interp.has_integers then
    for _, n in ipairs({ 0, 1, -1, 42, 1000000, 2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1, 1 - 2 ^ 53, 2 ^ 32 }) do
      local text = string.format("%.0f", n)
      it("round-trips " .. text .. " as the integer literal " .. text, function()
        assert.are.equal(text, json.encode(n))
        local back = round_trip(n)
        deep.assert_integer(back)
        assert.are.equal(n, back)
      end)
    end

    it("encodes integral floats as integer literals", function()
      assert.are.equal("1", json.encode(1.0))
      assert.are.equal("-3", json.encode(-3.0))
      assert.are.equal("[1,2,3]", json.encode({ 1.0, 2, 3.0 }))
    end)
    return
  end

  for _, n in ipairs({ 0, 1, -1, 42, 1000000, 9007199254740992, 9007199254740993, -9007199254740993,
                       math.maxinteger, math.mininteger, math.maxinteger - 1, math.mininteger + 1 }) do
    it("round-trips " .. n .. " as an integer", function()
      local back = round_trip(n)
      assert.are.equal("integer", math.type(back))
      assert.are.equal(n, back)
    end)
  end

  it("encodes integers as integer literals", function()
    assert.are.equal("42", json.encode(42))
    assert.are.equal("-7", json.encode(-7))
    assert.are.equal("9223372036854775807", json.encode(math.maxinteger))
    assert.are.equal("-9223372036854775808", json.encode(math.mininteger))
  end)

  it("decodes integer literals in the int64 range as integers", function()
    assert.are.equal("integer", math.type(json.decode("9223372036854775807")))
    assert.are.equal(math.maxinteger, json.decode("9223372036854775807"))
    assert.are.equal(math.mininteger, json.decode("-9223372036854775808"))
    assert.are.equal("integer", math.type(json.decode("-9223372036854775808")))
    assert.are.equal("integer", math.type(json.decode("0")))
    assert.are.equal("integer", math.type(json.decode("-0")))
  end)

  it("decodes integer literals outside the int64 range as floats", function()
    local big = json.decode("9223372036854775808")
    assert.are.equal("float", math.type(big))
    assert.are.equal(hex(2.0 ^ 63), hex(big))
    local small = json.decode("-9223372036854775809")
    assert.are.equal("float", math.type(small))
    assert.are.equal(hex(-(2.0 ^ 63)), hex(small))
    local huge = json.decode("123456789012345678901234567890")
    assert.are.equal("float", math.type(huge))
    assert.are.equal(hex(1.2345678901234568e29), hex(huge))
  end)
end)

describe("json.decode of integers beyond 2^53 (big_integers)", function()
  -- Integer literals of magnitude above 2^53: 2^53 + 1, 2^53 + 2 (a double, but
  -- above 2^53 all the same), 2^63 - 1, -2^63 and 30 digits.
  local BIG = {
    { "9007199254740993", 2 ^ 53 }, { "-9007199254740993", -(2 ^ 53) }, { "9007199254740994", 2 ^ 53 + 2 },
    { "9223372036854775807", 2 ^ 63 }, { "-9223372036854775808", -(2 ^ 63) },
    { "123456789012345678901234567890", 1.2345678901234568e29 },
  }

  it("reads integer literals up to 2^53 as numbers, whatever the option", function()
    for _, opt in ipairs({ "error", "float", "string" }) do
      local o = { big_integers = opt }
      assert.are.equal(2 ^ 53, json.decode("9007199254740992", o))
      assert.are.equal(-(2 ^ 53), json.decode("-9007199254740992", o))
      assert.are.equal(2 ^ 53 - 1, json.decode("9007199254740991", o))
      deep.assert_integer(json.decode("9007199254740992", o))
      deep.assert_same(array({ 0, 1, -1 }), json.decode("[0,1,-1]", o))
    end
  end)

  if interp.has_integers then
    it("has no effect where Lua has integers", function()
      for _, opt in ipairs({ "error", "float", "string" }) do
        local o = { big_integers = opt }
        assert.are.equal(9007199254740993, json.decode("9007199254740993", o))
        assert.are.equal("integer", math.type(json.decode("9007199254740993", o)))
        assert.are.equal(math.maxinteger, json.decode("9223372036854775807", o))
        assert.are.equal(math.mininteger, json.decode("-9223372036854775808", o))
        assert.are.equal("integer", math.type(json.decode("-9223372036854775808", o)))
        local huge = json.decode("123456789012345678901234567890", o)
        assert.are.equal("float", math.type(huge))
        assert.are.equal(hex(1.2345678901234568e29), hex(huge))
        assert.are.equal("9007199254740993", json.encode(json.decode("9007199254740993", o)))
      end
    end)
  else
    it("refuses them by default, naming the path", function()
      for _, case in ipairs(BIG) do
        local err = refused_on_decode(case[1])
        assert.is_truthy(err.message:find("value", 1, true), err.message)
        err = refused_on_decode('{"a":[1,' .. case[1] .. ']}')
        assert.is_truthy(err.message:find("value.a[2]", 1, true), err.message)
        err = raises("invalid", json.decode, '[' .. case[1] .. ']', { big_integers = "error" })
        assert.is_truthy(err.message:find("value[1]", 1, true), err.message)
      end
    end)

    it("reads them as the nearest double with big_integers = \"float\"", function()
      for _, case in ipairs(BIG) do
        local v = json.decode(case[1], { big_integers = "float" })
        assert.are.equal(hex(case[2]), hex(v), case[1])
        deep.assert_same({ a = array({ 1, case[2] }) },
          json.decode('{"a":[1,' .. case[1] .. ']}', { big_integers = "float" }), { root = case[1] })
      end
    end)

    it("reads them as their decimal text with big_integers = \"string\"", function()
      for _, case in ipairs(BIG) do
        assert.are.equal(case[1], json.decode(case[1], { big_integers = "string" }))
        deep.assert_same({ a = array({ 1, case[1] }) },
          json.decode('{"a":[1,' .. case[1] .. ']}', { big_integers = "string" }), { root = case[1] })
      end
    end)

    it("reads a literal with a fraction or an exponent as a float whatever the option", function()
      for _, opt in ipairs({ "error", "float", "string" }) do
        assert.are.equal(2 ^ 63, json.decode("9223372036854775808.0", { big_integers = opt }))
        assert.are.equal(1e30, json.decode("1e30", { big_integers = opt }))
      end
    end)
  end

  it("refuses a value of big_integers other than the three, naming the option", function()
    for _, bad in ipairs({ "round", "", "ERROR", 1, true, {} }) do
      local err = raises("invalid", json.decode, "1", { big_integers = bad })
      assert.is_truthy(err.message:find("big_integers", 1, true), err.message)
    end
  end)
end)

describe("json floats", function()
  local floats = {
    { "1.0", 1.0 }, { "-1.0", -1.0 }, { "0.0", 0.0 }, { "-0.0", NEG_ZERO }, { "0.1", 0.1 },
    { "0.5", 0.5 }, { "1/3", 1 / 3 }, { "-2/3", -2 / 3 }, { "1e300", 1e300 }, { "-1e300", -1e300 },
    { "5e-324", 5e-324 }, { "-5e-324", -5e-324 }, { "smallest normal", 2.2250738585072014e-308 },
    { "largest", 1.7976931348623157e308 }, { "2^53", 2.0 ^ 53 }, { "2^53+2", 2.0 ^ 53 + 2 },
    { "2^63", 2.0 ^ 63 }, { "2^64", 2.0 ^ 64 }, { "-2^63", -(2.0 ^ 63) }, { "1e22", 1e22 },
    { "123456.789", 123456.789 }, { "pi", math.pi }, { "0.1+0.2", 0.1 + 0.2 }, { "1e-7", 1e-7 },
  }
  for _, case in ipairs(floats) do
    local name, x = case[1], case[2]
    it("round-trips " .. name .. " as the same float, bit for bit", function()
      local back = round_trip(x)
      if interp.has_integers then assert.are.equal("float", math.type(back)) end
      assert.are.equal(hex(x), hex(back))
    end)
  end

  it("keeps the sign of -0.0", function()
    local back = round_trip(NEG_ZERO)
    assert.are.equal(-math.huge, 1 / back)
    assert.are.equal(hex(NEG_ZERO), hex(back))
    assert.are.equal(math.huge, 1 / round_trip(0.0))
    assert.are_not.equal(hex(NEG_ZERO), hex(round_trip(0.0)))
    assert.are.equal("-0.0", json.encode(NEG_ZERO))
  end)

  if interp.has_integers then
    it("encodes integral floats so they decode as floats", function()
      assert.are.equal("1.0", json.encode(1.0))
      assert.are.equal("float", math.type(json.decode(json.encode(3.0))))
      assert.are.equal("float", math.type(json.decode(json.encode(1e16))))
    end)
  else
    it("encodes integral numbers up to 2^53 as integers, larger ones as floats", function()
      assert.are.equal("1", json.encode(1.0))
      assert.are.equal("9007199254740992", json.encode(2 ^ 53))
      assert.are.equal("-9007199254740992", json.encode(-(2 ^ 53)))
      assert.are.equal("9007199254740994.0", json.encode(2 ^ 53 + 2))
      assert.are.equal("-9007199254740994.0", json.encode(-(2 ^ 53) - 2))
      assert.are.equal("1e+16", json.encode(1e16))
      assert.are.equal("9.223372036854776e+18", json.encode(2 ^ 63))
      assert.are.equal(1e16, json.decode(json.encode(1e16)))
    end)
  end

  it("encodes floats as the shortest exact text", function()
    assert.are.equal("0.1", json.encode(0.1))
    assert.are.equal("1e+300", json.encode(1e300))
  end)

  it("encodes floats with no more significant digits than needed, subnormals included", function()
    local function fewest_digits(x)
      for p = 1, 17 do
        if tonumber(string.format("%." .. p .. "g", x)) == x then return p end
      end
    end
    local function significant_digits(text)
      local digits = text:match("^-?([%d.]+)"):gsub("%.", ""):gsub("^0+", ""):gsub("0+$", "")
      return math.max(#digits, 1)
    end
    for _, x in ipairs({ 0.1, 1 / 3, 123.456, 1e300, 2.0 ^ 63, 1.7976931348623157e308,
                         2.2250738585072014e-308, 5e-324, 1e-320, 1.5e-310 }) do
      local text = json.encode(x)
      assert.are.equal(fewest_digits(x), significant_digits(text),
        hex(x) .. " encoded as " .. text)
    end
  end)

  -- Whether a decimal of fewer than n significant digits reads back as x > 0: for
  -- each q < n, the q-digit decimals around x are the nearest one and its
  -- neighbours (below 10^k the neighbour is 99…9 at the next lower exponent).
  local function shorter_reads_back(x, n)
    for q = 1, n - 1 do
      local digits, e = string.format("%." .. (q - 1) .. "e", x):match("^(%d[^e]*)e(.*)$")
      local m, exp = tonumber((digits:gsub("%D", ""))), tonumber(e) - (q - 1)
      local candidates = { { m - 1, exp }, { m, exp }, { m + 1, exp } }
      if m == 10 ^ (q - 1) then candidates[#candidates + 1] = { 10 ^ q - 1, exp - 1 } end
      for _, c in ipairs(candidates) do
        if tonumber(string.format("%de%d", c[1], c[2])) == x then return true end
      end
    end
    return false
  end

  it("writes subnormals and powers of two with the fewest digits that read back", function()
    local cases = {
      { 1e-318, "1e-318" },
      { 15 * 2.0 ^ -1074, "7.4e-323" },
      { 2.0 ^ -24, "5.960464477539063e-08" },
      { 2.0 ^ -44, "5.684341886080802e-14" },
      { 2.0 ^ 89, "6.189700196426902e+26" },
      { 5e-324, "5e-324" },
    }
    for _, case in ipairs(cases) do
      local x, text = case[1], case[2]
      assert.are.equal(text, json.encode(x))
      assert.are.equal(hex(x), hex(json.decode(text)))
      assert.are.equal(hex(-x), hex(json.decode(json.encode(-x))))
      local n = #text:match("^[%d.]+"):gsub("%.", "")
      assert.is_false(shorter_reads_back(x, n), text .. " has a shorter form")
    end
  end)

  it("keeps its layout for numbers of up to 15 digits", function()
    if interp.has_integers then
      assert.are.equal("10000000000000.0", json.encode(1e13))
      assert.are.equal("1e+14", json.encode(1e14))
      assert.are.equal("123456789012345.0", json.encode(123456789012345.0))
    else
      assert.are.equal("10000000000000", json.encode(1e13))
      assert.are.equal("100000000000000", json.encode(1e14))
      assert.are.equal("123456789012345", json.encode(123456789012345.0))
    end
    assert.are.equal("0.0001", json.encode(1e-4))
    assert.are.equal("1e-05", json.encode(1e-5))
    assert.are.equal("123456789012.5", json.encode(123456789012.5))
  end)

  it("decodes literals with a fraction or exponent as floats", function()
    if interp.has_integers then
      assert.are.equal("float", math.type(json.decode("1.0")))
      assert.are.equal("float", math.type(json.decode("1e2")))
      assert.are.equal("float", math.type(json.decode("1E+2")))
      assert.are.equal("float", math.type(json.decode("-5e-1")))
    else
      assert.are.equal(1, json.decode("1.0"))
      assert.are.equal(100, json.decode("1E+2"))
      assert.are.equal(2 ^ 63, json.decode("9.223372036854775807e18"))
      assert.are.equal(1e30, json.decode("1000000000000000000000000000000.0"))
    end
    assert.are.equal(hex(100.0), hex(json.decode("1e2")))
    assert.are.equal(hex(-0.5), hex(json.decode("-5e-1")))
    assert.are.equal(hex(0.1), hex(json.decode("0.1")))
    assert.are.equal(hex(NEG_ZERO), hex(json.decode("-0.0")))
  end)

  it("refuses a number that overflows a double", function()
    refused_on_decode("1e400")
    refused_on_decode("-1e400")
    refused_on_decode("[1, 1e400]")
  end)

  it("refuses NaN and infinities on encode", function()
    refused_on_encode(0 / 0)
    refused_on_encode(math.huge)
    refused_on_encode(-math.huge)
    refused_on_encode({ 1, 0 / 0 })
  end)
end)

describe("json null and booleans", function()
  it("round-trips null as agentsession.null", function()
    assert.are.equal("null", json.encode(null))
    assert.is_true(rawequal(null, json.decode("null")))
    local back = json.decode('[null, {"a": null}]')
    assert.is_true(rawequal(null, back[1]))
    assert.is_true(rawequal(null, back[2].a))
  end)

  it("round-trips booleans", function()
    assert.are.equal("true", json.encode(true))
    assert.are.equal("false", json.encode(false))
    assert.is_true(json.decode("true"))
    assert.is_false(json.decode("false"))
    assert.are.same({ true, false }, round_trip({ true, false }))
  end)

  it("refuses nil", function()
    refused_on_encode(nil)
  end)
end)

describe("json arrays and objects", function()
  it("encodes an empty array_mt table as []", function()
    assert.are.equal("[]", json.encode(array()))
    assert.are.equal("[]", json.encode(setmetatable({}, array_mt)))
  end)

  it("encodes a plain empty table as {}", function()
    assert.are.equal("{}", json.encode({}))
  end)

  it("decodes [] as an empty table carrying array_mt", function()
    local t = json.decode("[]")
    assert.is_nil(next(t))
    assert.is_true(rawequal(array_mt, getmetatable(t)))
  end)

  it("decodes {} as an empty table without a metatable", function()
    local t = json.decode("{}")
    assert.is_table(t)
    assert.is_nil(next(t))
    assert.is_nil(getmetatable(t))
  end)

  it("gives every decoded array array_mt and no object a metatable", function()
    local v = json.decode('{"a": [1, [2, []], {"b": [{}]}], "c": {}}')
    assert.is_nil(getmetatable(v))
    assert.is_true(rawequal(array_mt, getmetatable(v.a)))
    assert.is_true(rawequal(array_mt, getmetatable(v.a[2])))
    assert.is_true(rawequal(array_mt, getmetatable(v.a[2][2])))
    assert.is_nil(getmetatable(v.a[3]))
    assert.is_true(rawequal(array_mt, getmetatable(v.a[3].b)))
    assert.is_nil(getmetatable(v.a[3].b[1]))
    assert.is_nil(getmetatable(v.c))
  end)

  it("round-trips nested arrays and objects exactly", function()
    local v = { a = array({ 1, 2.5, "x", null, true, array(), {} }), b = { c = array({ { d = -0.0 } }) } }
    deep.assert_same(v, round_trip(v))
  end)

  it("encodes a plain table with keys 1..n as an array", function()
    assert.are.equal("[1,2,3]", (json.encode({ 1, 2, 3 }):gsub("%s", "")))
    deep.assert_same(array({ 1, 2, 3 }), json.decode(json.encode({ 1, 2, 3 })))
  end)

  it("keeps string keys that look like numbers as object keys", function()
    local back = round_trip({ ["1"] = true, ["2"] = false })
    assert.is_nil(getmetatable(back))
    assert.is_true(back["1"])
    assert.is_false(back["2"])
    assert.is_nil(back[1])
  end)

  it("round-trips the empty string as a key", function()
    deep.assert_same({ [""] = 1 }, round_trip({ [""] = 1 }))
  end)

  it("judges a table with another metatable by its contents", function()
    local other = { __index = function() return "x" end }
    assert.are.equal("[1,2]", (json.encode(setmetatable({ 1, 2 }, other)):gsub("%s", "")))
    deep.assert_same({ k = "v" }, round_trip(setmetatable({ k = "v" }, other)))
  end)
end)

describe("json strings", function()
  local strings = {
    { "ASCII", "hello, world" },
    { "the empty string", "" },
    { "2-byte UTF-8", "héllo ß" },
    { "3-byte UTF-8", "日本語 €" },
    { "4-byte UTF-8", "😀 𝄞 \244\143\191\191" },
    { "quotes and backslashes", "a \"quoted\" \\ back/slash" },
    { "noncharacters and C1", "\239\191\191\239\191\190\194\128\194\159" },
    { "line separators", "\226\128\168\226\128\169" },
    { "DEL", "a\127b" },
  }
  for _, case in ipairs(strings) do
    it("round-trips " .. case[1], function()
      assert.are.equal(case[2], round_trip(case[2]))
      deep.assert_same({ [case[2]] = case[2] }, round_trip({ [case[2]] = case[2] }))
    end)
  end

  it("escapes every control character on encode and round-trips it", function()
    for c = 0, 31 do
      local s = "a" .. string.char(c) .. "b"
      local text = json.encode(s)
      assert.is_nil(text:find("[%z\1-\31]"), "raw control character " .. c .. " in " .. text)
      assert.are.equal(s, json.decode(text), "control character " .. c)
    end
  end)

  it("round-trips an embedded NUL", function()
    local s = "before\0after\0"
    local text = json.encode(s)
    assert.is_nil(text:find("%z"))
    local back = json.decode(text)
    assert.are.equal(#s, #back)
    assert.are.equal(s, back)
  end)

  it("decodes the standard escapes", function()
    assert.are.equal("\"\\/\b\f\n\r\t", json.decode([["\"\\\/\b\f\n\r\t"]]))
  end)

  it("decodes \\u escapes to UTF-8", function()
    assert.are.equal("A", json.decode([["\u0041"]]))
    assert.are.equal("é", json.decode([["\u00e9"]]))
    assert.are.equal("é", json.decode([["\u00E9"]]))
    assert.are.equal("€", json.decode([["\u20ac"]]))
    assert.are.equal("\0", json.decode([["\u0000"]]))
  end)

  it("decodes a \\u surrogate pair to one 4-byte UTF-8 character", function()
    assert.are.equal("😀", json.decode([["\ud83d\ude00"]]))
    assert.are.equal("\244\143\191\191", json.decode([["\udbff\udfff"]]))
    assert.are.equal("𝄞", json.decode([["\uD834\uDD1E"]]))
  end)

  it("refuses lone surrogate escapes", function()
    refused_on_decode([["\ud800"]])
    refused_on_decode([["\udc00"]])
    refused_on_decode([["\ud800x"]])
    refused_on_decode([["\ud800\u0041"]])
    refused_on_decode([["\ude00\ud83d"]])
  end)

  it("refuses invalid UTF-8 in a string on encode", function()
    local bad = {
      "\255", "a\128b", "\195", "caf\195", "\192\175", "\224\128\175",
      "\237\160\128", "\244\144\128\128", "\248\136\128\128\128",
    }
    for _, s in ipairs(bad) do
      local ok, err = pcall(json.encode, s)
      assert.is_false(ok, "accepted " .. string.format("%q", s))
      assert.are.equal("invalid", err.kind, string.format("%q", s))
    end
  end)

  it("refuses invalid UTF-8 in an object key on encode", function()
    refused_on_encode({ ["k\255"] = 1 })
  end)

  it("refuses invalid UTF-8 bytes inside JSON text", function()
    refused_on_decode('"\255"')
    refused_on_decode('"a\195"')
    refused_on_decode('"\237\160\128"')
    refused_on_decode('{"\192\175": 1}')
  end)

  it("round-trips a 1 MiB string", function()
    local unit = "abcdéf日😀\"\\\n\t\0"
    local s = string.rep(unit, math.floor(1024 * 1024 / #unit) + 1)
    assert.is_true(#s >= 1024 * 1024)
    local back = round_trip(s)
    assert.are.equal(#s, #back)
    assert.are.equal(s, back)
  end)
end)

describe("json refuses on encode, naming the path", function()
  local cases = {
    { "a function", function() end },
    { "a coroutine", coroutine.create(function() end) },
    { "userdata other than null", io.stdout },
    { "a sparse table", { 1, nil, 3 } },
    { "a mixed table", { 1, x = 2 } },
    { "a boolean key", { [true] = 1 } },
    { "a float key", { [1.5] = 1 } },
    { "a table key", { [{}] = 1 } },
    { "an array_mt table with a string key", setmetatable({ x = 1 }, array_mt) },
    { "an array_mt table with a hole", setmetatable({ [1] = 1, [3] = 3 }, array_mt) },
    { "an array_mt table starting at 0", setmetatable({ [0] = 1 }, array_mt) },
    { "a table with only key 2", { [2] = "x" } },
    { "a negative integer key", { [-1] = "x" } },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      local err = refused_on_encode(case[2])
      assert.is_truthy(err.message:find("value", 1, true), err.message)
    end)
  end

  it("a cycle", function()
    local t = {}
    t.self = t
    refused_on_encode(t)
    local a = {}
    a[1] = a
    refused_on_encode(a)
  end)

  it("names the path with 1-based indices and field names", function()
    local err = refused_on_encode({ 1, { x = function() end } })
    assert.is_truthy(err.message:find("value[2].x", 1, true), err.message)
    err = refused_on_encode({ a = { b = { c = 0 / 0 } } })
    assert.is_truthy(err.message:find("value.a.b.c", 1, true), err.message)
    err = refused_on_encode({ "ok", "ok", { messages = { "x", io.stdout } } })
    assert.is_truthy(err.message:find("value[3].messages[2]", 1, true), err.message)
    err = refused_on_encode({ a = array({ 1, "\255" }) })
    assert.is_truthy(err.message:find("value.a[2]", 1, true), err.message)
  end)

  it("starts the message with the path", function()
    local err = refused_on_encode({ 1, { x = function() end } })
    assert.are.equal("value[2].x", err.message:sub(1, #"value[2].x"))
  end)
end)

describe("json nesting limit", function()
  it("accepts 128 nested arrays or objects", function()
    deep.assert_same(nested_arrays(128), round_trip(nested_arrays(128)))
    deep.assert_same(nested_objects(128), round_trip(nested_objects(128)))
    local text = string.rep("[", 128) .. string.rep("]", 128)
    assert.are.equal(text, json.encode(json.decode(text)))
  end)

  it("refuses 129 nested arrays or objects on encode", function()
    refused_on_encode(nested_arrays(129))
    refused_on_encode(nested_objects(129))
  end)

  it("refuses 129 nested arrays or objects on decode", function()
    refused_on_decode(string.rep("[", 129) .. string.rep("]", 129))
    refused_on_decode(string.rep('{"a":', 128) .. "{}" .. string.rep("}", 128))
  end)

  it("refuses very deep input without crashing", function()
    refused_on_decode(string.rep("[", 100000))
    refused_on_decode(string.rep('{"a":', 100000))
  end)
end)

describe("json.decode refuses malformed text", function()
  local malformed = {
    "", " ", "[", "{", "]", "}", ",", "[1,]", "[,1]", "[,]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
    "{\"a\" 1}", "{1:2}", "{'a':1}", "{a:1}", "01", "-01", "00", "1.", ".5", "+1", "-", "--1",
    "1e", "1e+", "0x10", "NaN", "-NaN", "Infinity", "-Infinity", "tru", "True", "nul", "nulll",
    "truefalse", "\"abc", "'abc'", "[1 2]", "[\"a\" \"b\"]", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"",
    "\"\\", "1 x", "[1] x", "{} {}", "1 2", "// c\n1", "/* c */ 1", "[1] // c", "# c\n1",
    "\"a\nb\"", "\"a\tb\"", "\"a\0b\"", "\"\31\"", "[1,,2]", "{\"a\":1 \"b\":2}", "[}", "{]",
  }
  for _, text in ipairs(malformed) do
    it(string.format("%q", text), function()
      refused_on_decode(text)
    end)
  end

  it("accepts whitespace around a value", function()
    deep.assert_same(array({ 1 }), json.decode(" \t\r\n[ 1 ] \n"))
  end)

  it("says where the error is: the byte and the path", function()
    local err = refused_on_decode("1 x")
    assert.is_truthy(err.message:find("byte 3", 1, true), err.message)
    err = refused_on_decode("[1, x]")
    assert.is_truthy(err.message:find("byte 5", 1, true), err.message)
    assert.is_truthy(err.message:find("value[2]", 1, true), err.message)
    err = refused_on_decode('{"a": [1, 2, @]}')
    assert.is_truthy(err.message:find("byte 14", 1, true), err.message)
    assert.is_truthy(err.message:find("value.a[3]", 1, true), err.message)
  end)
end)

describe("json arguments", function()
  it("raises an argument error when decode is given a non-string", function()
    for _, v in ipairs({ {}, true, print, 5 }) do
      local ok, err = pcall(json.decode, v)
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_truthy(err:find("bad argument", 1, true), err)
    end
    local ok, err = pcall(json.decode)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("bad argument", 1, true), tostring(err))
  end)
end)

describe("json.encode with { canonical = true }", function()
  local canonical = { canonical = true }

  it("writes the keys of every object in byte order, at every level", function()
    local v = { b = { d = 1, c = { f = 1, e = 2 } }, a = array({ { z = 1, y = 2 }, "x" }) }
    assert.are.equal('{"a":[{"y":2,"z":1},"x"],"b":{"c":{"e":2,"f":1},"d":1}}',
      json.encode(v, canonical))
  end)

  it("keeps the order of arrays", function()
    assert.are.equal('[3,1,2,{"a":[9,8]}]', json.encode({ 3, 1, 2, { a = { 9, 8 } } }, canonical))
  end)

  it("gives the same text for tables filled in different orders", function()
    local keys = {}
    for i = 1, 50 do keys[i] = string.format("k%02d", (i * 37) % 50) end
    local forward, backward = {}, {}
    for i = 1, #keys do forward[keys[i]] = { n = i, m = array() } end
    for i = #keys, 1, -1 do backward[keys[i]] = { m = array(), n = i } end
    local text = json.encode(forward, canonical)
    assert.are.equal(text, json.encode(backward, canonical))
    assert.are.equal(1, select(2, text:gsub('"k00"', "")))
    assert.is_truthy(text:find('^{"k00":'), text)
    assert.is_truthy(text:find('"k49":{"m":%[%],"n":%d+}}$'), text)
    deep.assert_same(forward, json.decode(text))
  end)

  it("orders UTF-8 keys by their bytes", function()
    local v = { ["\240\159\153\130"] = 1, ["\226\130\172"] = 2, ["\195\169"] = 3, z = 4, Z = 5, a = 6, [""] = 7,
                ["a\0"] = 8 }
    assert.are.equal('{"":7,"Z":5,"a":6,"a\\u0000":8,"z":4,"\195\169":3,"\226\130\172":2,"\240\159\153\130":1}',
      json.encode(v, canonical))
  end)

  it("names the path of what it refuses, as without the option", function()
    local err = raises("invalid", json.encode, { a = { b = print } }, canonical)
    assert.is_truthy(err.message:find("value.a.b: a function", 1, true), err.message)
  end)

  it("writes the table's own order with canonical = false", function()
    local v = { a = 1, b = { c = 2 } }
    assert.are.equal(json.encode(v), json.encode(v, { canonical = false }))
    assert.are.equal(json.encode(v), json.encode(v, {}))
  end)

  it("refuses an unknown option, naming it", function()
    local err = raises("invalid", json.encode, {}, { sorted = true })
    assert.is_truthy(err.message:find('unknown option "sorted"', 1, true), err.message)
  end)

  it("refuses a canonical that is not a boolean", function()
    for _, bad in ipairs({ 1, "yes", {} }) do
      local err = raises("invalid", json.encode, {}, { canonical = bad })
      assert.is_truthy(err.message:find("options.canonical: must be a boolean", 1, true),
        err.message)
    end
  end)

  it("raises an argument error for options that are not a table", function()
    for _, bad in ipairs({ true, "canonical", 5 }) do
      local ok, err = pcall(json.encode, {}, bad)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("bad argument #2", 1, true), tostring(err))
    end
  end)
end)

describe("json.decode options", function()
  it("accepts an options table, or none", function()
    assert.are.same({ 1, 2 }, json.decode("[1,2]", {}))
    assert.are.same({ a = 1 }, json.decode('{"a":1}', nil))
  end)

  it("refuses a key other than big_integers, naming it", function()
    local err = raises("invalid", json.decode, "1", { strict = true })
    assert.is_truthy(err.message:find('unknown option "strict"', 1, true), err.message)
    raises("invalid", json.decode, "1", { true })
  end)

  it("raises an argument error for options that are not a table", function()
    for _, bad in ipairs({ true, "opts", 5 }) do
      local ok, err = pcall(json.decode, "1", bad)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("bad argument #2", 1, true), tostring(err))
    end
  end)
end)
