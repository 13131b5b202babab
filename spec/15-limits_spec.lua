-- Every limit, on every store, at the limit and one step past it.
--
--   nesting depth      128 arrays/objects in one value (AS_JSON_MAX_DEPTH): a
--                      message, the state, json.encode/json.decode, import.
--                      A message's depth is its own: the `messages` array
--                      around it does not count.
--   id, parent_id      1..255 bytes (as_check_id), also as an argument
--   tag                1..255 bytes (as_check_tag)
--   name, agent_name   0..1024 bytes (as_check_name), the generated fork name
--                      "<name> (fork)" included
--   session size       opts.max_session_bytes, counted by as_manager.c
--                      (check_size over body_size): the metadata as JSON (all
--                      ten fields, as_meta_write_json) + 38 + the state's JSON
--                      + each message's JSON plus one; checked by save,
--                      append, fork (with or without `at`) and import
--   turn_count         0..2^32-1, total_tokens 0..2^63-1: save and append
--
-- At the limit the call succeeds and what was written comes back exactly;
-- one past it the call raises the documented kind and the store is unchanged.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local deep = require("helpers.deep")
local sizes = require("helpers.size")
local expect = require("helpers.expect")
local interp = require("helpers.interp")

local json = agentsession.json

local DEPTH = 128
local ID_MAX, TAG_MAX, NAME_MAX = 255, 255, 1024
-- 2^32-1 and 2^63-1; where Lua has no integers (5.1, 5.2, LuaJIT) a number
-- holds integers exactly up to 2^53, and 2^63-1 is read and written as its
-- decimal text under big_integers = "string" (see the tests at the end).
local TURNS_MAX, TOKENS_MAX = 4294967295, math.maxinteger or "9223372036854775807"
local SAFE_MAX = 2 ^ 53
local LIMIT = 4096 -- max_session_bytes of the size tests

-- ------------------------------------------------------------------ values

-- n arrays, one inside the other, the innermost holding `inner` (or empty).
local function arrays(n, inner)
  local v = agentsession.array(inner ~= nil and { inner } or {})
  for _ = 2, n do v = agentsession.array({ v }) end
  return v
end

-- n objects, one inside the other: { a = { a = … { a = 1 } } }.
local function objects(n)
  local v = { a = 1 }
  for _ = 2, n do v = { a = v } end
  return v
end

-- n levels alternating arrays and objects, starting with an object.
local function mixed(n)
  local v = {}
  for level = n - 1, 1, -1 do
    v = level % 2 == 1 and { k = v } or { v }
  end
  return v
end

local function arrays_text(n, inner)
  return string.rep("[", n) .. (inner or "") .. string.rep("]", n)
end

--- What a value becomes once stored: its JSON read back (arrays carry array_mt).
local function stored_form(v)
  return json.decode(json.encode(v))
end

-- ------------------------------------------------------------------ sessions

local counter = 0
local function new_id(prefix)
  counter = counter + 1
  return string.format("%s-%d-%d", prefix or "limits", counter, math.random(1, 1000000000))
end

local function session(id)
  return {
    metadata = {
      id = id or new_id(), name = "limits", tags = { "a" }, agent_name = "code-agent",
      created_at = 1000, turn_count = 3, total_tokens = 10,
    },
    messages = {
      { role = "user", content = "one" },
      { role = "assistant", content = { { type = "text", text = "two" } } },
      { role = "user", content = "three" },
    },
    state = { cwd = "/home/user" },
  }
end

-- The size max_session_bytes counts (spec/helpers/size.lua).
local size_of = sizes.of

-- The metadata a save of `s` will store when it creates the session: version
-- 1, updated_at now (13 digits until the year 2286), the other fields given.
local function saved_meta(s, version)
  local m = {}
  for k, v in pairs(s.metadata) do m[k] = v end
  m.tags = m.tags or {}
  m.updated_at = agentsession.now()
  m.version = version or 1
  m.turn_count, m.total_tokens = m.turn_count or 0, m.total_tokens or 0
  return m
end

--- A session (state a padded string) whose size is exactly `size` once saved.
local function session_of_size(size, id, messages, version)
  local s = session(id)
  s.messages = messages or {}
  s.state = ""
  local base = size_of(saved_meta(s, version), s.messages, s.state)
  assert(size >= base, "cannot make a session that small")
  s.state = string.rep("x", size - base)
  assert(size_of(saved_meta(s, version), s.messages, s.state) == size)
  return s
