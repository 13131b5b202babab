-- What only the SQLite store has: the file it opens. The modes it creates files
-- with, files that are not its own (not databases, other programs' databases,
-- directories, newer schemas, files and directories it may not write), paths
-- SQLite would read specially, and a full disk. Every test works on real files in
-- a fresh temporary directory and, where it says so, in real child processes
-- (spec/helpers/sqlite_child.lua); the files are inspected with LuaSQL.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local sqlite_case = require("helpers.sqlite_case")
local open, outcomes = sqlite_case.open, sqlite_case.outcomes
local assert_storage_line, assert_refused = sqlite_case.assert_storage_line, sqlite_case.assert_refused
local probe, session, msgs = sqlite_case.probe, sqlite_case.session, sqlite_case.msgs
local assert_sound = sqlite_case.assert_sound

local dir, managers -- this test's temporary directory, the managers sqlite_case.finish closes

describe("sqlite store", function()
  before_each(function() dir, managers = sqlite_case.start() end)
  after_each(sqlite_case.finish)

  describe("file modes", function()
    for _, mask in ipairs({ "022", "000" }) do
      it("creates the file, -wal and -shm with mode 0600 under umask " .. mask, function()
        local path = dir .. "/new-" .. mask .. ".db"
        local ok, out = h.run_child({ "perm", path }, { shell = "umask " .. mask })
        assert.is_true(ok, out)
        assert.truthy(out:find("MODE db 600\n", 1, true), out)
        assert.truthy(out:find("MODE -wal 600\n", 1, true), out)
        assert.truthy(out:find("MODE -shm 600\n", 1, true), out)
        assert.are.equal("600", h.mode(path))
      end)
    end

    it("leaves the mode of an existing store file alone", function()
      local path = dir .. "/existing.db"
      open(path):save(session({ agent_name = "a" }))
      managers[1]:close()
      h.must("chmod 644 " .. h.q(path))
      local ok, out = h.run_child({ "perm", path }, { shell = "umask 022" })
      assert.is_true(ok, out)
      assert.truthy(out:find("MODE db 644\n", 1, true), out)
      assert.are.equal("644", h.mode(path))
    end)

    it("leaves the mode of an existing empty file alone", function()
      local path = dir .. "/empty.db"
      h.write(path, "")
      h.must("chmod 640 " .. h.q(path))
      local ok, out = h.run_child({ "perm", path }, { shell = "umask 022" })
      assert.is_true(ok, out)
      assert.truthy(out:find("MODE db 640\n", 1, true), out)
      assert.are.equal("640", h.mode(path))
    end)
  end)

  describe("damaged and wrong files", function()
    local function random_bytes(n)
      local bytes = {}
      for i = 1, n do bytes[i] = string.char(math.random(0, 255)) end
      return table.concat(bytes)
    end
    local not_databases = {
      { what = "a text file", data = string.rep("This is not a database, only some text.\n", 500) },
      { what = "a file of random bytes", data = random_bytes(65536) },
    }
    for i, case in ipairs(not_databases) do
      it("refuses " .. case.what .. " with storage and leaves it as it was", function()
        local path = dir .. "/notdb" .. i .. ".db"
        h.write(path, case.data)
        local ok, out = probe(path)
        assert_refused(path, ok, out, case.what)
        assert.is_true(h.read(path) == case.data, "the file was changed")
      end)
    end

    it("makes a zero-length file a new store", function()
      local path = dir .. "/zero.db"
      h.write(path, "")
      local mgr = open(path)
      assert.are.same({}, mgr:list())
      mgr:save(session({ id = "z", agent_name = "a", messages = { "m" } }))
      mgr:close()
      deep.assert_same(agentsession.array({ "m" }), open(path):resume("z").messages)
      assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
    end)

    local foreign = {
      { what = "another program's SQLite database", tables = { "notes" },
        sql = { "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
                "INSERT INTO notes (body) VALUES ('keep me')" } },
      { what = "another program's SQLite database that has a sessions table", tables = { "sessions" },
        sql = { "CREATE TABLE sessions (id TEXT PRIMARY KEY, data BLOB)",
                "INSERT INTO sessions VALUES ('x', 'y')" } },
    }
    for i, case in ipairs(foreign) do
      it("refuses " .. case.what .. " and leaves it as it was", function()
        local path = dir .. "/foreign" .. i .. ".db"
        h.with_db(path, function(conn)
          for _, sql in ipairs(case.sql) do h.exec(conn, sql) end
        end, true)
        local before = h.read(path)
        local ok, out = probe(path)
        assert_refused(path, ok, out, case.what)
        assert.is_true(h.read(path) == before, "the foreign database was changed")
        local names = {}
        for _, r in ipairs(h.query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")) do
          names[#names + 1] = r.name
        end
        assert.are.same(case.tables, names)
      end)
    end

    it("refuses a directory", function()
      local path = dir .. "/adir.db"
      h.must("mkdir " .. h.q(path))
      local ok, out = probe(path)
      assert_refused(path, ok, out, "directory")
      assert.are.equal("", h.must("ls -A " .. h.q(path)))
    end)

    it("refuses a path under a missing directory and creates nothing", function()
      local path = dir .. "/missing/store.db"
      local ok, out = probe(path)
      assert_refused(path, ok, out, "missing directory")
      assert.is_false(h.exists(dir .. "/missing"))
    end)

    it("refuses a path under a regular file", function()
      h.write(dir .. "/file", "plain\n")
      local path = dir .. "/file/store.db"
      local ok, out = probe(path)
      assert_refused(path, ok, out, "under a regular file")
      assert.are.equal("plain\n", h.read(dir .. "/file"))
    end)

    it("refuses a file written by a newer schema version, saying so, and leaves it as it was", function()
      local path = dir .. "/newer.db"
      open(path):save(session({ id = "s", agent_name = "a" }))
      managers[1]:close()
      h.with_db(path, function(conn) h.exec(conn, "PRAGMA user_version = 99") end)
      local before = h.read(path)
      local ok, out = probe(path)
      assert_refused(path, ok, out, "user_version 99")
      assert.truthy(out:find("newer", 1, true), "the error does not say the file is newer:\n" .. out)
      assert.is_true(h.read(path) == before, "the file was changed")
      assert.are.equal(99, h.value(path, "PRAGMA user_version"))
    end)

    it("raises storage when a save cannot write a read-only file", function()
      local prefix = h.unprivileged_prefix()
      local root = h.copy_module(dir)
      local path = dir .. "/readonly.db"
      open(path):save(session({ id = "s", agent_name = "a", messages = { "kept" } }))
      managers[1]:close()
      assert.is_false(h.exists(path .. "-wal"), "the -wal file outlived the manager")
      h.must("chmod 644 " .. h.q(path) .. " && chmod 755 " .. h.q(dir))
      if prefix == "" then h.must("chmod 444 " .. h.q(path)) end
      local before = h.read(path)
      local ok, out = probe(path, { prefix = prefix, root = root })
      assert.is_true(ok, "the probe did not end normally (crash?):\n" .. out)
      assert.truthy(out:find("\nEND\n", 1, true), out)
      -- the constructor or the save must fail; reads may work; every error is storage
      local list = outcomes(out)
      local failed = list[1] and list[1].name == "sqlite" and list[1].outcome == "error"
      for _, o in ipairs(list) do
        if o.outcome == "error" then assert_storage_line(o, path, "read-only file") end
        if o.name == "save" then
          assert_storage_line(o, path, "save to a read-only file")
          failed = true
        end
      end
      assert.is_true(failed, "neither the constructor nor save failed:\n" .. out)
      assert.is_true(h.read(path) == before, "the read-only file was changed")
      h.must("chmod 600 " .. h.q(path))
      local mgr = open(path)
      error_of("not_found", mgr.resume, mgr, "probe")
      deep.assert_same(agentsession.array({ "kept" }), mgr:resume("s").messages)
    end)

    it("raises storage when the file cannot be created in a directory the user may not write", function()
      local prefix = h.unprivileged_prefix()
      local root = h.copy_module(dir)
      h.must("mkdir " .. h.q(dir .. "/closed") .. " && chmod 755 " .. h.q(dir .. "/closed"))
      if prefix == "" then h.must("chmod 555 " .. h.q(dir .. "/closed")) end
      local path = dir .. "/closed/new.db"
      local ok, out = probe(path, { prefix = prefix, root = root })
      assert_refused(path, ok, out, "unwritable directory")
      assert.is_false(h.exists(path))
    end)
  end)

  describe("relative paths SQLite would read specially", function()
    -- The child runs in this test's directory and opens the relative name given.
    local function run_in_dir(name)
      return h.run_child({ "relative", name }, { shell = "cd " .. h.q(dir) .. " && umask 022" })
    end

    local function assert_plain_file(name, ok, out)
      assert.is_true(ok, out)
      assert.truthy(out:find("MODE 600\n", 1, true), name .. ":\n" .. out)
      assert.truthy(out:find("RESUMED one,two\n", 1, true), name .. ": the session did not persist:\n" .. out)
      assert.truthy(out:find("LIST 1\nEND\n", 1, true), name .. ":\n" .. out)
      assert.are.equal(name, h.must("ls -A " .. h.q(dir)), "the files in the directory")
      local file = dir .. "/" .. name
      assert.are.equal("600", h.mode(file))
      -- the header of a store: SQLite's magic string, application_id at byte offset 68
      -- (read directly: LuaSQL opens a path ending in ":memory:" as an in-memory database)
      local header = h.read(file):sub(1, 100)
      assert.are.equal("SQLite format 3\0", header:sub(1, 16))
      local b1, b2, b3, b4 = header:byte(69, 72) -- big-endian
      assert.are.equal(h.APPLICATION_ID, ((b1 * 256 + b2) * 256 + b3) * 256 + b4)
      deep.assert_same(agentsession.array({ "one", "two" }), open(file):resume("rel").messages)
    end

    it("\"file:x.db\" is a file of that name (mode 0600), and no x.db is made", function()
      local ok, out = run_in_dir("file:x.db")
      assert_plain_file("file:x.db", ok, out)
      assert.is_false(h.exists(dir .. "/x.db"), "x.db was created")
    end)

    it("\":memory:\" is a file of that name (mode 0600) whose sessions persist across reopening", function()
      local ok, out = run_in_dir(":memory:")
      assert_plain_file(":memory:", ok, out)
    end)
  end)

  describe("full disk", function()
    it("raises storage when the file cannot grow, and keeps everything written before", function()
      local path = dir .. "/full.db"
      local mgr = open(path)
      local samples = h.sample_sessions("f", 3)
      for _, s in ipairs(samples) do mgr:save(s) end
      local before = {}
      for _, s in ipairs(samples) do before[s.metadata.id] = mgr:resume(s.metadata.id) end
      mgr:close()
      assert.is_false(h.exists(path .. "-wal"), "the -wal file outlived the manager")
      local size = #h.read(path)
      -- ulimit -f counts 512-byte blocks in sh (POSIX); either way far below the 4 MiB to write
      local blocks = math.floor((size + 256 * 1024) / 512)
      local ok, out = h.run_child({ "big_save", path, tostring(4 * 1024 * 1024) },
        { shell = "ulimit -f " .. blocks .. "; trap '' XFSZ" })
      assert.is_true(ok, "the child did not end normally:\n" .. out)
      assert.truthy(out:find("\nEND\n", 1, true), out)
      local kind, message = out:match("SAVE error (%S+) ([^\n]*)")
      assert.are.equal("storage", kind, "the save over the file size limit:\n" .. out)
      assert.truthy(message:find(path, 1, true), "the message does not name the path: " .. message)
      assert.truthy(out:find("LIST 3\n", 1, true), "the manager could not list after the failed save:\n" .. out)
      assert_sound(path, "after the failed save")
      local again = open(path)
      for id, s in pairs(before) do deep.assert_same(s, again:resume(id), { root = id }) end
      error_of("not_found", again.resume, again, "big")
      assert.are.equal(3, #again:list())
      again:save(session({ id = "after", agent_name = "a", messages = msgs(3) }))
      assert.are.equal(4, #again:list())
    end)
  end)

  describe("full disk, every write", function()
    it("fails each write that cannot grow the file with storage, changing nothing, and the file stays sound", function()
      local path = dir .. "/fullops.db"
      local mgr = open(path)
      local chunk = string.rep("m", 16 * 1024)
      local medium = {}
      for i = 1, 64 do medium[i] = { i = i, text = chunk } end
      mgr:save(session({ id = "medium", agent_name = "a", messages = medium }))
      mgr:save(session({ id = "small", agent_name = "a", tags = { "t" }, messages = { "one" } }))
      mgr:close()
      assert.is_false(h.exists(path .. "-wal"), "the -wal file outlived the manager")
      local blocks = math.floor((#h.read(path) + 256 * 1024) / 512)
      local ok, out = h.run_child({ "full_ops", path },
        { shell = "ulimit -f " .. blocks .. "; trap '' XFSZ" })
      assert.is_true(ok, "the child did not end normally:\n" .. out)
      assert.truthy(out:find("\nEND\n", 1, true), out)
      local failed = {}
      for name, result in out:gmatch("OP (%S+) ([^\n]*)") do
        if result ~= "ok" then
          local kind, message = result:match("^error (%S+) (.*)$")
          assert.are.equal("storage", kind, name .. " on a full disk: " .. result)
          assert.truthy(message:find(path, 1, true), "the message does not name the path: " .. message)
          assert.truthy(out:find("KEPT " .. name .. "\n", 1, true), name .. " changed the store:\n" .. out)
          failed[name] = true
        end
      end
      -- these write 4 MiB, far more than any file may grow; the others (1 MiB copies, small
      -- changes) fail or not as the -wal file has room, and are checked either way
      for _, name in ipairs({ "save", "append" }) do
        assert.is_true(failed[name], name .. " did not fail on a full disk:\n" .. out)
      end
      assert_sound(path, "after the writes on a full disk")
      local again = open(path)
      error_of("not_found", again.resume, again, "big")
      local m = again:resume("medium")
      assert.are.equal(failed.rewind and 64 or 1, #m.messages)
      for i = 1, #m.messages do assert.are.equal(chunk, m.messages[i].text) end
      if failed.import then error_of("not_found", again.resume, again, "imported")
      else assert.are.equal(64, #again:resume("imported").messages) end
      assert.are.equal(failed.fork and 0 or 1, #again:list({ parent_id = "medium" }))
      if failed.delete then
        local small = again:resume("small")
        assert.are.same(failed.tag and { "t" } or { "t", "full-disk" }, small.metadata.tags)
        assert.are.equal(not failed.rename and "renamed on a full disk" or nil, small.metadata.name)
      else
        error_of("not_found", again.resume, again, "small")
      end
      again:save(session({ id = "after", agent_name = "a", messages = { "room again" } }))
    end)
  end)
end)
