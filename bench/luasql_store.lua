-- bench/luasql_store.lua: the SQLite session store a Lua user would write without agentsession,
-- with LuaSQL (luasql.sqlite3, Debian's lua-sql-sqlite3 2.6) and lua-cjson. It is the rival in
-- the "sqlite … / LuaSQL+cjson" rows, so it is meant to be honest and reasonably efficient, not
-- a straw man:
--
--   * One table, one row per session, the whole session as ONE cjson-encoded text:
--       sessions(id TEXT PRIMARY KEY, created_at INTEGER, updated_at INTEGER, doc TEXT)
--     with an index on updated_at. (created_at has its own column so that save can keep the
--     stored value of an existing session without reading and decoding the old document.)
--   * The same file settings as agentsession.sqlite's defaults: PRAGMA journal_mode=WAL,
--     PRAGMA synchronous=NORMAL, and a busy timeout.
--   * save(session) stamps created_at/updated_at as plain_manager.lua does (Unix ms, never going
--     backwards within a store; created_at kept from the stored row when 0 or nil), encodes the
--     session with one cjson.encode call, and runs SELECT created_at + INSERT OR REPLACE inside
--     BEGIN IMMEDIATE … COMMIT (ROLLBACK on failure). The caller's table is not modified.
--     Returns a copy of the stored metadata.
--   * resume(id) is one SELECT of the text and one cjson.decode: a fresh, independent table.
--   * delete(id) is one DELETE (its own implicit transaction); raises when the id is unknown.
--   * list{ limit =, offset = } reads the updated_at index (most recent first, ties by write order
--     through the rowid, which INSERT OR REPLACE renews) but must decode each document to return
--     its metadata; there is no tag or agent_name filter.
--
-- LuaSQL 2.6's sqlite3 driver has no prepared statements or parameter binding (connections have
-- execute and escape only), so values are spliced into the SQL text: strings through
-- conn:escape (which doubles quotes) inside '…', integers with %d. cjson's output holds no NUL
-- byte (it writes control characters as \u00XX), so the document survives that path intact.
--
-- It skips what agentsession adds (validation of ids/tags/UTF-8, exact integer/float round trip
-- — lua-cjson 2.1.0 decodes every number as a float and keeps 14 digits —, empty-array
-- preservation, error objects, size limits, per-message rows); that is the point of the
-- comparison.

local luasql = require "luasql.sqlite3"
local cjson = require "cjson"

local Store = {}
Store.__index = Store

-- Metadata stamping and copying exactly as the in-memory plain-Lua rival does it.
local PlainManager = require "plain_manager"
local copy_metadata, now_ms = PlainManager.copy_metadata, PlainManager.now_ms

-- conn:execute, raising with the statement's first words on failure.
local function exec(conn, sql)
  local res, err = conn:execute(sql)
  if res == nil then
    error("luasql_store: " .. tostring(err) .. " in: " .. sql:sub(1, 60), 3)
  end
  return res
end

-- The first column of the first row of a SELECT (nil when there is no row).
local function query_value(conn, sql)
  local cur = exec(conn, sql)
  local v = cur:fetch()
  cur:close()
  return v
end

function Store.new(path)
  local env = assert(luasql.sqlite3())
  local conn, err = env:connect(path)
  if not conn then
    env:close()
    error("luasql_store: cannot open " .. path .. ": " .. tostring(err), 2)
  end
  local self = setmetatable({ env = env, conn = conn, last = 0 }, Store)
  query_value(conn, "PRAGMA journal_mode=WAL")
  exec(conn, "PRAGMA synchronous=NORMAL")
  exec(conn, "PRAGMA busy_timeout=5000")
  exec(conn, "CREATE TABLE IF NOT EXISTS sessions (" ..
    "id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, " ..
    "doc TEXT NOT NULL)")
  exec(conn, "CREATE INDEX IF NOT EXISTS sessions_updated_at ON sessions(updated_at)")
  return self
end

function Store:save(session)
  local md = assert(session.metadata, "session.metadata is required")
  local id = md.id
  assert(type(id) == "string" and id ~= "", "metadata.id must be a non-empty string")
  local conn = self.conn

  local now = now_ms()
  if now < self.last then now = self.last end -- never go backwards within a store
  self.last = now

  local meta = copy_metadata(md)
  meta.updated_at = now
  local qid = "'" .. conn:escape(id) .. "'"

  exec(conn, "BEGIN IMMEDIATE")
  local ok, err = pcall(function()
    if not meta.created_at or meta.created_at == 0 then
      local old = query_value(conn, "SELECT created_at FROM sessions WHERE id = " .. qid)
      meta.created_at = old and tonumber(old) or now
      if math.tointeger then meta.created_at = math.tointeger(meta.created_at) end
    end
    local doc = cjson.encode({ metadata = meta, messages = session.messages,
      state = session.state })
    exec(conn, string.format(
      "INSERT OR REPLACE INTO sessions (id, created_at, updated_at, doc) VALUES (%s, %d, %d, '%s')",
      qid, meta.created_at, meta.updated_at, conn:escape(doc)))
    exec(conn, "COMMIT")
  end)
  if not ok then
    conn:execute("ROLLBACK")
    error(err, 2)
  end
  return copy_metadata(meta)
end

function Store:resume(id)
  local doc = query_value(self.conn, "SELECT doc FROM sessions WHERE id = '" ..
    self.conn:escape(id) .. "'")
  if not doc then error("no session with id " .. string.format("%q", id), 2) end
  return cjson.decode(doc)
end

function Store:delete(id)
  local n = exec(self.conn, "DELETE FROM sessions WHERE id = '" .. self.conn:escape(id) .. "'")
  if n == 0 then error("no session with id " .. string.format("%q", id), 2) end
end

function Store:list(filter)
  local limit = filter and filter.limit or -1
  local offset = filter and filter.offset or 0
  local cur = exec(self.conn, string.format(
    "SELECT doc FROM sessions ORDER BY updated_at DESC, rowid DESC LIMIT %d OFFSET %d",
    limit, offset))
  local out = {}
  local doc = cur:fetch()
  while doc do
    out[#out + 1] = cjson.decode(doc).metadata
    doc = cur:fetch()
  end
  cur:close()
  return out
end

function Store:close()
  if self.conn then
    self.conn:close()
    self.env:close()
    self.conn, self.env = nil, nil
  end
end

return Store
