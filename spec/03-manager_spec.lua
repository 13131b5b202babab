-- The manager contract of API.md, rule by rule, on every store.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local deep = require("helpers.deep")
local interp = require("helpers.interp")

local null = agentsession.null
local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89abAB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- Wall-clock Unix milliseconds, rounded down (a lower bound) or up (an upper bound).
local has_system, system = pcall(require, "system")
local function clock_ms(round_up)
  if has_system then
    local ms = system.gettime() * 1000
    return round_up and math.ceil(ms) or math.floor(ms)
  end
  return round_up and (os.time() + 1) * 1000 or os.time() * 1000
end

local function assert_between(value, low, high, what)
  deep.assert_integer(value, what .. " is not an integer")
  assert.is_true(low <= value and value <= high,
    string.format("%s = %s, expected between %d and %d", what, tostring(value), low, high))
end

local error_of = require("helpers.expect").error_of

-- Exact equality: same types, same number subtypes and bits, same metatables.
local function assert_same(expected, actual, what)
  deep.assert_same(expected, actual, { root = what })
end

-- JSON equality: like assert_same, but an empty table is [] (array_mt) or {}
-- alike and other metatables are not compared.
local function assert_json_same(expected, actual, what)
  deep.assert_same(expected, actual, { root = what, metatables = "json" })
end

local deep_copy = deep.copy

local id_counter = 0
local function new_id()
  id_counter = id_counter + 1
  return string.format("spec03-%d-%d", id_counter, math.random(1, 1000000000))
end

local function make_session(fields)
  fields = fields or {}
  local s = {
    metadata = {
      id = new_id(), name = "my-task", tags = { "production" }, agent_name = "code-agent",
      created_at = 0, updated_at = 0, turn_count = 0, total_tokens = 0,
    },
    messages = { { role = "user", content = "hello" }, { role = "assistant", content = "hi" } },
    state = { cwd = "/home/user" },
  }
  for k, v in pairs(fields) do
    if k == "messages" or k == "state" then s[k] = v else s.metadata[k] = v end
  end
  return s
end

local function messages(n)
  local list = {}
  for i = 1, n do list[i] = { role = i % 2 == 1 and "user" or "assistant", content = "message " .. i } end
  return list
end

local ids_of = stores.ids

local function nested(depth)
  local v = {}
  for _ = 2, depth do v = { v } end
  return v
end

