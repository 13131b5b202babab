-- The size max_session_bytes is compared with, counted as as_manager.c counts
-- it (check_size over body_size): the metadata's JSON as as_meta_write_json
-- writes it (all ten fields), 38 bytes of frame, the state's JSON, and each
-- message's JSON plus one.
local json = require("agentsession").json

local M = {}

--- The metadata's JSON as as_meta_write_json writes it.
function M.meta_json(m)
  local function str(v) return v == nil and "null" or json.encode(v) end
  local tags = {}
  for k, t in ipairs(m.tags or {}) do tags[k] = json.encode(t) end
  return table.concat({
    '{"id":', str(m.id), ',"name":', str(m.name), ',"tags":[', table.concat(tags, ","),
    '],"agent_name":', str(m.agent_name), ',"created_at":', tostring(m.created_at),
    ',"updated_at":', tostring(m.updated_at), ',"turn_count":', tostring(m.turn_count),
    ',"total_tokens":', tostring(m.total_tokens), ',"parent_id":', str(m.parent_id),
    ',"version":', tostring(m.version), "}",
  })
end

--- The size of a session with that metadata (as stored: version, updated_at),
--- messages (nil: none) and state (nil: the empty object).
function M.of(meta, messages, state)
  local size = #M.meta_json(meta) + 38 + #json.encode(state == nil and {} or state)
  for _, m in ipairs(messages or {}) do size = size + #json.encode(m) + 1 end
  return size
end

return M
