-- Sessions whose every value must come back exactly, and the exact comparison
-- made on them: shared by the specs of append, export and import, the size
-- limit and the SQLite migrations.
local agentsession = require("agentsession")
local deep = require("helpers.deep")

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

-- Messages whose values must come back exactly: 64-bit integers, floats,
-- null, [] and {}, UTF-8 and NUL.
function M.rich_messages(tag)
  return {
    { role = "user", content = "caf\u{e9} \u{1F600} " .. tag, n = math.maxinteger, f = 1.0 },
    { role = "assistant", content = null, calls = array({ { id = "c1", args = { depth = (1 << 53) + 1 } } }) },
    array(), {}, 0.1, -0.0, "a\0b", math.mininteger, true,
  }
end

-- A session of rich_messages(id) and a state as rich; `fields` sets metadata
-- fields (false unsets one).
function M.rich_session(id, fields)
  local s = {
    metadata = { id = id, name = "rich " .. id, tags = { "t\u{e9}", "b" }, agent_name = "agent-\u{1F600}",
      created_at = 1700000000123, updated_at = 0, turn_count = 9, total_tokens = 4321 },
    messages = M.rich_messages(id),
    state = { cwd = "/home/\u{e9}", list = array(), object = {}, big = (1 << 62) + 3, half = 0.5, none = null },
  }
  for k, v in pairs(fields or {}) do
    if v == false then s.metadata[k] = nil else s.metadata[k] = v end -- false: unset
  end
  return s
end

return M