for _, store in ipairs(stores) do
  describe(store.name .. " manager", function()
    local mgr

    before_each(function()
      mgr = store.new()
    end)

    after_each(function()
      mgr:close()
    end)

    describe("save", function()
      it("returns the stored metadata", function()
        local s = make_session({ tags = { "a", "b" }, turn_count = 4, total_tokens = 1234 })
        local meta = mgr:save(s)
        assert.are.equal(s.metadata.id, meta.id)
        assert.are.equal("my-task", meta.name)
        assert.are.same({ "a", "b" }, meta.tags)
        assert.are.equal("code-agent", meta.agent_name)
        assert.are.equal(4, meta.turn_count)
        assert.are.equal(1234, meta.total_tokens)
        assert.are.equal(1, meta.version)
        assert.is_nil(meta.parent_id)
        assert_same(mgr:resume(s.metadata.id).metadata, meta, "metadata")
      end)

      it("returns metadata whose numbers are integers and whose tags are an array", function()
        local meta = mgr:save(make_session({ tags = {} }))
        for _, field in ipairs({ "created_at", "updated_at", "turn_count", "total_tokens", "version" }) do
          deep.assert_integer(meta[field], field)
        end
        assert.are.equal(agentsession.array_mt, getmetatable(meta.tags))
      end)

      it("sets updated_at to now", function()
        local before = clock_ms(false)
        local meta = mgr:save(make_session({ updated_at = 12345 }))
        local after = clock_ms(true)
        assert_between(meta.updated_at, before, after, "updated_at")
      end)

      it("sets created_at to now when it is 0", function()
        local before = clock_ms(false)
        local meta = mgr:save(make_session({ created_at = 0 }))
        local after = clock_ms(true)
        assert_between(meta.created_at, before, after, "created_at")
      end)

      it("sets created_at to now when it is nil", function()
        local s = make_session()
        s.metadata.created_at = nil
        local before = clock_ms(false)
        local meta = mgr:save(s)
        local after = clock_ms(true)
        assert_between(meta.created_at, before, after, "created_at")
      end)

      it("keeps a non-zero created_at as given", function()
        local meta = mgr:save(make_session({ created_at = 1000 }))
        assert.are.equal(1000, meta.created_at)
        assert.are.equal(1000, mgr:resume(meta.id).metadata.created_at)
      end)

      it("keeps the stored created_at when the id exists and 0 is given", function()
        local s = make_session({ created_at = 1000 })
        mgr:save(s)
        s.metadata.created_at = 0
        local meta = mgr:save(s)
        assert.are.equal(1000, meta.created_at)
        assert.are.equal(1000, mgr:resume(s.metadata.id).metadata.created_at)
      end)

      it("keeps the stored created_at when the id exists and nil is given", function()
        local s = make_session()
        local first = mgr:save(s)
        s.metadata.created_at = nil
        assert.are.equal(first.created_at, mgr:save(s).created_at)
      end)

      it("keeps a non-zero created_at given for an existing id", function()
        local s = make_session({ created_at = 1000 })
        mgr:save(s)
        s.metadata.created_at = 2000
        assert.are.equal(2000, mgr:save(s).created_at)
        assert.are.equal(2000, mgr:resume(s.metadata.id).metadata.created_at)
      end)

      it("replaces an existing id in place", function()
        local s = make_session()
        mgr:save(s)
        local other = mgr:save(make_session())
        s.metadata.name = "renamed"
        s.metadata.tags = { "x" }
        s.messages = { "only" }
        s.state = { step = 2 }
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert.are.equal("renamed", loaded.metadata.name)
        assert.are.same({ "x" }, loaded.metadata.tags)
        assert_json_same({ "only" }, loaded.messages, "messages")
        assert_json_same({ step = 2 }, loaded.state, "state")
        local list = mgr:list()
        assert.are.equal(2, #list)
        assert.are.same({ s.metadata.id, other.id }, ids_of(list))
      end)

      it("does not modify the caller's table", function()
        local s = make_session({ tags = { "b", "a", "b" }, created_at = 0, updated_at = 0, version = 7 })
        s.messages = { { role = "user", content = "x", n = 1, f = 1.5 }, agentsession.array(), {}, null }
        s.state = { nested = { list = { 1, 2, 3 } } }
        local snapshot = deep_copy(s)
        local inner = s.messages[1]
        mgr:save(s)
        assert_same(snapshot, s, "session")
        assert.are.equal(inner, s.messages[1])
        mgr:save(s)
        assert_same(snapshot, s, "session")
      end)

      it("drops repeated tags keeping first occurrences", function()
        local s = make_session({ tags = { "x", "y", "x", "z", "y" } })
        assert.are.same({ "x", "y", "z" }, mgr:save(s).tags)
        assert.are.same({ "x", "y", "z" }, mgr:resume(s.metadata.id).metadata.tags)
      end)

      it("treats nil messages as none and nil state as an empty object", function()
        local s = make_session()
        s.messages, s.state = nil, nil
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert.is_nil(next(loaded.messages))
        assert.are.equal(agentsession.array_mt, getmetatable(loaded.messages))
        assert.are.equal("table", type(loaded.state))
        assert.is_nil(next(loaded.state))
        assert.are_not.equal(agentsession.array_mt, getmetatable(loaded.state))
      end)

      it("ignores a version given in the metadata", function()
        local s = make_session({ version = 42 })
        assert.are.equal(1, mgr:save(s).version)
        s.metadata.version = 1
        assert.are.equal(2, mgr:save(s).version)
      end)

      it("accepts a message nested 128 levels deep", function()
        local s = make_session({ messages = { nested(128) } })
        mgr:save(s)
        assert_json_same({ nested(128) }, mgr:resume(s.metadata.id).messages, "messages")
      end)
    end)

    describe("resume", function()
      it("returns a session equal to the one saved", function()
        local s = make_session({ tags = { "a", "b" }, turn_count = 2, total_tokens = 99 })
        local meta = mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert_same(meta, loaded.metadata, "metadata")
        assert_json_same(s.messages, loaded.messages, "messages")
        assert_json_same(s.state, loaded.state, "state")
        local keys = {}
        for k in pairs(loaded) do keys[#keys + 1] = k end
        table.sort(keys)
        assert.are.same({ "messages", "metadata", "state" }, keys)
      end)

      it("returns an independent table: changing it does not change the store", function()
        local s = make_session()
        mgr:save(s)
        local first = mgr:resume(s.metadata.id)
        local expected = deep_copy(first)
        first.metadata.name = "changed"
        first.metadata.tags[1] = "changed"
        first.metadata.turn_count = 99
        first.messages[1].content = "changed"
        first.messages[3] = "added"
        first.state.cwd = "/changed"
        assert_same(expected, mgr:resume(s.metadata.id), "session")
      end)

      it("returns different tables on each call", function()
        local s = make_session()
        mgr:save(s)
        local a, b = mgr:resume(s.metadata.id), mgr:resume(s.metadata.id)
        assert.is_false(rawequal(a, b))
        assert.is_false(rawequal(a.metadata, b.metadata))
        assert.is_false(rawequal(a.metadata.tags, b.metadata.tags))
        assert.is_false(rawequal(a.messages, b.messages))
        assert.is_false(rawequal(a.messages[1], b.messages[1]))
        assert.is_false(rawequal(a.state, b.state))
        assert_same(a, b, "session")
      end)

      it("returns messages and state of every JSON kind exactly", function()
        -- the 64-bit extremes and 2^53 + 1 where Lua has integers, else 2^53, -2^53 and 2^53 - 1;
        -- -0.0 made at run time, as Lua 5.1 merges the constants 0 and -0.0 of a function
        local big = interp.has_integers and { math.maxinteger, math.mininteger, 9007199254740993 }
          or { 2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1 }
        local values = {
          0, 1, -1, 42, big[1], big[2], big[3],
          1.0, 0.1, -2.5, 1e300, 5e-324, 2.0 ^ 63, 1 / 3, math.pi, -1 / math.huge,
          "", "plain", "héllo wörld", "😀 \244\143\191\191", "a\0b", "quote \" backslash \\ slash /",
          "\n\r\t\b\f\1\31", string.rep("long ", 2000),
          true, false, null,
          agentsession.array(), {},
          { 1, null, 3 },
          { role = "user", content = { { type = "text", text = "hi" } }, meta = { ok = true, none = null } },
          { empty_list = agentsession.array(), empty_object = {}, float = 2.0, int = 2 },
        }
        local state = { values = values, count = #values, ratio = 0.5, flag = false, nothing = null }
        local s = make_session({ messages = values, state = state })
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert.are.equal(#values, #loaded.messages)
        assert_json_same(values, loaded.messages, "messages")
        assert_json_same(state, loaded.state, "state")
        deep.assert_integer(loaded.messages[2])
        assert.are.equal(big[1], loaded.messages[5])
        assert.are.equal(big[2], loaded.messages[6])
        assert.are.equal(big[3], loaded.messages[7])
        if interp.has_integers then
          assert.are.equal("float", math.type(loaded.messages[8]))
        else
          assert.are.equal("1", agentsession.json.encode(loaded.messages[8])) -- 1.0 is the number 1
        end
        assert.are.equal(0.1, loaded.messages[9])
        assert.are.equal(-math.huge, 1 / loaded.messages[16])
        assert.is_true(rawequal(null, loaded.messages[27]))
        assert.are.equal(agentsession.array_mt, getmetatable(loaded.messages[28]))
        assert.is_nil(next(loaded.messages[28]))
        assert.are_not.equal(agentsession.array_mt, getmetatable(loaded.messages[29]))
        assert.is_nil(next(loaded.messages[29]))
        assert.is_true(rawequal(null, loaded.messages[30][2]))
        assert.are.equal(agentsession.array_mt, getmetatable(loaded.state.values))
        assert.is_true(rawequal(null, loaded.state.nothing))
      end)

      it("with {last = 0} returns no messages but the stored state and metadata", function()
        local state = { cwd = "/work", step = 3, ratio = 0.25, list = { 1, "two", null }, nested = { ok = true } }
        local s = make_session({ messages = messages(4), state = state, turn_count = 4, tags = { "a", "b" } })
        local meta = mgr:save(s)
        local loaded = mgr:resume(s.metadata.id, { last = 0 })
        assert.is_nil(next(loaded.messages))
        assert.are.equal(agentsession.array_mt, getmetatable(loaded.messages))
        assert_json_same(state, loaded.state, "state")
        assert_same(meta, loaded.metadata, "metadata")
        -- and a session saved without a state gives the empty object
        local bare = make_session()
        bare.state = nil
        mgr:save(bare)
        local empty = mgr:resume(bare.metadata.id, { last = 0 }).state
        assert.are.equal("table", type(empty))
        assert.is_nil(next(empty))
        assert.are_not.equal(agentsession.array_mt, getmetatable(empty))
      end)
    end)

    describe("list", function()
      it("returns an empty array when there are no sessions", function()
        local list = mgr:list()
        assert.are.equal("table", type(list))
        assert.is_nil(next(list))
      end)

      it("returns an array of metadata equal to what resume gives", function()
        local a = mgr:save(make_session())
        local list = mgr:list()
        assert.are.equal(agentsession.array_mt, getmetatable(list))
        assert.are.equal(1, #list)
        assert_same(a, list[1], "list[1]")
        assert_same(mgr:resume(a.id).metadata, list[1], "list[1]")
      end)

      it("puts the most recently updated first, ties to the most recent write", function()
        local saved = {}
        for i = 1, 200 do
          saved[i] = mgr:save(make_session({ messages = { i } })).id
        end
        local expected = {}
        for i = 200, 1, -1 do expected[#expected + 1] = saved[i] end
        local list = mgr:list()
        assert.are.same(expected, ids_of(list))
        for i = 2, #list do
          assert.is_true(list[i - 1].updated_at >= list[i].updated_at)
        end
      end)

      it("moves a session to the front when it is written again", function()
        local a = mgr:save(make_session()).id
        local b = mgr:save(make_session()).id
        local c = mgr:save(make_session()).id
        mgr:save(mgr:resume(a))
        assert.are.same({ a, c, b }, ids_of(mgr:list()))
        mgr:tag(b, "t")
        assert.are.same({ b, a, c }, ids_of(mgr:list()))
        mgr:rename(c, "new name")
        assert.are.same({ c, b, a }, ids_of(mgr:list()))
        mgr:rewind(a, 1)
        assert.are.same({ a, c, b }, ids_of(mgr:list()))
        mgr:untag(b, "t")
        assert.are.same({ b, a, c }, ids_of(mgr:list()))
      end)

      describe("filters", function()
        local s1, s2, s3, s4

        before_each(function()
          s1 = mgr:save(make_session({ tags = { "a", "b" }, agent_name = "x" })).id
          s2 = mgr:save(make_session({ tags = { "a" }, agent_name = "y" })).id
          s3 = mgr:save(make_session({ tags = { "b" }, agent_name = "x" })).id
          s4 = mgr:save(make_session({ tags = {}, agent_name = "x" })).id
        end)

        it("with no filter or an empty one return all", function()
          assert.are.same({ s4, s3, s2, s1 }, ids_of(mgr:list()))
          assert.are.same({ s4, s3, s2, s1 }, ids_of(mgr:list({})))
        end)

        it("by tag", function()
          assert.are.same({ s2, s1 }, ids_of(mgr:list({ tag = "a" })))
          assert.are.same({ s3, s1 }, ids_of(mgr:list({ tag = "b" })))
          assert.are.same({}, ids_of(mgr:list({ tag = "missing" })))
        end)

        it("by tags, all of them", function()
          assert.are.same({ s1 }, ids_of(mgr:list({ tags = { "a", "b" } })))
          assert.are.same({ s1 }, ids_of(mgr:list({ tags = { "b", "a" } })))
          assert.are.same({ s2, s1 }, ids_of(mgr:list({ tags = { "a" } })))
          assert.are.same({}, ids_of(mgr:list({ tags = { "a", "missing" } })))
        end)

        it("by agent_name", function()
          assert.are.same({ s4, s3, s1 }, ids_of(mgr:list({ agent_name = "x" })))
          assert.are.same({ s2 }, ids_of(mgr:list({ agent_name = "y" })))
          assert.are.same({}, ids_of(mgr:list({ agent_name = "" })))
        end)

        it("by limit", function()
          assert.are.same({ s4, s3 }, ids_of(mgr:list({ limit = 2 })))
          assert.are.same({ s4, s3, s2, s1 }, ids_of(mgr:list({ limit = 10 })))
        end)

        it("by offset", function()
          assert.are.same({ s3, s2, s1 }, ids_of(mgr:list({ offset = 1 })))
          assert.are.same({}, ids_of(mgr:list({ offset = 4 })))
          assert.are.same({}, ids_of(mgr:list({ offset = 100 })))
        end)

        it("by limit and offset", function()
          assert.are.same({ s3, s2 }, ids_of(mgr:list({ limit = 2, offset = 1 })))
          assert.are.same({ s1 }, ids_of(mgr:list({ limit = 2, offset = 3 })))
        end)

        it("combined, with limit and offset applied after the other filters", function()
          assert.are.same({ s3, s1 }, ids_of(mgr:list({ agent_name = "x", tag = "b" })))
          assert.are.same({ s3 }, ids_of(mgr:list({ agent_name = "x", tag = "b", limit = 1 })))
          assert.are.same({ s1 }, ids_of(mgr:list({ agent_name = "x", tag = "b", offset = 1 })))
          assert.are.same({ s1 }, ids_of(mgr:list({ agent_name = "x", tags = { "a", "b" } })))
          assert.are.same({}, ids_of(mgr:list({ agent_name = "y", tag = "b" })))
        end)

        it("with limit 0 return nothing", function()
          local list = mgr:list({ limit = 0 })
          assert.are.equal("table", type(list))
          assert.is_nil(next(list))
        end)

        it("by two or more tags, with limit and offset counted among the sessions having them all", function()
          -- saved oldest first; the ones with only one of the tags come in between
          local both = {}
          for i = 1, 5 do
            both[i] = mgr:save(make_session({ tags = { "p", "q", "r" .. i } })).id
            mgr:save(make_session({ tags = { i % 2 == 0 and "p" or "q" } }))
          end
          assert.are.same({ both[5], both[4], both[3], both[2], both[1] }, ids_of(mgr:list({ tags = { "p", "q" } })))
          assert.are.same({ both[4], both[3] }, ids_of(mgr:list({ tags = { "p", "q" }, limit = 2, offset = 1 })))
          assert.are.same({ both[4], both[3] }, ids_of(mgr:list({ tags = { "q", "p" }, limit = 2, offset = 1 })))
          assert.are.same({ both[2], both[1] }, ids_of(mgr:list({ tags = { "p", "q" }, limit = 5, offset = 3 })))
          assert.are.same({ both[5] }, ids_of(mgr:list({ tags = { "p", "q" }, limit = 1 })))
          assert.are.same({}, ids_of(mgr:list({ tags = { "p", "q" }, offset = 5 })))
          assert.are.same({ both[3] }, ids_of(mgr:list({ tags = { "p", "q", "r3" }, limit = 1 })))
          assert.are.same({ both[3], both[2] },
            ids_of(mgr:list({ tags = { "p", "q" }, agent_name = "code-agent", limit = 2, offset = 2 })))
        end)

        it("by 1200 tags: only the session having every one of them", function()
          local all, but_last, but_first, reversed = {}, {}, {}, {}
          for i = 1, 1200 do
            all[i] = "t" .. i
            reversed[1201 - i] = all[i]
            if i < 1200 then but_last[i] = all[i] end
            if i > 1 then but_first[i - 1] = all[i] end
          end
          local early = mgr:save(make_session({ tags = but_last })).id
          local full = mgr:save(make_session({ tags = all })).id
          local late = mgr:save(make_session({ tags = but_first })).id
          mgr:save(make_session({ tags = { "t1", "t1200" } }))
          assert.are.same({ full }, ids_of(mgr:list({ tags = all })))
          assert.are.same({ full }, ids_of(mgr:list({ tags = reversed })))
          assert.are.same({ full }, ids_of(mgr:list({ tags = all, limit = 1 })))
          assert.are.same({}, ids_of(mgr:list({ tags = all, offset = 1 })))
          assert.are.same({ late, full }, ids_of(mgr:list({ tags = but_first })))
          assert.are.same({ full, early }, ids_of(mgr:list({ tags = but_last })))
          assert.are.equal(1200, #mgr:list({ tags = all })[1].tags)
        end)
      end)
    end)

    it("has_tag works on listed metadata", function()
      mgr:save(make_session({ tags = { "production", "eu" } }))
      local meta = mgr:list()[1]
      assert.is_true(agentsession.has_tag(meta, "eu"))
      assert.is_false(agentsession.has_tag(meta, "us"))
    end)

    describe("fork", function()
      local source

      before_each(function()
        source = make_session({ tags = { "a", "b" }, turn_count = 4, total_tokens = 500,
          created_at = 1000, messages = messages(4), state = { cwd = "/src", n = 1 } })
        mgr:save(source)
      end)

      it("gives the copy a new UUID v4", function()
        local meta = mgr:fork(source.metadata.id, "copy")
        assert.are_not.equal(source.metadata.id, meta.id)
        assert.is_truthy(meta.id:match(UUID_V4), "not a UUID v4: " .. meta.id)
        assert.are_not.equal(meta.id, mgr:fork(source.metadata.id, "copy").id)
      end)

      it("uses the given name", function()
        local meta = mgr:fork(source.metadata.id, "experiment-branch")
        assert.are.equal("experiment-branch", meta.name)
        assert.are.equal("experiment-branch", mgr:resume(meta.id).metadata.name)
      end)

      it("names the copy '<name> (fork)' when no name is given", function()
        local meta = mgr:fork(source.metadata.id)
        assert.are.equal("my-task (fork)", meta.name)
        assert.are.equal("my-task (fork)", mgr:resume(meta.id).metadata.name)
      end)

      it("leaves the copy unnamed when neither a name is given nor the source has one", function()
        local unnamed = make_session()
        unnamed.metadata.name = nil
        mgr:save(unnamed)
        local meta = mgr:fork(unnamed.metadata.id)
        assert.is_nil(meta.name)
        assert.is_nil(mgr:resume(meta.id).metadata.name)
      end)

      it("uses the given name when the source is unnamed", function()
        local unnamed = make_session()
        unnamed.metadata.name = nil
        mgr:save(unnamed)
        assert.are.equal("given", mgr:fork(unnamed.metadata.id, "given").name)
      end)

      it("copies messages, state, tags, agent_name and counts", function()
        local meta = mgr:fork(source.metadata.id, "copy")
        local original = mgr:resume(source.metadata.id)
        local copy = mgr:resume(meta.id)
        assert_same(original.messages, copy.messages, "messages")
        assert_same(original.state, copy.state, "state")
        assert_same(original.metadata.tags, copy.metadata.tags, "tags")
        assert.are.equal("code-agent", copy.metadata.agent_name)
        assert.are.equal(4, copy.metadata.turn_count)
        assert.are.equal(500, copy.metadata.total_tokens)
      end)

      it("returns the stored metadata of the copy", function()
        local meta = mgr:fork(source.metadata.id, "copy")
        assert_same(mgr:resume(meta.id).metadata, meta, "metadata")
        assert.are.equal(1, meta.version)
      end)

      it("sets created_at and updated_at of the copy to now", function()
        local before = clock_ms(false)
        local meta = mgr:fork(source.metadata.id)
        local after = clock_ms(true)
        assert_between(meta.created_at, before, after, "created_at")
        assert.are.equal(meta.created_at, meta.updated_at)
      end)

      it("records the source id as parent_id", function()
        local meta = mgr:fork(source.metadata.id)
        assert.are.equal(source.metadata.id, meta.parent_id)
        assert.is_nil(mgr:resume(source.metadata.id).metadata.parent_id)
        local grandchild = mgr:fork(meta.id)
        assert.are.equal(meta.id, grandchild.parent_id)
      end)

      it("leaves the source untouched", function()
        local before = mgr:resume(source.metadata.id)
        mgr:fork(source.metadata.id, "copy")
        assert_same(before, mgr:resume(source.metadata.id), "source")
      end)

      it("is independent of the source afterwards", function()
        local meta = mgr:fork(source.metadata.id, "copy")
        local source_before = mgr:resume(source.metadata.id)
        local copy = mgr:resume(meta.id)
        copy.messages[#copy.messages + 1] = "only in the copy"
        copy.state.cwd = "/copy"
        mgr:save(copy)
        assert_same(source_before, mgr:resume(source.metadata.id), "source")

        local copy_before = mgr:resume(meta.id)
        local original = mgr:resume(source.metadata.id)
        original.messages = { "only in the source" }
        mgr:save(original)
        mgr:tag(source.metadata.id, "source-only")
        assert_same(copy_before, mgr:resume(meta.id), "copy")
      end)

      it("with {at = k} keeps the first k messages", function()
        local source_before = mgr:resume(source.metadata.id)
        local meta = mgr:fork(source.metadata.id, "early", { at = 2 })
        assert.are.equal(2, meta.turn_count)
        assert.are.equal("early", meta.name)
        local copy = mgr:resume(meta.id)
        assert_json_same({ source.messages[1], source.messages[2] }, copy.messages, "messages")
        assert_same(source_before, mgr:resume(source.metadata.id), "source")
      end)

      it("with {at = k} beyond the history keeps every message", function()
        local meta = mgr:fork(source.metadata.id, nil, { at = 10 })
        assert.are.equal(4, meta.turn_count)
        assert.are.equal("my-task (fork)", meta.name)
        assert_json_same(source.messages, mgr:resume(meta.id).messages, "messages")
      end)

      it("with {at = 0} keeps no message", function()
        local meta = mgr:fork(source.metadata.id, nil, { at = 0 })
        assert.are.equal(0, meta.turn_count)
        assert.is_nil(next(mgr:resume(meta.id).messages))
      end)
    end)

    describe("rewind", function()
      local id

      before_each(function()
        id = mgr:save(make_session({ messages = messages(5), turn_count = 7 })).id
      end)

      it("keeps the first k messages (rewind(id, 3) keeps 3) and returns the session", function()
        local before = clock_ms(false)
        local rewound = mgr:rewind(id, 3)
        local after = clock_ms(true)
        assert_json_same(messages(3), rewound.messages, "messages")
        assert.are.equal(3, rewound.metadata.turn_count)
        assert_between(rewound.metadata.updated_at, before, after, "updated_at")
        assert_same(mgr:resume(id), rewound, "session")
      end)

      it("keeps state, tags, name and created_at", function()
        local original = mgr:resume(id)
        local rewound = mgr:rewind(id, 2)
        assert_same(original.state, rewound.state, "state")
        assert_same(original.metadata.tags, rewound.metadata.tags, "tags")
        assert.are.equal(original.metadata.name, rewound.metadata.name)
        assert.are.equal(original.metadata.created_at, rewound.metadata.created_at)
      end)

      it("beyond the history keeps every message", function()
        local rewound = mgr:rewind(id, 10)
        assert_json_same(messages(5), rewound.messages, "messages")
        assert.are.equal(5, rewound.metadata.turn_count)
        assert_json_same(messages(5), mgr:resume(id).messages, "messages")
      end)

      it("to 0 keeps no message", function()
        local rewound = mgr:rewind(id, 0)
        assert.is_nil(next(rewound.messages))
        assert.are.equal(agentsession.array_mt, getmetatable(rewound.messages))
        assert.are.equal(0, rewound.metadata.turn_count)
        assert.is_nil(next(mgr:resume(id).messages))
      end)

      it("accepts an integral float", function()
        assert.are.equal(2, #mgr:rewind(id, 2.0).messages)
      end)
    end)

    describe("tag", function()
      local id

      before_each(function()
        id = mgr:save(make_session({ tags = { "a" } })).id
      end)

      it("appends a missing tag given as a string", function()
        local tags = mgr:tag(id, "b")
        assert.are.same({ "a", "b" }, tags)
        assert.are.equal(agentsession.array_mt, getmetatable(tags))
        assert.are.same({ "a", "b" }, mgr:resume(id).metadata.tags)
      end)

      it("appends missing tags given as an array, keeping order and dropping repeats", function()
        assert.are.same({ "a", "c", "b", "d" }, mgr:tag(id, { "c", "a", "b", "c", "d" }))
        assert.are.same({ "a", "c", "b", "d" }, mgr:resume(id).metadata.tags)
      end)

      it("leaves present tags as they are", function()
        assert.are.same({ "a" }, mgr:tag(id, "a"))
        assert.are.same({ "a" }, mgr:tag(id, {}))
        assert.are.same({ "a" }, mgr:resume(id).metadata.tags)
      end)

      it("sets updated_at to now", function()
        local before = clock_ms(false)
        mgr:tag(id, "b")
        local after = clock_ms(true)
        assert_between(mgr:resume(id).metadata.updated_at, before, after, "updated_at")
      end)
    end)

    describe("untag", function()
      local id

      before_each(function()
        id = mgr:save(make_session({ tags = { "a", "b", "c", "d" } })).id
      end)

      it("removes a tag given as a string and returns the rest", function()
        local tags = mgr:untag(id, "b")
        assert.are.same({ "a", "c", "d" }, tags)
        assert.are.equal(agentsession.array_mt, getmetatable(tags))
        assert.are.same({ "a", "c", "d" }, mgr:resume(id).metadata.tags)
      end)

      it("removes tags given as an array, ignoring absent ones", function()
        assert.are.same({ "b", "d" }, mgr:untag(id, { "c", "missing", "a" }))
        assert.are.same({ "b", "d" }, mgr:resume(id).metadata.tags)
      end)

      it("can remove every tag", function()
        local tags = mgr:untag(id, { "a", "b", "c", "d" })
        assert.is_nil(next(tags))
        assert.are.equal(agentsession.array_mt, getmetatable(tags))
        assert.is_nil(next(mgr:resume(id).metadata.tags))
      end)

      it("sets updated_at to now", function()
        local before = clock_ms(false)
        mgr:untag(id, "a")
        local after = clock_ms(true)
        assert_between(mgr:resume(id).metadata.updated_at, before, after, "updated_at")
      end)
    end)

    describe("rename", function()
      it("sets the name and returns nothing", function()
        local id = mgr:save(make_session()).id
        local before = clock_ms(false)
        local result = mgr:rename(id, "final-delivery")
        local after = clock_ms(true)
        assert.is_nil(result)
        local meta = mgr:resume(id).metadata
        assert.are.equal("final-delivery", meta.name)
        assert_between(meta.updated_at, before, after, "updated_at")
      end)

      it("names an unnamed session", function()
        local s = make_session()
        s.metadata.name = nil
        mgr:save(s)
        mgr:rename(s.metadata.id, "named")
        assert.are.equal("named", mgr:resume(s.metadata.id).metadata.name)
      end)
    end)

    describe("delete", function()
      it("removes the session and returns nothing", function()
        local keep = mgr:save(make_session()).id
        local gone = mgr:save(make_session()).id
        assert.is_nil(mgr:delete(gone))
        error_of("not_found", mgr.resume, mgr, gone)
        assert.are.same({ keep }, ids_of(mgr:list()))
        assert.are.equal(keep, mgr:resume(keep).metadata.id)
      end)

      it("lets the id be saved again", function()
        local s = make_session()
        mgr:save(s)
        mgr:delete(s.metadata.id)
        s.messages = { "again" }
        mgr:save(s)
        assert_json_same({ "again" }, mgr:resume(s.metadata.id).messages, "messages")
      end)
    end)

    describe("a missing id", function()
      local missing = "0b9f6a2e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"
      local calls = {
        resume = function(m) return m:resume(missing) end,
        fork = function(m) return m:fork(missing) end,
        rewind = function(m) return m:rewind(missing, 1) end,
        tag = function(m) return m:tag(missing, "t") end,
        untag = function(m) return m:untag(missing, "t") end,
        rename = function(m) return m:rename(missing, "n") end,
        delete = function(m) return m:delete(missing) end,
      }
      for _, name in ipairs({ "resume", "fork", "rewind", "tag", "untag", "rename", "delete" }) do
        it("is not_found for " .. name .. ", with err.id set", function()
          mgr:save(make_session())
          local before = mgr:list()
          local err = error_of("not_found", calls[name], mgr)
          assert.are.equal(missing, err.id)
          assert.are.equal('no session with id "' .. missing .. '"', err.message)
          assert_same(before, mgr:list(), "list")
        end)
      end
    end)

    describe("version", function()
      it("starts at 1 and grows by one with each write", function()
        local s = make_session({ messages = messages(4) })
        assert.are.equal(1, mgr:save(s).version)
        assert.are.equal(2, mgr:save(s).version)
        assert.are.equal(3, mgr:rewind(s.metadata.id, 3).metadata.version)
        mgr:tag(s.metadata.id, "x")
        assert.are.equal(4, mgr:resume(s.metadata.id).metadata.version)
        mgr:untag(s.metadata.id, "x")
        assert.are.equal(5, mgr:resume(s.metadata.id).metadata.version)
        mgr:rename(s.metadata.id, "renamed")
        assert.are.equal(6, mgr:resume(s.metadata.id).metadata.version)
        assert.are.equal(6, mgr:list()[1].version)
      end)

      it("does not change on reads or on a fork of the session", function()
        local id = mgr:save(make_session()).id
        mgr:resume(id)
        mgr:list()
        local fork = mgr:fork(id)
        assert.are.equal(1, fork.version)
        assert.are.equal(1, mgr:resume(id).metadata.version)
      end)
    end)

    it("never gives a later write an earlier updated_at", function()
      local stamps = {}
      local a = make_session({ messages = messages(50) })
      local b = make_session()
      for i = 1, 50 do
        stamps[#stamps + 1] = mgr:save(a).updated_at
        stamps[#stamps + 1] = mgr:save(b).updated_at
        stamps[#stamps + 1] = mgr:rewind(a.metadata.id, 50 - i).metadata.updated_at
        mgr:tag(b.metadata.id, "t" .. i)
        stamps[#stamps + 1] = mgr:resume(b.metadata.id).metadata.updated_at
        stamps[#stamps + 1] = mgr:fork(b.metadata.id).updated_at
        mgr:rename(a.metadata.id, "n" .. i)
        stamps[#stamps + 1] = mgr:resume(a.metadata.id).metadata.updated_at
      end
      for i = 2, #stamps do
        assert.is_true(stamps[i] >= stamps[i - 1],
          string.format("write %d has updated_at %d < %d", i, stamps[i], stamps[i - 1]))
      end
    end)

    describe("errors", function()
      it("are tables with kind and message whose tostring is 'agentsession: <kind>: <message>'"
        .. " when called from C (pcall), which has no line", function()
        local err = error_of("not_found", mgr.resume, mgr, "no-such-session")
        assert.are.equal("table", type(err))
        assert.are.equal("not_found", err.kind)
        assert.are.equal("string", type(err.message))
        assert.are.equal("", err.where)
        assert.are.equal("agentsession: not_found: " .. err.message, tostring(err))
        local bad = error_of("invalid", mgr.save, mgr, make_session({ id = "" }))
        assert.are.equal("", bad.where)
        assert.are.equal("agentsession: invalid: " .. bad.message, tostring(bad))
      end)

      it("are recognised by is_error, with and without a kind", function()
        local err = error_of("not_found", mgr.resume, mgr, "no-such-session")
        assert.is_true(agentsession.is_error(err))
        assert.is_true(agentsession.is_error(err, "not_found"))
        assert.is_false(agentsession.is_error(err, "invalid"))
        assert.is_false(agentsession.is_error("agentsession: not_found: x"))
        assert.is_false(agentsession.is_error(nil))
        assert.is_false(agentsession.is_error({}))
      end)
    end)

    describe("with max_session_bytes", function()
      local small

      before_each(function()
        small = store.new({ max_session_bytes = 4096 })
      end)

      after_each(function()
        small:close()
      end)

      it("refuses a larger session as too_large and stores nothing", function()
        local kept = small:save(make_session())
        local big = make_session({ messages = { string.rep("x", 8192) } })
        error_of("too_large", small.save, small, big)
        error_of("not_found", small.resume, small, big.metadata.id)
        assert.are.same({ kept.id }, ids_of(small:list()))
      end)

      it("refuses to replace a session with a larger one and keeps the stored one", function()
        local s = make_session()
        small:save(s)
        local before = small:resume(s.metadata.id)
        s.state = { blob = string.rep("y", 8192) }
        error_of("too_large", small.save, small, s)
        assert_same(before, small:resume(s.metadata.id), "session")
      end)

      it("accepts a session under the limit", function()
        local s = make_session({ messages = { string.rep("z", 1024) } })
        small:save(s)
        assert.are.equal(string.rep("z", 1024), small:resume(s.metadata.id).messages[1])
      end)
    end)
  end)
end

describe("agentsession.open('memory:')", function()
  it("gives a manager that works like memory()", function()
    local mgr = agentsession.open("memory:")
    assert.is_truthy(tostring(mgr):find("agentsession.SessionManager", 1, true))
    local s = make_session()
    local meta = mgr:save(s)
    assert.are.equal(s.metadata.id, mgr:resume(s.metadata.id).metadata.id)
    assert.are.same({ meta.id }, ids_of(mgr:list()))
    mgr:delete(meta.id)
    error_of("not_found", mgr.resume, mgr, meta.id)
    mgr:close()
  end)

  it("gives managers that do not share sessions", function()
    local a, b = agentsession.open("memory:"), agentsession.open("memory:")
    a:save(make_session())
    assert.is_nil(next(b:list()))
    a:close()
    b:close()
  end)
end)
