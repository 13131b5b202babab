-- What only the SQLite store has: a file whose contents can be damaged. Pages
-- overwritten with garbage, triggers planted in the file, and rows changed by hand
-- (a message or a state that is not JSON or not text, a count of messages that
-- does not match the rows, a version at its limit): the store raises storage,
-- never crashes nor returns wrong data, and changes nothing. Every test works on
-- real files in a fresh temporary directory and, where it says so, in real child
-- processes (spec/helpers/sqlite_child.lua); the files are inspected with LuaSQL.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local sqlite_case = require("helpers.sqlite_case")
local open, outcomes = sqlite_case.open, sqlite_case.outcomes
local assert_storage_line, session = sqlite_case.assert_storage_line, sqlite_case.session
local msgs, assert_sound, snapshot = sqlite_case.msgs, sqlite_case.assert_sound, sqlite_case.snapshot

local unpack = table.unpack or rawget(_G, "unpack")

local dir -- this test's temporary directory

-- The next value of a linear congruential generator: (rng * 1103515245 + 12345)
-- mod 2^31, the product in two halves so that each is exact in a double.
local function lcg(rng)
  local hi, lo = math.floor(rng / 65536), rng % 65536
  return ((hi * 1103515245) % 32768 * 65536 + lo * 1103515245 + 12345) % 2147483648
end

