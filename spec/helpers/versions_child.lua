-- A child of spec/19-versions_spec.lua, run by another Lua than the suite's:
--   <lua> versions_child.lua write URI     saves the sessions "numbers" and "message"
--   <lua> versions_child.lua dump URI ID   prints the session as canonical JSON
-- with LUA_PATH/LUA_CPATH set for that Lua (spec/helpers/interp.lua).
local agentsession = require("agentsession")
local what, uri, id = arg[1], arg[2], arg[3]

local m = agentsession.open(uri)
if what == "write" then
  -- Run by Lua 5.4: integers beyond 2^53, and floats of every kind.
  assert(math.type, "the writer needs a Lua with integers")
  local big = math.tointeger(2 ^ 53) + 1
  local s = agentsession.session{
    id = "numbers",
    name = "numbers",
    messages = {
      {
        small = math.tointeger(2 ^ 53), big = big, max = math.maxinteger, min = math.mininteger,
        tenth = 0.1, one = 1.0, negzero = -0.0, huge = 1e300, tiny = 5e-324, third = 1 / 3,
        text = "h\195\169llo \226\130\172 \240\157\132\158",
        nested = { list = { 1, 2.5, "x", agentsession.null, true }, empty = agentsession.array{} },
      },
    },
    state = { n = big, f = 2.0 ^ 53 + 2 },
  }
  s.metadata.turn_count = 7
  s.metadata.total_tokens = math.tointeger(2 ^ 60) + 1
  m:save(s)
  -- the same numbers in a message only: its metadata any Lua reads
  m:save(agentsession.session{ id = "message", messages = { { "first" }, { deep = { big } } } })
elseif what == "dump" then
  local s = m:resume(id)
  s.metadata.created_at, s.metadata.updated_at = nil, nil
  io.write(agentsession.json.encode(s, { canonical = true }))
else
  error("unknown command " .. tostring(what))
end
m:close()
