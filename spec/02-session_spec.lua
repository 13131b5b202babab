-- agentsession.session{...}: the defaults it fills, the fields it keeps, the
-- values it refuses; and agentsession.has_tag.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local deep = require("helpers.deep")

local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89abAB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local error_of = require("helpers.expect").error_of

local function is_empty_object(v)
  return type(v) == "table" and next(v) == nil and getmetatable(v) ~= agentsession.array_mt
end

describe("agentsession.session", function()
  describe("with no fields", function()
    local s

    before_each(function()
      s = agentsession.session({})
    end)

    it("has a metadata table, a messages array and a state", function()
      assert.is_table(s.metadata)
      assert.is_table(s.messages)
      assert.is_not_nil(s.state)
    end)

    it("gets a new UUID v4 id", function()
      assert.is_string(s.metadata.id)
      assert.is_truthy(s.metadata.id:match(UUID_V4), "not a UUID v4: " .. tostring(s.metadata.id))
    end)

    it("gets a different id on every call", function()
      local seen = {}
      for _ = 1, 100 do
        local id = agentsession.session({}).metadata.id
        assert.is_nil(seen[id], "id repeated: " .. id)
        seen[id] = true
      end
    end)

    it("has no name and an empty agent_name", function()
      assert.is_nil(s.metadata.name)
      assert.are.equal("", s.metadata.agent_name)
    end)

    it("has zero integer times and counts", function()
      for _, field in ipairs({ "created_at", "updated_at", "turn_count", "total_tokens" }) do
        assert.are.equal(0, s.metadata[field], field)
        deep.assert_integer(s.metadata[field], field)
      end
    end)

    it("has no tags and no messages", function()
      assert.is_table(s.metadata.tags)
      assert.is_nil(next(s.metadata.tags))
      assert.is_nil(next(s.messages))
    end)

    it("has an empty object as state", function()
      assert.is_true(is_empty_object(s.state))
    end)

    it("returns fresh tables on every call", function()
      s.metadata.tags[1] = "changed"
      s.messages[1] = "changed"
      s.state.changed = true
      local other = agentsession.session({})
      assert.is_nil(next(other.metadata.tags))
      assert.is_nil(next(other.messages))
      assert.is_true(is_empty_object(other.state))
    end)
  end)

  describe("with fields", function()
    it("keeps the given id, name, tags and agent_name", function()
      local s = agentsession.session({
        id = "my-id", name = "my-task", tags = { "production", "eu" }, agent_name = "code-agent",
      })
      assert.are.equal("my-id", s.metadata.id)
      assert.are.equal("my-task", s.metadata.name)
      assert.are.same({ "production", "eu" }, s.metadata.tags)
      assert.are.equal("code-agent", s.metadata.agent_name)
      assert.are.equal(0, s.metadata.created_at)
      assert.are.equal(0, s.metadata.turn_count)
    end)

    it("keeps the given messages and state", function()
      local s = agentsession.session({
        messages = { { role = "user", content = "hi" }, { role = "assistant", content = "hello" } },
        state = { cwd = "/home/user", depth = 3 },
      })
      assert.are.same({ { role = "user", content = "hi" }, { role = "assistant", content = "hello" } },
        s.messages)
      assert.are.same({ cwd = "/home/user", depth = 3 }, s.state)
    end)

    it("keeps a state that is not a table", function()
      assert.are.equal("text", agentsession.session({ state = "text" }).state)
      assert.are.equal(42, agentsession.session({ state = 42 }).state)
    end)
  end)

  describe("refuses", function()
    local bad = {
      { "a numeric id", { id = 5 }, "id" },
      { "a table id", { id = {} }, "id" },
      { "a numeric name", { name = 5 }, "name" },
      { "a boolean name", { name = true }, "name" },
      { "tags given as a string", { tags = "production" }, "tags" },
      { "a numeric tag", { tags = { "a", 5 } }, "tags" },
      { "a numeric agent_name", { agent_name = 5 }, "agent_name" },
      { "messages given as a string", { messages = "hello" }, "messages" },
      { "messages given as a number", { messages = 5 }, "messages" },
      { "a function as state", { state = print }, "state" },
      { "an unknown key", { bogus = 1 }, "bogus" },
      { "a misspelt key", { nmae = "x" }, "nmae" },
    }
    for _, row in ipairs(bad) do
      local what, fields, field = row[1], row[2], row[3]
      it(what .. " as invalid, naming the field", function()
        local err = error_of("invalid", agentsession.session, fields)
        assert.is_truthy(tostring(err.message):find(field, 1, true),
          "message does not name " .. field .. ": " .. tostring(err.message))
      end)
    end

    it("a non-table argument", function()
      assert.has_error(function() agentsession.session(5) end)
      assert.has_error(function() agentsession.session("x") end)
    end)
  end)

  for _, store in ipairs(stores) do
    describe("saved in " .. store.name, function()
      local mgr

      before_each(function()
        mgr = store.new()
      end)

      after_each(function()
        mgr:close()
      end)

      it("can be saved as it is and resumed", function()
        local s = agentsession.session({ name = "n", agent_name = "a", tags = { "t" },
          messages = { "m1", "m2" }, state = { k = "v" } })
        local meta = mgr:save(s)
        assert.are.equal(s.metadata.id, meta.id)
        local loaded = mgr:resume(s.metadata.id)
        assert.are.equal("n", loaded.metadata.name)
        assert.are.equal("a", loaded.metadata.agent_name)
        assert.are.same({ "t" }, loaded.metadata.tags)
        assert.are.same({ "m1", "m2" }, loaded.messages)
        assert.are.same({ k = "v" }, loaded.state)
      end)

      it("with defaults only can be saved and resumed", function()
        local s = agentsession.session({})
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert.is_nil(next(loaded.messages))
        assert.is_true(is_empty_object(loaded.state))
        assert.are.equal("", loaded.metadata.agent_name)
      end)
    end)
  end
end)

describe("agentsession.has_tag", function()
  local meta = agentsession.session({ tags = { "production", "eu-west" } }).metadata

  it("is true for a tag the metadata carries", function()
    assert.is_true(agentsession.has_tag(meta, "production"))
    assert.is_true(agentsession.has_tag(meta, "eu-west"))
  end)

  it("is false for a tag the metadata lacks", function()
    assert.is_false(agentsession.has_tag(meta, "staging"))
  end)

  it("matches whole tags only", function()
    assert.is_false(agentsession.has_tag(meta, "prod"))
    assert.is_false(agentsession.has_tag(meta, "eu"))
    assert.is_false(agentsession.has_tag(meta, "Production"))
  end)

  it("is false when there are no tags", function()
    assert.is_false(agentsession.has_tag(agentsession.session({}).metadata, "production"))
  end)
end)
