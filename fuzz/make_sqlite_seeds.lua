-- Regenerates the seed corpus of the sqlite_load fuzz target: small store files
-- written by our own SQLite store, then shrunk with LuaSQL (lua-sql-sqlite3):
-- rollback journal, 512-byte pages, VACUUM, so each is a few KiB.
--
--   make
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 fuzz/make_sqlite_seeds.lua [DIR]      (DIR: fuzz/corpus/sqlite_load)
--
-- The files:
--   empty.db     a new store: schema, no session
--   sessions.db  three sessions: one named and tagged with four messages
--                (a tool call and its result, integers and floats, unicode) and
--                an object state; a fork of it (parent_id) with a message
--                appended with an op_id and its own tag; one without name, tags
--                or messages whose state is an array
--   v3.db        sessions.db as schema version 3 wrote it (no sessions.ops),
--                which the store migrates when it opens it
--   v2.db        sessions.db as schema version 2 wrote it (no sessions.bytes
--                either)
--   v1.db        a schema-1 file (messages keyed by (rid, pos), no digests), as
--                spec/08-sqlite_schema_spec.lua builds one, which the store migrates
--   damaged.db   sessions.db with a message and a state that are not JSON and
--                a missing message row: reading them reports `storage`
-- Ids, names and times are fixed (the fork's id too), so only the store's
-- random digest key differs from one run to the next.
local agentsession = require("agentsession")
local luasql = require("luasql.sqlite3")

local dir = arg[1] or "fuzz/corpus/sqlite_load"
local T0 = 1700000000000

local function sql(path, statements)
  local env = assert(luasql.sqlite3())
  local conn = assert(env:connect(path))
  for _, s in ipairs(statements) do
    local result, err = conn:execute(s)
    if not result then error(path .. ": " .. s .. ": " .. tostring(err)) end
    if type(result) == "userdata" then result:close() end -- a PRAGMA's answer
  end
  conn:close()
  env:close()
end

local function remove(path)
  for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(path .. suffix) end
end

local function copy(from, to)
  local f = assert(io.open(from, "rb"))
  local data = f:read("a")
  f:close()
  remove(to)
  f = assert(io.open(to, "wb"))
  f:write(data)
  f:close()
end

-- The smallest file of the same content: rollback journal, 512-byte pages.
local function shrink(path)
  sql(path, { "PRAGMA journal_mode = DELETE", "PRAGMA page_size = 512", "VACUUM" })
end

-- Fixed times and the fork's id, so the files differ only by their digest key.
local function settle(path)
  sql(path, {
    "UPDATE sessions SET id = 'beta-fork-of-alpha' WHERE parent_id = 'alpha'",
    "UPDATE sessions SET created_at = " .. T0 .. " + rid * 1000, updated_at = "
      .. T0 .. " + rid * 2000, seq = rid",
    "UPDATE tags SET updated_at = (SELECT updated_at FROM sessions s WHERE s.rid = tags.rid),"
      .. " seq = tags.rid",
    "UPDATE counter SET seq = (SELECT max(rid) FROM sessions)",
  })
end

local function store(path, fill)
  remove(path)
  local mgr = agentsession.sqlite(path)
  if fill then fill(mgr) end
  mgr:close()
end

local A = agentsession.array
local null = agentsession.null

-- empty.db
local empty = dir .. "/empty.db"
store(empty)
shrink(empty)

-- sessions.db
local sessions = dir .. "/sessions.db"
store(sessions, function(mgr)
  mgr:save(agentsession.session({
    id = "alpha", name = "refactor the parser", tags = { "production", "reviewed" },
    agent_name = "code-agent",
    state = { cwd = "/home/user/project", budget = { tokens = 12000, spent = 0.25 }, open = A() },
    messages = {
      { role = "user", content = "List the Lua files and count them." },
      { role = "assistant", content = null, tool_calls = A({
        { id = "call_1", type = "function",
          ["function"] = { name = "list_files", arguments = '{"glob":"*.lua"}' } } }) },
      { role = "tool", tool_call_id = "call_1",
        content = { files = { "init.lua", "conformance.lua" }, count = 2, truncated = false } },
      { role = "assistant", content = "Two files: init.lua and conformance.lua. \u{e9}\u{1F600}",
        tokens = 42, score = 1.0, ratio = 0.1, big = math.maxinteger, small = math.mininteger },
    },
  }))
  local fork = mgr:fork("alpha")
  mgr:append(fork.id, { { role = "user", content = "And the specs?" } }, { tokens = 7, op_id = "seed-op" })
  mgr:tag(fork.id, "branch")
  mgr:save(agentsession.session({ id = "gamma", agent_name = "writer", state = A({ 1, "two", null }) }))
end)
settle(sessions)
shrink(sessions)

-- v3.db
local v3 = dir .. "/v3.db"
copy(sessions, v3)
sql(v3, { "ALTER TABLE sessions DROP COLUMN ops", "PRAGMA user_version = 3" })
shrink(v3)

-- v2.db
local v2 = dir .. "/v2.db"
copy(sessions, v2)
sql(v2, { "ALTER TABLE sessions DROP COLUMN bytes", "ALTER TABLE sessions DROP COLUMN ops",
  "PRAGMA user_version = 2" })
shrink(v2)

-- v1.db
local v1 = dir .. "/v1.db"
remove(v1)
sql(v1, {
  "PRAGMA page_size = 512",
  "PRAGMA application_id = 1634169715",
  "PRAGMA user_version = 1",
  "CREATE TABLE counter(one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL)",
  "CREATE TABLE sessions(rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT,"
    .. " agent_name TEXT NOT NULL, parent_id TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    .. " seq INTEGER NOT NULL, turn_count INTEGER NOT NULL, total_tokens INTEGER NOT NULL,"
    .. " version INTEGER NOT NULL, nmsgs INTEGER NOT NULL, state TEXT NOT NULL)",
  "CREATE TABLE tags(rid INTEGER NOT NULL, pos INTEGER NOT NULL, tag TEXT NOT NULL,"
    .. " updated_at INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (rid, pos)) WITHOUT ROWID",
  "CREATE TABLE messages(rid INTEGER NOT NULL, pos INTEGER NOT NULL, body TEXT NOT NULL,"
    .. " PRIMARY KEY (rid, pos))",
  "CREATE INDEX sessions_recent ON sessions (updated_at, seq)",
  "CREATE INDEX tags_recent ON tags (tag, updated_at, seq)",
  "INSERT INTO counter VALUES (1, 5)",
  "INSERT INTO sessions VALUES (1, 'v1-alpha', 'alpha', 'coder', NULL, 1700000000000, 1700000001000,"
    .. [[ 2, 3, 120, 2, 3, '{"cwd":"/home/a","n":[1,2.5,null],"deep":{"x":{"y":[]}}}')]],
  "INSERT INTO sessions VALUES (2, 'v1-beta', NULL, 'coder', 'v1-alpha', 1700000002000, 1700000003000,"
    .. " 5, 1, 0, 1, 1, '{}')",
  "INSERT INTO tags VALUES (1, 0, 'prod', 1700000001000, 2)",
  "INSERT INTO tags VALUES (1, 1, 'blue', 1700000001000, 2)",
  "INSERT INTO tags VALUES (2, 0, 'prod', 1700000003000, 5)",
  [[INSERT INTO messages VALUES (1, 0, '{"role":"user","content":"hi \u00e9"}')]],
  [[INSERT INTO messages VALUES (1, 1, '{"role":"assistant","content":"hello","tokens":42}')]],
  [[INSERT INTO messages VALUES (1, 2, '[1,2.0,"three",null,{},-0.0,9007199254740993]')]],
  [[INSERT INTO messages VALUES (2, 0, '"just a string"')]],
})

-- damaged.db
local damaged = dir .. "/damaged.db"
copy(sessions, damaged)
sql(damaged, {
  [[UPDATE messages SET body = '{"role":"user","content":' WHERE slot = (SELECT rid FROM sessions
    WHERE id = 'alpha') * 4294967296 + 1]],
  [[DELETE FROM messages WHERE slot = (SELECT rid FROM sessions WHERE id = 'beta-fork-of-alpha')
    * 4294967296 + 2]],
  [[UPDATE sessions SET state = '[1,"two",nul' WHERE id = 'gamma']],
})
shrink(damaged)

for _, name in ipairs({ "empty.db", "sessions.db", "v3.db", "v2.db", "v1.db", "damaged.db" }) do
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  print(("%-12s %6d bytes"):format(name, f:seek("end")))
  f:close()
end
