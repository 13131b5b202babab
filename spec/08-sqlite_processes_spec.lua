-- What only the SQLite store has: a durable file shared by processes. A session
-- saved by one process and read by another, writers killed -9 mid-write, processes
-- racing to create and write one file, and locks held by another process. Every
-- test works on real files in a fresh temporary directory and in real child
-- processes (spec/helpers/sqlite_child.lua); the files are inspected with LuaSQL.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local interp = require("helpers.interp")
local ids_of = require("helpers.stores").ids
local sqlite_case = require("helpers.sqlite_case")
local open, spawn, output_of = sqlite_case.open, sqlite_case.spawn, sqlite_case.output_of
local wait_gone, session, assert_sound = sqlite_case.wait_gone, sqlite_case.session, sqlite_case.assert_sound
local assert_search_sound = sqlite_case.assert_search_sound

-- Words the crash writer's sessions hold (roles, names, tags, chain ids).
local PROBES = { "user", "assistant", "crash", "renamed", "fork", "at", "t1", "t3", "u2", "i1", "i3", "1", "4" }

local dir -- this test's temporary directory

describe("sqlite store", function()
  before_each(function() dir = sqlite_case.start() end)
  after_each(sqlite_case.finish)

  describe("durability across processes", function()
    it("starts children of the suite's Lua, loading the module built for it", function()
      local ok, out = h.run_child({ "lua" })
      assert.is_true(ok, out)
      assert.are.equal("LUA " .. h.lua_of() .. "\n", out)
      assert.truthy(out:find("/" .. interp.build_dir() .. "/agentsession/core.so\n", 1, true), out)
    end)

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
      assert_search_sound(path, PROBES, context)
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
      -- every text leaves the index as it came in: deleting all of them raises nothing
      local mgr = open(path)
      mgr:prune{ before = agentsession.now() + 1 }
      assert.are.same({}, mgr:list())
      for _, q in ipairs(PROBES) do assert.are.same({}, mgr:search(q), "search('" .. q .. "') of an empty file") end
      assert.are.equal(0, h.value(path, "SELECT count(*) FROM search_recent"))
      assert.are.equal(0, h.value(path, "SELECT count(*) FROM search WHERE search MATCH '\"user\"'"))
      assert_sound(path, "after deleting everything")
    end)

    it("keeps every session whole, kept or gone, when a prune is killed -9", function()
      local path = dir .. "/prune.db"
      local mgr = open(path)
      local n = 3000
      for i = 1, n do
        local msgs = h.chain("p" .. i, nil, 1 + i % 4, function(a, b) return a + (i * 7) % (b - a + 1) end)
        local s = session({ id = "p" .. i, name = "pruned " .. i, agent_name = "pruning",
          tags = { i % 5 == 0 and "keep" or "t" .. i % 3 }, messages = msgs, state = h.state_of(msgs) })
        s.metadata.turn_count = #msgs
        mgr:save(s)
      end
      local last = mgr:list({ limit = 1 })[1].updated_at
      while agentsession.now() <= last do end
      mgr:save(session({ id = "newer", agent_name = "pruning", messages = { "after" } }))
      local marker = dir .. "/pruning"
      local pid = spawn({ "pruner", path, tostring(last + 1), "keep", marker }, "pruner")
      h.wait_until(function() return h.exists(marker) or not h.alive(pid) end, 30, "the pruner's first batch")
      assert.is_true(h.alive(pid), "the pruner ended before it could be killed:\n" .. output_of("pruner"))
      h.kill9(pid)
      local batches = select(2, output_of("pruner"):gsub("PRUNED", ""))
      assert.is_true(batches >= 1, output_of("pruner"))
      assert_sound(path, "after the kill")
      local left = {}
      for _, m in ipairs(mgr:list()) do left[m.id] = m end
      local gone = 0
      for i = 1, n do
        local id = "p" .. i
        if left[id] then
          assert.is_nil(h.check_session(mgr:resume(id)), id)
        else
          gone = gone + 1
          assert.are_not.equal(0, i % 5, id .. " carries keep but is gone")
        end
      end
      assert.truthy(left.newer, "the session written after `before` is gone")
      assert.is_true(gone > 0 and gone < n - n / 5, gone .. " gone")
      assert_search_sound(path, { "user", "assistant", "pruned", "keep", "t1", "p10", "after" }, "after the kill")
      -- a prune run again ends the work
      assert.are.equal(n - n / 5 - gone, #mgr:prune{ before = last + 1, keep_tag = "keep" })
      assert.are.same({ "newer" }, ids_of(mgr:list({ limit = 1 })))
      assert.are.equal(n / 5 + 1, #mgr:list())
      assert_sound(path, "after the second prune")
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
end)
