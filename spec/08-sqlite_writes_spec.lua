-- What only the SQLite store has: the rows each write changes. A save writes only
-- the message rows that changed, as the stored digests tell, and the session row
-- ids run to their last usable value. Every test works on real files in a fresh
-- temporary directory; the files are inspected with LuaSQL.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local sqlite_case = require("helpers.sqlite_case")
local open, session, msgs = sqlite_case.open, sqlite_case.session, sqlite_case.msgs
local assert_sound, snapshot = sqlite_case.assert_sound, sqlite_case.snapshot

local dir -- this test's temporary directory

describe("sqlite store", function()
  before_each(function() dir = sqlite_case.start() end)
  after_each(sqlite_case.finish)

  describe("rows written by a save", function()
    -- the triggers below count the rows each operation writes; the store runs them only when asked
    local TRIGGERS = { triggers = true }
    -- Triggers log every write to the messages table; `take()` returns and clears the log
    -- as { insert = {pos…}, update = {pos…}, delete = {pos…} } for session `rid`, failing
    -- when another session's rows were touched.
    local path, take, rid_of

    -- messages shaped like an agent's: objects of many keys
    local function rich(n)
      local list = agentsession.array()
      for i = 1, n do
        list[i] = { role = i % 2 == 1 and "user" or "assistant", content = "message " .. i, name = "agent",
          tokens = i * 10, turn = i, id = "msg-" .. i, created = 1700000000 + i, model = "model-x",
          finish_reason = "stop", index = 0, tool_call_id = "call-" .. i,
          meta = { model = "m", latency_ms = i, cached = false } }
        list[i]["extra_" .. i] = i -- each message with its own set of keys
      end
      return list
    end

    local function install(p)
      h.with_db(p, function(conn)
        local rid, pos = h.message_key("NEW.")
        local old_rid, old_pos = h.message_key("OLD.")
        h.exec(conn, "CREATE TABLE spec_log (n INTEGER PRIMARY KEY, op TEXT NOT NULL, rid INTEGER, pos INTEGER)")
        h.exec(conn, "CREATE TRIGGER spec_ins AFTER INSERT ON messages BEGIN INSERT INTO spec_log (op, rid, pos)"
          .. " VALUES ('insert', " .. rid .. ", " .. pos .. "); END")
        h.exec(conn, "CREATE TRIGGER spec_upd AFTER UPDATE ON messages BEGIN INSERT INTO spec_log (op, rid, pos)"
          .. " VALUES ('update', " .. rid .. ", " .. pos .. "); END")
        h.exec(conn, "CREATE TRIGGER spec_del AFTER DELETE ON messages BEGIN INSERT INTO spec_log (op, rid, pos)"
          .. " VALUES ('delete', " .. old_rid .. ", " .. old_pos .. "); END")
      end)
    end

    before_each(function()
      path = dir .. "/written.db"
      local mgr = open(path, TRIGGERS)
      mgr:save(session({ id = "other", agent_name = "a", messages = rich(4) }))
      local s = session({ id = "rows", agent_name = "a", messages = rich(10) })
      s.metadata.turn_count = 10
      mgr:save(s)
      mgr:close()
      install(path)
      rid_of = h.value(path, "SELECT rid FROM sessions WHERE id = 'rows'")
      take = function()
        return h.with_db(path, function(conn)
          local log = { insert = {}, update = {}, delete = {} }
          for _, r in ipairs(h.rows(conn, "SELECT op, rid, pos FROM spec_log ORDER BY n")) do
            assert.are.equal(rid_of, r.rid, "a row of another session was written: " .. r.op .. " " .. r.pos)
            table.insert(log[r.op], r.pos)
          end
          h.exec(conn, "DELETE FROM spec_log")
          for _, list in pairs(log) do table.sort(list) end
          return log
        end)
      end
    end)

    local NONE = { insert = {}, update = {}, delete = {} }

    local function expect_writes(want)
      assert.are.same(want, take(), "the rows of messages (0-based positions) inserted, updated and deleted")
    end

    it("appending one message and saving inserts exactly that row", function()
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      s.messages[11] = { role = "user", content = "new" }
      s.metadata.turn_count = 11
      mgr:save(s)
      expect_writes({ insert = { 10 }, update = {}, delete = {} })
      deep.assert_same(s.messages, mgr:resume("rows").messages)
    end)

    it("changing one message in the middle updates exactly that row", function()
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      s.messages[6].content = "changed"
      mgr:save(s)
      expect_writes({ insert = {}, update = { 5 }, delete = {} })
      deep.assert_same(s.messages, mgr:resume("rows").messages)
    end)

    it("saving a shorter messages array deletes only the rows past its end", function()
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      for i = 11, 8, -1 do s.messages[i] = nil end
      s.metadata.turn_count = 7
      mgr:save(s)
      expect_writes({ insert = {}, update = {}, delete = { 7, 8, 9 } })
      deep.assert_same(s.messages, mgr:resume("rows").messages)
    end)

    it("saving unchanged messages, or changing only state, tags or name, writes no message row", function()
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      mgr:save(s)
      expect_writes(NONE)
      s.state = { changed = true }
      s.metadata.tags = { "new" }
      s.metadata.name = "renamed"
      mgr:save(s)
      expect_writes(NONE)
      mgr:tag("rows", "more")
      mgr:rename("rows", "again")
      mgr:untag("rows", "new")
      expect_writes(NONE)
      deep.assert_same(s.messages, mgr:resume("rows").messages)
    end)

    it("writes no row for a message rebuilt with its keys inserted in another order", function()
      -- objects are stored with their keys in byte order, whatever order the table was filled in;
      -- 100 keys also take the encoder past its small fixed key array
      local function wide(order)
        local t = {}
        for k = 1, 100 do
          local i = order == "up" and k or 101 - k
          t[string.format("key%03d", i)] = { i, { ["z" .. i] = i, ["a" .. i] = -i } }
        end
        return t
      end
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      s.messages[3] = wide("up")
      mgr:save(s)
      expect_writes({ insert = {}, update = { 2 }, delete = {} })
      s.messages[3] = wide("down")
      mgr:save(s)
      expect_writes(NONE)
      local body = h.value(path, "SELECT body FROM messages WHERE slot = " .. h.int(h.slot(rid_of, 2)))
      assert.truthy(body:find('^{"key001":%[1,{"a1":%-1,"z1":1}%],"key002":'), body)
      deep.assert_same(wide("up"), mgr:resume("rows").messages[3], { metatables = "ignore" })
    end)

    it("writes only the changed rows of messages whose JSON text has one form (strings, arrays)", function()
      -- the rules above, on messages that encode the same whatever Lua table they come from
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      for i = 1, 10 do s.messages[i] = i % 2 == 0 and ("text " .. i) or agentsession.array({ i, "x" }) end
      mgr:save(s)
      take()
      local function step(change, want)
        local fresh = open(path, TRIGGERS)
        local t = fresh:resume("rows")
        change(t)
        fresh:save(t)
        expect_writes(want)
        deep.assert_same(t.messages, fresh:resume("rows").messages)
        fresh:close()
      end
      step(function() end, NONE)
      step(function(t) t.messages[11] = "new" end, { insert = { 10 }, update = {}, delete = {} })
      step(function(t) t.messages[6] = "changed" end, { insert = {}, update = { 5 }, delete = {} })
      step(function(t) for i = 11, 9, -1 do t.messages[i] = nil end end,
        { insert = {}, update = {}, delete = { 8, 9, 10 } })
    end)

    it("rewind deletes only the dropped rows", function()
      local mgr = open(path, TRIGGERS)
      mgr:rewind("rows", 4)
      expect_writes({ insert = {}, update = {}, delete = { 4, 5, 6, 7, 8, 9 } })
      deep.assert_same(rich(4), mgr:resume("rows").messages, { metatables = "ignore" })
    end)

    it("compares with what is stored, not with what this manager wrote", function()
      -- another process changes message 3, then this manager saves its older copy plus one message
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      local other = open(path, TRIGGERS)
      local theirs = other:resume("rows")
      theirs.messages[3] = "theirs"
      other:save(theirs)
      expect_writes({ insert = {}, update = { 2 }, delete = {} })
      s.messages[11] = "mine"
      s.metadata.turn_count = 11
      mgr:save(s)
      expect_writes({ insert = { 10 }, update = { 2 }, delete = {} })
      deep.assert_same(s.messages, other:resume("rows").messages)
    end)

    it("rewrites exactly the row whose stored digest no longer matches when the session is saved unchanged", function()
      local k = 6 -- 0-based position of the row whose digest is changed by hand
      local slot = h.int(h.slot(rid_of, k))
      local digest = h.value(path, "SELECT digest FROM messages WHERE slot = " .. slot)
      h.with_db(path, function(conn)
        h.exec(conn, "UPDATE messages SET digest = digest + 1 WHERE slot = " .. slot)
      end)
      take() -- the hand edit itself
      local mgr = open(path, TRIGGERS)
      local s = mgr:resume("rows")
      mgr:save(s)
      expect_writes({ insert = {}, update = { k }, delete = {} })
      assert.are.equal(digest, h.value(path, "SELECT digest FROM messages WHERE slot = " .. slot),
        "the rewritten row's digest")
      deep.assert_same(s.messages, mgr:resume("rows").messages)
      mgr:save(s)
      expect_writes(NONE)
    end)
  end)

  describe("row ids", function()
    it("serve a session at the last usable row id and refuse a new session past it, writing nothing", function()
      local path = dir .. "/top.db"
      local mgr = open(path)
      mgr:save(session({ id = "low", agent_name = "a", messages = msgs(1) }))
      local top = session({ id = "top", name = "top", agent_name = "a", tags = { "x" }, messages = msgs(4),
        state = { at = "top" } })
      top.metadata.turn_count = 4
      mgr:save(top)
      mgr:close()
      -- move "top" to row id 2^31 - 2, its tags and its message slots with it, in one transaction
      local TOP = 2147483646
      local old = h.session_row(path, "top").rid
      h.with_db(path, function(conn)
        h.exec(conn, "BEGIN")
        h.exec(conn, "UPDATE sessions SET rid = " .. TOP .. " WHERE rid = " .. old)
        h.exec(conn, "UPDATE tags SET rid = " .. TOP .. " WHERE rid = " .. old)
        h.exec(conn, "UPDATE messages SET slot = " .. h.int(h.slot(TOP, 0)) .. " + (slot & 4294967295)"
          .. " WHERE slot >= " .. h.int(h.slot(old, 0)) .. " AND slot < " .. h.int(h.slot(old + 1, 0)))
        -- the search index is keyed by slot too: the next open builds it again
        h.exec(conn, "PRAGMA user_version = 4")
        h.exec(conn, "COMMIT")
      end)
      assert.are.equal(4, h.message_rows(path, TOP))
      assert_sound(path, "after moving the session")

      mgr = open(path)
      local got = mgr:resume("top")
      deep.assert_same(msgs(4), got.messages, { metatables = "ignore" }, "messages")
      assert.are.equal("top", got.state.at)
      got.messages[5] = "five"
      got.metadata.turn_count = 5
      mgr:save(got)
      assert.are.equal(5, h.message_rows(path, TOP))
      deep.assert_same(agentsession.array({ "five" }), mgr:resume("top", { last = 1 }).messages)
      local rewound = mgr:rewind("top", 2)
      deep.assert_same(msgs(2), rewound.messages, { metatables = "ignore" }, "rewound messages")
      assert.are.same({ "x", "y" }, mgr:tag("top", "y"))
      assert.are.equal(TOP, h.session_row(path, "top").rid)
      assert_sound(path, "after writing the session at the top")

      -- a new session would get row id 2^31 - 1
      local before, listed = snapshot(path), mgr:list()
      local err = error_of("storage", mgr.save, mgr,
        session({ id = "past", agent_name = "a", tags = { "x" }, messages = msgs(2) }))
      assert.truthy(err.message:find(path, 1, true), "the message does not name the file: " .. err.message)
      assert.truthy(err.message:find("out of session row ids", 1, true), err.message)
      err = error_of("storage", mgr.fork, mgr, "low")
      assert.truthy(err.message:find("out of session row ids", 1, true), err.message)
      assert.are.same(before, snapshot(path), "a refused write changed the file")
      deep.assert_same(listed, mgr:list(), { root = "list" })
      error_of("not_found", mgr.resume, mgr, "past")
      assert.are.equal("ok", h.integrity(path))

      mgr:delete("top")
      error_of("not_found", mgr.resume, mgr, "top")
      assert.are.equal(0, h.message_rows(path, TOP))
      assert.are.equal(0, h.value(path, "SELECT count(*) FROM tags WHERE rid = " .. TOP))
      assert.are.equal(0, h.value(path, "SELECT count(*) FROM sessions WHERE rid = " .. TOP))
      assert_sound(path, "after the delete")
    end)
  end)
end)
