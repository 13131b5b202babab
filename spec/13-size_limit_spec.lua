-- The size limit (max_session_bytes) at its very edge, on every store
-- (helpers.stores): exact for append, the same line for save, fork and
-- import, followed by every write that changes the size, and at the same
-- place on every store.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local error_of = require("helpers.expect").error_of
local managers = require("helpers.managers")
local track, close_all = managers.track, managers.close_all
local snapshot, assert_unchanged = managers.snapshot, managers.assert_unchanged
local rich = require("helpers.rich")
local assert_same = rich.assert_same

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
    local mid = math.floor((lo + hi) / 2)
    if fits(mgr, mid) then lo = mid else hi = mid end
  end
  return lo
end

---------------------------------------------------------------------------

for _, store in ipairs(stores) do
  describe(store.name .. ":", function()
    after_each(close_all)

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
        local half = math.floor(k / 2)
        error_of("too_large", small.append, small, EDGE, { string.rep("x", half), string.rep("y", half) })
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
