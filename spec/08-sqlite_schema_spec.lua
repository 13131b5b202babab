-- What only the SQLite store has: the layout of its file and its migrations.
-- The documented tables and the rows a session is kept in, the digest key of
-- each file, a schema-1 file opened, upgraded and written, a schema-2 file
-- migrated to schema 3, a schema-3 file migrated to schema 4 (op ids in
-- each session's row), and a file without its search index given one.
-- Every test works on real files in a fresh temporary
-- directory; the files are inspected with LuaSQL. The contract every store
-- keeps is in 03-manager_spec.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local interp = require("helpers.interp")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local stores = require("helpers.stores")
local managers = require("helpers.managers")
local track, close_all, snapshot = managers.track, managers.close_all, managers.snapshot
local rich = require("helpers.rich")
local assert_same, rich_session = rich.assert_same, rich.rich_session
local sqlite_case = require("helpers.sqlite_case")
local open, session, assert_sound = sqlite_case.open, sqlite_case.session, sqlite_case.assert_sound

local ids_of = stores.ids
local array = agentsession.array
local copy = deep.copy

local dir -- this test's temporary directory

describe("sqlite store", function()
  before_each(function() dir = sqlite_case.start() end)
  after_each(sqlite_case.finish)

  describe("file format", function()
    it("marks a new file with application_id and user_version 5 and has the documented tables", function()
      local path = dir .. "/new.db"
      open(path):save(session({ agent_name = "a" }))
      assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
      assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
      assert.are.equal("wal", h.value(path, "PRAGMA journal_mode"))
      local function columns(tbl)
        local names = {}
        for _, r in ipairs(h.query(path, "PRAGMA table_info(" .. tbl .. ")")) do names[#names + 1] = r.name end
        return names
      end
      assert.are.same({ "one", "seq", "digest_key" }, columns("counter"))
      assert.are.same({ "rid", "id", "name", "agent_name", "parent_id", "created_at", "updated_at", "seq",
        "turn_count", "total_tokens", "version", "nmsgs", "state", "bytes", "ops" }, columns("sessions"))
      assert.are.same({ "rid", "pos", "tag", "updated_at", "seq" }, columns("tags"))
      assert.are.same({ "slot", "digest", "body" }, columns("messages"))
      assert.are.same({ "slot", "words" }, columns("search_recent"))
      assert.are.equal(1, h.value(path, "SELECT count(*) FROM sqlite_master WHERE name = 'search'"
        .. " AND sql LIKE 'CREATE VIRTUAL TABLE search USING fts5(%'"))
      assert.are.same({ { one = 1, ok = 1 } },
        h.query(path, "SELECT one, seq = (SELECT max(seq) FROM sessions) AS ok FROM counter"))
    end)

    it("keeps a session in the documented rows", function()
      local path = dir .. "/rows.db"
      local mgr = open(path)
      mgr:save(session({ id = "first", agent_name = "a" }))
      local s = session({ id = "doc", name = "n", agent_name = "coder", tags = { "x", "y" },
        messages = { { role = "user", content = "hi" }, "two", 3 }, state = { cwd = "/w", list = { 1, 2 } } })
      s.metadata.turn_count, s.metadata.total_tokens = 3, 77
      local meta = mgr:save(s)
      mgr:close()
      h.with_db(path, function(conn)
        local row = h.rows(conn, "SELECT * FROM sessions WHERE id = 'doc'")[1]
        assert.are.equal("n", row.name)
        assert.are.equal("coder", row.agent_name)
        assert.are.equal(meta.created_at, row.created_at)
        assert.are.equal(meta.updated_at, row.updated_at)
        assert.are.equal(3, row.turn_count)
        assert.are.equal(77, row.total_tokens)
        assert.are.equal(1, row.version)
        assert.are.equal(3, row.nmsgs)
        deep.assert_same(s.state, agentsession.json.decode(row.state), { metatables = "ignore" }, "state column")
        local counter = h.rows(conn, "SELECT seq FROM counter")[1].seq
        local first = h.rows(conn, "SELECT seq FROM sessions WHERE id = 'first'")[1].seq
        assert.is_true(first < row.seq and row.seq <= counter,
          string.format("seq: first save %d, second %d, counter %d", first, row.seq, counter))
        local tags = h.rows(conn, "SELECT pos, tag, updated_at, seq FROM tags WHERE rid = " .. row.rid
          .. " ORDER BY pos")
        assert.are.same({ { pos = 0, tag = "x", updated_at = row.updated_at, seq = row.seq },
          { pos = 1, tag = "y", updated_at = row.updated_at, seq = row.seq } }, tags)
        local rid, pos = h.message_key()
        local bodies = h.rows(conn, "SELECT " .. pos .. " AS pos, body FROM messages WHERE " .. rid .. " = "
          .. row.rid .. " ORDER BY 1")
        assert.are.equal(3, #bodies)
        for i, b in ipairs(bodies) do
          assert.are.equal(i - 1, b.pos)
          deep.assert_same(s.messages[i], agentsession.json.decode(b.body), { metatables = "ignore" }, "message " .. i)
        end
      end)
      assert_sound(path, "after two saves")
    end)

    it("keys message digests per file: the same messages saved into two new files get different digests", function()
      local function digests(path)
        local mgr = open(path)
        mgr:save(session({ id = "same", agent_name = "a",
          messages = { { role = "user", content = "hello" }, "two", 3 } }))
        mgr:close()
        local list = {}
        for i, r in ipairs(h.query(path, "SELECT digest FROM messages ORDER BY slot")) do
          assert.are.equal("number", type(r.digest), path .. ": message " .. i .. " has no digest")
          list[i] = r.digest
        end
        assert.are.equal(3, #list)
        return list, h.value(path, "SELECT digest_key FROM counter")
      end
      local a, key_a = digests(dir .. "/keyed-a.db")
      local b, key_b = digests(dir .. "/keyed-b.db")
      assert.are_not.equal(key_a, key_b, "two new files drew the same digest_key")
      for i = 1, 3 do
        assert.are_not.equal(a[i], b[i], "message " .. i .. " has the same digest in both files")
      end
    end)
  end)

  describe("migration from schema version 1", function()
    local V1 = {
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
      [[INSERT INTO sessions VALUES (1, 'v1-alpha', 'alpha', 'coder', NULL, 1700000000000, 1700000001000,
        2, 3, 120, 2, 3, '{"cwd":"/home/a","n":[1,2.5,null],"deep":{"x":{"y":[]}}}')]],
      [[INSERT INTO sessions VALUES (2, 'v1-beta', NULL, 'coder', 'v1-alpha', 1700000002000, 1700000003000,
        5, 1, 0, 1, 1, '{}')]],
      [[INSERT INTO sessions VALUES (3, 'v1-gamma', 'gamma', 'writer', NULL, 1700000002500, 1700000003000,
        4, 0, 9, 3, 0, '[1,"two"]')]],
      "INSERT INTO tags VALUES (1, 0, 'prod', 1700000001000, 2)",
      "INSERT INTO tags VALUES (1, 1, 'blue', 1700000001000, 2)",
      "INSERT INTO tags VALUES (2, 0, 'prod', 1700000003000, 5)",
      [[INSERT INTO messages VALUES (1, 0, '{"role":"user","content":"hi \u00e9"}')]],
      [[INSERT INTO messages VALUES (1, 1, '{"role":"assistant","content":"hello","tokens":42}')]],
      [[INSERT INTO messages VALUES (1, 2, '[1,2.0,"three",null,{},-0.0,9007199254740993]')]],
      [[INSERT INTO messages VALUES (2, 0, '"just a string"')]],
    }

    -- The file holds 2^53 + 1 (in v1-alpha's third message): where Lua has no
    -- integers it is read, and written back, as its decimal text.
    local READ = not interp.has_integers and { big_integers = "string" } or nil
    local function decode(text) return agentsession.json.decode(text, READ) end
    local function expected()
      local function meta(t)
        t.tags = agentsession.array(t.tags)
        return t
      end
      return {
        ["v1-alpha"] = {
          metadata = meta({ id = "v1-alpha", name = "alpha", agent_name = "coder", created_at = 1700000000000,
            updated_at = 1700000001000, turn_count = 3, total_tokens = 120, version = 2, tags = { "prod", "blue" } }),
          messages = agentsession.array({ decode('{"role":"user","content":"hi \\u00e9"}'),
            decode('{"role":"assistant","content":"hello","tokens":42}'),
            decode('[1,2.0,"three",null,{},-0.0,9007199254740993]') }),
          state = decode('{"cwd":"/home/a","n":[1,2.5,null],"deep":{"x":{"y":[]}}}'),
        },
        ["v1-beta"] = {
          metadata = meta({ id = "v1-beta", agent_name = "coder", parent_id = "v1-alpha", created_at = 1700000002000,
            updated_at = 1700000003000, turn_count = 1, total_tokens = 0, version = 1, tags = { "prod" } }),
          messages = agentsession.array({ "just a string" }),
          state = decode("{}"),
        },
        ["v1-gamma"] = {
          metadata = meta({ id = "v1-gamma", name = "gamma", agent_name = "writer", created_at = 1700000002500,
            updated_at = 1700000003000, turn_count = 0, total_tokens = 9, version = 3, tags = {} }),
          messages = agentsession.array(),
          state = decode('[1,"two"]'),
        },
      }
    end

    it("opens a version-1 file without loss and upgrades it to the current version", function()
      local path = dir .. "/v1.db"
      h.with_db(path, function(conn)
        for _, sql in ipairs(V1) do h.exec(conn, sql) end
      end, true)
      assert.are.equal(1, h.value(path, "PRAGMA user_version"))
      local mgr = open(path, READ)
      for id, want in pairs(expected()) do
        deep.assert_same(want, mgr:resume(id), { root = id })
      end
      if READ then
        assert.are.equal("9007199254740993", mgr:resume("v1-alpha").messages[3][7])
        local plain = open(path)
        local err = error_of("invalid", plain.resume, plain, "v1-alpha")
        assert.truthy(err.message:find("messages[3][7]", 1, true), err.message)
        plain:close()
      end
      assert.are.same({ "v1-beta", "v1-gamma", "v1-alpha" }, ids_of(mgr:list()))
      assert.are.same({ "v1-beta", "v1-alpha" }, ids_of(mgr:list({ tag = "prod" })))
      assert.are.same({ "v1-alpha" }, ids_of(mgr:list({ tags = { "prod", "blue" } })))
      assert.are.same({ "v1-beta", "v1-alpha" }, ids_of(mgr:list({ agent_name = "coder" })))
      assert.are.same({ "v1-beta" }, ids_of(mgr:list({ parent_id = "v1-alpha" })))
      assert.are.same({ "v1-gamma" }, ids_of(mgr:list({ limit = 1, offset = 1 })))
      deep.assert_same(agentsession.array({ "just a string" }), mgr:resume("v1-beta", { last = 5 }).messages)
      -- and searchable: its messages (an escape read as its character) and names
      local function found(q)
        local out = {}
        for _, hit in ipairs(mgr:search(q)) do out[#out + 1] = hit.metadata.id .. "#" .. hit.index end
        return out
      end
      assert.are.same({ "v1-alpha#1" }, found("HI \195\169"))
      assert.are.same({ "v1-alpha#3" }, found("three"))
      assert.are.same({ "v1-beta#1" }, found('"just a string"'))
      assert.are.same({ "v1-gamma#0" }, found("gamma"))
      assert.are.same({ "v1-beta#0", "v1-alpha#0" }, found("prod"))
      assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
      assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
      assert_sound(path, "after the migration")

      -- writing works, and goes on from the stored versions and counter
      local want = expected()
      local alpha = mgr:resume("v1-alpha")
      alpha.messages[4] = { role = "user", content = "after" }
      alpha.metadata.turn_count, alpha.metadata.total_tokens = 4, 125
      local meta = mgr:save(alpha)
      assert.are.equal(3, meta.version)
      assert.are.equal(4, meta.turn_count)
      assert.are.equal(125, meta.total_tokens)
      assert.are.equal(1700000000000, meta.created_at)
      want["v1-alpha"].messages[4] = decode('{"role":"user","content":"after"}')
      local beta = mgr:resume("v1-beta")
      beta.messages[2] = "second"
      beta.metadata.turn_count = 2
      assert.are.equal(2, mgr:save(beta).version)
      want["v1-beta"].messages[2] = "second"
      mgr:save(session({ id = "v2-new", agent_name = "coder", tags = { "prod" } }))
      assert.are.same({ "v2-new", "v1-beta", "v1-alpha", "v1-gamma" }, ids_of(mgr:list()))
      assert.are.same({ "v2-new", "v1-beta", "v1-alpha" }, ids_of(mgr:list({ tag = "prod" })))
      local forked = mgr:fork("v1-alpha", "alpha again", { at = 2 })
      assert.are.equal(2, forked.turn_count)
      mgr:close()

      -- and survives reopening
      local again = open(path, READ)
      for id, w in pairs(want) do
        local got = again:resume(id)
        deep.assert_same(w.messages, got.messages, { root = id .. ".messages" })
        deep.assert_same(w.state, got.state, { root = id .. ".state" })
        deep.assert_same(w.metadata.tags, got.metadata.tags, { root = id .. ".tags" })
      end
      assert.are.same({ forked.id, "v2-new", "v1-beta", "v1-alpha", "v1-gamma" }, ids_of(again:list()))
      assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
      assert_sound(path, "after writing to the migrated file")
    end)
  end)
end)

---------------------------------------------------------------------------

describe("sqlite: a schema-2 file", function()
  after_each(close_all)

  -- Each session's bytes as the store wrote them, and as the schema defines them.
  local function bytes_of(path)
    local out = {}
    for _, row in ipairs(h.query(path, "SELECT id, bytes FROM sessions")) do out[row.id] = tonumber(row.bytes) end
    return out
  end
  local function bytes_by_definition(path)
    local rid, _ = h.message_key()
    local out = {}
    for _, row in ipairs(h.query(path, "SELECT s.id AS id, length(CAST(s.state AS BLOB))"
      .. " + coalesce((SELECT sum(length(CAST(m.body AS BLOB)) + 1) FROM messages m WHERE " .. rid .. " = s.rid), 0)"
      .. " AS n FROM sessions s")) do
      out[row.id] = tonumber(row.n)
    end
    return out
  end
  local function columns(path)
    local out = {}
    for _, row in ipairs(h.query(path, "PRAGMA table_info(sessions)")) do out[#out + 1] = row.name end
    table.sort(out)
    return out
  end

  it("is migrated on opening: bytes computed as the store writes them, sessions unchanged", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    for _, s in ipairs(h.sample_sessions("mig", 7)) do mgr:save(s) end
    mgr:append("mig-02", { { content = "appended \240\159\152\128\195\169" }, "ñ" }, { tokens = 3 })
    mgr:save(rich_session("mig-rich"))
    mgr:fork("mig-rich", "fork \195\169", { at = 4 })
    mgr:save(agentsession.session{ id = "mig-empty", messages = {}, state = array() })
    local before = snapshot(mgr)
    local bytes = bytes_of(path)
    mgr:close()
    -- the store writes bytes as the schema defines them, unicode counted in bytes
    assert.are.same(bytes_by_definition(path), bytes)
    assert.is_true(bytes["mig-rich"] > 0)

    h.with_db(path, function(conn)
      h.exec(conn, "ALTER TABLE sessions DROP COLUMN bytes")
      h.exec(conn, "ALTER TABLE sessions DROP COLUMN ops")
      h.exec(conn, "DROP TABLE search")
      h.exec(conn, "DROP TABLE search_recent")
      h.exec(conn, "PRAGMA user_version = 2")
    end)
    assert.are.equal(2, h.value(path, "PRAGMA user_version"))
    local old_columns = columns(path)
    for _, c in ipairs(old_columns) do assert.are_not.equal("bytes", c) end

    local again = track(agentsession.sqlite(path))
    assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
    assert_same(before, snapshot(again), "the sessions after the migration")
    assert.are.same(bytes, bytes_of(path))
    assert.are.equal("ok", h.integrity(path))
    assert.are.same({}, h.schema_problems(path))
    local new_columns = copy(old_columns)
    new_columns[#new_columns + 1] = "bytes"
    new_columns[#new_columns + 1] = "ops" -- schema 4's
    table.sort(new_columns)
    assert.are.same(new_columns, columns(path))

    -- and it works as before: appends, size checks, reopening
    again:append("mig-rich", { "after the migration \195\169" }, { tokens = 1, expect_version = 1 })
    again:append("mig-empty", { {} })
    assert.are.same(bytes_by_definition(path), bytes_of(path))
    local r = again:resume("mig-rich")
    assert.are.equal("after the migration \195\169", r.messages[#r.messages])
    again:close()
    local third = track(agentsession.sqlite(path, { max_session_bytes = bytes["mig-rich"] + 600 }))
    error_of("too_large", third.append, third, "mig-rich", { string.rep("z", 600) })
    assert_same(r, third:resume("mig-rich"), "mig-rich after a too_large append")
    third:append("mig-rich", { "small" })
    assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
  end)
end)

---------------------------------------------------------------------------

describe("sqlite: a schema-3 file", function()
  after_each(close_all)

  local function session_columns(path)
    local out = {}
    for _, row in ipairs(h.query(path, "PRAGMA table_info(sessions)")) do out[#out + 1] = row.name end
    return out
  end

  -- A store file as schema 3 wrote it: the sessions of `fill`, without sessions.ops.
  local function schema_3_file(fill)
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    fill(mgr)
    local before = snapshot(mgr)
    mgr:close()
    h.with_db(path, function(conn)
      h.exec(conn, "ALTER TABLE sessions DROP COLUMN ops")
      h.exec(conn, "DROP TABLE search")
      h.exec(conn, "DROP TABLE search_recent")
      h.exec(conn, "PRAGMA user_version = 3")
    end)
    assert.are.equal(3, h.value(path, "PRAGMA user_version"))
    assert.are_not.equal("ops", session_columns(path)[#session_columns(path)])
    return path, before
  end

  local function fill(mgr)
    for _, s in ipairs(h.sample_sessions("v3", 4)) do mgr:save(s) end
    mgr:save(rich_session("v3-rich"))
    mgr:append("v3-01", { "appended" }, { tokens = 2 })
    mgr:fork("v3-rich", "fork", { at = 2 })
  end

  it("is migrated on opening: no op ids yet, sessions unchanged, appends with op ids", function()
    local path, before = schema_3_file(fill)
    local again = track(agentsession.sqlite(path))
    assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
    assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
    assert.are.equal("ops", session_columns(path)[#session_columns(path)])
    assert_same(before, snapshot(again), "the sessions after the migration")
    assert.are.same({ { n = 0 } }, h.query(path, "SELECT count(*) AS n FROM sessions WHERE ops IS NOT NULL"))
    assert_sound(path, "after the migration")

    local meta, applied = again:append("v3-rich", { "with an op id" }, { op_id = "after-migration" })
    assert.is_true(applied)
    local same_meta, again_applied = again:append("v3-rich", { "with an op id" }, { op_id = "after-migration" })
    assert.is_false(again_applied)
    assert.are.same(meta, same_meta)
    again:close()
    local third = track(agentsession.sqlite(path))
    assert.is_false(select(2, third:append("v3-rich", { "x" }, { op_id = "after-migration" })))
    assert.are.same({ { id = "v3-rich", n = 8 } },
      h.query(path, "SELECT id, length(ops) AS n FROM sessions WHERE ops IS NOT NULL"))
    assert_sound(path, "after appends with op ids")
  end)

  it("whose migration fails is left at schema 3 as it was, in one transaction", function()
    local path = schema_3_file(fill)
    -- a column in the way of the new one: the migration cannot add it
    h.with_db(path, function(conn) h.exec(conn, "ALTER TABLE sessions ADD COLUMN ops TEXT") end)
    local function rows()
      local out = {}
      for _, t in ipairs({ "sessions", "messages", "tags", "counter", "sqlite_master" }) do
        out[t] = h.query(path, "SELECT * FROM " .. t .. " ORDER BY 1")
      end
      return out
    end
    local files = rows()
    local ok, err = pcall(agentsession.sqlite, path)
    assert.is_false(ok)
    assert.is_true(agentsession.is_error(err, "storage"), tostring(err))
    assert.truthy(err.message:find("ops", 1, true), err.message)
    assert.are.equal(3, h.value(path, "PRAGMA user_version"))
    assert.are.same(files, rows())
    assert.are.equal("ok", h.integrity(path))
  end)

  -- The ids and indexes a search gives (the snippets follow the order of the
  -- keys in each store's JSON text, which is not the same in every store).
  local function results(mgr, query)
    local out = {}
    for i, hit in ipairs(mgr:search(query, { limit = 1000 })) do out[i] = hit.metadata.id .. "#" .. hit.index end
    return out
  end

  -- A file of schema 3: this version's file without its op ids and search index.
  local function schema3(path)
    h.with_db(path, function(conn)
      h.exec(conn, "ALTER TABLE sessions DROP COLUMN ops")
      h.exec(conn, "DROP TABLE search")
      h.exec(conn, "DROP TABLE search_recent")
      h.exec(conn, "PRAGMA user_version = 3")
    end)
  end

  it("is given its search index on opening, in one transaction, every session found as before", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    local reference = track(agentsession.memory())
    for _, s in ipairs(h.sample_sessions("m3", 7)) do mgr:save(s) end
    mgr:save(rich_session("m3-rich"))
    mgr:fork("m3-rich", "fork \195\169t\195\169", { at = 4 })
    for i = 1, 150 do
      mgr:save(session({ id = "m3-" .. i, name = "bulk " .. i, agent_name = "a", tags = { "t" .. i % 3 },
        messages = { "common words " .. i, { role = "user", content = "caf\195\169 number " .. i * 7 } } }))
    end
    local before = snapshot(mgr)
    -- imported oldest first: ties on updated_at go to the later write in both
    local listed = mgr:list()
    for i = #listed, 1, -1 do reference:import(mgr:export(listed[i].id)) end
    mgr:close()
    schema3(path)
    assert.are.equal(3, h.value(path, "PRAGMA user_version"))
    assert.are.equal(0, h.value(path, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'search%'"))

    local again = track(agentsession.sqlite(path))
    assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
    assert_same(before, snapshot(again), "the sessions after the migration")
    for _, q in ipairs({ "common", "caf\195\169", "number 70", "bulk", "t2", "fork", '"common words 12"',
      "role", "m3" }) do
      assert.are.same(results(reference, q), results(again, q), "search('" .. q .. "')")
    end
    assert.are.equal(150, #results(again, "common"))
    assert.are.equal(0, h.value(path, "SELECT count(*) FROM search_recent"))
    assert.are.equal("ok", h.integrity(path))

    -- the index took every text exactly as a write would: writes remove them cleanly
    for _, m in ipairs({ again, reference }) do
      m:rewind("m3-1", 1)
      m:rename("m3-2", "renamed")
      m:delete("m3-3")
      m:untag("m3-4", "t1")
      m:append("m3-5", { "appended after the migration" })
    end
    for _, q in ipairs({ "common", "number", "bulk", "renamed", "t1", "appended", "caf\195\169" }) do
      assert.are.same(results(reference, q), results(again, q), "search('" .. q .. "') after writes")
    end
    local cut = agentsession.now() + 1
    assert.are.same(reference:prune{ before = cut, tag = "t0", dry_run = true },
      again:prune{ before = cut, tag = "t0", dry_run = true })
    assert.are.equal(49, #again:prune{ before = cut, tag = "t0" }) -- m3-3 is deleted
    reference:prune{ before = cut, tag = "t0" }
    assert.are.same(results(reference, "common"), results(again, "common"), "search('common') after a prune")
    assert.are.same({}, h.schema_problems(path))
  end)

  it("replaces tables of the index's names that a schema-3 file holds", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    mgr:save(session({ id = "x", agent_name = "a", messages = { "words" } }))
    mgr:close()
    schema3(path)
    -- a table the migration cannot make its index beside
    h.with_db(path, function(conn) h.exec(conn, "CREATE TABLE search_recent (x)") end)
    local m = track(agentsession.sqlite(path))
    assert.are.same({ "x" }, ids_of(m:list()))
    assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
    assert.are.equal(1, #m:search("words"))
  end)
end)
