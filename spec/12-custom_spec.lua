-- agentsession.custom: what only the wrapper of a Lua backend has. The
-- contract itself runs through custom stores in specs 03-07 (spec/helpers/stores.lua).
local agentsession = require("agentsession")
local backends = require("helpers.lua_backend")
local stores = require("helpers.stores")
local error_of = require("helpers.expect").error_of

local session = agentsession.session
local conformance = require("agentsession.conformance")

-- The failures conformance.run finds in the checks whose names match `only`,
-- for custom stores over backends made by new_backend().
local function failures_of(new_backend, only)
  local _, failed, failures = conformance.run(function() return agentsession.custom(new_backend()) end,
    { only = only })
  return failed, table.concat(failures, "\n")
end

-- Wraps b.load to note the hint of each call (its `last`, or "all");
-- returns the array of notes.
local function record_hints(b)
  local hints, load = {}, b.load
  b.load = function(id, hint)
    hints[#hints + 1] = hint and hint.last or "all"
    return load(id, hint)
  end
  return hints
end

-- A backend whose function `name` is replaced by `fn` (the others kept).
local function with(name, fn, opts)
  local b = backends.new(opts)
  b[name] = fn
  return b
end

describe("custom store", function()
  describe("construction", function()
    it("is the same userdata type as every manager", function()
      local m = agentsession.custom(backends.new())
      assert.are.equal("userdata", type(m))
      assert.truthy(tostring(m):find("agentsession.SessionManager (custom)", 1, true), tostring(m))
      assert.are.equal("custom", m:stats().kind)
      assert.is_nil(m:stats().location)
      m:close()
    end)

    it("needs a table", function()
      assert.has_error(function() agentsession.custom("backend") end)
      assert.has_error(function() agentsession.custom() end)
    end)

    for _, name in ipairs({ "load", "store", "remove", "list" }) do
      it("needs backend." .. name .. " to be a function", function()
        local b = backends.new()
        b[name] = nil
        local err = error_of("invalid", agentsession.custom, b)
        assert.truthy(err.message:find("backend." .. name, 1, true), err.message)
        b[name] = "x"
        error_of("invalid", agentsession.custom, b)
      end)
    end

    for _, name in ipairs({ "query", "update", "rewind", "fork", "append", "append_op", "search", "prune",
                            "close" }) do
      it("refuses a backend." .. name .. " that is not a function", function()
        local err = error_of("invalid", agentsession.custom, with(name, 42))
        assert.truthy(err.message:find("backend." .. name, 1, true), err.message)
      end)
    end

    it("takes max_session_bytes and refuses other options", function()
      local m = agentsession.custom(backends.new(), { max_session_bytes = 100 })
      error_of("too_large", m.save, m, session{ messages = { string.rep("x", 200) } })
      m:close()
      error_of("invalid", agentsession.custom, backends.new(), { path = "x" })
    end)
  end)

  describe("a backend that fails", function()
    local cases = {
      { "load", function(m, id) return m:resume(id) end },
      { "store", function(m) return m:save(session{}) end },
      { "remove", function(m, id) return m:delete(id) end },
      { "list", function(m) return m:list() end },
    }
    for _, case in ipairs(cases) do
      local name, call = case[1], case[2]
      it("gives storage with its message when backend." .. name .. " raises", function()
        local b = backends.new()
        local m = agentsession.custom(b)
        local id = m:save(session{}).id
        b[name] = function() error("disk on fire") end
        local err = error_of("storage", call, m, id)
        assert.truthy(err.message:find("backend." .. name, 1, true), err.message)
        assert.truthy(err.message:find("disk on fire", 1, true), err.message)
        m:close()
      end)
    end

    for _, name in ipairs({ "update", "rewind", "fork", "query", "append", "append_op" }) do
      it("gives storage with its message when the optional backend." .. name .. " raises", function()
        local b = backends.new{ fast = true }
        local m = agentsession.custom(b)
        local id = m:save(session{ tags = { "t" }, messages = { 1, 2 } }).id
        b[name] = function() error({ code = 7 }) end
        local calls = {
          update = function() return m:rename(id, "x") end,
          rewind = function() return m:rewind(id, 1) end,
          fork = function() return m:fork(id) end,
          query = function() return m:list{ tag = "t" } end,
          append = function() return m:append(id, { 3 }) end,
          append_op = function() return m:append(id, { 3 }, { op_id = "op" }) end,
        }
        local err = error_of("storage", calls[name])
        assert.truthy(err.message:find("backend." .. name .. " raised", 1, true), err.message)
        m:close()
      end)
    end

    it("carries the message of an error object with __tostring", function()
      local raised = setmetatable({}, { __tostring = function() return "quota exceeded" end })
      local m = agentsession.custom(with("load", function() error(raised) end))
      local err = error_of("storage", m.resume, m, "anything")
      assert.truthy(err.message:find("backend.load raised: quota exceeded", 1, true), err.message)
      m:close()
    end)

    it("lists an id the backend gives twice once, as its newest metadata", function()
      -- b comes between the two entries of a in list order
      local listed = {}
      for i, row in ipairs({ { "a", 5 }, { "b", 7 }, { "a", 9 } }) do
        local s = session{ id = row[1] }
        s.metadata.updated_at, s.metadata.created_at, s.metadata.version = row[2], row[2], i
        listed[i] = s.metadata
      end
      local m = agentsession.custom(with("list", function() return listed end))
      local got = m:list()
      assert.are.same({ "a", "b" }, stores.ids(got))
      assert.are.equal(9, got[1].updated_at)
      assert.are.same({ "b" }, stores.ids(m:list{ offset = 1 }))
      m:close()
    end)

    it("passes an agentsession error raised by the backend through unchanged", function()
      local other = agentsession.memory()
      local _, raised = pcall(other.resume, other, "elsewhere")
      local m = agentsession.custom(with("load", function() error(raised) end))
      local err = error_of("not_found", m.resume, m, "anything")
      assert.are.equal(raised.message, err.message)
      assert.are.equal("elsewhere", err.id)
      m:close()
    end)

    local garbage = {
      { "load returns a number", "load", function() return 42 end, "a number" },
      { "load returns a session without metadata", "load", function() return { messages = {} } end, "metadata" },
      { "load returns a session of another id", "load", function()
        return session{ id = "other" }
      end, "other" },
      { "load returns a session with a function in it", "load", function(id)
        return session{ id = id, messages = { print } }
      end, "messages[1]" },
      { "load returns a session with an unknown field", "load", function(id)
        local s = session{ id = id }
        s.metadata.extra = 1
        return s
      end, "extra" },
      { "list returns a string", "list", function() return "x" end, "a string" },
      { "list returns a non-table entry", "list", function() return { 1 } end, "[1]" },
      { "list returns metadata without an id", "list", function()
        return { { agent_name = "" } }
      end, "metadata.id" },
      { "load returns a session without a version", "load", function(id)
        return session{ id = id }
      end, "metadata.version" },
      { "load returns a session with a tag twice", "load", function(id)
        local s = session{ id = id, tags = { "t", "u", "t" } }
        s.metadata.version = 1
        return s
      end, "metadata.tags" },
      { "load returns a session whose name has a control character", "load", function(id)
        local s = session{ id = id, name = "a\1b" }
        s.metadata.version = 1
        return s
      end, "metadata.name" },
      { "list returns metadata with an empty id", "list", function()
        return { { id = "", agent_name = "", version = 1 } }
      end, "metadata.id" },
      { "list returns metadata with an id past 255 bytes", "list", function()
        return { { id = string.rep("i", 256), agent_name = "", version = 1 } }
      end, "metadata.id" },
      { "list returns metadata with an empty tag", "list", function()
        return { { id = "x", agent_name = "", tags = { "" }, version = 1 } }
      end, "metadata.tags[1]" },
      { "list returns metadata with version 0", "list", function()
        return { { id = "x", agent_name = "" } }
      end, "metadata.version" },
    }
    for _, case in ipairs(garbage) do
      it("gives storage when backend." .. case[1], function()
        local m = agentsession.custom(with(case[2], case[3]))
        local err = error_of("storage", function()
          if case[2] == "load" then return m:resume("s1") end
          return m:list()
        end)
        assert.truthy(err.message:find("backend." .. case[2] .. " returned", 1, true), err.message)
        assert.truthy(err.message:find(case[4], 1, true), err.message)
        m:close()
      end)
    end

    it("reads nil and false from load as not_found, and a false remove as not_found", function()
      local m = agentsession.custom(with("load", function() return false end))
      error_of("not_found", m.resume, m, "x")
      m:close()
      m = agentsession.custom(with("remove", function() return false end))
      error_of("not_found", m.delete, m, "x")
      m:close()
    end)

    it("changes nothing of its own when a write fails", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local a = m:save(session{ id = "a" })
      m:save(session{ id = "b" })
      local store = b.store
      b.store = function() error("full") end
      error_of("storage", m.save, m, session{ id = "a" })
      error_of("storage", m.tag, m, "a", "x")
      b.store = store
      assert.are.same({ "b", "a" }, stores.ids(m:list()))
      assert.are.same(a, m:resume("a").metadata)
      m:close()
    end)

    it("gives storage when a backend function yields", function()
      local m = agentsession.custom(with("load", function() coroutine.yield() end))
      local co = coroutine.wrap(function()
        return pcall(m.resume, m, "x")
      end)
      local ok, err = co()
      assert.is_false(ok)
      assert.is_true(agentsession.is_error(err, "storage"), tostring(err))
      m:close()
    end)

    it("refuses a backend that calls its own manager, and works afterwards", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local id = m:save(session{}).id
      local load = b.load
      b.load = function(...)
        m:list()
        return load(...)
      end
      local err = error_of("invalid", m.resume, m, id)
      assert.truthy(err.message:find("busy", 1, true), err.message)
      b.load = function(...)
        m:close()
        return load(...)
      end
      error_of("invalid", m.resume, m, id)
      b.load = load
      assert.are.equal(id, m:resume(id).metadata.id)
      m:close()
    end)
  end)

  describe("what the backend sees", function()
    it("gets whole sessions in the seed's shape, as its own tables", function()
      local seen
      local b = backends.new()
      local store = b.store
      b.store = function(s)
        seen = s
        return store(s)
      end
      local m = agentsession.custom(b)
      local given = session{ name = "n", tags = { "t" }, messages = { { a = 1 } }, state = { k = {} } }
      m:save(given)
      assert.are.same({ "messages", "metadata", "state" }, (function()
        local keys = {}
        for k in pairs(seen) do keys[#keys + 1] = k end
        table.sort(keys)
        return keys
      end)())
      assert.are.equal(1, seen.metadata.version)
      assert.are.equal(getmetatable(agentsession.array()), getmetatable(seen.messages))
      assert.are_not.equal(given.messages[1], seen.messages[1])
      seen.messages[1].a = 99 -- the backend's own copy
      assert.are.equal(1, given.messages[1].a)
      m:close()
    end)

    it("hands resume's caller fresh tables, never the backend's", function()
      local kept = session{ id = "k", messages = { { a = 1 } } }
      kept.metadata.version = 1
      local m = agentsession.custom(with("load", function() return kept end))
      local s = m:resume("k")
      s.messages[1].a = 2
      assert.are.equal(1, kept.messages[1].a)
      m:close()
    end)

    it("passes resume's last as a hint, and keeps only the last messages whatever load gives", function()
      local hints = {}
      local b = backends.new()
      local load = b.load
      b.load = function(id, hint)
        hints[#hints + 1] = hint or false
        return load(id)
      end
      local m = agentsession.custom(b)
      local id = m:save(session{ messages = { 1, 2, 3 } }).id
      hints = {}
      assert.are.same({ 3 }, m:resume(id, { last = 1 }).messages)
      assert.are.same({ { last = 1 } }, hints)
      m:close()
    end)

    it("orders list by updated_at, then by this manager's writes, then as the backend listed", function()
      local same = { 5, 5, 5, 7 }
      local listed = {}
      for i, t in ipairs(same) do
        local s = session{ id = "s" .. i }
        s.metadata.updated_at, s.metadata.created_at, s.metadata.version = t, t, 1
        listed[i] = s.metadata
      end
      local b = backends.new()
      b.list = function() return listed end
      b.load = function(id)
        for _, meta in ipairs(listed) do
          if meta.id == id then return { metadata = meta, messages = {}, state = {} } end
        end
      end
      local m = agentsession.custom(b)
      assert.are.same({ "s4", "s1", "s2", "s3" }, stores.ids(m:list()))
      assert.are.same({ "s1", "s2" }, stores.ids(m:list{ limit = 2, offset = 1 }))
      m:close()
    end)

    it("uses the optional functions when present", function()
      local b = backends.new{ fast = true }
      local m = agentsession.custom(b)
      local id = m:save(session{ tags = { "t" }, messages = { 1, 2, 3 } }).id
      assert.are.equal(1, b.calls.store)
      m:tag(id, "u")
      m:untag(id, "u")
      m:rename(id, "r")
      assert.are.equal(3, b.calls.update)
      m:rewind(id, 2)
      assert.are.equal(1, b.calls.rewind)
      local fork = m:fork(id, "f", { at = 1 })
      assert.are.equal(1, b.calls.fork)
      assert.are.same({ 1 }, m:resume(fork.id).messages)
      assert.are.same({ fork.id }, stores.ids(m:list{ parent_id = id }))
      assert.are.equal(1, b.calls.query)
      m:list()
      assert.are.equal(1, b.calls.list)
      assert.are.equal(1, b.calls.store) -- no write went through store
      m:close()
      assert.are.equal(1, b.calls.close)
    end)

    it("appends through backend.append, handing over only the new messages", function()
      local b = backends.new{ fast = true }
      local m = agentsession.custom(b)
      local id = m:save(session{ tags = { "t" }, messages = { 1, 2, 3 } }).id
      local seen
      local real = b.append
      b.append = function(sid, msgs, meta)
        seen = { id = sid, messages = msgs, metadata = meta }
        return real(sid, msgs, meta)
      end
      local meta = m:append(id, { { role = "user", n = 4 }, agentsession.array() }, { tokens = 7 })
      assert.are.equal(1, b.calls.append)
      assert.are.equal(1, b.calls.store) -- the save only
      assert.are.equal(id, seen.id)
      assert.are.same({ { role = "user", n = 4 }, {} }, seen.messages)
      assert.are.equal(agentsession.array_mt, getmetatable(seen.messages[2]))
      assert.are.same(meta, seen.metadata)
      assert.are.equal(2, meta.turn_count) -- 0 as saved, plus the 2 appended
      assert.are.equal(7, meta.total_tokens)
      assert.are.equal(2, meta.version)
      local r = m:resume(id)
      assert.are.same({ 1, 2, 3, { role = "user", n = 4 }, {} }, r.messages)
      assert.are.same(meta, r.metadata)
      -- an empty append changes only the metadata: backend.update, not append or store
      m:append(id, {})
      assert.are.equal(1, b.calls.append)
      assert.are.equal(1, b.calls.update)
      assert.are.equal(1, b.calls.store)
      assert.are.equal(3, m:resume(id).metadata.version)
      m:close()
    end)

    it("reads no message for a write that needs only the metadata of a session it wrote", function()
      local b = backends.new{ fast = true }
      local m = agentsession.custom(b)
      local msgs = {}
      for i = 1, 50 do msgs[i] = { n = i } end
      local id = m:save(session{ messages = msgs }).id
      local hints = record_hints(b)
      m:append(id, { { n = 51 } })
      m:tag(id, "t")
      m:append(id, { { n = 52 } }, { tokens = 3 })
      assert.are.same({ 0, 0, 0 }, hints)
      local r = m:resume(id)
      assert.are.equal(52, #r.messages)
      assert.are.equal(52, r.messages[52].n)
      assert.are.equal(3, r.metadata.total_tokens)
      m:close()
    end)

    it("reads a session whole again when another manager changed it, so the size limit holds", function()
      local b = backends.new{ fast = true }
      local mine = agentsession.custom(b, { max_session_bytes = 2000 })
      local other = agentsession.custom(b, { max_session_bytes = 100000 })
      local id = mine:save(session{ messages = { "small" } }).id
      other:append(id, { string.rep("x", 1500) }) -- the session is now about 1.6 KB
      local hints = record_hints(b)
      -- mine noted the size of version 1; the stored version is 2: it reads it whole
      local err = error_of("too_large", mine.append, mine, id, { string.rep("y", 600) })
      assert.truthy(err.message:find("over the limit of 2000", 1, true), err.message)
      assert.are.same({ 0, "all" }, hints)
      assert.are.equal(2, #mine:resume(id).messages)
      mine:close()
      other:close()
    end)

    it("reads the messages after all when store must rewrite a session read without them", function()
      local b = backends.new{ fast = true }
      b.update = nil -- tag goes through store, which needs every message
      local m = agentsession.custom(b)
      local id = m:save(session{ messages = { 1, 2, 3 } }).id
      m:append(id, { 4 })
      m:tag(id, "t")
      local r = m:resume(id)
      assert.are.same({ 1, 2, 3, 4 }, r.messages)
      assert.are.same({ "t" }, r.metadata.tags)
      m:close()
    end)

    it("appends through store without backend.append", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local id = m:save(session{ messages = { 1, 2 } }).id
      m:append(id, { 3 })
      assert.are.equal(0, b.calls.append)
      assert.are.equal(2, b.calls.store)
      assert.are.same({ 1, 2, 3 }, m:resume(id).messages)
      m:close()
    end)

    it("does without them, through store", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local id = m:save(session{ tags = { "t" }, messages = { 1, 2, 3 } }).id
      m:tag(id, "u")
      m:rewind(id, 2)
      m:fork(id)
      m:list{ tag = "t" }
      assert.are.equal(4, b.calls.store)
      assert.are.equal(1, b.calls.list)
      m:close()
    end)

    it("works from coroutines, and is closed by the garbage collector", function()
      local closed = 0
      local b = backends.new()
      b.close = function() closed = closed + 1 end
      local m = agentsession.custom(b)
      local id = coroutine.wrap(function() return m:save(session{}).id end)()
      assert.are.equal(id, coroutine.wrap(function() return m:resume(id).metadata.id end)())
      m = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert.are.equal(1, closed)
    end)
  end)

  describe("op ids", function()
    it("live in the stored session's op_ids, the last 100 oldest first, and are never handed back", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local id = m:save(session{ messages = { 1 } }).id
      for i = 1, 120 do m:append(id, { i }, { op_id = "op-" .. i }) end
      local stored = b.load(id)
      assert.are.equal(100, #stored.op_ids)
      assert.are.equal("op-21", stored.op_ids[1])
      assert.are.equal("op-120", stored.op_ids[100])
      assert.is_false(select(2, m:append(id, { 120 }, { op_id = "op-120" })))
      assert.is_true(select(2, m:append(id, { 20 }, { op_id = "op-20" })))
      local r = m:resume(id)
      assert.is_nil(r.op_ids)
      assert.is_nil(agentsession.json.decode(m:export(id)).op_ids)
      -- writes without an op_id keep them: save, tag, rewind through store
      m:save(r)
      m:tag(id, "t")
      m:rewind(id, 5)
      assert.are.equal("op-20", b.load(id).op_ids[100])
      -- a fork starts without any
      local fork = m:fork(id)
      assert.is_nil(b.load(fork.id).op_ids)
      m:close()
    end)

    it("are written by backend.append_op with the append, and read without messages", function()
      local b = backends.new{ fast = true }
      local m = agentsession.custom(b)
      local msgs = {}
      for i = 1, 50 do msgs[i] = { n = i } end
      local id = m:save(session{ messages = msgs }).id
      local hints = record_hints(b)
      local seen
      local real = b.append_op
      b.append_op = function(sid, new, meta, op_ids)
        seen = { id = sid, messages = new, metadata = meta, op_ids = op_ids }
        return real(sid, new, meta, op_ids)
      end
      local meta, applied = m:append(id, { { n = 51 } }, { op_id = "op-a" })
      assert.is_true(applied)
      assert.are.same({ id = id, messages = { { n = 51 } }, metadata = meta, op_ids = { "op-a" } }, seen)
      assert.are.equal(agentsession.array_mt, getmetatable(seen.op_ids))
      m:append(id, {}, { op_id = "op-b" }) -- no message: still append_op, not update
      assert.are.same({ "op-a", "op-b" }, seen.op_ids)
      assert.is_false(select(2, m:append(id, { { n = 52 } }, { op_id = "op-a" })))
      assert.are.same({ 0, 0, 0 }, hints)
      assert.are.equal(2, b.calls.append_op)
      assert.are.equal(0, b.calls.append)
      assert.are.equal(1, b.calls.store) -- the save only
      assert.are.equal(51, #m:resume(id).messages)
      m:close()
    end)

    it("go through store without backend.append_op, and through store with a state", function()
      local b = backends.new{ fast = true }
      b.append_op = nil
      local m = agentsession.custom(b)
      local id = m:save(session{ messages = { 1 } }).id
      m:append(id, { 2 }, { op_id = "op-s" })
      m:append(id, { 3 }, { op_id = "op-t", state = { step = 3 } })
      assert.are.equal(0, b.calls.append)
      assert.are.equal(3, b.calls.store)
      assert.are.same({ "op-s", "op-t" }, b.load(id).op_ids)
      assert.is_false(select(2, m:append(id, { 2 }, { op_id = "op-s" })))
      assert.are.same({ 1, 2, 3 }, m:resume(id).messages)
      m:close()
    end)

    local garbage = {
      { "a string", "op-x" }, { "an array holding a number", { "op-1", 2 } }, { "an object", { op = "op-1" } },
    }
    for _, row in ipairs(garbage) do
      it("are storage, changing nothing, when load gives op_ids that are " .. row[1], function()
        local b = backends.new()
        local m = agentsession.custom(b)
        local id = m:save(session{ messages = { 1 } }).id
        local load = b.load
        b.load = function(...)
          local s = load(...)
          if s then s.op_ids = row[2] end
          return s
        end
        local err = error_of("storage", m.append, m, id, { 2 }, { op_id = "op-1" })
        assert.truthy(err.message:find("backend.load returned op_ids: must be an array of strings", 1, true),
          err.message)
        assert.are.equal(1, b.calls.store)
        -- a read, which needs no op id, is not refused
        assert.are.same({ 1 }, m:resume(id).messages)
        m:close()
      end)
    end
  end)

  describe("search and prune", function()
    it("search asks backend.search for the sessions that may match, and checks each", function()
      local b = backends.new{ fast = true }
      local m = agentsession.custom(b)
      local a = m:save(session{ messages = { "the parser broke" } }).id
      m:save(session{ messages = { "a parsers party" } })
      local r = m:search("parser")
      assert.are.equal(1, b.calls.search)
      assert.are.equal(0, b.calls.list)
      assert.are.same({ a }, { r[1] and r[1].metadata.id })
      assert.are.equal(1, #r) -- the backend's second candidate holds "parsers", not "parser"
      assert.are.same({ 1, "the parser broke" }, { r[1].index, r[1].snippet })
      m:close()
    end)

    it("search is derived from list and load without backend.search", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local a = m:save(session{ name = "parser notes", messages = { "x" } }).id
      m:save(session{ messages = { "nothing" } })
      local loads = b.calls.load
      local r = m:search("parser")
      assert.are.same({ a, 0 }, { r[1] and r[1].metadata.id, r[1] and r[1].index })
      assert.are.equal(1, b.calls.list)
      assert.are.equal(loads + 2, b.calls.load) -- every session is read
      m:close()
    end)

    it("prune asks backend.prune, which deletes; dry_run lists instead", function()
      local b = backends.new{ fast = true }
      local m = agentsession.custom(b)
      local old = m:save(session{ tags = { "x" } })
      local kept = m:save(session{ tags = { "keep" } })
      local cut = math.max(old.updated_at, kept.updated_at) + 1
      assert.are.same({ old.id }, m:prune{ before = cut, keep_tag = "keep", dry_run = true })
      assert.are.equal(0, b.calls.prune)
      assert.are.same({ old.id }, m:prune{ before = cut, keep_tag = "keep" })
      assert.are.equal(1, b.calls.prune)
      assert.are.same({ kept.id }, stores.ids(m:list()))
      m:close()
    end)

    it("prune is derived from list and remove without backend.prune", function()
      local b = backends.new()
      local m = agentsession.custom(b)
      local old = m:save(session{})
      assert.are.same({ old.id }, m:prune{ before = old.updated_at + 1 })
      assert.are.equal(1, b.calls.remove)
      m:close()
    end)

    it("gives storage when backend.prune returns what is not an array of ids", function()
      for _, bad in ipairs({ 42, { 1 }, { "ok", false }, { [2] = "x" }, { "" } }) do
        local m = agentsession.custom(with("prune", function() return bad end, { fast = true }))
        local err = error_of("storage", m.prune, m, { before = 1 })
        assert.truthy(err.message:find("backend.prune returned", 1, true), err.message)
        m:close()
      end
    end)

    it("gives storage when backend.search returns what is not an array of metadata", function()
      local m = agentsession.custom(with("search", function() return { { id = "x" } } end, { fast = true }))
      m:save(session{ messages = { "word" } })
      local err = error_of("storage", m.search, m, "word")
      assert.truthy(err.message:find("backend.search returned", 1, true), err.message)
      m:close()
    end)

    it("conformance fails a backend whose search misses a match", function()
      local failed, lines = failures_of(function()
        local b = backends.new{ fast = true }
        local search = b.search
        b.search = function(words, filter)
          local out = search(words, filter)
          table.remove(out) -- one that matched, in whatever order the backend gives
          return out
        end
        return b
      end, "^search:")
      assert.is_true(failed > 0, "no search check failed")
      assert.truthy(lines:find("search: finds every session that matches among many", 1, true), lines)
    end)

    it("conformance fails a backend whose prune deletes a kept session", function()
      local failed, lines = failures_of(function()
        local b = backends.new{ fast = true }
        local prune = b.prune
        b.prune = function(o)
          local plain = {}
          for k, v in pairs(o) do plain[k] = v end
          plain.keep_tag = nil
          return prune(plain)
        end
        return b
      end, "^prune:")
      assert.is_true(failed > 0, "no prune check failed")
      assert.truthy(lines:find("prune: keep_tag protects the sessions carrying it", 1, true), lines)
    end)

    it("conformance fails a backend whose prune ignores before", function()
      local failed, lines = failures_of(function()
        local b = backends.new{ fast = true }
        local prune = b.prune
        b.prune = function(o)
          local plain = {}
          for k, v in pairs(o) do plain[k] = v end
          plain.before = math.huge
          return prune(plain)
        end
        return b
      end, "^prune:")
      assert.is_true(failed > 0, "no prune check failed")
      assert.truthy(lines:find("prune: `before` is strict", 1, true), lines)
    end)
  end)
end)