describe("sqlite store", function()
  before_each(function() dir = sqlite_case.start() end)
  after_each(sqlite_case.finish)

  describe("damaged and wrong files", function()
    it("never runs triggers planted in the file, even one that would never end", function()
      local path = dir .. "/planted.db"
      local mgr = open(path)
      mgr:save(session({ id = "s", agent_name = "a", tags = { "t" }, messages = { "one" } }))
      mgr:close()
      h.with_db(path, function(conn)
        h.exec(conn, "CREATE TABLE fired(what TEXT)")
        for _, event in ipairs({ "INSERT ON sessions", "UPDATE ON sessions", "DELETE ON sessions",
                                 "INSERT ON messages", "DELETE ON messages", "INSERT ON tags" }) do
          local name = "planted_" .. event:gsub("%W", "_")
          h.exec(conn, "CREATE TRIGGER " .. name .. " AFTER " .. event
            .. " BEGIN INSERT INTO fired VALUES ('" .. event .. "'); DELETE FROM messages; END")
        end
        -- recursive: each update of a session updates it again, for ever
        h.exec(conn, "PRAGMA recursive_triggers = ON")
        h.exec(conn, "CREATE TRIGGER planted_loop AFTER UPDATE ON sessions"
          .. " BEGIN UPDATE sessions SET name = name WHERE rid = new.rid; END")
      end)
      mgr = open(path)
      mgr:save(session({ id = "new", agent_name = "a", messages = { "x", "y" } }))
      mgr:append("s", { "two" })
      mgr:tag("s", "u")
      mgr:rename("s", "renamed")
      mgr:rewind("new", 1)
      local fork = mgr:fork("s")
      mgr:delete(fork.id)
      deep.assert_same(agentsession.array({ "one", "two" }), mgr:resume("s").messages)
      deep.assert_same(agentsession.array({ "x" }), mgr:resume("new").messages)
      assert.are.equal(0, tonumber(h.value(path, "SELECT count(*) FROM fired")))
    end)

    it("raises storage, never crashes nor returns wrong data, when pages are overwritten with garbage", function()
      local pristine = dir .. "/pristine.db"
      local count = 40
      local ok, out = h.run_child({ "make_corrupt_sample", pristine, tostring(count) })
      assert.is_true(ok, out)
      h.with_db(pristine, function(conn) h.rows(conn, "PRAGMA wal_checkpoint(TRUNCATE)") end)
      local page_size = h.value(pristine, "PRAGMA page_size")
      local pages = h.value(pristine, "PRAGMA page_count")
      assert.is_true(pages >= 20, "the sample store has only " .. pages .. " pages")
      local data = h.read(pristine)
      local rng = 12345
      local function garbage(n)
        local bytes = {}
        for i = 1, n do
          rng = lcg(rng)
          bytes[i] = string.char(math.floor(rng / 65536) % 256)
        end
        return table.concat(bytes)
      end
      local damaged_pages = {}
      for step = 1, 7 do damaged_pages[step] = math.max(1, math.floor(pages * step / 8)) end
      for _, k in ipairs(damaged_pages) do
        local path = string.format("%s/damaged-page-%d.db", dir, k)
        h.write(path, data:sub(1, k * page_size) .. garbage(page_size) .. data:sub((k + 1) * page_size + 1))
        local context = string.format("page %d of %d overwritten", k, pages)
        local done, output = h.run_child({ "probe_corrupt", path, tostring(count) })
        assert.is_true(done, context .. ": the probe did not end normally (crash?):\n" .. output)
        assert.truthy(output:find("\nEND\n", 1, true), context .. ": no END (crash?):\n" .. output)
        assert.is_nil(output:find("WRONG", 1, true), context .. ": wrong data returned:\n" .. output)
        local storage_errors = 0
        for _, o in ipairs(outcomes(output)) do
          if o.outcome == "error" then
            assert_storage_line(o, path, context)
            storage_errors = storage_errors + 1
          end
        end
        assert.is_true(storage_errors > 0, context .. ": no operation noticed the damage:\n" .. output)
      end
    end)

    -- A store with session "dmg" (5 messages, a state, a tag) saved between two others;
    -- returns the file's path and dmg's row id. Names avoid "state" and "messages", which
    -- the error messages below are searched for.
    local function store_with_victim(name)
      local path = dir .. "/" .. name .. ".db"
      local mgr = open(path)
      mgr:save(session({ id = "before", agent_name = "a", messages = msgs(2) }))
      local s = session({ id = "dmg", name = "victim", agent_name = "a", tags = { "t" }, messages = msgs(5),
        state = { cwd = "/w" } })
      s.metadata.turn_count = 5
      mgr:save(s)
      mgr:save(session({ id = "after", agent_name = "a", messages = msgs(1) }))
      mgr:close()
      return path, h.session_row(path, "dmg").rid
    end

    local function damage(path, sql)
      h.with_db(path, function(conn) h.exec(conn, sql) end)
    end

    -- An error message, which must name the file's path (file names here avoid the words
    -- searched for in it).
    local function naming_path(message, path, context)
      assert.truthy(message:find(path, 1, true), context .. ": the message does not name " .. path .. ": " .. message)
      return message
    end

    local NOT_JSON = [['{"a":']]

    it("raises storage naming the file and messages[N] when resuming a session whose message is not JSON", function()
      local path, rid = store_with_victim("victim-m")
      damage(path, "UPDATE messages SET body = " .. NOT_JSON .. " WHERE slot = " .. h.int(h.slot(rid, 2)))
      local mgr = open(path)
      local err = error_of("storage", mgr.resume, mgr, "dmg")
      local message = naming_path(err.message, path, "resume")
      assert.truthy(message:find("messages[3]", 1, true), "the message does not name messages[3]: " .. err.message)
      err = error_of("storage", mgr.resume, mgr, "dmg", { last = 3 })
      naming_path(err.message, path, "resume{last = 3}")
      -- the other sessions read as before
      assert.are.equal(2, #mgr:resume("before").messages)
      assert.are.equal(1, #mgr:resume("after").messages)
      assert.are.equal(3, #mgr:list())
    end)

    it("rewind and fork of a session whose message is not JSON raise storage and change nothing", function()
      local path, rid = store_with_victim("victim-m2")
      damage(path, "UPDATE messages SET body = " .. NOT_JSON .. " WHERE slot = " .. h.int(h.slot(rid, 2)))
      local before = snapshot(path)
      local mgr = open(path)
      for _, k in ipairs({ 3, 5, 10 }) do -- each keeps the damaged third message
        local err = error_of("storage", mgr.rewind, mgr, "dmg", k)
        naming_path(err.message, path, "rewind to " .. k)
      end
      local err = error_of("storage", mgr.fork, mgr, "dmg")
      naming_path(err.message, path, "fork")
      error_of("storage", mgr.fork, mgr, "dmg", "early", { at = 4 })
      assert.are.same(before, snapshot(path), "a failed call changed the file")
      assert.are.equal(3, #mgr:list())
      -- a rewind that drops the damaged message works and leaves a sound session
      local rewound = mgr:rewind("dmg", 2)
      deep.assert_same(msgs(2), rewound.messages, { metatables = "ignore" })
      assert_sound(path, "after rewinding past the damage")
    end)

    it("raises storage naming the file and state when resuming a session whose state is not JSON", function()
      local path, rid = store_with_victim("victim-s")
      damage(path, "UPDATE sessions SET state = '[1,' WHERE rid = " .. rid)
      local mgr = open(path)
      local err = error_of("storage", mgr.resume, mgr, "dmg")
      local message = naming_path(err.message, path, "resume")
      assert.truthy(message:find("state", 1, true), "the message does not name the state: " .. err.message)
      assert.are.equal(2, #mgr:resume("before").messages)
    end)

    it("rewind and fork of a session whose state is not JSON raise storage and change nothing", function()
      local path, rid = store_with_victim("victim-s2")
      damage(path, "UPDATE sessions SET state = '[1,' WHERE rid = " .. rid)
      local before = snapshot(path)
      local mgr = open(path)
      for _, k in ipairs({ 0, 2, 10 }) do
        local err = error_of("storage", mgr.rewind, mgr, "dmg", k)
        naming_path(err.message, path, "rewind to " .. k)
      end
      local err = error_of("storage", mgr.fork, mgr, "dmg")
      naming_path(err.message, path, "fork")
      error_of("storage", mgr.fork, mgr, "dmg", nil, { at = 0 })
      assert.are.same(before, snapshot(path), "a failed call changed the file")
      assert.are.equal(3, #mgr:list())
    end)

    it("raises storage naming the file and saying \"not text\" for a message or a state stored as a BLOB", function()
      -- (an integer cannot be stored there: the columns have TEXT affinity, which turns numbers into text)
      local path, rid = store_with_victim("victim-b")
      local slot = h.int(h.slot(rid, 1))
      damage(path, "UPDATE messages SET body = CAST(body AS BLOB) WHERE slot = " .. slot)
      assert.are.equal("blob", h.value(path, "SELECT typeof(body) FROM messages WHERE slot = " .. slot))
      local mgr = open(path)
      local err = error_of("storage", mgr.resume, mgr, "dmg")
      local message = naming_path(err.message, path, "message BLOB")
      assert.truthy(message:find("not text", 1, true), "the message does not say \"not text\": " .. err.message)
      assert.truthy(message:find("messages[2]", 1, true), "the message does not name messages[2]: " .. err.message)
      local before = snapshot(path)
      error_of("storage", mgr.rewind, mgr, "dmg", 5)
      error_of("storage", mgr.fork, mgr, "dmg")
      assert.are.same(before, snapshot(path), "a failed call changed the file")
      -- the message as text again, the state as a BLOB
      damage(path, "UPDATE messages SET body = CAST(body AS TEXT) WHERE slot = " .. slot)
      assert.are.equal(5, #mgr:resume("dmg").messages)
      damage(path, "UPDATE sessions SET state = CAST(state AS BLOB) WHERE rid = " .. rid)
      assert.are.equal("blob", h.value(path, "SELECT typeof(state) FROM sessions WHERE rid = " .. rid))
      err = error_of("storage", mgr.resume, mgr, "dmg")
      message = naming_path(err.message, path, "state BLOB")
      assert.truthy(message:find("not text", 1, true), "the message does not say \"not text\": " .. err.message)
      assert.truthy(message:find("state", 1, true), "the message does not name the state: " .. err.message)
    end)

    it("raises storage saying a message is missing, fast and without a crash, when nmsgs counts absent rows", function()
      for _, n in ipairs({ 4294967295, 8 }) do
        local context = "nmsgs = " .. n .. " for 5 rows"
        local path, rid = store_with_victim("count-" .. n)
        damage(path, "UPDATE sessions SET nmsgs = " .. n .. " WHERE rid = " .. rid)
        local before = snapshot(path)
        local t0 = h.monotime()
        local ok, out = h.run_child({ "ops", path, "dmg", "resume", "resume_last", "fork" }, { limit = 30 })
        local took = h.monotime() - t0
        assert.is_true(ok, context .. ": the child did not end normally (crash?):\n" .. out)
        assert.truthy(out:find("\nEND\n$"), context .. ": no END (crash?):\n" .. out)
        local list = outcomes(out)
        assert.are.equal(3, #list, context .. ":\n" .. out)
        for _, o in ipairs(list) do
          assert_storage_line(o, path, context)
          local message = naming_path(o.message, path, context)
          assert.truthy(message:find("missing", 1, true), context .. ": " .. o.line)
          assert.is_nil(message:find("memory", 1, true), context .. ": " .. o.line)
        end
        assert.is_true(took < 5, string.format("%s: the calls took %.2f s", context, took))
        assert.are.same(before, snapshot(path), context .. ": a failed call changed the file")
      end
    end)

    it("clears message rows past nmsgs at the next save, which succeeds", function()
      local path, rid = store_with_victim("debris")
      damage(path, "INSERT INTO messages (slot, digest, body) VALUES (" .. h.int(h.slot(rid, 5))
        .. ", NULL, '\"debris\"'), (" .. h.int(h.slot(rid, 9)) .. ", 12345, '\"far debris\"')")
      assert.is_true(#h.schema_problems(path) > 0, "the extra rows do not show as a schema problem")
      local mgr = open(path)
      local s = mgr:resume("dmg")
      deep.assert_same(msgs(5), s.messages, { metatables = "ignore" }, "the counted messages")
      s.messages[6] = { role = "assistant", content = "six" }
      s.metadata.turn_count = 6
      mgr:save(s)
      assert_sound(path, "after the save")
      assert.are.equal(6, h.message_rows(path, rid))
      deep.assert_same(s.messages, mgr:resume("dmg").messages, { metatables = "ignore" }, "after the save")
    end)

    it("raises storage, without crashing, when a session's version is 2^63-1", function()
      local path, rid = store_with_victim("version")
      damage(path, "UPDATE sessions SET version = 9223372036854775807 WHERE rid = " .. rid)
      local before = snapshot(path)
      local ops = { "resume", "save", "tag", "rename", "rewind", "fork" }
      local ok, out = h.run_child({ "ops", path, "dmg", unpack(ops) })
      assert.is_true(ok, "the child did not end normally (crash?):\n" .. out)
      assert.truthy(out:find("\nEND\n$"), "no END (crash?):\n" .. out)
      local list = outcomes(out)
      assert.are.equal(#ops, #list, out)
      for i, o in ipairs(list) do
        assert.are.equal(ops[i], o.name)
        assert_storage_line(o, path, "version 2^63-1")
      end
      assert.are.same(before, snapshot(path), "a failed call changed the file")
      assert.are.equal("9223372036854775807", h.value(path, "SELECT CAST(version AS TEXT) FROM sessions WHERE rid = "
        .. rid))
    end)
  end)
end)
