-- agentsession.conformance.values: the checks of values: every JSON value kept exactly through
-- save and resume (64-bit integers, floats, every byte of a string, null, [] and {}).
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local null = agentsession.null
local array_mt = agentsession.array_mt
local show, same, eq, eq_json = support.show, support.same, support.eq, support.eq_json
local truthy, make_session, nested = support.truthy, support.make_session, support.nested
local resume, meta_of, list, save = support.resume, support.meta_of, support.list, support.save
local HAS_INTEGERS, number_type = support.HAS_INTEGERS, support.number_type
local MAX_INTEGER, MIN_INTEGER = support.MAX_INTEGER, support.MIN_INTEGER

local checks, check = support.family()

local function round_trip(mgr, msgs, state)
  local s = make_session(nil, msgs, state)
  save(mgr, s)
  return resume(mgr, s.metadata.id)
end

-- The integers of the check below: on Lua 5.3 and later those that need all 64
-- bits (2^53 + 1, 2^62, the extremes), elsewhere those up to 2^53.
local INTEGERS = { 0, 1, -1, 42, MAX_INTEGER, MIN_INTEGER, 9007199254740991, -9007199254740991, 4294967296 }
if HAS_INTEGERS then
  for _, n in ipairs({ 9007199254740993, 9007199254740992, -9007199254740993, 4611686018427387904 }) do
    INTEGERS[#INTEGERS + 1] = n
  end
end

check("values: integers stay integers, " .. (HAS_INTEGERS and "with all 64 bits" or "exact up to 2^53"), function(mgr)
  local r = round_trip(mgr, INTEGERS, { n = MAX_INTEGER, m = MIN_INTEGER, list = INTEGERS })
  eq(INTEGERS, r.messages, "messages")
  eq({ n = MAX_INTEGER, m = MIN_INTEGER, list = INTEGERS }, r.state, "state")
end)

check("values: floats stay floats, exactly", function(mgr)
  local values = { 1.0, 0.1, -2.5, 0.0, 1e300, 5e-324, 2.0 ^ 63, 1 / 3, math.pi, 1e-7, 123456789.125,
    2.0 ^ 53 + 2.0, -1e-300, 1.7976931348623157e308 }
  local r = round_trip(mgr, values, { f = 1.0, g = 0.1, list = values })
  eq(values, r.messages, "messages")
  eq({ f = 1.0, g = 0.1, list = values }, r.state, "state")
  local z = round_trip(mgr, { -1 / math.huge }).messages[1] -- -0.0 (Lua 5.1 would merge the constant with 0.0)
  truthy(number_type(z) == "float" and z == 0, "-0.0 came back as %s", show(z))
end)

check("values: strings keep every byte (UTF-8, NUL, escapes)", function(mgr)
  local values = { "", "plain", "héllo wörld", "😀 \244\143\191\191 名前", "a\0b", "\0", "quote \" backslash \\ slash /",
    "\n\r\t\b\f\1\31\127", "</script>", "\226\128\168\226\128\169", string.rep("long ", 4000) }
  local r = round_trip(mgr, values, { s = "a\0b", list = values })
  eq(values, r.messages, "messages")
  eq({ s = "a\0b", list = values }, r.state, "state")
end)

check("values: booleans and null round trip", function(mgr)
  local values = { true, false, null, { a = null, b = false }, { null, null, true } }
  local r = round_trip(mgr, values, { yes = true, no = false, none = null })
  eq(values, r.messages, "messages")
  truthy(rawequal(r.messages[3], null), "messages[3] is %s, not agentsession.null", show(r.messages[3]))
  eq({ yes = true, no = false, none = null }, r.state, "state")
end)

check("values: [] and {} stay apart (array_mt marks [])", function(mgr)
  local msgs = { agentsession.array(), {}, { list = agentsession.array(), object = {} } }
  local state = { list = agentsession.array(), object = {} }
  local r = round_trip(mgr, msgs, state)
  eq_json(msgs, r.messages, "messages")
  eq_json(state, r.state, "state")
end)

check("values: an array marked with array_mt comes back an array with array_mt", function(mgr)
  local r = round_trip(mgr, { agentsession.array({ 1, 2, 3 }), { "a", "b" } })
  eq({ 1, 2, 3 }, r.messages[1], "messages[1]")
  truthy(getmetatable(r.messages[1]) == array_mt, "messages[1] has no array_mt")
  truthy(getmetatable(r.messages[2]) == array_mt, "messages[2] has no array_mt")
  truthy(getmetatable(r.messages) == array_mt, "messages has no array_mt")
end)

check("values: nested arrays and objects keep their shape", function(mgr)
  local msgs = {
    nested(60),
    { role = "tool", content = { files = { "a.lua", "b.lua" }, count = 2,
      meta = { { k = { { 1 }, { 2, { 3 } } } } } } },
    { { { {} } } },
  }
  local r = round_trip(mgr, msgs, nested(40))
  eq_json(msgs, r.messages, "messages")
  eq_json(nested(40), r.state, "state")
end)

check("values: object keys keep every byte and stay strings", function(mgr)
  local state = { [""] = 1, ["ключ"] = 2, ["a b"] = 3, ["1"] = "string key one", ["\0"] = 4, ["2"] = { ["0"] = 0 } }
  local r = round_trip(mgr, { { ["1"] = "x" } }, state)
  eq(state, r.state, "state")
  eq({ { ["1"] = "x" } }, r.messages, "messages")
end)

check("values: the state may be any JSON value", function(mgr)
  for i, state in ipairs({ "text", 42, 1.5, true, false, null, agentsession.array({ 1, 2 }), agentsession.array() }) do
    local s = make_session(nil, nil, state)
    save(mgr, s)
    local got = resume(mgr, s.metadata.id).state
    local ok, why = same(state, got, "json", "state #" .. i)
    truthy(ok, "%s", why)
  end
end)

check("values: empty tags come back as an array (array_mt)", function(mgr)
  local s = make_session({ tags = {} })
  local meta = save(mgr, s)
  for what, tags in pairs({ ["save().tags"] = meta.tags, ["resume().metadata.tags"] = meta_of(mgr, meta.id).tags,
    ["list()[1].tags"] = list(mgr)[1].tags }) do
    truthy(type(tags) == "table" and next(tags) == nil and getmetatable(tags) == array_mt,
      "%s: expected [] (array_mt), got %s", what, show(tags))
  end
end)

return checks
