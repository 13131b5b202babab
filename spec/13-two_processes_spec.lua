-- Two real processes on one session of a store they share (SQLite and Redis,
-- each child running spec/helpers/pair_child.lua): appending at once loses no
-- message and keeps each one's order, sending the same op ids at once applies
-- each once, racing saves or appends with expect_version lose no update and
-- see conflicts, and one pruning while the other writes deletes nothing it
-- should keep.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local managers = require("helpers.managers")
local track, close_all = managers.track, managers.close_all
local run_pair = require("helpers.pair").run

local shared = {
  { name = "sqlite", open = function()
    local path = stores.new_file()
    return track(agentsession.sqlite(path)), "sqlite:" .. path
  end },
  { name = "redis", open = function()
    local m, prefix = stores.new_redis()
    return track(m), stores.redis_server():url(0, prefix)
  end },
}

for _, store in ipairs(shared) do
  describe(store.name .. ": two processes", function()
    after_each(close_all)

    it("appending 300 messages each to one session lose none and keep each one's order", function()
      local mgr, uri = store.open()
      local n, switches, attempts = 300, 0, 0
      repeat
        attempts = attempts + 1
        local id = "shared-" .. attempts
        mgr:save(agentsession.session{ id = id, name = "shared" })
        local out_a, out_b = run_pair(uri, { "appender", id, "a", n, 1 }, { "appender", id, "b", n, 1 })
        assert.truthy(out_a:find("DONE " .. n, 1, true), out_a)
        assert.truthy(out_b:find("DONE " .. n, 1, true), out_b)
        local r = mgr:resume(id)
        assert.are.equal(2 * n, #r.messages)
        assert.are.equal(2 * n, r.metadata.turn_count)
        assert.are.equal(2 * n, r.metadata.total_tokens)
        assert.are.equal(2 * n + 1, r.metadata.version)
        local next_of = { a = 1, b = 1 }
        for pos, m in ipairs(r.messages) do
          assert.are.equal(next_of[m.who], m.i, "message " .. pos .. " of " .. tostring(m.who))
          next_of[m.who] = next_of[m.who] + 1
          if pos > 1 and m.who ~= r.messages[pos - 1].who then switches = switches + 1 end
        end
        assert.are.same({ a = n + 1, b = n + 1 }, next_of)
      until switches > 1 or attempts == 5
      -- the appends did run at once: the two processes' messages interleave
      assert.is_true(switches > 1, "in " .. attempts .. " runs, one process always appended all its messages first")
    end)

    it("sending the same op ids at once apply each once, in order, losing none", function()
      local mgr, uri = store.open()
      -- no more op ids than a store remembers, however far one process runs ahead
      local n, attempts = 100, 0
      local both
      repeat
        attempts = attempts + 1
        local id = "ops-" .. attempts
        mgr:save(agentsession.session{ id = id })
        local out_a, out_b = run_pair(uri, { "op_appender", id, "a", n, 1 }, { "op_appender", id, "b", n, 1 })
        local aa, ra = out_a:match("DONE (%d+) (%d+)")
        local ab, rb = out_b:match("DONE (%d+) (%d+)")
        assert.truthy(aa, out_a)
        assert.truthy(ab, out_b)
        aa, ra, ab, rb = tonumber(aa), tonumber(ra), tonumber(ab), tonumber(rb)
        assert.are.equal(n, aa + ab, "appends applied by the two")
        assert.are.equal(n, ra + rb, "repeats seen by the two")
        local by = {}
        for who, out in pairs({ a = out_a, b = out_b }) do
          for i in (out:match("APPLIED ([^\n]*)") or ""):gmatch("%d+") do
            assert.is_nil(by[tonumber(i)], "op-" .. i .. " applied by both")
            by[tonumber(i)] = who
          end
        end
        local r = mgr:resume(id)
        assert.are.equal(n, #r.messages)
        assert.are.equal(n, r.metadata.turn_count)
        assert.are.equal(n, r.metadata.total_tokens)
        assert.are.equal(n + 1, r.metadata.version)
        for i, m in ipairs(r.messages) do
          assert.are.equal(i, m.i, "message " .. i)
          assert.are.equal(by[i], m.who, "message " .. i .. " was stored by the process that applied op-" .. i)
        end
        both = aa > 0 and ab > 0
      until both or attempts == 5
      -- the appends did run at once: each process applied some of the op ids
      assert.is_true(both, "in " .. attempts .. " runs, one process applied every op id")
    end)

    for _, mode in ipairs({ "save", "append" }) do
      it("racing " .. mode .. "s with expect_version lose no update and see conflicts", function()
        local mgr, uri = store.open()
        local n, conflicts, attempts = 200, 0, 0
        repeat
          attempts = attempts + 1
          local id = "race-" .. mode .. "-" .. attempts
          mgr:save(agentsession.session{ id = id, state = { counter = 0 } })
          local out_a, out_b = run_pair(uri, { "racer", id, mode, n, 1 }, { "racer", id, mode, n, 1 })
          local wa, ca = out_a:match("DONE (%d+) (%d+)")
          local wb, cb = out_b:match("DONE (%d+) (%d+)")
          assert.truthy(wa, out_a)
          assert.truthy(wb, out_b)
          wa, ca, wb, cb = tonumber(wa), tonumber(ca), tonumber(wb), tonumber(cb)
          assert.are.equal(n, wa + ca)
          assert.are.equal(n, wb + cb)
          local r = mgr:resume(id)
          assert.are.equal(1 + wa + wb, r.metadata.version)
          if mode == "save" then
            assert.are.equal(wa + wb, r.state.counter)
          else
            assert.are.equal(wa + wb, #r.messages)
            for i, m in ipairs(r.messages) do
              assert.are.equal(i, m.version, "message " .. i .. " was written expecting version " .. m.version)
            end
          end
          conflicts = conflicts + ca + cb
        until conflicts > 0 or attempts == 5
        assert.is_true(conflicts > 0, "no conflict in " .. attempts .. " runs of two processes")
      end)
    end
    it("one pruning while the other writes: nothing written is lost, nothing old is left", function()
      local mgr, uri = store.open()
      local n = 600
      for i = 1, n do
        mgr:save(agentsession.session{ id = "old-" .. i, tags = { "old" }, messages = { "old text " .. i } })
      end
      local last = mgr:list({ limit = 1 })[1].updated_at
      while agentsession.now() <= last do end
      local before = last + 1
      local out_p, out_t = run_pair(uri, { "pruner", before, "keep" }, { "toucher", os.time(), n })
      assert.truthy(out_p:find("DONE", 1, true), out_p)
      assert.truthy(out_t:find("DONE " .. n, 1, true), out_t)
      local gone, written = {}, {}
      for id in out_p:gmatch("GONE (%S+)") do gone[id] = true end
      for line in out_t:gmatch("[^\n]+") do
        local tag, id = line:match("^([WKN]) (%S+)$")
        if tag then written[id] = tag end
      end
      local survivors = {}
      for _, m in ipairs(mgr:list()) do survivors[m.id] = m end
      local touched, pruned = 0, 0
      for id, tag in pairs(written) do
        touched = touched + 1
        assert.is_nil(gone[id], "the pruner deleted " .. id .. ", which the writer wrote (" .. tag .. ")")
        assert.truthy(survivors[id], id .. " was written (" .. tag .. ") but is gone")
      end
      for id in pairs(gone) do
        pruned = pruned + 1
        assert.is_nil(survivors[id], id .. " was pruned but is listed")
      end
      -- what is left is new, or kept
      for id, m in pairs(survivors) do
        assert.is_true(m.updated_at >= before or agentsession.has_tag(m, "keep"),
          id .. " is old and not kept, but was not pruned")
      end
      assert.is_true(touched > 0 and pruned > 0, touched .. " written, " .. pruned .. " pruned")
      -- the search index followed both
      local hits = {}
      for _, hit in ipairs(mgr:search("text", { limit = 10000 })) do hits[hit.metadata.id] = true end
      for id in pairs(survivors) do
        if id:find("^old%-") then assert.truthy(hits[id], id .. " is not found by search") end
      end
      for id in pairs(gone) do assert.is_nil(hits[id], id .. " was pruned but is found by search") end
    end)
  end)
end
