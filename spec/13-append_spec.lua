-- append and save with expect_version on every store (helpers.stores): the
-- messages, counts and versions an append writes, what it refuses, and the
-- version a write must find; and what only Redis shows of append: one round
-- trip whatever it does, the indexes it moves the session in, and every key
-- left as it was when it is refused. Then appends with an op_id on every
-- store, and where Redis and SQLite keep the op ids.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local stores = require("helpers.stores")
local error_of = require("helpers.expect").error_of
local managers = require("helpers.managers")
local track, close_all = managers.track, managers.close_all
local snapshot, assert_unchanged = managers.snapshot, managers.assert_unchanged
local rich = require("helpers.rich")
local interp = require("helpers.interp")
local assert_same, seed_of = rich.assert_same, rich.seed_of
local rich_messages, rich_session = rich.rich_messages, rich.rich_session

local copy = deep.copy
local array = agentsession.array

-- JSON equality: a non-empty array is an array with or without array_mt.
local function assert_json_same(expected, actual, what)
  deep.assert_same(expected, actual, { root = what or "value", metatables = "json" })
end

for _, store in ipairs(stores) do
  describe(store.name .. ":", function()
    local mgr
    before_each(function() mgr = track(store.new()) end)
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
        if interp.has_integers then
          assert.are.equal("float", math.type(r.messages[1].f))
        else
          -- numbers are doubles: the integral 1.0 is the number 1, written as 1
          assert.are.equal(1, r.messages[1].f)
          assert.truthy(mgr:export("a1"):find('"f":1[,}]'), "1.0 not written as 1")
        end
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
    if interp.has_integers then
      mgr:append("r", {}, { tokens = math.maxinteger - 1 })
      before = dump()
      error_of("invalid", mgr.append, mgr, "r", { 2 }, { tokens = 2 })
      assert.are.same(before, dump())
      assert.are.equal(tostring(math.maxinteger - 1), srv:cli("HGET", key("r", "meta"), "total_tokens"))
    else
      -- numbers are doubles: counts are exact up to 2^53, and a fractional count is invalid
      mgr:append("r", {}, { tokens = 2 ^ 53 - 1 })
      before = dump()
      error_of("invalid", mgr.append, mgr, "r", { 2 }, { tokens = 0.5 })
      assert.are.same(before, dump())
      assert.are.equal("9007199254740991", srv:cli("HGET", key("r", "meta"), "total_tokens"))
    end
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
-- Appends with an op_id: applied at most once per session, on every store;
-- then where each durable store keeps them, and that it keeps them bounded.

for _, store in ipairs(stores) do
  describe(store.name .. ": append with an op_id", function()
    local mgr
    before_each(function() mgr = track(store.new()) end)
    after_each(close_all)

    it("is applied once: sent again it changes nothing and returns false; another op_id applies", function()
      mgr:save(rich_session("o1"))
      local m1, applied = mgr:append("o1", { "first" }, { op_id = "op-1", tokens = 2 })
      assert.is_true(applied)
      local before = snapshot(mgr)
      local again, applied_again = mgr:append("o1", { "first" }, { op_id = "op-1", tokens = 2 })
      assert.is_false(applied_again)
      assert_same(m1, again, "the repeat's metadata")
      assert_unchanged(mgr, before, "after the repeat")
      local m2, applied2 = mgr:append("o1", { "second" }, { op_id = "op-2" })
      assert.is_true(applied2)
      assert.are.equal(m1.version + 1, m2.version)
      local r = mgr:resume("o1")
      assert.are.same({ "first", "second" }, { r.messages[#r.messages - 1], r.messages[#r.messages] })
      -- without an op_id, append says true as well
      assert.is_true(select(2, mgr:append("o1", { "third" })))
    end)

    it("records no op id when the append is refused, so a corrected retry applies", function()
      mgr:save(rich_session("o2"))
      local before = snapshot(mgr)
      error_of("conflict", mgr.append, mgr, "o2", { "x" }, { op_id = "op-r", expect_version = 5 })
      error_of("invalid", mgr.append, mgr, "o2", { "x", { f = print } }, { op_id = "op-r" })
      assert_unchanged(mgr, before, "after refused appends with an op_id")
      local meta, applied = mgr:append("o2", { "x" }, { op_id = "op-r", expect_version = 1 })
      assert.is_true(applied)
      assert.are.equal(2, meta.version)
    end)

    it("remembers every one of the last 100 op ids through 250 appends", function()
      mgr:save(agentsession.session{ id = "o3" })
      for i = 1, 250 do assert.is_true(select(2, mgr:append("o3", { i }, { op_id = "op-" .. i }))) end
      local before = snapshot(mgr)
      for i = 151, 250 do
        assert.is_false(select(2, mgr:append("o3", { i }, { op_id = "op-" .. i })), "op-" .. i)
      end
      assert_unchanged(mgr, before, "after sending the last 100 again")
      assert.are.equal(250, #mgr:resume("o3").messages)
    end)
  end)
end

describe("redis: append with an op_id", function()
  local srv, mgr, prefix
  before_each(function()
    srv = stores.redis_server()
    mgr, prefix = stores.new_redis()
  end)
  after_each(function() mgr:close() end)

  local function ops_key(id) return prefix .. "{" .. id .. "}:ops" end

  it("takes one round trip, applied or not, and keeps the last 100 in P{id}:ops, scored by version", function()
    mgr:save(agentsession.session{ id = "k" })
    mgr:resume("k")
    local before = mgr:stats().round_trips
    mgr:append("k", { 1 }, { op_id = "op-1" })
    mgr:append("k", { 1 }, { op_id = "op-1" })
    assert.are.equal(2, mgr:stats().round_trips - before)
    assert.are.equal("2", srv:cli("ZSCORE", ops_key("k"), "op-1"))
    for i = 2, 130 do mgr:append("k", { i }, { op_id = "op-" .. i }) end
    assert.are.equal("100", srv:cli("ZCARD", ops_key("k")))
    assert.are.equal("", srv:cli("ZSCORE", ops_key("k"), "op-30"))
    assert.are.equal("131", srv:cli("ZSCORE", ops_key("k"), "op-130"))
    -- the oldest is gone from the store: sent again, it applies
    assert.is_true(select(2, mgr:append("k", { 1 }, { op_id = "op-1" })))
  end)

  it("keeps them across managers and a save, and deletes them with the session", function()
    mgr:save(agentsession.session{ id = "d", messages = { "a" } })
    mgr:append("d", { "b" }, { op_id = "op-d" })
    local other = track(stores.new_redis({ prefix = prefix }))
    assert.is_false(select(2, other:append("d", { "b" }, { op_id = "op-d" })))
    other:save(other:resume("d"))
    assert.is_false(select(2, mgr:append("d", { "b" }, { op_id = "op-d" })))
    mgr:delete("d")
    assert.are.equal("0", srv:cli("EXISTS", ops_key("d")))
    assert.are.same({ prefix .. "seq" }, srv:keys(prefix .. "*"))
    close_all()
  end)

  it("is damage, changing nothing, when P{id}:ops holds another kind of value", function()
    mgr:save(agentsession.session{ id = "w", messages = { "a" } })
    srv:cli("SET", ops_key("w"), "not a set")
    local before = snapshot(mgr)
    local err = error_of("storage", mgr.append, mgr, "w", { "b" }, { op_id = "op-w" })
    assert.truthy(err.message:find("another kind of value", 1, true), err.message)
    assert_unchanged(mgr, before, "after an append on a damaged ops key")
  end)
end)

describe("sqlite: append with an op_id", function()
  local h = require("helpers.sqlite")
  after_each(close_all)

  -- How many op ids a session's row keeps (the digests in sessions.ops, 8 bytes each).
  local function kept(path, id)
    return h.value(path, "SELECT coalesce(length(ops), 0) / 8 FROM sessions WHERE id = '" .. id .. "'")
  end

  it("keeps the last 100 in the session's row, across managers, and none after a delete", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    mgr:save(agentsession.session{ id = "other" })
    mgr:save(agentsession.session{ id = "b" })
    mgr:append("other", { 1 }, { op_id = "op-1" })
    for i = 1, 300 do
      mgr:append("b", { i }, { op_id = "op-" .. i })
      if i % 7 == 0 then mgr:tag("b", "t" .. i) end -- other writes keep them
      assert.are.equal(math.min(i, 100), kept(path, "b"), "op ids kept after " .. i)
    end
    local again = track(agentsession.sqlite(path))
    for i = 201, 300 do assert.is_false(select(2, again:append("b", { i }, { op_id = "op-" .. i }))) end
    assert.is_true(select(2, again:append("b", { 200 }, { op_id = "op-200" })))
    assert.are.equal(1, kept(path, "other"))
    again:delete("b")
    -- a session made on the row id that was b's starts with none
    local rid = h.value(path, "SELECT max(rid) FROM sessions")
    again:save(agentsession.session{ id = "c" })
    assert.are.equal(rid + 1, h.value(path, "SELECT rid FROM sessions WHERE id = 'c'"))
    assert.are.equal(0, kept(path, "c"))
    assert.is_true(select(2, again:append("c", { 1 }, { op_id = "op-300" })))
  end)

  it("is damage, changing nothing, when the row's op ids are not digests", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    mgr:save(agentsession.session{ id = "d", messages = { "a" } })
    h.with_db(path, function(conn) h.exec(conn, "UPDATE sessions SET ops = x'0102030405' WHERE id = 'd'") end)
    local before = snapshot(mgr)
    local err = error_of("storage", mgr.append, mgr, "d", { "b" }, { op_id = "op-d" })
    assert.truthy(err.message:find("damaged store: column ops", 1, true), err.message)
    assert_unchanged(mgr, before, "after an append over damaged op ids")
    -- an append without an op id does not look at them
    assert.is_true(select(2, mgr:append("d", { "b" })))
  end)
end)
