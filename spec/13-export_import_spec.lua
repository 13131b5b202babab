-- export and import on every store (helpers.stores): the seed's document, a
-- fork's parent_id after the seed's fields, what import refuses; and exports
-- moved from every store to every other.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local error_of = require("helpers.expect").error_of
local managers = require("helpers.managers")
local track, close_all = managers.track, managers.close_all
local snapshot, assert_unchanged = managers.snapshot, managers.assert_unchanged
local rich = require("helpers.rich")
local assert_same, seed_of = rich.assert_same, rich.seed_of
local rich_session = rich.rich_session

local array = agentsession.array
local json = agentsession.json

for _, store in ipairs(stores) do
  describe(store.name .. ":", function()
    local mgr
    before_each(function() mgr = track(store.new()) end)
    after_each(close_all)

    describe("export and import", function()
      it("export writes the seed's document, and import in a fresh store gives the session back", function()
        local s = rich_session("e1")
        mgr:save(s)
        mgr:append("e1", { "appended" }, { tokens = 1 })
        local fork = mgr:fork("e1", nil, { at = 3 })
        mgr:save(rich_session("e2", { name = false }))
        local text = mgr:export("e1")
        local head = '{"metadata":{"id":"e1","name":"rich e1","tags":["t\195\169","b"],'
          .. '"agent_name":"agent-\240\159\152\128","created_at":1700000000123,"updated_at":'
          .. mgr:resume("e1").metadata.updated_at
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
          '"a\\u0000b"', '"a\194\133"', '"a\127"', '"a\192\175"' }) do
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
  end)
end

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
