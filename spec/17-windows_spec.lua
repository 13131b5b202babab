-- Windows (a session loaded in part) and append with a state: what the
-- conformance suite cannot see from outside a store. The size limit counted
-- exactly; what a custom backend is asked and what it may answer; on SQLite and
-- Redis, that a window reads only its own messages and leaves the stored ones
-- before it byte for byte, a window saved after another process wrote, and a
-- reader in another process never seeing appended messages without their state.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local deep = require("helpers.deep")
local size = require("helpers.size")
local h = require("helpers.sqlite")
local pair = require("helpers.pair")
local error_of = require("helpers.expect").error_of
local managers = require("helpers.managers")
local track, close_all = managers.track, managers.close_all
local snapshot, assert_unchanged = managers.snapshot, managers.assert_unchanged

local array = agentsession.array

local function numbered(n, from)
  local msgs = array()
  for i = 1, n do msgs[i] = { role = i % 2 == 1 and "user" or "assistant", content = "m" .. (from or 0) + i } end
  return msgs
end

local function saved(mgr, n, id)
  return mgr:save(agentsession.session{ id = id, name = "windows", messages = numbered(n),
    state = { step = 0 } }).id
end

for _, store in ipairs(stores) do
  describe(store.name .. ": windows and the size limit", function()
    after_each(close_all)

    -- The size of the session `id` as stored, counted as the manager counts it.
    local function size_of(mgr, id)
      local r = mgr:resume(id)
      return size.of(r.metadata, r.messages, r.state)
    end

    -- Runs setup(mgr) -> id, then write(mgr, id) on a store whose limit is the
    -- size the write leads to: it fits; one byte less refuses it, changing nothing.
    local function exact(setup, write)
      local probe = track(store.new())
      local id = setup(probe)
      write(probe, id)
      local limit = size_of(probe, id)
      local fits = track(store.new({ max_session_bytes = limit }))
      write(fits, setup(fits))
      local short = track(store.new({ max_session_bytes = limit - 1 }))
      local sid = setup(short)
      local before = snapshot(short)
      local err = error_of("too_large", write, short, sid)
      assert.are.equal(sid, err.id)
      assert_unchanged(short, before, "after a too_large write")
    end

    it("counts a window's save exactly: the kept messages, the new tail and the new state", function()
      exact(function(mgr) return saved(mgr, 6, "edge") end, function(mgr, id)
        local w = mgr:resume(id, { last = 2 })
        w.messages[1] = { content = string.rep("x", 300) }
        w.messages[3] = { content = "added" }
        w.state = { step = 1, notes = string.rep("n", 100) }
        return mgr:save(w)
      end)
    end)

    it("counts an append's new state in place of the stored one", function()
      exact(function(mgr) return saved(mgr, 3, "edge") end, function(mgr, id)
        return mgr:append(id, { { content = "x" } }, { state = { notes = string.rep("n", 200) } })
      end)
      -- a smaller state frees room: an append filling it to the byte fits
      local mgr = track(store.new({ max_session_bytes = 2000 }))
      local id = mgr:save(agentsession.session{ id = "shrinks", state = { big = string.rep("b", 1000) } }).id
      mgr:append(id, {}, { state = { big = "" } })
      local room = 2000 - size_of(mgr, id)
      assert.is_true(room > 1000, "room " .. room)
      -- the message "xxx…" takes its length + 3 (quotes and the separator); the
      -- append also grows turn_count and version by a digit each at most
      local probe = track(store.new())
      probe:import(mgr:export(id))
      local grown = size_of(probe, id)
      probe:append(id, { "" })
      local cost = size_of(probe, id) - grown -- an empty message and the counters
      local meta = mgr:append(id, { string.rep("x", room - cost) })
      assert.are.equal(2000, size_of(mgr, id), "the session fills the limit")
      assert.are.equal(3, meta.version)
      error_of("too_large", mgr.append, mgr, id, { "" })
    end)
  end)
end

---------------------------------------------------------------------------
-- What a custom backend is asked, and what it may answer.