end

-- ------------------------------------------------------------------ checks

local function snapshot(mgr)
  local snap = { list = mgr:list(), sessions = {} }
  for _, meta in ipairs(snap.list) do snap.sessions[meta.id] = mgr:resume(meta.id) end
  return snap
end

local function assert_unchanged(mgr, snap)
  deep.assert_same(snap.list, mgr:list(), { root = "list()" })
  for id, before in pairs(snap.sessions) do
    deep.assert_same(before, mgr:resume(id), { root = "resume(" .. id .. ")" })
  end
end

--- fn() must raise an error of `kind` whose message contains every text of
--- `contains`, and change nothing in mgr.
local function refuses(mgr, kind, contains, fn)
  local snap = snapshot(mgr)
  local err = expect.error_of(kind, fn)
  if type(contains) == "string" then contains = { contains } end
  for _, part in ipairs(contains) do
    assert.is_truthy(err.message:find(part, 1, true),
      string.format("the message %q does not contain %q", err.message, part))
  end
  assert_unchanged(mgr, snap)
  return err
end

--- The stored session equals what was saved: messages and state exactly as
--- their JSON reads back, and the metadata fields given.
local function assert_round_trip(mgr, s)
  local got = mgr:resume(s.metadata.id)
  assert.are.equal(#(s.messages or {}), #got.messages, "the number of messages")
  for k, m in ipairs(s.messages or {}) do
    deep.assert_same(stored_form(m), got.messages[k], { root = "messages[" .. k .. "]" })
  end
  deep.assert_same(stored_form(s.state == nil and {} or s.state), got.state, { root = "state" })
  for _, f in ipairs({ "id", "name", "agent_name", "parent_id", "turn_count", "total_tokens" }) do
    deep.assert_same(s.metadata[f], got.metadata[f], { root = "metadata." .. f })
  end
  deep.assert_same(s.metadata.tags or {}, got.metadata.tags, { root = "metadata.tags", metatables = "ignore" })
  return got
end

local function import_doc(meta, messages_text, state_text)
  local fields = {}
  for _, k in ipairs({ "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count",
                       "total_tokens" }) do
    if meta[k] ~= nil then
      fields[#fields + 1] = json.encode(k) .. ":" .. json.encode(meta[k])
    end
  end
  return '{"metadata":{' .. table.concat(fields, ",") .. '},"messages":[' .. (messages_text or "")
    .. '],"state":' .. (state_text or "{}") .. "}"
end

-- ------------------------------------------------------------------ the codec

describe("limits of the codec", function()
  it("json.encode takes 128 levels of arrays, objects or both, and no more", function()
    for _, make in ipairs({ arrays, objects, mixed }) do
      local text = json.encode(make(DEPTH))
      deep.assert_same(stored_form(make(DEPTH)), json.decode(text))
      local err = expect.error_of("invalid", json.encode, make(DEPTH + 1))
      assert.is_truthy(err.message:find("nesting deeper than 128 levels", 1, true), err.message)
      assert.is_truthy(err.message:find("^value"), err.message)
    end
  end)

  it("json.decode takes 128 levels, scalars inside not counted, and no more", function()
    assert.are.equal(1, #json.decode(arrays_text(DEPTH)))
    local v = json.decode(arrays_text(DEPTH, '"leaf"'))
    for _ = 1, DEPTH - 1 do v = v[1] end
    assert.are.equal("leaf", v[1])
    json.decode(string.rep('{"a":', DEPTH) .. "1" .. string.rep("}", DEPTH))
    local err = expect.error_of("invalid", json.decode, arrays_text(DEPTH + 1))
    assert.is_truthy(err.message:find("at byte " .. (DEPTH + 1) .. ": nesting deeper than 128 levels", 1, true),
      err.message)
    err = expect.error_of("invalid", json.decode, string.rep('{"a":', DEPTH + 1) .. "1" .. string.rep("}", DEPTH + 1))
    assert.is_truthy(err.message:find("nesting deeper than 128 levels", 1, true), err.message)
  end)

  it("what json.encode writes at 128 levels json.decode reads back", function()
    for _, make in ipairs({ arrays, objects, mixed }) do
      local v = stored_form(make(DEPTH))
      deep.assert_same(v, json.decode(json.encode(v)))
    end
  end)
end)

-- ------------------------------------------------------------------ the stores

for _, store in ipairs(stores) do
  describe("limits on the " .. store.name .. " store", function()
    local mgr, known

    before_each(function()
      mgr = store.new()
      known = session(new_id("known"))
      mgr:save(known)
    end)

    after_each(function()
      mgr:close()
    end)

    describe("nesting depth 128", function()
      it("a message 128 levels deep is accepted: the messages array is not counted", function()
        for _, make in ipairs({ arrays, objects, mixed }) do
          local s = session()
          s.messages = { "first", make(DEPTH) }
          mgr:save(s)
          assert_round_trip(mgr, s)
        end
      end)

      it("a message 129 levels deep is invalid, naming it", function()
        for _, make in ipairs({ arrays, objects, mixed }) do
          local s = session(known.metadata.id)
          s.messages = { "first", make(DEPTH + 1) }
          refuses(mgr, "invalid", { "messages[2]", "nesting deeper than 128 levels" },
            function() return mgr:save(s) end)
        end
      end)

      it("a state 128 levels deep is accepted, 129 is invalid", function()
        local s = session()
        s.state = objects(DEPTH)
        mgr:save(s)
        assert_round_trip(mgr, s)
        local bad = session(known.metadata.id)
        bad.state = objects(DEPTH + 1)
        refuses(mgr, "invalid", { "state.a", "nesting deeper than 128 levels" }, function() return mgr:save(bad) end)
      end)

      it("append takes a message 128 levels deep, not 129", function()
        local id = known.metadata.id
        mgr:append(id, { arrays(DEPTH) })
        local got = mgr:resume(id)
        deep.assert_same(stored_form(arrays(DEPTH)), got.messages[4])
        refuses(mgr, "invalid", { "messages[2]", "nesting deeper than 128 levels" },
          function() return mgr:append(id, { "ok", arrays(DEPTH + 1) }) end)
      end)

      it("import takes a message 128 levels deep (the document around it is not counted)", function()
        local meta = { id = new_id("deep-import"), agent_name = "a" }
        local ok, err = pcall(mgr.import, mgr, import_doc(meta, arrays_text(DEPTH)))
        assert.is_true(ok, "import of a message 128 deep failed: " .. tostring(err))
        deep.assert_same(stored_form(arrays(DEPTH)), mgr:resume(meta.id).messages[1])
      end)

      it("import takes a state 128 levels deep", function()
        local meta = { id = new_id("deep-import"), agent_name = "a" }
        local ok, err = pcall(mgr.import, mgr, import_doc(meta, "", arrays_text(DEPTH)))
        assert.is_true(ok, "import of a state 128 deep failed: " .. tostring(err))
        deep.assert_same(stored_form(arrays(DEPTH)), mgr:resume(meta.id).state)
      end)

      it("import refuses a message or a state 129 levels deep", function()
        local meta = { id = new_id("deep-import"), agent_name = "a" }
        refuses(mgr, "invalid", { "messages[1]", "nesting deeper than 128 levels" },
          function() return mgr:import(import_doc(meta, arrays_text(DEPTH + 1))) end)
        refuses(mgr, "invalid", { "state", "nesting deeper than 128 levels" },
          function() return mgr:import(import_doc(meta, "", arrays_text(DEPTH + 1))) end)
      end)

      it("export then import gives back a session with a message and a state 128 levels deep", function()
        local s = session()
        s.messages = { mixed(DEPTH) }
        s.state = objects(DEPTH)
        mgr:save(s)
        local text = mgr:export(s.metadata.id)
        mgr:delete(s.metadata.id)
        local ok, err = pcall(mgr.import, mgr, text)
        assert.is_true(ok, "import of an export failed: " .. tostring(err))
        assert_round_trip(mgr, s)
      end)
    end)

    describe("id of 255 bytes", function()
      it("save takes a 255-byte id and gives it back", function()
        local s = session(string.rep("i", ID_MAX))
        mgr:save(s)
        assert_round_trip(mgr, s)
        local ids = stores.ids(mgr:list())
        assert.is_truthy(table.concat(ids, "\n"):find(s.metadata.id, 1, true))
        mgr:delete(s.metadata.id)
      end)

      it("save refuses a 256-byte id", function()
        refuses(mgr, "invalid", "metadata.id: must be 1 to 255 bytes long (got 256)",
          function() return mgr:save(session(string.rep("i", ID_MAX + 1))) end)
      end)

      it("counts bytes, not characters: 85 three-byte characters pass, 86 do not", function()
        local s = session(string.rep("€", 85))
        mgr:save(s)
        assert_round_trip(mgr, s)
        refuses(mgr, "invalid", "metadata.id: must be 1 to 255 bytes long (got 258)",
          function() return mgr:save(session(string.rep("€", 86))) end)
      end)

      it("import takes a 255-byte id and refuses a 256-byte one", function()
        local id = string.rep("m", ID_MAX)
        mgr:import(import_doc({ id = id, agent_name = "a" }, '"hello"'))
        assert.are.equal("hello", mgr:resume(id).messages[1])
        refuses(mgr, "invalid", "metadata.id: must be 1 to 255 bytes long (got 256)",
          function() return mgr:import(import_doc({ id = id .. "m", agent_name = "a" })) end)
      end)

      it("parent_id takes 255 bytes and refuses 256", function()
        local s = session()
        s.metadata.parent_id = string.rep("p", ID_MAX)
        mgr:save(s)
        assert_round_trip(mgr, s)
        local bad = session(known.metadata.id)
        bad.metadata.parent_id = string.rep("p", ID_MAX + 1)
        refuses(mgr, "invalid", "metadata.parent_id: must be 1 to 255 bytes long (got 256)",
          function() return mgr:save(bad) end)
      end)

      -- README: an id is 1..255 bytes; an argument that breaks the rules is
      -- invalid, one that is well formed but unknown is not_found.
      local calls = {
        resume = function(m, id) return m:resume(id) end,
        export = function(m, id) return m:export(id) end,
        delete = function(m, id) return m:delete(id) end,
        fork = function(m, id) return m:fork(id) end,
        rewind = function(m, id) return m:rewind(id, 0) end,
        tag = function(m, id) return m:tag(id, "x") end,
        untag = function(m, id) return m:untag(id, "a") end,
        rename = function(m, id) return m:rename(id, "n") end,
        append = function(m, id) return m:append(id, { "x" }) end,
      }
      for _, name in ipairs({ "resume", "export", "delete", "fork", "rewind", "tag", "untag", "rename",
                              "append" }) do
        it(name .. " of a 256-byte id is invalid, of a missing 255-byte id not_found", function()
          refuses(mgr, "invalid", "id: must be 1 to 255 bytes long (got 256)",
            function() return calls[name](mgr, string.rep("q", ID_MAX + 1)) end)
          local err = refuses(mgr, "not_found", "no session with id",
            function() return calls[name](mgr, string.rep("q", ID_MAX)) end)
          assert.are.equal(string.rep("q", ID_MAX), err.id)
        end)
      end
    end)

    describe("tag of 255 bytes", function()
      it("save takes a 255-byte tag and refuses a 256-byte one", function()
        local s = session()
        s.metadata.tags = { "a", string.rep("t", TAG_MAX) }
        mgr:save(s)
        assert_round_trip(mgr, s)
        local bad = session(known.metadata.id)
        bad.metadata.tags = { "a", string.rep("t", TAG_MAX + 1) }
        refuses(mgr, "invalid", "metadata.tags[2]: must be 1 to 255 bytes long (got 256)",
          function() return mgr:save(bad) end)
      end)

      it("tag takes a 255-byte tag and refuses a 256-byte one; list finds it", function()
        local id, long = known.metadata.id, string.rep("t", TAG_MAX)
        deep.assert_same({ "a", long }, mgr:tag(id, long), { metatables = "ignore" })
        deep.assert_same({ "a", long }, mgr:resume(id).metadata.tags, { metatables = "ignore" })
        assert.are.same({ id }, stores.ids(mgr:list({ tag = long })))
        refuses(mgr, "invalid", "tags[2]: must be 1 to 255 bytes long (got 256)",
          function() return mgr:tag(id, { "b", long .. "t" }) end)
        refuses(mgr, "invalid", "tags[1]: must be 1 to 255 bytes long (got 256)",
          function() return mgr:untag(id, long .. "t") end)
        deep.assert_same({ "a" }, mgr:untag(id, long), { metatables = "ignore" })
      end)
    end)

    describe("name and agent_name of 1024 bytes", function()
      it("save takes a 1024-byte name and agent_name and refuses 1025", function()
        local s = session()
        s.metadata.name = string.rep("n", NAME_MAX)
        s.metadata.agent_name = string.rep("g", NAME_MAX)
        mgr:save(s)
        assert_round_trip(mgr, s)
        assert.are.same({ s.metadata.id }, stores.ids(mgr:list({ agent_name = s.metadata.agent_name })))
        local bad = session(known.metadata.id)
        bad.metadata.name = string.rep("n", NAME_MAX + 1)
        refuses(mgr, "invalid", "metadata.name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:save(bad) end)
        bad = session(known.metadata.id)
        bad.metadata.agent_name = string.rep("g", NAME_MAX + 1)
        refuses(mgr, "invalid", "metadata.agent_name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:save(bad) end)
      end)

      it("counts bytes: 341 three-byte characters and one more byte make 1024", function()
        local s = session()
        s.metadata.name = string.rep("€", 341) .. "n"
        mgr:save(s)
        assert_round_trip(mgr, s)
        local bad = session(known.metadata.id)
        bad.metadata.name = string.rep("€", 341) .. "nn"
        refuses(mgr, "invalid", "metadata.name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:save(bad) end)
      end)

      it("rename takes 1024 bytes and refuses 1025", function()
        local id = known.metadata.id
        mgr:rename(id, string.rep("r", NAME_MAX))
        assert.are.equal(string.rep("r", NAME_MAX), mgr:resume(id).metadata.name)
        refuses(mgr, "invalid", "name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:rename(id, string.rep("r", NAME_MAX + 1)) end)
      end)

      it("fork with a name takes 1024 bytes and refuses 1025", function()
        local id = known.metadata.id
        local meta = mgr:fork(id, string.rep("f", NAME_MAX))
        assert.are.equal(string.rep("f", NAME_MAX), mgr:resume(meta.id).metadata.name)
        refuses(mgr, "invalid", "name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:fork(id, string.rep("f", NAME_MAX + 1)) end)
        refuses(mgr, "invalid", "name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:fork(id, string.rep("f", NAME_MAX + 1), { at = 1 }) end)
      end)

      it("the generated name \"<name> (fork)\" may be 1024 bytes, not 1025", function()
        local fits = session()
        fits.metadata.name = string.rep("s", NAME_MAX - #" (fork)")
        mgr:save(fits)
        local meta = mgr:fork(fits.metadata.id)
        assert.are.equal(fits.metadata.name .. " (fork)", meta.name)
        assert.are.equal(NAME_MAX, #mgr:resume(meta.id).metadata.name)
        local over = session()
        over.metadata.name = string.rep("s", NAME_MAX - #" (fork)" + 1)
        mgr:save(over)
        refuses(mgr, "invalid", "name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:fork(over.metadata.id) end)
        refuses(mgr, "invalid", "name: must be 0 to 1024 bytes long (got 1025)",
          function() return mgr:fork(over.metadata.id, nil, { at = 0 }) end)
        -- a name given instead of the generated one is fine
        assert.are.equal("short", mgr:fork(over.metadata.id, "short").name)
      end)
    end)

    describe("max_session_bytes", function()
      local small

      before_each(function()
        small = store.new({ max_session_bytes = LIMIT })
        small:save(session(known.metadata.id))
      end)

      after_each(function()
        small:close()
      end)

      local function over(size)
        return string.format("session of %d bytes is over the limit of %d bytes", size, LIMIT)
      end

      it("save: a new session of exactly the limit is accepted, one byte more is too_large", function()
        local s = session_of_size(LIMIT)
        small:save(s)
        assert_round_trip(small, s)
        local bigger = session_of_size(LIMIT + 1)
        local err = refuses(small, "too_large", over(LIMIT + 1), function() return small:save(bigger) end)
        assert.are.equal(bigger.metadata.id, err.id)
      end)

      it("save: messages count their JSON plus one byte each", function()
        local msgs = { "a", { role = "user", content = "b" }, agentsession.array() }
        local s = session_of_size(LIMIT, nil, msgs)
        small:save(s)
        assert_round_trip(small, s)
        refuses(small, "too_large", over(LIMIT + 1),
          function() return small:save(session_of_size(LIMIT + 1, nil, msgs)) end)
      end)

      it("save: replacing a stored session with one of exactly the limit is accepted", function()
        local id = known.metadata.id
        local s = session_of_size(LIMIT, id, nil, 2)
        small:save(s)
        assert_round_trip(small, s)
        refuses(small, "too_large", over(LIMIT + 1),
          function() return small:save(session_of_size(LIMIT + 1, id, nil, 3)) end)
      end)

      -- The size after appending `extra` bytes of one string message.
      local function size_after_append(m, id, text, tokens)
        local cur = m:resume(id)
        local meta = cur.metadata
        meta.turn_count = meta.turn_count + 1
        meta.total_tokens = meta.total_tokens + (tokens or 0)
        meta.version = meta.version + 1
        meta.updated_at = agentsession.now()
        local msgs = {}
        for k, v in ipairs(cur.messages) do msgs[k] = v end
        msgs[#msgs + 1] = text
        return size_of(meta, msgs, cur.state)
      end

      it("append: up to exactly the limit is accepted, one byte more is too_large", function()
        local id = known.metadata.id
        local pad = LIMIT - size_after_append(small, id, "")
        local text = string.rep("x", pad)
        assert.are.equal(LIMIT, size_after_append(small, id, text))
        local bytes_over = string.rep("x", pad + 1)
        refuses(small, "too_large", over(LIMIT + 1), function() return small:append(id, { bytes_over }) end)
        local meta = small:append(id, { text }, { tokens = 5 })
        assert.are.equal(4, meta.turn_count)
        assert.are.equal(15, meta.total_tokens)
        local got = small:resume(id)
        assert.are.equal(text, got.messages[4])
        -- at the limit: an empty append still fits, any message does not
        small:append(id, {})
        refuses(small, "too_large", "is over the limit of " .. LIMIT .. " bytes",
          function() return small:append(id, { 1 }) end)
      end)

      -- The metadata a fork of `id` will have, named `name`, keeping `keep`.
      local function fork_size(m, id, name, keep)
        local src = m:resume(id)
        local meta = src.metadata
        meta.id = string.rep("u", 36) -- a UUID
        meta.name = name
        meta.parent_id = id
        meta.created_at = agentsession.now()
        meta.updated_at = meta.created_at
        meta.version = 1
        local msgs = {}
        for k = 1, keep or #src.messages do msgs[k] = src.messages[k] end
        if keep then meta.turn_count = keep end
        return size_of(meta, msgs, src.state)
      end

      it("fork: a fork of exactly the limit is accepted, one byte more is too_large", function()
        local src = session_of_size(LIMIT - 300, nil, { "one", { role = "user" } })
        small:save(src)
        local id = src.metadata.id
        local name = string.rep("f", LIMIT - fork_size(small, id, ""))
        assert.is_true(#name > 0 and #name <= NAME_MAX)
        assert.are.equal(LIMIT, fork_size(small, id, name))
        refuses(small, "too_large", over(LIMIT + 1), function() return small:fork(id, name .. "f") end)
        local meta = small:fork(id, name)
        local got = small:resume(meta.id)
        deep.assert_same(small:resume(id).messages, got.messages)
        assert.are.equal(name, got.metadata.name)
      end)

      it("fork{ at }: counts only the messages kept", function()
        local src = session_of_size(LIMIT - 150, nil,
          { string.rep("a", 100), string.rep("b", 100), string.rep("c", 300) })
        small:save(src)
        local id = src.metadata.id
        local name = string.rep("f", LIMIT - fork_size(small, id, "", 2))
        assert.are.equal(LIMIT, fork_size(small, id, name, 2))
        assert.is_true(fork_size(small, id, name) > LIMIT)
        refuses(small, "too_large", "is over the limit", function() return small:fork(id, name) end)
        refuses(small, "too_large", over(LIMIT + 1), function() return small:fork(id, name .. "f", { at = 2 }) end)
        local meta = small:fork(id, name, { at = 2 })
        assert.are.equal(2, meta.turn_count)
        assert.are.equal(2, #small:resume(meta.id).messages)
      end)

      it("fork of a session at the limit: too_large, but fits with at = 0 when the messages are the bulk", function()
        local msgs = { string.rep("m", 1500), string.rep("n", 1500) }
        local s = session_of_size(LIMIT, nil, msgs)
        small:save(s)
        refuses(small, "too_large", "is over the limit", function() return small:fork(s.metadata.id) end)
        local meta = small:fork(s.metadata.id, nil, { at = 0 })
        assert.are.equal(0, #small:resume(meta.id).messages)
      end)

      -- An import document whose stored size is `size`.
      local function import_of_size(size, id)
        local meta = { id = id or new_id("imp"), name = "imp", tags = { "t" }, agent_name = "a",
                       created_at = 1000, updated_at = 2000, turn_count = 1, total_tokens = 7 }
        local stored = {}
        for k, v in pairs(meta) do stored[k] = v end
        stored.version = 1
        local base = size_of(stored, { "m" }, "")
        local state = string.rep("s", size - base)
        return import_doc(meta, '"m"', json.encode(state)), meta, state
      end

      it("import: a document of exactly the limit is accepted, one byte more is too_large", function()
        local text, meta, state = import_of_size(LIMIT)
        local stored = small:import(text)
        assert.are.equal(2000, stored.updated_at)
        local got = small:resume(meta.id)
        assert.are.equal(state, got.state)
        assert.are.equal("m", got.messages[1])
        local bigger = import_of_size(LIMIT + 1)
        refuses(small, "too_large", over(LIMIT + 1), function() return small:import(bigger) end)
      end)

      if store.name == "memory" then -- 16 MiB sessions: once is enough
        it("the default limit is 16 MiB", function()
          local big = store.new()
          local s = session_of_size(16 * 1024 * 1024)
          big:save(s)
          assert.are.equal(#s.state, #big:resume(s.metadata.id).state)
          local err = expect.error_of("too_large", big.save, big, session_of_size(16 * 1024 * 1024 + 1))
          local want = "session of 16777217 bytes is over the limit of 16777216 bytes"
          assert.is_truthy(err.message:find(want, 1, true), err.message)
          big:close()
        end)
      end
    end)

    if interp.has_integers then
      describe("turn_count 2^32-1 and total_tokens 2^63-1", function()
        it("save takes both at their maximum and refuses one more", function()
          local s = session()
          s.metadata.turn_count = TURNS_MAX
          s.metadata.total_tokens = TOKENS_MAX
          local meta = mgr:save(s)
          assert.are.equal(TURNS_MAX, meta.turn_count)
          assert.are.equal(TOKENS_MAX, meta.total_tokens)
          assert.are.equal("integer", math.type(mgr:resume(s.metadata.id).metadata.total_tokens))
          assert_round_trip(mgr, s)
          local bad = session(known.metadata.id)
          bad.metadata.turn_count = TURNS_MAX + 1
          refuses(mgr, "invalid", "metadata.turn_count: must be between 0 and 4294967295 (got 4294967296)",
            function() return mgr:save(bad) end)
          bad = session(known.metadata.id)
          bad.metadata.total_tokens = 2.0 ^ 63
          refuses(mgr, "invalid", "metadata.total_tokens", function() return mgr:save(bad) end)
          bad.metadata.total_tokens = math.mininteger
          refuses(mgr, "invalid", "metadata.total_tokens", function() return mgr:save(bad) end)
        end)

        it("append may reach turn_count 2^32-1, not pass it", function()
          local s = session()
          s.metadata.turn_count = TURNS_MAX - 2
          mgr:save(s)
          local id = s.metadata.id
          refuses(mgr, "invalid", "turn_count would pass 4294967295",
            function() return mgr:append(id, { "a", "b", "c" }) end)
          assert.are.equal(TURNS_MAX, mgr:append(id, { "a", "b" }).turn_count)
          refuses(mgr, "invalid", "turn_count would pass 4294967295", function() return mgr:append(id, { "c" }) end)
          assert.are.equal(TURNS_MAX, mgr:append(id, {}).turn_count)
          assert.are.equal(5, #mgr:resume(id).messages)
        end)

        it("append may reach total_tokens 2^63-1, not pass it", function()
          local s = session()
          s.metadata.total_tokens = TOKENS_MAX - 5
          mgr:save(s)
          local id = s.metadata.id
          refuses(mgr, "invalid", "total_tokens would pass 9223372036854775807",
            function() return mgr:append(id, {}, { tokens = 6 }) end)
          assert.are.equal(TOKENS_MAX, mgr:append(id, { "x" }, { tokens = 5 }).total_tokens)
          refuses(mgr, "invalid", "total_tokens would pass 9223372036854775807",
            function() return mgr:append(id, {}, { tokens = 1 }) end)
          refuses(mgr, "invalid", "total_tokens would pass",
            function() return mgr:append(id, {}, { tokens = math.maxinteger }) end)
          assert.are.equal(TOKENS_MAX, mgr:resume(id).metadata.total_tokens)
        end)
      end)
    else
      describe("turn_count 2^32-1, total_tokens 2^53 as a number and 2^63-1 as text", function()
        it("save takes both at their maximum and refuses one more", function()
          local s = session()
          s.metadata.turn_count = TURNS_MAX
          s.metadata.total_tokens = SAFE_MAX
          local meta = mgr:save(s)
          assert.are.equal(TURNS_MAX, meta.turn_count)
          assert.are.equal(SAFE_MAX, meta.total_tokens)
          assert_round_trip(mgr, s)
          local bad = session(known.metadata.id)
          bad.metadata.turn_count = TURNS_MAX + 1
          refuses(mgr, "invalid", "metadata.turn_count: must be between 0 and 4294967295 (got 4294967296)",
            function() return mgr:save(bad) end)
          -- past 2^53 a double skips integers: refused by default (big_integers = "error")
          bad = session(known.metadata.id)
          bad.metadata.total_tokens = SAFE_MAX + 2
          refuses(mgr, "invalid", { "metadata.total_tokens", "beyond 2^53" }, function() return mgr:save(bad) end)
          bad.metadata.total_tokens = 2.0 ^ 63
          refuses(mgr, "invalid", "metadata.total_tokens", function() return mgr:save(bad) end)
          bad.metadata.total_tokens = -SAFE_MAX
          refuses(mgr, "invalid", "metadata.total_tokens", function() return mgr:save(bad) end)
        end)

        it("save takes total_tokens 2^63-1 as text with big_integers = \"string\", and refuses one more", function()
          local texts = store.new({ big_integers = "string" })
          local s = session()
          s.metadata.total_tokens = TOKENS_MAX
          assert.are.equal(TOKENS_MAX, texts:save(s).total_tokens)
          assert.are.equal(TOKENS_MAX, texts:resume(s.metadata.id).metadata.total_tokens)
          assert_round_trip(texts, s)
          local bad = session(known.metadata.id)
          bad.metadata.total_tokens = "9223372036854775808"
          refuses(texts, "invalid", "metadata.total_tokens", function() return texts:save(bad) end)
          texts:close()
        end)

        it("append may reach total_tokens 2^53, not pass it, by default", function()
          local s = session()
          s.metadata.total_tokens = SAFE_MAX - 5
          mgr:save(s)
          local id = s.metadata.id
          assert.are.equal(SAFE_MAX, mgr:append(id, { "x" }, { tokens = 5 }).total_tokens)
          refuses(mgr, "invalid", "total_tokens would pass 9007199254740992",
            function() return mgr:append(id, {}, { tokens = 1 }) end)
          refuses(mgr, "invalid", "options.tokens", function() return mgr:append(id, {}, { tokens = 2.0 ^ 63 }) end)
          assert.are.equal(SAFE_MAX, mgr:resume(id).metadata.total_tokens)
        end)

        it("append may reach total_tokens 2^63-1, not pass it, with big_integers = \"string\"", function()
          local texts = store.new({ big_integers = "string" })
          local s = session()
          s.metadata.total_tokens = "9223372036854775802"
          texts:save(s)
          local id = s.metadata.id
          refuses(texts, "invalid", "total_tokens would pass 9223372036854775807",
            function() return texts:append(id, {}, { tokens = 6 }) end)
          assert.are.equal(TOKENS_MAX, texts:append(id, { "x" }, { tokens = 5 }).total_tokens)
          refuses(texts, "invalid", "total_tokens would pass 9223372036854775807",
            function() return texts:append(id, {}, { tokens = 1 }) end)
          refuses(texts, "invalid", "total_tokens would pass",
            function() return texts:append(id, {}, { tokens = SAFE_MAX }) end)
          assert.are.equal(TOKENS_MAX, texts:resume(id).metadata.total_tokens)
          texts:close()
        end)
      end)
    end
  end)
end
