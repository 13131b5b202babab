-- What only the SQLite store has: a durable file shared by processes.
-- Every test works on real files in a fresh temporary directory and, where it
-- says so, in real child processes (spec/helpers/sqlite_child.lua); the files
-- are inspected with LuaSQL. The contract every store keeps is in 03-manager_spec.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local ids_of = require("helpers.stores").ids

local dir          -- this test's temporary directory
local children     -- pids of the children started in the background
local managers     -- managers to close after the test

local function open(path, opts)
  local mgr = agentsession.sqlite(path, opts)
  managers[#managers + 1] = mgr
  return mgr
end

local function spawn(args, name)
  local pid = h.spawn_child(args, dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".err")
  children[#children + 1] = pid
  return pid
end

local function output_of(name)
  return (h.read(dir .. "/" .. name .. ".out") or "") .. (h.read(dir .. "/" .. name .. ".err") or "")
end

local function wait_gone(pids, seconds, what)
  h.wait_until(function()
    for _, pid in ipairs(pids) do
      if h.alive(pid) then return false end
    end
    return true
  end, seconds, what)
end

-- The lines of a child's output, as { name = …, outcome = "ok" | "error", kind = …, message = … }.
local function outcomes(output)
  local list = {}
  for line in output:gmatch("[^\n]+") do
    local name = line:match("^(.-) ok$")
    if name then
      list[#list + 1] = { name = name, outcome = "ok", line = line }
    else
      local n, kind, message = line:match("^(.-) error (%S+) (.*)$")
      if n then list[#list + 1] = { name = n, outcome = "error", kind = kind, message = message, line = line } end
    end
  end
  return list
end

-- A child's outcome line must be a storage error naming the path.
local function assert_storage_line(o, path, context)
  assert.are.equal("error", o.outcome, context .. ": " .. o.name .. " worked, expected a storage error")
  assert.are.equal("storage", o.kind, context .. ": " .. o.line)
  assert.truthy(o.message:find(path, 1, true), context .. ": the message does not name " .. path .. ": " .. o.line)
end

-- The output of `probe` on a file the store must refuse: it ran to its end
-- (no crash), and either the constructor raised storage or every operation did.
local function assert_refused(path, ok, output, context)
  assert.is_true(ok, context .. ": the probe did not end normally (crash?):\n" .. output)
  assert.truthy(output:find("\nEND\n", 1, true) or output:find("^END\n"), context .. ": no END (crash?):\n" .. output)
  local list = outcomes(output)
  assert.is_true(#list >= 1 and list[1].name == "sqlite", context .. ": unexpected output:\n" .. output)
  if list[1].outcome == "error" then
    assert_storage_line(list[1], path, context)
    assert.are.equal(1, #list, context)
  else
    assert.are.equal(6, #list, context .. ": not every operation ran:\n" .. output)
    for i = 2, #list do assert_storage_line(list[i], path, context) end
  end
end

local function probe(path, opts)
  return h.run_child({ "probe", path }, opts)
end

local function session(fields)
  return agentsession.session(fields)
end

local function msgs(n, prefix)
  local list = agentsession.array()
  for i = 1, n do list[i] = { role = i % 2 == 1 and "user" or "assistant", content = (prefix or "m") .. i } end
  return list
end

local function assert_sound(path, context)
  assert.are.equal("ok", h.integrity(path), context .. ": PRAGMA integrity_check")
  local problems = h.schema_problems(path)
  assert.are.same({}, problems, context .. ": " .. table.concat(problems, "; "))
end

-- Every row of a store file (sessions, messages, tags, counter), to show that a call changed nothing.
local function snapshot(path)
  return h.with_db(path, function(conn)
    return {
      sessions = h.rows(conn, "SELECT * FROM sessions ORDER BY rid"),
      messages = h.rows(conn, "SELECT slot, digest, body, typeof(body) AS type FROM messages ORDER BY slot"),
      tags = h.rows(conn, "SELECT * FROM tags ORDER BY rid, pos"),
      counter = h.rows(conn, "SELECT * FROM counter"),
    }
  end)
end

describe("sqlite store", function()
  before_each(function()
    dir = h.tmpdir()
    children, managers = {}, {}
  end)

  after_each(function()
    for _, mgr in ipairs(managers) do pcall(mgr.close, mgr) end
    for _, pid in ipairs(children) do pcall(h.kill9, pid) end
    h.rmdir(dir)
  end)

  describe("file format", function()
    it("marks a new file with application_id and user_version 3 and has the documented tables", function()
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
        "turn_count", "total_tokens", "version", "nmsgs", "state", "bytes" }, columns("sessions"))
      assert.are.same({ "rid", "pos", "tag", "updated_at", "seq" }, columns("tags"))
      assert.are.same({ "slot", "digest", "body" }, columns("messages"))
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

  describe("durability across processes", function()
    it("a session saved by one process is resumed exactly by another and by this one", function()
      local path = dir .. "/durable.db"
      local mine = open(path) -- opened first, kept open while the children write
      assert.are.same({}, mine:list())
      local ok, out = h.run_child({ "save_samples", path, "d", "7" })
      assert.is_true(ok, out)
      local saved = {}
      for json in out:gmatch("META ([^\n]+)") do
        local meta = agentsession.json.decode(json)
        saved[meta.id] = meta
      end
      local samples = h.sample_sessions("d", 7)
      -- this process, through the manager opened before the child wrote
      for _, s in ipairs(samples) do
        local got = mine:resume(s.metadata.id)
        deep.assert_same(s.messages, got.messages, { root = "messages" }, s.metadata.id)
        deep.assert_same(s.state, got.state, { root = "state" }, s.metadata.id)
        deep.assert_same(saved[s.metadata.id], got.metadata, { root = "metadata", metatables = "ignore" },
          s.metadata.id)
        assert.are.equal(s.metadata.created_at, got.metadata.created_at)
        assert.are.equal(s.metadata.total_tokens, got.metadata.total_tokens)
      end
      local ids = ids_of(mine:list())
      assert.are.equal(7, #ids)
      -- another process sees the same, then writes
      local ok2, out2 = h.run_child({ "check_samples", path, "d", "7" })
      assert.is_true(ok2, out2)
      assert.is_nil(out2:find("DIFF", 1, true), out2)
      for json_id, json in out2:gmatch("SAME (%S+) ([^\n]+)") do
        deep.assert_same(saved[json_id], agentsession.json.decode(json), { metatables = "ignore" }, json_id)
      end
      assert.are.equal(table.concat(ids, ","), out2:match("LIST ([^\n]*)"))
      local fork_id = out2:match("FORK (%S+)")
      assert.truthy(fork_id, out2)
      -- and this process sees its writes
      local forked = mine:resume(fork_id)
      assert.are.equal("forked by a child", forked.metadata.name)
      assert.are.equal("d-02", forked.metadata.parent_id)
      deep.assert_same(samples[2].messages, forked.messages, { root = "messages" })
      assert.are.same({ "odd", "from-child" }, mine:resume("d-01").metadata.tags)
      assert.are.equal(fork_id, mine:list()[1].id)
      assert.are.equal(8, #mine:list())
      -- and a manager opened afterwards
      mine:close()
      local again = open(path)
      for _, s in ipairs(samples) do
        deep.assert_same(s.messages, again:resume(s.metadata.id).messages, { root = "messages" })
      end
      assert_sound(path, "after two processes wrote")
    end)
  end)

  describe("crash safety", function()
    -- Reads a writer's log (complete lines only) into `committed` (id -> {present, n});
    -- returns the operation that may have been under way, and the number of commits.
    local function read_log(text, committed)
      local pending, commits = nil, 0
      for line in text:gmatch("([^\n]*)\n") do
        local tag, a, b = line:match("^(%u+) ?(%S*) ?(%S*)$")
        if tag == "B" then
          pending = { op = a, id = b }
        elseif tag == "C" then
          committed[a] = { present = true, n = tonumber(b) }
          commits = commits + 1
        elseif tag == "T" then
          local c = committed[a] or {}
          committed[a] = { present = true, n = c.n }
          commits = commits + 1
        elseif tag == "D" then
          committed[a] = { present = false }
          commits = commits + 1
        elseif tag == "TIMEOUT" then
          error("the writer stopped by itself before it was killed")
        end
      end
      return pending, commits
    end

    local function verify(path, committed, pending, context)
      assert.are.equal("ok", h.integrity(path), context .. ": PRAGMA integrity_check")
      local problems = h.schema_problems(path)
      assert.are.same({}, problems, context .. ": " .. table.concat(problems, "; "))
      local mgr = open(path)
      local listed = {}
      for _, meta in ipairs(mgr:list()) do
        listed[meta.id] = meta
        local s = mgr:resume(meta.id)
        local ok, why = deep.compare(s.metadata, meta, { root = "list metadata" })
        assert.is_true(ok, context .. ": " .. tostring(why))
        local problem = h.check_session(s)
        assert.is_nil(problem, context .. ": " .. tostring(problem))
        local c = committed[meta.id]
        if not (c and c.present) then
          local by_pending = pending and (meta.id == pending.id
            or (pending.op == "fork" and meta.parent_id == pending.id))
          assert.is_true(by_pending, context .. ": session " .. meta.id
            .. " exists though no committed write left it there")
        elseif c.n and not (pending and pending.id == meta.id) then
          assert.are.equal(c.n, meta.turn_count, context .. ": " .. meta.id .. " lost a committed write")
        end
      end
      for id, c in pairs(committed) do
        if not (pending and pending.id == id) then
          if c.present then
            assert.truthy(listed[id], context .. ": committed session " .. id .. " is missing")
          else
            assert.is_nil(listed[id], context .. ": deleted session " .. id .. " is back")
            error_of("not_found", mgr.resume, mgr, id)
          end
        end
      end
      mgr:close()
      -- what is stored now is the base of the next writer's log
      for id in pairs(committed) do
        if not listed[id] then committed[id] = { present = false } end
      end
      for id, meta in pairs(listed) do committed[id] = { present = true, n = meta.turn_count } end
    end

    it("keeps every session self-consistent and every committed write when the writer is killed -9", function()
      local path = dir .. "/crash.db"
      local base = os.time() % 100000
      local committed = {}
      local delays = { 0.2, 0.8, 0.35, 0.65, 0.5 }
      local total = 0
      for iter, d in ipairs(delays) do
        local seed = base * 10 + iter
        local delay = d + (math.random() - 0.5) * 0.1
        local context = string.format("iteration %d (seed %d, killed after %.2f s)", iter, seed, delay)
        local log = dir .. "/crash" .. iter .. ".log"
        local name = "crash" .. iter
        local pid = spawn({ "crash_writer", path, log, tostring(seed), tostring(iter) }, name)
        h.wait_until(function()
          return (h.read(log) or ""):find("\nC ", 1, true) ~= nil or not h.alive(pid)
        end, 20, "the writer's first commit")
        h.sleep(delay)
        assert.is_true(h.alive(pid), context .. ": the writer ended by itself:\n" .. output_of(name)
          .. "\n" .. (h.read(log) or ""):sub(-2000))
        h.kill9(pid)
        local pending, commits = read_log(h.read(log), committed)
        assert.is_true(commits > 1, context .. ": the writer committed only " .. commits .. " writes")
        total = total + commits
        verify(path, committed, pending, context .. ", " .. commits .. " commits")
      end
      assert.is_true(total >= 20, "only " .. total .. " commits in all")
    end)
  end)

  describe("several processes", function()
    it("all open one new file at once, and all their writes land", function()
      local processes = 6
      for round = 1, 4 do
        local path = dir .. "/race" .. round .. ".db"
        local go = dir .. "/go" .. round
        local pids = {}
        for k = 1, processes do
          pids[k] = spawn({ "race", path, tostring(k), go }, "race" .. round .. "-" .. k)
        end
        h.sleep(0.15)
        h.write(go, "go\n")
        wait_gone(pids, 60, "the racing processes")
        for k = 1, processes do
          assert.are.equal("DONE " .. k .. "\n", output_of("race" .. round .. "-" .. k),
            "round " .. round .. ", process " .. k .. " of " .. processes .. " opening one new file at once")
        end
        local mgr = open(path)
        for k = 1, processes do assert.are.equal("race", mgr:resume("race-" .. k).metadata.agent_name) end
        assert.are.equal(processes, #mgr:list())
        mgr:close()
        assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
        assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
        assert_sound(path, "after the race")
      end
    end)

    -- Two writers follow helpers.sqlite.concurrent_plan at once; returns the manager and the shared session.
    local function two_writers(n)
      local path = dir .. "/concurrent.db"
      local go = dir .. "/go"
      local setup = open(path)
      setup:save(session({ id = "shared", agent_name = "both", tags = { "shared" } }))
      setup:close()
      local pids = {}
      for k = 1, 2 do
        pids[k] = spawn({ "concurrent", path, tostring(k), tostring(n), "shared", go }, "writer" .. k)
      end
      h.sleep(0.2)
      h.write(go, "go\n")
      wait_gone(pids, 60, "the writers")
      for k = 1, 2 do
        assert.are.equal("DONE " .. k .. "\n", output_of("writer" .. k), "writer " .. k)
      end
      assert_sound(path, "after two writers")
      local mgr = open(path)
      local shared = mgr:resume("shared")
      local have_tag = {}
      for _, t in ipairs(shared.metadata.tags) do
        assert.is_nil(have_tag[t], "tag " .. t .. " twice")
        have_tag[t] = true
      end
      local expected_tags = 1
      for k = 1, 2 do
        for _, op in ipairs(h.concurrent_plan(k, n)) do
          if op.op == "tag" then
            expected_tags = expected_tags + 1
            assert.is_true(have_tag[op.tag] == true, "tag " .. op.tag .. " of writer " .. k .. " is lost")
          end
        end
        local alive = h.concurrent_survivors(k, n)
        local count = 0
        for id in pairs(alive) do
          count = count + 1
          assert.are.equal("w" .. k, mgr:resume(id).metadata.agent_name)
        end
        assert.are.equal(count, #mgr:list({ agent_name = "w" .. k }), "sessions of writer " .. k)
        assert.are.equal(count, #mgr:list({ tag = "w" .. k }), "sessions tagged by writer " .. k)
      end
      assert.are.equal(expected_tags, #shared.metadata.tags)
      return mgr, shared
    end

    it("two writer processes at once see no error and lose no tag or session", function()
      local n = 300
      local _, shared = two_writers(n)
      -- renames are last-writer-wins: the name is the last rename of one of them
      local last = {}
      for k = 1, 2 do
        for _, op in ipairs(h.concurrent_plan(k, n)) do
          if op.op == "rename" then last[k] = op.name end
        end
      end
      assert.is_true(shared.metadata.name == last[1] or shared.metadata.name == last[2],
        "name " .. tostring(shared.metadata.name))
    end)
  end)

  describe("locks", function()
    it("waits for a lock held less than busy_timeout_ms and raises unavailable after it, changing nothing", function()
      local path = dir .. "/busy.db"
      local patient = open(path) -- busy_timeout_ms = 5000 by default
      local hasty = open(path, { busy_timeout_ms = 100 })
      patient:save(session({ id = "existing", agent_name = "a", messages = { "one" } }))
      assert.are.equal(1, #hasty:list())
      local marker = dir .. "/locked"
      local pid = spawn({ "lock", path, marker, "1.5" }, "lock")
      h.wait_until(function() return h.exists(marker) or not h.alive(pid) end, 20, "the lock holder")
      assert.is_true(h.exists(marker), "the lock holder failed:\n" .. output_of("lock"))
      local t0 = h.monotime()
      local err = error_of("unavailable", hasty.save, hasty, session({ id = "hasty", agent_name = "a" }))
      local waited = h.monotime() - t0
      assert.truthy(err.message:find(path, 1, true), "message does not name the path: " .. err.message)
      -- it waited about busy_timeout_ms, and gave up while the lock was still held (checked below)
      assert.is_true(waited >= 0.08, string.format("the failing save took %.3f s", waited))
      error_of("unavailable", hasty.delete, hasty, "existing")
      error_of("unavailable", hasty.rename, hasty, "existing", "renamed")
      error_of("unavailable", hasty.tag, hasty, "existing", "t")
      -- WAL: reading goes on while another process holds the write lock
      assert.are.equal(1, #hasty:list())
      deep.assert_same(agentsession.array({ "one" }), hasty:resume("existing").messages)
      assert.is_nil(output_of("lock"):find("RELEASING", 1, true), "the lock was released too early for this test")
      patient:save(session({ id = "patient", agent_name = "a" }))
      -- the holder prints RELEASING just before its COMMIT: a save that returns after it waited
      assert.truthy(output_of("lock"):find("RELEASING", 1, true), "the save did not wait for the lock")
      wait_gone({ pid }, 20, "the lock holder to end")
      assert.truthy(output_of("lock"):find("RELEASED", 1, true), output_of("lock"))
      -- the failed calls changed nothing
      error_of("not_found", patient.resume, patient, "hasty")
      local existing = patient:resume("existing")
      deep.assert_same(agentsession.array({ "one" }), existing.messages)
      assert.are.same({}, existing.metadata.tags)
      assert.is_nil(existing.metadata.name)
      assert.are.equal(1, existing.metadata.version)
      assert.are.equal("patient", patient:list()[1].id)
      assert.are.equal(2, #patient:list())
    end)
  end)

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
          rng = (rng * 1103515245 + 12345) % 2147483648
          bytes[i] = string.char(rng >> 16 & 255)
        end
        return table.concat(bytes)
      end
      local damaged_pages = {}
      for step = 1, 7 do damaged_pages[step] = math.max(1, pages * step // 8) end
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
      damage(path, "UPDATE messages SET body = " .. NOT_JSON .. " WHERE slot = " .. h.slot(rid, 2))
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
      damage(path, "UPDATE messages SET body = " .. NOT_JSON .. " WHERE slot = " .. h.slot(rid, 2))
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
      local slot = h.slot(rid, 1)
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
      damage(path, "INSERT INTO messages (slot, digest, body) VALUES (" .. h.slot(rid, 5) .. ", NULL, '\"debris\"'), ("
        .. h.slot(rid, 9) .. ", 12345, '\"far debris\"')")
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
      local ok, out = h.run_child({ "ops", path, "dmg", table.unpack(ops) })
      assert.is_true(ok, "the child did not end normally (crash?):\n" .. out)
      assert.truthy(out:find("\nEND\n$"), "no END (crash?):\n" .. out)
      local list = outcomes(out)
      assert.are.equal(#ops, #list, out)
      for i, o in ipairs(list) do
        assert.are.equal(ops[i], o.name)
        assert_storage_line(o, path, "version 2^63-1")
      end
      assert.are.same(before, snapshot(path), "a failed call changed the file")
      assert.are.equal(math.maxinteger, h.session_row(path, "dmg").version)
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
        h.exec(conn, "UPDATE messages SET slot = " .. h.slot(TOP, 0) .. " + (slot & 4294967295) WHERE slot >= "
          .. h.slot(old, 0) .. " AND slot < " .. h.slot(old + 1, 0))
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
      assert.are.equal(h.APPLICATION_ID, (string.unpack(">I4", header, 69)))
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
      local blocks = (size + 256 * 1024) // 512
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
      local blocks = (#h.read(path) + 256 * 1024) // 512
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

    local decode = agentsession.json.decode
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

    it("opens a version-1 file without loss and upgrades it to version 3", function()
      local path = dir .. "/v1.db"
      h.with_db(path, function(conn)
        for _, sql in ipairs(V1) do h.exec(conn, sql) end
      end, true)
      assert.are.equal(1, h.value(path, "PRAGMA user_version"))
      local mgr = open(path)
      for id, want in pairs(expected()) do
        deep.assert_same(want, mgr:resume(id), { root = id })
      end
      assert.are.same({ "v1-beta", "v1-gamma", "v1-alpha" }, ids_of(mgr:list()))
      assert.are.same({ "v1-beta", "v1-alpha" }, ids_of(mgr:list({ tag = "prod" })))
      assert.are.same({ "v1-alpha" }, ids_of(mgr:list({ tags = { "prod", "blue" } })))
      assert.are.same({ "v1-beta", "v1-alpha" }, ids_of(mgr:list({ agent_name = "coder" })))
      assert.are.same({ "v1-beta" }, ids_of(mgr:list({ parent_id = "v1-alpha" })))
      assert.are.same({ "v1-gamma" }, ids_of(mgr:list({ limit = 1, offset = 1 })))
      deep.assert_same(agentsession.array({ "just a string" }), mgr:resume("v1-beta", { last = 5 }).messages)
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
      local again = open(path)
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
      local body = h.value(path, "SELECT body FROM messages WHERE slot = " .. h.slot(rid_of, 2))
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
      local slot = h.slot(rid_of, k)
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

  describe("open", function()
    it("gives a sqlite manager on the same file for \"sqlite:PATH\" and for a bare PATH", function()
      local path = dir .. "/open.db"
      local by_uri = agentsession.open("sqlite:" .. path)
      managers[#managers + 1] = by_uri
      assert.truthy(tostring(by_uri):find("sqlite", 1, true), tostring(by_uri))
      local meta = by_uri:save(session({ id = "via-uri", agent_name = "a", messages = { "m" } }))
      local by_path = agentsession.open(path)
      managers[#managers + 1] = by_path
      assert.truthy(tostring(by_path):find("sqlite", 1, true), tostring(by_path))
      deep.assert_same(meta, by_path:resume("via-uri").metadata)
      by_path:save(session({ id = "via-path", agent_name = "a" }))
      local direct = open(path)
      assert.are.same({ "via-path", "via-uri" }, { direct:list()[1].id, direct:list()[2].id })
      assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
      local with_opts = agentsession.open("sqlite:" .. path, { busy_timeout_ms = 100 })
      managers[#managers + 1] = with_opts
      assert.are.equal(2, #with_opts:list())
      error_of("invalid", agentsession.open, "sqlite:" .. path, { no_such_option = 1 })
    end)

    it("refuses \"sqlite://…\" and \"sqlite:///…\" with invalid and creates nothing", function()
      -- both would name /x.db if taken as paths: a store made there is removed before failing
      local root_file = h.exists("/x.db")
      local results = {}
      for i, uri in ipairs({ "sqlite://x.db", "sqlite:///x.db" }) do
        local ok, got = pcall(agentsession.open, uri)
        if ok then managers[#managers + 1] = got end
        results[i] = { uri = uri, ok = ok, err = got }
      end
      local made = not root_file and h.exists("/x.db")
      if made then
        for _, mgr in ipairs(managers) do pcall(mgr.close, mgr) end
        for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove("/x.db" .. suffix) end
      end
      for _, r in ipairs(results) do
        assert.is_false(r.ok, r.uri .. " opened a store")
        assert.is_true(agentsession.is_error(r.err, "invalid"), r.uri .. ": expected invalid, got " .. tostring(r.err))
      end
      assert.is_false(made, "/x.db was created")
      -- the same forms naming a file in this test's directory ("//tmp/…" and "///tmp/…")
      error_of("invalid", agentsession.open, "sqlite://" .. dir:sub(2) .. "/host.db")
      error_of("invalid", agentsession.open, "sqlite://" .. dir .. "/triple.db")
      error_of("invalid", agentsession.open, "sqlite://" .. dir .. "/opts.db", { busy_timeout_ms = 100 })
      assert.are.equal("", h.must("ls -A " .. h.q(dir)), "files were created")
    end)
  end)

  describe("options", function()
    local bad = {
      { "durability = \"fast\"", { durability = "fast" } },
      { "durability = 1", { durability = 1 } },
      { "durability = \"full\\0x\"", { durability = "full\0x" } },
      { "durability = \"normal\\0\"", { durability = "normal\0" } },
      { "busy_timeout_ms = -1", { busy_timeout_ms = -1 } },
      { "busy_timeout_ms = 1.5", { busy_timeout_ms = 1.5 } },
      { "busy_timeout_ms = NaN", { busy_timeout_ms = 0 / 0 } },
      { "max_session_bytes = -1", { max_session_bytes = -1 } },
      { "max_session_bytes = 2.5", { max_session_bytes = 2.5 } },
      { "an unknown option", { journal_mode = "delete" } },
    }
    for _, case in ipairs(bad) do
      it("refuses " .. case[1] .. " with invalid and creates no file", function()
        local path = dir .. "/opts.db"
        error_of("invalid", agentsession.sqlite, path, case[2])
        assert.is_false(h.exists(path), "the file was created")
      end)
    end

    it("accepts durability normal and full and busy_timeout_ms 0", function()
      local path = dir .. "/good.db"
      for _, opts in ipairs({ { durability = "normal" }, { durability = "full" }, { busy_timeout_ms = 0 },
          { busy_timeout_ms = 5000, durability = "full", max_session_bytes = 1 << 20 } }) do
        local mgr = open(path, opts)
        mgr:save(session({ agent_name = "a" }))
        mgr:close()
      end
      assert.are.equal(4, #open(path):list())
    end)

    it("max_session_bytes: a larger session is too_large and nothing is written", function()
      local path = dir .. "/limit.db"
      local mgr = open(path, { max_session_bytes = 4096 })
      mgr:save(session({ id = "small", agent_name = "a", messages = { "short" } }))
      local big = session({ id = "big", agent_name = "a", messages = { string.rep("x", 5000) } })
      error_of("too_large", mgr.save, mgr, big)
      local grown = mgr:resume("small")
      grown.messages[2] = string.rep("y", 5000)
      error_of("too_large", mgr.save, mgr, grown)
      error_of("not_found", mgr.resume, mgr, "big")
      local small = mgr:resume("small")
      deep.assert_same(agentsession.array({ "short" }), small.messages)
      assert.are.equal(1, small.metadata.version)
      assert.are.equal(1, #open(path):list())
    end)
  end)
end)
