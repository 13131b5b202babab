-- bench/plain_manager.lua: the in-memory session manager a Lua user would write without
-- agentsession, on top of lua-cjson. It is the rival in the "save+resume / plain Lua" row, so it
-- is meant to be honest and reasonably efficient, not a straw man:
--
--   * save(session) stamps created_at/updated_at (Unix ms, never going backwards), stores
--     cjson.encode of the session under its id (one C call, no deep copy in Lua) so the caller may
--     mutate its table afterwards, keeps a small metadata index for list(), and returns a copy of
--     the stored metadata. The caller's table is not modified (the metadata is shallow-copied,
--     messages and state are referenced, not copied, since encoding already snapshots them).
--   * resume(id) is cjson.decode of the stored text: a fresh, independent table.
--   * list() sorts the index by updated_at, most recent first, ties by write order.
--
-- It skips what agentsession adds (validation of ids/tags/UTF-8, exact integer/float round trip,
-- empty-array preservation, error objects); that is the point of the comparison.

local cjson = require "cjson"

local Manager = {}
Manager.__index = Manager

local META_FIELDS = { "id", "name", "agent_name", "created_at", "updated_at", "turn_count",
  "total_tokens" }

local function copy_metadata(md)
  local c = {}
  for _, k in ipairs(META_FIELDS) do c[k] = md[k] end
  local tags = md.tags
  if tags then
    local t = {}
    for i = 1, #tags do t[i] = tags[i] end
    c.tags = t
  end
  return c
end

local function now_ms()
  return os.time() * 1000
end

-- Shared with luasql_store.lua, the other plain-Lua rival.
Manager.copy_metadata = copy_metadata
Manager.now_ms = now_ms

function Manager.new()
  return setmetatable({ docs = {}, index = {}, seq = 0, last = 0 }, Manager)
end

function Manager:save(session)
  local md = assert(session.metadata, "session.metadata is required")
  local id = md.id
  assert(type(id) == "string" and id ~= "", "metadata.id must be a non-empty string")

  local now = now_ms()
  if now < self.last then now = self.last end -- never go backwards within a manager
  self.last = now

  local meta = copy_metadata(md)
  meta.updated_at = now
  if not meta.created_at or meta.created_at == 0 then
    local old = self.index[id]
    meta.created_at = old and old.meta.created_at or now
  end

  self.docs[id] = cjson.encode({ metadata = meta, messages = session.messages,
    state = session.state })
  self.seq = self.seq + 1
  self.index[id] = { meta = meta, seq = self.seq }
  return copy_metadata(meta)
end

function Manager:resume(id)
  local doc = self.docs[id]
  if not doc then error("no session with id " .. string.format("%q", id), 2) end
  return cjson.decode(doc)
end

function Manager:delete(id)
  if not self.docs[id] then error("no session with id " .. string.format("%q", id), 2) end
  self.docs[id], self.index[id] = nil, nil
end

function Manager:list()
  local entries = {}
  for _, e in pairs(self.index) do entries[#entries + 1] = e end
  table.sort(entries, function(a, b)
    if a.meta.updated_at ~= b.meta.updated_at then return a.meta.updated_at > b.meta.updated_at end
    return a.seq > b.seq
  end)
  local out = {}
  for i, e in ipairs(entries) do out[i] = copy_metadata(e.meta) end
  return out
end

return Manager
