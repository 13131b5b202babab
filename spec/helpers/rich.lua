-- Sessions whose every value must come back exactly, and the exact comparison
-- made on them: shared by the specs of append, export and import, the size
-- limit and the SQLite migrations.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local interp = require("helpers.interp")

local null = agentsession.null
local array = agentsession.array

local M = {}

-- Exact equality (number subtypes, float bits, array_mt), naming the first difference.
function M.assert_same(expected, actual, what)
  deep.assert_same(expected, actual, { root = what or "value" })
end

-- The seed's eight fields of a metadata table.
local SEED = { "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count", "total_tokens" }
function M.seed_of(meta)
  local out = {}
  for _, f in ipairs(SEED) do out[f] = meta[f] end
  return out
end

-- The integers of rich values: 64-bit ones where Lua has integers (the
-- extremes, 2^53 + 1, 2^62 + 3); elsewhere those up to 2^53. And -0.0, made
-- at run time (Lua 5.1 merges the constants 0 and -0.0 of a function).
local INTEGERS = interp.has_integers
  and { max = math.maxinteger, min = math.mininteger, odd = 9007199254740993, big = 4611686018427387907 }
  or { max = 2 ^ 53, min = -(2 ^ 53), odd = 2 ^ 53 - 1, big = 2 ^ 52 + 3 }
local NEG_ZERO = -1 / math.huge

-- Messages whose values must come back exactly: integers (of 64 bits where
-- Lua has them), floats, null, [] and {}, UTF-8 and NUL.
function M.rich_messages(tag)
  return {
    { role = "user", content = "caf\195\169 \240\159\152\128 " .. tag, n = INTEGERS.max, f = 1.0 },
    { role = "assistant", content = null, calls = array({ { id = "c1", args = { depth = INTEGERS.odd } } }) },
    array(), {}, 0.1, NEG_ZERO, "a\0b", INTEGERS.min, true,
  }
end

-- A session of rich_messages(id) and a state as rich; `fields` sets metadata
-- fields (false unsets one).
function M.rich_session(id, fields)
  local s = {
    metadata = { id = id, name = "rich " .. id, tags = { "t\195\169", "b" }, agent_name = "agent-\240\159\152\128",
      created_at = 1700000000123, updated_at = 0, turn_count = 9, total_tokens = 4321 },
    messages = M.rich_messages(id),
    state = { cwd = "/home/\195\169", list = array(), object = {}, big = INTEGERS.big, half = 0.5, none = null },
  }
  for k, v in pairs(fields or {}) do
    if v == false then s.metadata[k] = nil else s.metadata[k] = v end -- false: unset
  end
  return s
end

return M
