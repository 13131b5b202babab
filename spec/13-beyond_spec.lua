-- Beyond the seed: append, expect_version, export and import on every store
-- (helpers.stores), with the size limit at its very edge; exports moved from
-- every store to every other; and what only the shared stores show: two real
-- processes appending and racing on one session (SQLite and Redis), Redis's
-- single round trip and indexes for append, SQLite's migration from schema 2.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local deep = require("helpers.deep")
local h = require("helpers.sqlite")
local error_of = require("helpers.expect").error_of
local managers = require("helpers.managers")
local track, close_all = managers.track, managers.close_all
local snapshot, assert_unchanged = managers.snapshot, managers.assert_unchanged

local null = agentsession.null
local array = agentsession.array
local json = agentsession.json

-- Exact equality (number subtypes, float bits, array_mt), naming the first difference.
local function assert_same(expected, actual, what)
  deep.assert_same(expected, actual, { root = what or "value" })
end

-- JSON equality: a non-empty array is an array with or without array_mt.
local function assert_json_same(expected, actual, what)
  deep.assert_same(expected, actual, { root = what or "value", array_mt = true, metatables = "ignore" })
end

-- The seed's eight fields of a metadata table.
local SEED = { "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count", "total_tokens" }
local function seed_of(meta)
  local out = {}
  for _, f in ipairs(SEED) do out[f] = meta[f] end
  return out
end

local copy = deep.copy

-- Messages whose values must come back exactly: 64-bit integers, floats,
-- null, [] and {}, UTF-8 and NUL.
local function rich_messages(tag)
  return {
    { role = "user", content = "caf\u{e9} \u{1F600} " .. tag, n = math.maxinteger, f = 1.0 },
    { role = "assistant", content = null, calls = array({ { id = "c1", args = { depth = (1 << 53) + 1 } } }) },
    array(), {}, 0.1, -0.0, "a\0b", math.mininteger, true,
  }
end

local function rich_session(id, fields)
  local s = {
    metadata = { id = id, name = "rich " .. id, tags = { "t\u{e9}", "b" }, agent_name = "agent-\u{1F600}",
      created_at = 1700000000123, updated_at = 0, turn_count = 9, total_tokens = 4321 },
    messages = rich_messages(id),
    state = { cwd = "/home/\u{e9}", list = array(), object = {}, big = (1 << 62) + 3, half = 0.5, none = null },
  }
  for k, v in pairs(fields or {}) do
    if v == false then s.metadata[k] = nil else s.metadata[k] = v end -- false: unset
  end
  return s
end

---------------------------------------------------------------------------
-- The size limit at its edge. The size counted is the session's metadata (as
-- the core writes it, version and parent_id included), messages and state as
-- JSON; rather than computing it, the tests find the edge: the longest string
-- `k` that one append can add to a fixed base session, found with failing
-- appends (which change nothing) on fresh copies of the base.

local LIMIT = 2000
local EDGE = "edge"

-- The base session: every number in its metadata keeps its digit count over
-- the few writes the tests make (versions stay below 10).
local function edge_session(id, fields)
  local s = {
    metadata = { id = id or EDGE, name = "edge", tags = { "t" }, agent_name = "a", created_at = 1700000000000,
      updated_at = 0, turn_count = 1, total_tokens = 0 },
    messages = { "first" },
    state = { k = "v" },
  }
  for k, v in pairs(fields or {}) do s.metadata[k] = v end
  return s
end

-- A fresh base session EDGE at version 1.
local function fresh_base(mgr, fields)
  pcall(mgr.delete, mgr, EDGE)
  local meta = mgr:save(edge_session(EDGE, fields))
  assert.are.equal(1, meta.version)
  return meta
end

-- Does appending one string of k bytes to a fresh base fit?
local function fits(mgr, k)
  fresh_base(mgr)
  local ok, err = pcall(mgr.append, mgr, EDGE, { string.rep("x", k) })
  if ok then return true end
  assert.is_true(agentsession.is_error(err, "too_large"), "append of " .. k .. " bytes: " .. tostring(err))
  return false
end