describe("custom: the hint of a window", function()
  after_each(close_all)

  -- A backend keeping sessions as tables, recording the hints load is given and
  -- answering what `answer(session, hint)` makes of the whole session.
  local function backend(answer)
    local data, hints = {}, {}
    local b = { hints = hints }
    function b.load(id, hint)
      hints[#hints + 1] = hint or false
      local s = data[id]
      if s == nil then return nil end
      s = deep.copy(s)
      if answer then return answer(s, hint) end
      return s
    end
    function b.store(s) data[s.metadata.id] = deep.copy(s) end
    function b.remove(id)
      local had = data[id] ~= nil
      data[id] = nil
      return had
    end
    function b.list()
      local out = {}
      for _, s in pairs(data) do out[#out + 1] = deep.copy(s.metadata) end
      return out
    end
    return b
  end

  it("asks for { last = n } and { from = i, count = n }, and nothing for a whole resume", function()
    local b = backend()
    local mgr = track(agentsession.custom(b))
    local id = saved(mgr, 10)
    for k in pairs(b.hints) do b.hints[k] = nil end
    mgr:resume(id, { last = 3 })
    mgr:resume(id, { from = 4, count = 2 })
    mgr:resume(id, { from = 4 })
    mgr:resume(id, { from = 1 })
    mgr:resume(id)
    assert.are.same({ { last = 3 }, { from = 4, count = 2 }, { from = 4 }, false, false }, b.hints)
  end)

  it("takes the part a backend gives with its window, and the whole one without", function()
    local b = backend(function(s, hint)
      if hint and hint.from then
        local part = array()
        for i = hint.from, math.min(#s.messages, hint.from + (hint.count or #s.messages) - 1) do
          part[#part + 1] = s.messages[i]
        end
        s.window = { first = hint.from, total = #s.messages }
        s.messages = part
      end
      return s
    end)
    local mgr = track(agentsession.custom(b))
    local id = saved(mgr, 10)
    local w = mgr:resume(id, { from = 4, count = 2 })
    assert.are.same({ first = 4, count = 2, total = 10, version = 1 }, w.window)
    assert.are.same({ "m4", "m5" }, { w.messages[1].content, w.messages[2].content })
    w = mgr:resume(id, { last = 2 })
    assert.are.same({ first = 9, count = 2, total = 10, version = 1 }, w.window)
    assert.are.same({ "m9", "m10" }, { w.messages[1].content, w.messages[2].content })
  end)

  it("refuses, as storage, a part that does not hold what was asked or a malformed window", function()
    local cases = {
      { "a window that starts after the messages asked", function(s)
        s.window = { first = 6, total = 10 }
        s.messages = { s.messages[6] }
        return s
      end },
      { "more messages than its window's total", function(s)
        s.window = { first = 1, total = 3 }
        return s
      end },
      { "a window whose first is 0", function(s)
        s.window = { first = 0, total = 10 }
        return s
      end },
      { "a window that is not a table", function(s)
        s.window = "all"
        return s
      end },
    }
    for _, case in ipairs(cases) do
      local mgr = track(agentsession.custom(backend(function(s, hint) if hint then return case[2](s) end return s end)))
      local id = saved(mgr, 10)
      local err = error_of("storage", mgr.resume, mgr, id, { last = 2 })
      assert.truthy(err.message:find("backend.load returned", 1, true), case[1] .. ": " .. err.message)
    end
    -- a part given when the whole session was asked (a write reads it whole)
    local mgr = track(agentsession.custom(backend(function(s)
      s.window = { first = 2, total = #s.messages }
      table.remove(s.messages, 1)
      return s
    end)))
    mgr:save(agentsession.session{ id = "x", messages = numbered(2) })
    local err = error_of("storage", mgr.fork, mgr, "x")
    assert.truthy(err.message:find("backend.load returned", 1, true), err.message)
  end)

  it("saves a window through a backend that ignores hints, and one that honours them", function()
    for _, fast in ipairs({ false, true }) do
      local b = require("helpers.lua_backend").new{ fast = fast }
      local mgr = track(agentsession.custom(b))
      local id = saved(mgr, 30)
      local w = mgr:resume(id, { last = 2 })
      w.messages[3] = { content = "m31" }
      mgr:save(w)
      local all = mgr:resume(id).messages
      assert.are.equal(31, #all)
      assert.are.same({ "m1", "m30", "m31" }, { all[1].content, all[30].content, all[31].content })
    end
  end)
end)

---------------------------------------------------------------------------
-- SQLite and Redis: the stored texts themselves, and other processes.

local shared = {
  { name = "sqlite", open = function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    local raw = {}
    local function rid(id)
      local r = h.session_row(path, id).rid
      return math.tointeger and math.tointeger(r) or r
    end
    -- the stored texts of the messages of id, in order
    function raw.texts(id)
      local r = rid(id)
      local out = {}
      for _, row in ipairs(h.query(path, "SELECT body FROM messages WHERE slot >= " .. h.slot(r, 0)
          .. " AND slot < " .. h.slot(r + 1, 0) .. " ORDER BY slot")) do
        out[#out + 1] = row.body
      end
      return out
    end
    function raw.damage(id, pos)
      h.with_db(path, function(conn)
        h.exec(conn, "UPDATE messages SET body = 'not json {' WHERE slot = " .. h.slot(rid(id), pos - 1))
      end)
    end
    return mgr, "sqlite:" .. path, raw
  end },
  { name = "redis", open = function()
    local mgr, prefix = stores.new_redis()
    track(mgr)
    local srv = stores.redis_server()
    local raw = {}
    local function key(id) return prefix .. "{" .. id .. "}:msgs" end
    function raw.texts(id)
      local out = {}
      local n = tonumber((srv:cli("LLEN", key(id))))
      for i = 0, n - 1 do out[#out + 1] = (srv:cli("LINDEX", key(id), tostring(i))) end
      return out
    end
    function raw.damage(id, pos)
      assert.are.equal("OK", (srv:cli("LSET", key(id), tostring(pos - 1), "not json {")))
    end
    return mgr, srv:url(0, prefix), raw
  end },
}

for _, store in ipairs(shared) do
  describe(store.name .. ": windows on the stored texts", function()
    after_each(close_all)

    it("a window's save leaves the stored messages before it byte for byte", function()
      local mgr, _, raw = store.open()
      local msgs = array()
      -- texts whose every byte tells: key order, escapes, numbers as written
      for i = 1, 8 do msgs[i] = { z = i, a = "caf\195\169\t" .. i, f = i / 4, list = array() } end
      local id = mgr:save(agentsession.session{ id = "bytes", messages = msgs }).id
      local before = raw.texts(id)
      local w = mgr:resume(id, { last = 3 })
      w.messages[2] = { replaced = true }
      w.messages[4] = { added = true }
      mgr:save(w)
      local after = raw.texts(id)
      assert.are.equal(9, #after)
      for i = 1, 5 do assert.are.equal(before[i], after[i], "stored text of message " .. i) end
      -- the window's own messages are written anew, as their tables are now
      deep.assert_same(msgs[6], agentsession.json.decode(after[6]), { array_mt = agentsession.array_mt })
      assert.are.same({ replaced = true }, agentsession.json.decode(after[7]))
      deep.assert_same(msgs[8], agentsession.json.decode(after[8]), { array_mt = agentsession.array_mt })
      assert.are.same({ added = true }, agentsession.json.decode(after[9]))
    end)

    it("reads only the window's messages: a damaged one before it is neither read nor rewritten", function()
      local mgr, _, raw = store.open()
      local id = saved(mgr, 10, "damaged")
      raw.damage(id, 2)
      error_of("storage", mgr.resume, mgr, id)
      local w = mgr:resume(id, { last = 3 })
      assert.are.same({ "m8", "m9", "m10" }, { w.messages[1].content, w.messages[2].content, w.messages[3].content })
      w = mgr:resume(id, { from = 4, count = 2 })
      assert.are.equal("m4", w.messages[1].content)
      w = mgr:resume(id, { last = 1 })
      w.messages[2] = { content = "m11" }
      assert.are.equal(2, mgr:save(w).version)
      local texts = raw.texts(id)
      assert.are.equal(11, #texts)
      assert.are.equal("not json {", texts[2])
      assert.are.equal("m11", agentsession.json.decode(texts[11]).content)
    end)

    it("a window saved after another process wrote is conflict and changes nothing", function()
      local mgr, uri = store.open()
      local id = saved(mgr, 5, "raced")
      local w = mgr:resume(id, { last = 2 })
      w.messages[3] = { content = "late" }
      local out = pair.run_one(uri, { "appendone", id })
      assert.truthy(out:find("DONE 1", 1, true), out)
      local before = snapshot(mgr)
      local err = error_of("conflict", mgr.save, mgr, w)
      assert.are.equal(id, err.id)
      assert_unchanged(mgr, before, "after a conflicting window save")
      assert.are.equal("child", mgr:resume(id, { last = 1 }).messages[1].from)
    end)

    it("a reader in another process never sees appended messages without their state", function()
      local mgr, uri = store.open()
      local id = mgr:save(agentsession.session{ id = "stateful" }).id
      local n = 300
      local started = stores.tmpdir() .. "/" .. store.name .. ".started"
      local out_w, out_r = pair.run(uri, { "stateappender", id, n, started }, { "statereader", id, n, started })
      assert.truthy(out_w:find("DONE " .. n, 1, true), out_w)
      local reads, versions = out_r:match("DONE (%d+) (%d+)")
      assert.truthy(reads, out_r)
      -- the reads overlapped the writes: they saw the session at several versions
      assert.is_true(tonumber(versions) >= 2, out_r)
      local s = mgr:resume(id)
      assert.are.equal(n, #s.messages)
      assert.are.same({ i = n }, s.state)
    end)
  end)
end

describe("redis: round trips of windows", function()
  after_each(close_all)

  it("resume{ last } and resume{ from } take one, a window's save two, append with a state one", function()
    local mgr = track((stores.new_redis()))
    local id = saved(mgr, 40, "trips")
    local function trips(fn)
      local before = mgr:stats().round_trips
      fn()
      return mgr:stats().round_trips - before
    end
    local w
    assert.are.equal(1, trips(function() w = mgr:resume(id, { last = 5 }) end))
    assert.are.equal(1, trips(function() mgr:resume(id, { from = 3, count = 2 }) end))
    w.messages[6] = { content = "m41" }
    assert.are.equal(2, trips(function() mgr:save(w) end))
    assert.are.equal(1, trips(function() mgr:append(id, { { content = "m42" } }, { state = { step = 2 } }) end))
    local s = mgr:resume(id)
    assert.are.equal(42, #s.messages)
    assert.are.same({ step = 2 }, s.state)
  end)
end)