-- The largest k that fits.
local function edge_of(mgr)
  local lo, hi = 0, LIMIT
  assert.is_true(fits(mgr, lo), "an append of an empty string to the base does not fit")
  assert.is_false(fits(mgr, hi), "an append of " .. hi .. " bytes fits under a limit of " .. LIMIT)
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if fits(mgr, mid) then lo = mid else hi = mid end
  end
  return lo
end

---------------------------------------------------------------------------

for _, store in ipairs(stores) do
  describe(store.name .. ":", function()
    local mgr

    before_each(function()
      mgr = track(store.new())
    end)
    after_each(close_all)

    describe("append", function()
      it("adds the messages in order, counting turns, tokens and versions", function()
        local s = rich_session("a1")
        mgr:save(s)
        local m1 = mgr:append("a1", { "one", { two = 2 } }, { tokens = 10 })
        local m2 = mgr:append("a1", { array({ 3 }) })
        local m3 = mgr:append("a1", {}, { tokens = 5 })
        assert.are.same({ 11, 4331, 2 }, { m1.turn_count, m1.total_tokens, m1.version })
        assert.are.same({ 12, 4331, 3 }, { m2.turn_count, m2.total_tokens, m2.version })
        assert.are.same({ 12, 4336, 4 }, { m3.turn_count, m3.total_tokens, m3.version })
        local r = mgr:resume("a1")
        assert_same(m3, r.metadata, "resume().metadata")
        local want = copy(rich_messages("a1"))
        for _, m in ipairs({ "one", { two = 2 }, array({ 3 }) }) do want[#want + 1] = m end
        assert_json_same(want, r.messages, "messages")
        assert.are.equal(agentsession.array_mt, getmetatable(r.messages[12]))
        assert.are.equal(agentsession.array_mt, getmetatable(r.messages[3]))
        assert.are_not.equal(agentsession.array_mt, getmetatable(r.messages[4]))
        assert.are.equal("float", math.type(r.messages[1].f))
        assert_same(copy(s.state), r.state, "state")
        assert.are.same(seed_of(mgr:list()[1]), seed_of(m3))
      end)

      it("is not_found for a missing id and invalid for bad messages, changing nothing", function()
        mgr:save(rich_session("a2"))
        local before = snapshot(mgr)
        assert.are.equal("missing", error_of("not_found", mgr.append, mgr, "missing", { 1 }).id)
        error_of("invalid", mgr.append, mgr, "a2", { role = "user" })
        error_of("invalid", mgr.append, mgr, "a2", { "fine", { f = print } })
        error_of("invalid", mgr.append, mgr, "a2", { "fine", 0 / 0 })
        error_of("invalid", mgr.append, mgr, "a2", { "x" }, { tokens = -1 })
        assert.has_error(function() mgr:append("a2", "not a table") end)
        assert_unchanged(mgr, before, "after refused appends")
      end)

      it("keeps expect_version: a match writes, anything else is conflict and changes nothing", function()
        mgr:save(rich_session("a3"))
        assert.are.equal(2, mgr:append("a3", { "x" }, { expect_version = 1 }).version)
        local before = snapshot(mgr)
        for _, v in ipairs({ 0, 1, 3 }) do
          local err = error_of("conflict", mgr.append, mgr, "a3", { "lost" }, { expect_version = v, tokens = 9 })
          assert.are.equal("a3", err.id)
        end
        assert_unchanged(mgr, before, "after conflicting appends")
        assert.are.equal(3, mgr:append("a3", { "y" }, { expect_version = 2 }).version)
      end)
    end)

    describe("save with expect_version", function()
      it("writes on a match and is conflict, changing nothing, otherwise", function()
        local s = rich_session("v1")
        assert.are.equal(1, mgr:save(s, { expect_version = 0 }).version)
        local before = snapshot(mgr)
        local changed = copy(s)
        changed.state = { lost = true }
        for _, v in ipairs({ 0, 2, 7 }) do error_of("conflict", mgr.save, mgr, changed, { expect_version = v }) end
        error_of("conflict", mgr.save, mgr, rich_session("v-new"), { expect_version = 1 })
        assert_unchanged(mgr, before, "after conflicting saves")
        assert.are.equal(2, mgr:save(changed, { expect_version = 1 }).version)
        assert_same({ lost = true }, mgr:resume("v1").state)
      end)
    end)

    describe("export and import", function()
      it("export writes the seed's document, and import in a fresh store gives the session back", function()
        local s = rich_session("e1")
        mgr:save(s)
        mgr:append("e1", { "appended" }, { tokens = 1 })
        local fork = mgr:fork("e1", nil, { at = 3 })
        mgr:save(rich_session("e2", { name = false }))
        local text = mgr:export("e1")
        local head = '{"metadata":{"id":"e1","name":"rich e1","tags":["t\u{e9}","b"],"agent_name":"agent-\u{1F600}",'
          .. '"created_at":1700000000123,"updated_at":' .. mgr:resume("e1").metadata.updated_at
          .. ',"turn_count":10,"total_tokens":4322},"messages":[{'
        assert.are.equal(head, text:sub(1, #head))
        local other = track(store.new())
        for _, id in ipairs({ "e1", fork.id, "e2" }) do
          local src = mgr:resume(id)
          local meta = other:import(mgr:export(id))
          local got = other:resume(id)
          assert_same(meta, got.metadata, id .. ": import() vs resume().metadata")
          assert_same(seed_of(src.metadata), seed_of(got.metadata), id .. ": metadata")
          assert.are.equal(1, got.metadata.version)
          assert.are.equal(src.metadata.parent_id, got.metadata.parent_id, id .. ": parent_id")
          assert_same(src.messages, got.messages, id .. ": messages")
          assert_same(src.state, got.state, id .. ": state")
        end
        assert.are.equal("e1", error_of("conflict", other.import, other, text).id)
        local replaced = other:import(text, { replace = true })
        assert.are.equal(2, replaced.version)
        error_of("invalid", other.import, other, text:sub(1, -2))
        error_of("invalid", other.import, other, (text:gsub('"total_tokens":', '"version":1,"total_tokens":')))
        error_of("not_found", mgr.export, mgr, "missing")
      end)

      it("export writes a fork's parent_id after the seed's eight fields, and import keeps it", function()
        mgr:save(rich_session("p1"))
        local fork = mgr:fork("p1", "child")
        local grandchild = mgr:fork(fork.id, nil, { at = 1 })
        local text = mgr:export(fork.id)
        local tail = '"total_tokens":' .. fork.total_tokens .. ',"parent_id":"p1"},"messages":['
        assert.is_truthy(text:find(tail, 1, true), text)
        assert.is_nil(mgr:export("p1"):find('"parent_id"', 1, true))
        local other = track(store.new())
        assert.are.equal("p1", other:import(text).parent_id)
        assert.are.equal("p1", other:resume(fork.id).metadata.parent_id)
        assert.are.equal(fork.id, other:import(mgr:export(grandchild.id)).parent_id)
        assert.are.same({ fork.id }, stores.ids(other:list{ parent_id = "p1" }))
        assert.are.same({ grandchild.id }, stores.ids(other:list{ parent_id = fork.id }))
        assert.is_nil(other:import(mgr:export("p1")).parent_id)
        assert.is_nil(other:resume("p1").metadata.parent_id)
        -- the lineage survives a second trip, and a replacing import of a document without parent_id drops it
        assert_same(json.decode(text), json.decode(other:export(fork.id)), "the fork's export after import")
        local orphan = text:gsub(',"parent_id":"p1"', "")
        assert.is_nil(other:import(orphan, { replace = true }).parent_id)
        assert.is_nil(other:resume(fork.id).metadata.parent_id)
        local with_null = text:gsub('"parent_id":"p1"', '"parent_id":null')
        assert.is_nil(other:import(with_null, { replace = true }).parent_id)
        assert.is_nil(other:resume(fork.id).metadata.parent_id)
      end)

      it("import refuses a bad parent_id, naming json.metadata.parent_id, and changes nothing", function()
        mgr:save(rich_session("p2"))
        local fork = mgr:fork("p2")
        local text = mgr:export(fork.id)
        local before = snapshot(mgr)
        for _, bad in ipairs({ '""', '"' .. string.rep("p", 256) .. '"', "5", "true", '["p2"]', '{}', '"a\\nb"',
          '"a\\u0000b"', '"a\u{85}"', '"a\u{7f}"', '"a\xc0\xaf"' }) do
          local doc = text:gsub('"parent_id":"p2"', function() return '"parent_id":' .. bad end)
          assert.are_not.equal(text, doc)
          for _, o in ipairs({ {}, { replace = true } }) do
            local err = error_of("invalid", mgr.import, mgr, doc, o)
            assert.are.equal("json.metadata.parent_id: ", err.message:sub(1, 25), bad .. ": " .. err.message)
          end
        end
        assert_unchanged(mgr, before, "after imports with a bad parent_id")
      end)
    end)

    describe("the size limit", function()
      local small

      before_each(function()
        small = track(store.new({ max_session_bytes = LIMIT }))
      end)

      it("is exact for append, and an append past it changes nothing", function()
        local k = edge_of(small)
        assert.is_true(k > 1000 and k < LIMIT, "edge at " .. k)
        -- one byte more: refused, nothing changed
        fresh_base(small)
        small:save(edge_session("other"))
        local before = snapshot(small)
        local err = error_of("too_large", small.append, small, EDGE, { string.rep("x", k + 1) }, { tokens = 3 })
        assert.are.equal(EDGE, err.id)
        error_of("too_large", small.append, small, EDGE, { string.rep("x", k // 2), string.rep("y", k // 2) })
        assert_unchanged(small, before, "after a too_large append")
        -- exactly at the limit: fits; then nothing more does, but an empty append
        local meta = small:append(EDGE, { string.rep("x", k) })
        assert.are.equal(2, meta.version)
        error_of("too_large", small.append, small, EDGE, { "" })
        error_of("too_large", small.append, small, EDGE, { 0 })
        assert.are.equal(3, small:append(EDGE, {}).version)
      end)

      it("save, fork and import draw the line where append does", function()
        local k = edge_of(small)
        -- save of the resumed session at the limit fits; one byte more does not
        fresh_base(small)
        small:append(EDGE, { string.rep("x", k) })
        local r = small:resume(EDGE)
        assert.are.equal(3, small:save(r).version)
        local before = snapshot(small)
        r.messages[2] = string.rep("x", k + 1)
        error_of("too_large", small.save, small, r)
        assert_unchanged(small, before, "after a too_large save")
        -- a new session of the same size: the same line
        local twin = edge_session("egde", { turn_count = 2 })
        twin.messages[2] = string.rep("x", k)
        assert.are.equal(1, small:save(twin).version)
        twin.metadata.id = "egdf"
        twin.messages[2] = string.rep("x", k + 1)
        error_of("too_large", small.save, small, twin)
        error_of("not_found", small.resume, small, "egdf")
        -- a fork of a session at the limit names its parent: one byte more, at least
        before = snapshot(small)
        error_of("too_large", small.fork, small, EDGE, "edge")
        assert_unchanged(small, before, "after a too_large fork")
        assert.are.equal(1, small:fork(EDGE, "edge", { at = 1 }).turn_count)
        -- import: the export of the session at the limit fits a store of that limit
        local doc = small:export(EDGE)
        local other = track(store.new({ max_session_bytes = LIMIT }))
        assert.are.equal(1, other:import(doc).version)
        local bigger = doc:gsub(string.rep("x", k), string.rep("x", k + 1), 1)
        error_of("too_large", other.import, other, bigger, { replace = true })
        assert.are.equal(1, other:resume(EDGE).metadata.version)
        other:delete(EDGE)
        error_of("too_large", other.import, other, bigger)
        error_of("not_found", other.resume, other, EDGE)
      end)

      it("follows every write that changes the size: rewind, rename, untag, tokens, turns, versions", function()
        local k = edge_of(small)
        -- rewind frees what it drops
        fresh_base(small)
        small:append(EDGE, { string.rep("x", k) })
        small:rewind(EDGE, 1)
        assert.are.equal(4, small:append(EDGE, { string.rep("x", k) }).version)
        -- a name one byte longer leaves one byte less
        fresh_base(small)
        small:rename(EDGE, "edge!")
        error_of("too_large", small.append, small, EDGE, { string.rep("x", k) })
        assert.are.equal(3, small:append(EDGE, { string.rep("x", k - 1) }).version)
        -- ["t"] -> [] leaves three bytes more
        fresh_base(small)
        small:untag(EDGE, "t")
        error_of("too_large", small.append, small, EDGE, { string.rep("x", k + 4) })
        small:append(EDGE, { string.rep("x", k + 3) })
        -- total_tokens 0 -> 100: two digits more
        fresh_base(small)
        small:append(EDGE, {}, { tokens = 100 })
        error_of("too_large", small.append, small, EDGE, { string.rep("x", k - 1) })
        small:append(EDGE, { string.rep("x", k - 2) })
        -- turn_count 9 -> 10: one digit more
        fresh_base(small, { turn_count = 9 })
        error_of("too_large", small.append, small, EDGE, { string.rep("x", k) })
        assert.are.equal(10, small:append(EDGE, { string.rep("x", k - 1) }).turn_count)
        -- version 9 -> 10: one digit more (tag with no tag is a write)
        fresh_base(small)
        for _ = 1, 8 do small:tag(EDGE, {}) end
        error_of("too_large", small.append, small, EDGE, { string.rep("x", k) })
        assert.are.equal(10, small:append(EDGE, { string.rep("x", k - 1) }).version)
      end)

      it("stops a run of small appends, and save agrees on where", function()
        fresh_base(small)
        local n = 0
        while true do
          local before = small:resume(EDGE)
          local ok, err = pcall(small.append, small, EDGE, { "xxxxxxxxxx" })
          if not ok then
            assert.is_true(agentsession.is_error(err, "too_large"), tostring(err))
            assert_same(before, small:resume(EDGE), "after the append that did not fit")
            break
          end
          n = n + 1
          assert.is_true(n < LIMIT, "no append was ever too_large")
        end
        assert.is_true(n > 50, n .. " appends fitted")
        local r = small:resume(EDGE)
        assert.are.equal(n + 1, #r.messages)
        assert.are.equal(n + 2, small:save(r).version)
        r = small:resume(EDGE)
        r.messages[#r.messages + 1] = "xxxxxxxxxx"
        r.metadata.turn_count = r.metadata.turn_count + 1
        error_of("too_large", small.save, small, r)
      end)
    end)
  end)
end

describe("the size limit", function()
  after_each(close_all)

  it("is at the same place on every store", function()
    local edges = {}
    for _, store in ipairs(stores) do edges[store.name] = edge_of(track(store.new({ max_session_bytes = LIMIT }))) end
    for _, store in ipairs(stores) do
      assert.are.equal(edges.memory, edges[store.name], store.name .. " (memory's edge is " .. edges.memory .. ")")
    end
  end)
end)

---------------------------------------------------------------------------

describe("exports move between stores", function()
  after_each(close_all)

  for _, from in ipairs(stores) do
    it("from " .. from.name .. " to every store", function()
      local src = track(from.new())
      src:save(rich_session("x1"))
      src:append("x1", { "appended", array() }, { tokens = 7 })
      src:save(rich_session("x2", { name = false, tags = {} }))
      local fork = src:fork("x1", "fork of x1", { at = 2 })
      local ids = { "x1", "x2", fork.id }
      local docs = {}
      for _, id in ipairs(ids) do docs[id] = src:export(id) end
      for _, to in ipairs(stores) do
        local dst = track(to.new())
        for _, id in ipairs(ids) do
          local where = from.name .. " -> " .. to.name .. ": " .. id
          local ok, err = pcall(dst.import, dst, docs[id])
          assert.is_true(ok, where .. ": " .. tostring(err))
          local a, b = src:resume(id), dst:resume(id)
          assert_same(seed_of(a.metadata), seed_of(b.metadata), where .. " metadata")
          assert.are.equal(a.metadata.parent_id, b.metadata.parent_id, where .. " parent_id")
          assert_same(a.messages, b.messages, where .. " messages")
          assert_same(a.state, b.state, where .. " state")
          assert_same(json.decode(docs[id]), json.decode(dst:export(id)), where .. " export")
        end
        assert.are.same({ fork.id, "x2", "x1" }, stores.ids(dst:list()))
        assert.are.same({ fork.id }, stores.ids(dst:list{ parent_id = "x1" }))
      end
    end)
  end
end)

---------------------------------------------------------------------------
-- Two real processes on one session.

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
  end)
end

---------------------------------------------------------------------------

describe("redis: append", function()
  local srv, mgr, prefix

  before_each(function()
    srv = stores.redis_server()
    mgr, prefix = stores.new_redis()
  end)
  after_each(function()
    mgr:close()
  end)

  local function trips(fn)
    local before = mgr:stats().round_trips
    fn()
    return mgr:stats().round_trips - before
  end

  local function key(id, suffix)
    return prefix .. "{" .. id .. "}:" .. suffix
  end

  -- The members of a sorted set naming session `id`, and their scores.
  local function entries(index, id)
    local out = srv:cli("ZRANGE", prefix .. index, "0", "-1", "WITHSCORES")
    local found = {}
    local lines = {}
    for line in (out .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    for i = 1, #lines - 1, 2 do
      if lines[i]:sub(17) == id then found[#found + 1] = { member = lines[i], score = lines[i + 1] } end
    end
    return found
  end

  -- The size the store keeps for a session: its state's text and each message's text plus one.
  local function stored_bytes(id)
    local n = #srv:cli("GET", key(id, "state"))
    local len = tonumber((srv:cli("LLEN", key(id, "msgs"))))
    for i = 0, len - 1 do n = n + #srv:cli("LINDEX", key(id, "msgs"), tostring(i)) + 1 end
    return n
  end

  it("takes one round trip, whatever it appends or refuses", function()
    local s = agentsession.session{ id = "rt", tags = { "a" }, messages = { 1, 2 } }
    mgr:save(s)
    mgr:resume("rt") -- a warm connection
    assert.are.equal(1, trips(function() mgr:append("rt", { "x" }) end))
    assert.are.equal(1, trips(function() mgr:append("rt", { "y" }, { tokens = 5, expect_version = 2 }) end))
    assert.are.equal(1, trips(function() mgr:append("rt", {}) end))
    local many = {}
    for i = 1, 2500 do many[i] = { i = i } end
    assert.are.equal(1, trips(function() mgr:append("rt", many) end))
    assert.are.equal(1, trips(function()
      error_of("conflict", mgr.append, mgr, "rt", { 1 }, { expect_version = 1 })
    end))
    assert.are.equal(1, trips(function() error_of("not_found", mgr.append, mgr, "gone", { 1 }) end))
    local r = mgr:resume("rt")
    assert.are.equal(2 + 2 + 2500, #r.messages)
    assert.are.same({ i = 2500 }, r.messages[#r.messages])
    assert.are.equal(5, r.metadata.version)
  end)

  it("moves the session in every index it is in, once, scored by its new updated_at", function()
    mgr:save(agentsession.session{ id = "src", tags = { "a" }, agent_name = "bot", messages = { 1 } })
    local fork = mgr:fork("src", "child").id
    mgr:tag(fork, { "a", "b" })
    mgr:save(agentsession.session{ id = "later", tags = { "a" }, agent_name = "bot" })
    local indexes = { "all", "tag:a", "tag:b", "agent:bot", "parent:src" }
    local old = entries("all", fork)[1].member
    local bytes_before = stored_bytes(fork)
    assert.are.equal(tostring(bytes_before), srv:cli("HGET", key(fork, "meta"), "bytes"))
    local meta = mgr:append(fork, { "x", { y = "é" } }, { tokens = 3 })
    local member = string.format("%016x", tonumber((srv:cli("HGET", key(fork, "meta"), "seq")))) .. fork
    assert.are_not.equal(old, member)
    for _, index in ipairs(indexes) do
      local found = entries(index, fork)
      assert.are.equal(1, #found, index)
      assert.are.equal(member, found[1].member, index)
      assert.are.equal(tostring(meta.updated_at), srv:cli("ZSCORE", prefix .. index, member), index)
      assert.are.equal("", srv:cli("ZSCORE", prefix .. index, old), index)
    end
    assert.are.same({ fork, "later", "src" }, stores.ids(mgr:list()))
    assert.are.same({ fork, "later", "src" }, stores.ids(mgr:list{ tag = "a" }))
    assert.are.same({ fork }, stores.ids(mgr:list{ parent_id = "src" }))
    assert.are.equal("3", srv:cli("ZCARD", prefix .. "all"))
    assert.are.equal("3", srv:cli("LLEN", key(fork, "msgs")))
    assert.are.equal(tostring(stored_bytes(fork)), srv:cli("HGET", key(fork, "meta"), "bytes"))
    assert.is_true(stored_bytes(fork) > bytes_before)
    assert.are.equal("3", srv:cli("HGET", key(fork, "meta"), "total_tokens"))
    assert.are.equal("3", srv:cli("HGET", key(fork, "meta"), "version"))
  end)

  it("leaves every key as it was when it is refused", function()
    mgr:save(agentsession.session{ id = "r", tags = { "a" }, messages = { 1 } })
    local function dump()
      local out = {}
      for _, k in ipairs(srv:keys(prefix .. "*")) do out[k] = srv:cli("DUMP", k) end
      return out
    end
    local before = dump()
    error_of("conflict", mgr.append, mgr, "r", { 2 }, { expect_version = 5, tokens = 1 })
    error_of("conflict", mgr.append, mgr, "r", { 2 }, { expect_version = 0 })
    assert.are.same(before, dump())
    mgr:append("r", {}, { tokens = math.maxinteger - 1 })
    before = dump()
    error_of("invalid", mgr.append, mgr, "r", { 2 }, { tokens = 2 })
    assert.are.same(before, dump())
    assert.are.equal(tostring(math.maxinteger - 1), srv:cli("HGET", key("r", "meta"), "total_tokens"))
  end)

  it("leaves every key as it was when the session would grow too large", function()
    local small, p = stores.new_redis({ max_session_bytes = 1000 })
    small:save(agentsession.session{ id = "big", tags = { "a" }, messages = { string.rep("x", 500) } })
    local function dump()
      local out = {}
      for _, k in ipairs(srv:keys(p .. "*")) do out[k] = srv:cli("DUMP", k) end
      return out
    end
    local before = dump()
    error_of("too_large", small.append, small, "big", { string.rep("y", 600) }, { tokens = 4 })
    assert.are.same(before, dump())
    small:close()
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

  it("is migrated to schema 3 on opening: bytes computed as the store writes them, sessions unchanged", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    for _, s in ipairs(h.sample_sessions("mig", 7)) do mgr:save(s) end
    mgr:append("mig-02", { { content = "appended \u{1F600}\u{e9}" }, "ñ" }, { tokens = 3 })
    mgr:save(rich_session("mig-rich"))
    mgr:fork("mig-rich", "fork \u{e9}", { at = 4 })
    mgr:save(agentsession.session{ id = "mig-empty", messages = {}, state = array() })
    local before = snapshot(mgr)
    local bytes = bytes_of(path)
    mgr:close()
    -- the store writes bytes as the schema defines them, unicode counted in bytes
    assert.are.same(bytes_by_definition(path), bytes)
    assert.is_true(bytes["mig-rich"] > 0)

    h.with_db(path, function(conn)
      h.exec(conn, "ALTER TABLE sessions DROP COLUMN bytes")
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
    table.sort(new_columns)
    assert.are.same(new_columns, columns(path))

    -- and it works as before: appends, size checks, reopening
    again:append("mig-rich", { "after the migration \u{e9}" }, { tokens = 1, expect_version = 1 })
    again:append("mig-empty", { {} })
    assert.are.same(bytes_by_definition(path), bytes_of(path))
    local r = again:resume("mig-rich")
    assert.are.equal("after the migration \u{e9}", r.messages[#r.messages])
    again:close()
    local third = track(agentsession.sqlite(path, { max_session_bytes = bytes["mig-rich"] + 600 }))
    error_of("too_large", third.append, third, "mig-rich", { string.rep("z", 600) })
    assert_same(r, third:resume("mig-rich"), "mig-rich after a too_large append")
    third:append("mig-rich", { "small" })
    assert.are.equal(h.USER_VERSION, h.value(path, "PRAGMA user_version"))
  end)
end)
