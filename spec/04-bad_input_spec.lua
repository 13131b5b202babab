-- Bad input, row by row: every call below must fail with the given error and
-- leave the store exactly as it was.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local deep = require("helpers.deep")
local interp = require("helpers.interp")

local json = agentsession.json

local MISSING_ID = "7d3c1f4e-2a5b-4c6d-9e8f-0a1b2c3d4e5f"

local id_counter = 0
local function new_id()
  id_counter = id_counter + 1
  return string.format("spec04-%d-%d", id_counter, math.random(1, 1000000000))
end

-- A valid session with the given id; the rows below break one thing in it.
local valid_session = require("helpers.known")

-- Strings where a whole number belongs. Where Lua has no integers the decimal text of
-- an integer is taken (big_integers = "string" reads large counts so), so these are
-- texts that name no integer.
local NOT_A_NUMBER = interp.has_integers and { created_at = "1000", total_tokens = "10", version = "1" }
  or { created_at = "1e3", total_tokens = "10.0", version = "01" }

local function nested(depth)
  local v = {}
  for _ = 2, depth do v = { v } end
  return v
end

-- A message that refers to itself, which no store can encode.
local cycle = require("agentsession.conformance.support").cycle

-- A row saving the known session (same id) after `mutate` broke it.
local function save_row(what, contains, mutate)
  return {
    what = "save with " .. what,
    kind = "invalid",
    contains = contains,
    call = function(mgr, id)
      local s = valid_session(id)
      mutate(s, s.metadata)
      return mgr:save(s)
    end,
  }
end

local function call_row(what, kind, contains, call)
  return { what = what, kind = kind, contains = contains, call = call }
end

local rows = {
  -- metadata.id
  save_row("an empty id", "metadata.id", function(_, m) m.id = "" end),
  save_row("a 256-byte id", "metadata.id", function(_, m) m.id = string.rep("i", 256) end),
  save_row("a newline in the id", "metadata.id", function(_, m) m.id = "ab\ncd" end),
  save_row("a NUL in the id", "metadata.id", function(_, m) m.id = "ab\0cd" end),
  save_row("DEL in the id", "metadata.id", function(_, m) m.id = "ab\127cd" end),
  save_row("a C1 control in the id", "metadata.id", function(_, m) m.id = "ab\194\133cd" end),
  save_row("invalid UTF-8 in the id", "metadata.id", function(_, m) m.id = "ab\255cd" end),
  save_row("a truncated UTF-8 sequence in the id", "metadata.id", function(_, m) m.id = "ab\195" end),
  save_row("an overlong UTF-8 encoding in the id", "metadata.id", function(_, m) m.id = "a\192\175b" end),
  save_row("a UTF-8 surrogate in the id", "metadata.id", function(_, m) m.id = "a\237\160\128b" end),
  save_row("a numeric id", "metadata.id", function(_, m) m.id = 12345 end),
  save_row("no id", "metadata.id", function(_, m) m.id = nil end),
  -- metadata.name
  save_row("a numeric name", "metadata.name", function(_, m) m.name = 5 end),
  save_row("a table name", "metadata.name", function(_, m) m.name = { "x" } end),
  save_row("invalid UTF-8 in the name", "metadata.name", function(_, m) m.name = "bad \195\040 name" end),
  save_row("a control character in the name", "metadata.name", function(_, m) m.name = "a\tb" end),
  save_row("a 1025-byte name", "metadata.name", function(_, m) m.name = string.rep("n", 1025) end),
  -- metadata.tags
  save_row("tags that are a string", "metadata.tags", function(_, m) m.tags = "a" end),
  save_row("a numeric tag", "metadata.tags[2]", function(_, m) m.tags = { "a", 5 } end),
  save_row("a table tag", "metadata.tags[1]", function(_, m) m.tags = { {}, "b" } end),
  save_row("sparse tags", "metadata.tags", function(_, m) m.tags = { [1] = "a", [3] = "c" } end),
  save_row("tags that are an object", "metadata.tags", function(_, m) m.tags = { x = "a" } end),
  save_row("an empty tag", "metadata.tags[2]", function(_, m) m.tags = { "a", "" } end),
  save_row("a 256-byte tag", "metadata.tags[1]", function(_, m) m.tags = { string.rep("t", 256) } end),
  save_row("invalid UTF-8 in a tag", "metadata.tags[2]", function(_, m) m.tags = { "a", "\255" } end),
  save_row("a control character in a tag", "metadata.tags[3]", function(_, m) m.tags = { "a", "b", "c\nd" } end),
  -- metadata.agent_name
  save_row("no agent_name", "metadata.agent_name", function(_, m) m.agent_name = nil end),
  save_row("a numeric agent_name", "metadata.agent_name", function(_, m) m.agent_name = 7 end),
  save_row("invalid UTF-8 in agent_name", "metadata.agent_name", function(_, m) m.agent_name = "\254" end),
  -- times and counts
  save_row("a negative created_at", "metadata.created_at", function(_, m) m.created_at = -1 end),
  save_row("a fractional created_at", "metadata.created_at", function(_, m) m.created_at = 1.5 end),
  save_row("a string created_at", "metadata.created_at", function(_, m) m.created_at = NOT_A_NUMBER.created_at end),
  save_row("an infinite created_at", "metadata.created_at", function(_, m) m.created_at = math.huge end),
  save_row("a NaN created_at", "metadata.created_at", function(_, m) m.created_at = 0 / 0 end),
  save_row("a negative updated_at", "metadata.updated_at", function(_, m) m.updated_at = -5 end),
  save_row("turn_count 2^32", "metadata.turn_count", function(_, m) m.turn_count = 4294967296 end),
  save_row("a negative turn_count", "metadata.turn_count", function(_, m) m.turn_count = -1 end),
  save_row("a fractional turn_count", "metadata.turn_count", function(_, m) m.turn_count = 2.5 end),
  save_row("a negative total_tokens", "metadata.total_tokens", function(_, m) m.total_tokens = -1 end),
  save_row("total_tokens 2^63 (a float)", "metadata.total_tokens", function(_, m) m.total_tokens = 2.0 ^ 63 end),
  save_row("a string total_tokens", "metadata.total_tokens",
    function(_, m) m.total_tokens = NOT_A_NUMBER.total_tokens end),
  save_row("a string version", "metadata.version", function(_, m) m.version = NOT_A_NUMBER.version end),
  save_row("an empty parent_id", "metadata.parent_id", function(_, m) m.parent_id = "" end),
  save_row("a numeric parent_id", "metadata.parent_id", function(_, m) m.parent_id = 1 end),
  -- unknown keys and missing parts
  save_row("an unknown metadata key", { "metadata", "bogus" }, function(_, m) m.bogus = 1 end),
  save_row("an unknown session key", { "extra" }, function(s) s.extra = true end),
  save_row("no metadata", "metadata", function(s) s.metadata = nil end),
  save_row("metadata that is a string", "metadata", function(s) s.metadata = "x" end),
  -- messages
  save_row("messages that are a string", "messages", function(s) s.messages = "hello" end),
  save_row("messages that are an object", "messages", function(s) s.messages = { role = "user" } end),
  save_row("sparse messages", "messages", function(s) s.messages = { [1] = "a", [3] = "c" } end),
  save_row("a function in a message", "messages[3].content",
    function(s) s.messages[3].content = print end),
  save_row("a function as a message", "messages[2]", function(s) s.messages[2] = print end),
  save_row("a coroutine in a message", "messages[1].co",
    function(s) s.messages[1].co = coroutine.create(function() end) end),
  save_row("a file handle in a message", "messages[1]", function(s) s.messages[1].f = io.stdout end),
  save_row("NaN in a message", "messages[2].content[1].score",
    function(s) s.messages[2].content[1].score = 0 / 0 end),
  save_row("infinity in a message", "messages[3]", function(s) s.messages[3] = { n = math.huge } end),
  save_row("minus infinity in a message", "messages[3]", function(s) s.messages[3] = -math.huge end),
  save_row("a cycle in a message", "messages[2]", function(s) s.messages[2] = cycle() end),
  save_row("invalid UTF-8 in a message string", "messages[3].content",
    function(s) s.messages[3].content = "caf\233" end),
  save_row("invalid UTF-8 in a message key", "messages[1]",
    function(s) s.messages[1]["k\255"] = 1 end),
  save_row("a sparse table in a message", "messages[2]",
    function(s) s.messages[2] = { [1] = "a", [3] = "c" } end),
  save_row("a mixed table in a message", "messages[1]",
    function(s) s.messages[1] = { "a", role = "user" } end),
  save_row("a boolean key in a message", "messages[1]", function(s) s.messages[1][true] = 1 end),
  save_row("a float key in a message", "messages[1]", function(s) s.messages[1] = { [1.5] = "x" } end),
  save_row("a message nested 129 levels deep", "messages[3]", function(s) s.messages[3] = nested(129) end),
  -- state
  save_row("a function in the state", "state.cwd", function(s) s.state.cwd = print end),
  save_row("a function as the state", "state", function(s) s.state = print end),
  save_row("NaN as the state", "state", function(s) s.state = 0 / 0 end),
  save_row("invalid UTF-8 in the state", "state.cwd", function(s) s.state.cwd = "\128" end),
  save_row("a state nested 129 levels deep", "state", function(s) s.state = nested(129) end),

  -- arguments
  call_row("rewind to -1", "invalid", "turn_index", function(mgr, id) return mgr:rewind(id, -1) end),
  call_row("rewind to 1.5", "invalid", "turn_index", function(mgr, id) return mgr:rewind(id, 1.5) end),
  call_row("rewind to infinity", "invalid", "turn_index",
    function(mgr, id) return mgr:rewind(id, math.huge) end),
  call_row("rewind to NaN", "invalid", "turn_index", function(mgr, id) return mgr:rewind(id, 0 / 0) end),
  call_row("list with limit -1", "invalid", "filter.limit", function(mgr) return mgr:list({ limit = -1 }) end),
  call_row("list with limit 1.5", "invalid", "filter.limit", function(mgr) return mgr:list({ limit = 1.5 }) end),
  call_row("list with a string limit", "invalid", "filter.limit",
    function(mgr) return mgr:list({ limit = "2" }) end),
  call_row("list with offset -1", "invalid", "filter.offset",
    function(mgr) return mgr:list({ offset = -1 }) end),
  call_row("list with offset 0.5", "invalid", "filter.offset",
    function(mgr) return mgr:list({ offset = 0.5 }) end),
  call_row("list with an unknown filter key", "invalid", "bogus", function(mgr) return mgr:list({ bogus = 1 }) end),
  call_row("list with a numeric tag", "invalid", "filter.tag", function(mgr) return mgr:list({ tag = 5 }) end),
  call_row("list with tags that are a string", "invalid", "filter.tags",
    function(mgr) return mgr:list({ tags = "a" }) end),
  call_row("list with a numeric entry in tags", "invalid", "filter.tags[2]",
    function(mgr) return mgr:list({ tags = { "a", 5 } }) end),
  call_row("list with a numeric agent_name", "invalid", "filter.agent_name",
    function(mgr) return mgr:list({ agent_name = 5 }) end),
  -- filter strings are matched whole: a NUL would cut them short, so it is refused
  call_row("list with a NUL in tag", "invalid", "filter.tag", function(mgr) return mgr:list({ tag = "a\0b" }) end),
  call_row("list with a tag that is only NUL", "invalid", "filter.tag",
    function(mgr) return mgr:list({ tag = "\0" }) end),
  call_row("list with a NUL in agent_name", "invalid", "filter.agent_name",
    function(mgr) return mgr:list({ agent_name = "code-agent\0x" }) end),
  call_row("list with a NUL in parent_id", "invalid", "filter.parent_id",
    function(mgr, id) return mgr:list({ parent_id = id .. "\0" }) end),
  call_row("list with a NUL in an entry of tags", "invalid", "filter.tags[2]",
    function(mgr) return mgr:list({ tags = { "a", "b\0c" } }) end),
  call_row("list with tags that have a hole", "invalid", "filter.tags",
    function(mgr) return mgr:list({ tags = { [1] = "a", [3] = "b" } }) end),
  call_row("list with tags that have a string key", "invalid", "filter.tags",
    function(mgr) return mgr:list({ tags = { "a", "b", x = "c" } }) end),
  call_row("list with tags that have a float key", "invalid", "filter.tags",
    function(mgr) return mgr:list({ tags = { "a", [1.5] = "b" } }) end),
  call_row("list with tags that have a key 0", "invalid", "filter.tags",
    function(mgr) return mgr:list({ tags = { [0] = "b", "a" } }) end),
  call_row("tag with a numeric entry", "invalid", "tags[2]", function(mgr, id) return mgr:tag(id, { "c", 5 }) end),
  call_row("tag with an empty tag", "invalid", "tags", function(mgr, id) return mgr:tag(id, "") end),
  call_row("tag with invalid UTF-8", "invalid", "tags[1]", function(mgr, id) return mgr:tag(id, { "\255" }) end),
  call_row("tag with a 256-byte tag", "invalid", "tags",
    function(mgr, id) return mgr:tag(id, string.rep("t", 256)) end),
  call_row("untag with a numeric entry", "invalid", "tags[2]",
    function(mgr, id) return mgr:untag(id, { "a", 5 }) end),
  call_row("fork with at = -1", "invalid", "at", function(mgr, id) return mgr:fork(id, nil, { at = -1 }) end),
  call_row("fork with at = 1.5", "invalid", "at", function(mgr, id) return mgr:fork(id, "f", { at = 1.5 }) end),
  call_row("fork with a name in invalid UTF-8", "invalid", "name",
    function(mgr, id) return mgr:fork(id, "bad\255") end),
  call_row("rename to invalid UTF-8", "invalid", "name", function(mgr, id) return mgr:rename(id, "\195") end),
  call_row("rename to a name with a newline", "invalid", "name",
    function(mgr, id) return mgr:rename(id, "two\nlines") end),

  -- ids given to the other methods
  call_row("resume of an empty id", "invalid", "id", function(mgr) return mgr:resume("") end),
  call_row("resume of a 256-byte id", "invalid", "id", function(mgr) return mgr:resume(string.rep("i", 256)) end),
  call_row("resume of an id with a newline", "invalid", "id", function(mgr) return mgr:resume("a\nb") end),
  call_row("resume of an id with a NUL", "invalid", "id", function(mgr, id) return mgr:resume(id .. "\0") end),
  call_row("resume of an id with DEL", "invalid", "id", function(mgr) return mgr:resume("a\127") end),
  call_row("resume of an id in invalid UTF-8", "invalid", "id", function(mgr) return mgr:resume("\255\254") end),
  call_row("fork of an id with a tab", "invalid", "id", function(mgr) return mgr:fork("a\tb") end),
  call_row("rewind of an empty id", "invalid", "id", function(mgr) return mgr:rewind("", 0) end),
  call_row("tag of an empty id", "invalid", "id", function(mgr) return mgr:tag("", "x") end),
  call_row("untag of an id with an escape", "invalid", "id", function(mgr) return mgr:untag("\27[0m", "a") end),
  call_row("rename of an empty id", "invalid", "id", function(mgr) return mgr:rename("", "n") end),
  call_row("delete of an empty id", "invalid", "id", function(mgr) return mgr:delete("") end),
  call_row("delete of a 256-byte id", "invalid", "id", function(mgr) return mgr:delete(string.rep("d", 256)) end),
  call_row("resume of a well-formed missing id", "not_found", MISSING_ID,
    function(mgr) return mgr:resume(MISSING_ID) end),
  call_row("delete of a well-formed missing id", "not_found", MISSING_ID,
    function(mgr) return mgr:delete(MISSING_ID) end),

  -- JSON text
  call_row("json.decode of an unclosed object", "invalid", "at byte", function() return json.decode("{") end),
  call_row("json.decode of a trailing comma", "invalid", "at byte", function() return json.decode("[1,]") end),
  call_row("json.decode of trailing garbage", "invalid", "at byte", function() return json.decode("[1] x") end),
  call_row("json.decode of a leading zero", "invalid", "at byte", function() return json.decode("01") end),
  call_row("json.decode of invalid UTF-8", "invalid", "at byte", function() return json.decode('"\255"') end),
  call_row("json.decode of NaN", "invalid", "at byte", function() return json.decode("NaN") end),
  call_row("json.decode of 1e400", "invalid", "at byte", function() return json.decode("1e400") end),
  call_row("json.decode of a lone surrogate", "invalid", "at byte",
    function() return json.decode('"\\ud800"') end),
  call_row("json.decode of a raw newline in a string", "invalid", "at byte",
    function() return json.decode('"a\nb"') end),
  call_row("json.decode of a comment", "invalid", "at byte", function() return json.decode("// c\n1") end),
  call_row("json.decode of empty text", "invalid", "at byte", function() return json.decode("") end),
  call_row("json.decode of a single quote string", "invalid", "at byte", function() return json.decode("'a'") end),
  call_row("json.decode of an unquoted key", "invalid", "at byte", function() return json.decode("{a:1}") end),
  call_row("json.decode of 129 nested arrays", "invalid", "at byte",
    function() return json.decode(string.rep("[", 129) .. string.rep("]", 129)) end),
  call_row("json.encode of a function", "invalid", "value", function() return json.encode(print) end),
  call_row("json.encode of NaN inside an array", "invalid", "value[2]",
    function() return json.encode({ 1, 0 / 0 }) end),
  call_row("json.encode of nil", "invalid", "value", function() return json.encode(nil) end),
}

if not interp.has_integers then
  -- Where Lua has no integers, a write whose counts would pass 2^53 could not be read
  -- back by default (big_integers = "error"): it is refused before anything is written.
  for _, row in ipairs({
    save_row("total_tokens 2^53 + 2", "metadata.total_tokens", function(_, m) m.total_tokens = 2 ^ 53 + 2 end),
    save_row("total_tokens 2^63 - 1024", "metadata.total_tokens",
      function(_, m) m.total_tokens = 9223372036854774784 end),
    save_row("total_tokens as the text of 2^53 + 1", "metadata.total_tokens",
      function(_, m) m.total_tokens = "9007199254740993" end),
    save_row("created_at as the text of 2^60", "metadata.created_at",
      function(_, m) m.created_at = "1152921504606846976" end),
    call_row("append taking total_tokens past 2^53", "invalid", "total_tokens would pass 9007199254740992",
      function(mgr, id) return mgr:append(id, { "x" }, { tokens = 2 ^ 53 }) end),
  }) do
    rows[#rows + 1] = row
  end
end

-- Calls that misuse the API: each must raise a standard Lua argument error.
local misuse = {
  { "save of a string", function(mgr) return mgr:save("x") end },
  { "save of nil", function(mgr) return mgr:save(nil) end },
  { "save of a number", function(mgr) return mgr:save(5) end },
  { "resume of a number", function(mgr) return mgr:resume(5) end },
  { "resume of nil", function(mgr) return mgr:resume() end },
  { "resume of a table", function(mgr) return mgr:resume({}) end },
  { "resume called with a dot", function(mgr) return mgr.resume() end },
  { "resume called with a dot and an id", function(mgr, id) return mgr.resume(id) end },
  { "rename to a number", function(mgr, id) return mgr:rename(id, 5) end },
  { "rename to nil", function(mgr, id) return mgr:rename(id) end },
  { "rewind to a string", function(mgr, id) return mgr:rewind(id, "3") end },
  { "rewind without an index", function(mgr, id) return mgr:rewind(id) end },
  { "tag with a number", function(mgr, id) return mgr:tag(id, 5) end },
  { "tag with nil", function(mgr, id) return mgr:tag(id) end },
  { "untag with a boolean", function(mgr, id) return mgr:untag(id, true) end },
  { "list with a number", function(mgr) return mgr:list(5) end },
  { "list with a string", function(mgr) return mgr:list("all") end },
  { "fork with a numeric name", function(mgr, id) return mgr:fork(id, 5) end },
  { "fork with options that are a number", function(mgr, id) return mgr:fork(id, nil, 5) end },
  { "delete of a table", function(mgr) return mgr:delete({}) end },
  { "save called with a dot", function(mgr, id) return mgr.save(valid_session(id)) end },
  { "json.decode of a table", function() return json.decode({}) end },
  { "json.decode of nothing", function() return json.decode() end },
}

local function message_contains(message, wanted)
  if type(wanted) == "string" then wanted = { wanted } end
  for _, part in ipairs(wanted) do
    if not message:find(part, 1, true) then return false, part end
  end
  return true
end

for _, store in ipairs(stores) do
  describe(store.name .. " store", function()
    local mgr, id, list_before, session_before

    before_each(function()
      mgr = store.new()
      id = new_id()
      mgr:save(valid_session(new_id()))
      mgr:save(valid_session(id))
      list_before = mgr:list()
      session_before = mgr:resume(id)
    end)

    after_each(function()
      mgr:close()
    end)

    local function assert_unchanged()
      deep.assert_same(list_before, mgr:list(), { root = "list()" })
      deep.assert_same(session_before, mgr:resume(id), { root = "resume()" })
    end

    it("holds the known session to begin with", function()
      assert.are.equal(2, #list_before)
      assert.are.equal(id, list_before[1].id)
      assert.are.equal(3, #session_before.messages)
    end)

    describe("refuses", function()
      for _, row in ipairs(rows) do
        it(row.what .. " as " .. row.kind .. " and changes nothing", function()
          local ok, err = pcall(row.call, mgr, id)
          assert.is_false(ok, "the call succeeded")
          assert.is_true(agentsession.is_error(err, row.kind),
            "expected an error of kind " .. row.kind .. ", got " .. tostring(err))
          assert.are.equal("string", type(err.message))
          local found, part = message_contains(err.message, row.contains)
          assert.is_true(found, string.format("message %q does not contain %q", err.message, tostring(part)))
          assert_unchanged()
        end)
      end
    end)

    describe("raises an argument error for", function()
      for _, row in ipairs(misuse) do
        local what, call = row[1], row[2]
        it(what, function()
          local ok, err = pcall(call, mgr, id)
          assert.is_false(ok, "the call succeeded")
          assert.are.equal("string", type(err), "not a Lua argument error: " .. tostring(err))
          assert.is_truthy(err:find("bad argument", 1, true), err)
          assert_unchanged()
        end)
      end
    end)

    describe("option big_integers", function()
      it("is refused with invalid naming it unless \"error\", \"float\" or \"string\"", function()
        for _, bad in ipairs({ "bogus", "", "STRING", 1, true, {} }) do
          local ok, err = pcall(store.new, { big_integers = bad })
          assert.is_false(ok, "accepted " .. tostring(bad))
          assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
          assert.truthy(err.message:find("options.big_integers", 1, true), err.message)
        end
      end)

      it("is accepted with each of its values" .. (interp.has_integers and ", and changes nothing here" or ""),
        function()
          for _, opt in ipairs({ "error", "float", "string" }) do
            local m = store.new({ big_integers = opt })
            local s = valid_session(new_id())
            -- a 64-bit count where Lua has integers: the option does not touch it
            s.metadata.total_tokens = interp.has_integers and math.maxinteger or 2 ^ 53
            s.messages = { interp.has_integers and 9007199254740993 or 2 ^ 53, 0.5, "9007199254740993" }
            local meta = m:save(s)
            local back = m:resume(s.metadata.id)
            deep.assert_same(s.messages, back.messages, { root = opt .. ": messages", metatables = "ignore" })
            assert.are.equal(s.metadata.total_tokens, meta.total_tokens, opt)
            assert.are.equal(s.metadata.total_tokens, back.metadata.total_tokens, opt)
            m:close()
          end
        end)
    end)

    describe("accepts the boundary values", function()
      it("a 255-byte id, 255-byte tags and a 1024-byte name", function()
        local s = valid_session(string.rep("i", 255))
        s.metadata.tags = { string.rep("t", 255) }
        s.metadata.name = string.rep("n", 1024)
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert.are.equal(string.rep("t", 255), loaded.metadata.tags[1])
        assert.are.equal(string.rep("n", 1024), loaded.metadata.name)
      end)

      it("an id, name and tag in multi-byte UTF-8", function()
        local s = valid_session("séance-🙂-" .. new_id())
        s.metadata.name = "naïve 名前"
        s.metadata.tags = { "ünïcode", "标签" }
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        assert.are.equal("naïve 名前", loaded.metadata.name)
        assert.are.same({ "ünïcode", "标签" }, loaded.metadata.tags)
      end)

      -- total_tokens up to 2^63-1 where Lua has integers; elsewhere up to 2^53,
      -- the largest that reads back as a number by default
      local max_tokens = interp.has_integers and math.maxinteger or 2 ^ 53
      it("turn_count 2^32-1 and total_tokens " .. (interp.has_integers and "2^63-1" or "2^53"), function()
        local s = valid_session(new_id())
        s.metadata.turn_count = 4294967295
        s.metadata.total_tokens = max_tokens
        local meta = mgr:save(s)
        assert.are.equal(4294967295, meta.turn_count)
        assert.are.equal(max_tokens, meta.total_tokens)
        assert.are.equal(max_tokens, mgr:resume(s.metadata.id).metadata.total_tokens)
      end)

      if not interp.has_integers then
        it("the decimal text of times and counts (as big_integers = \"string\" reads them)", function()
          local s = valid_session(new_id())
          s.metadata.created_at, s.metadata.turn_count, s.metadata.total_tokens = "5000", "2", "9007199254740992"
          local meta = mgr:save(s)
          assert.are.equal(5000, meta.created_at)
          assert.are.equal(2, meta.turn_count)
          assert.are.equal(2 ^ 53, meta.total_tokens)
          deep.assert_same(meta, mgr:resume(s.metadata.id).metadata, { root = "metadata" })
        end)

        it("total_tokens past 2^53 with big_integers = \"string\" or \"float\", read as the option says",
          function()
            for _, opt in ipairs({ "string", "float" }) do
              local m = store.new({ big_integers = opt })
              local s = valid_session(new_id())
              s.metadata.total_tokens = "9007199254740994" -- 2^53 + 2, which a double holds
              local want = opt == "string" and "9007199254740994" or 2 ^ 53 + 2
              assert.are.equal(want, m:save(s).total_tokens, opt)
              assert.are.equal(want, m:resume(s.metadata.id).metadata.total_tokens, opt)
              assert.are.equal(want, m:list()[1].total_tokens, opt)
              local appended = m:append(s.metadata.id, {}, { tokens = 2 })
              assert.are.equal(opt == "string" and "9007199254740996" or 2 ^ 53 + 4, appended.total_tokens, opt)
              m:close()
            end
          end)
      end

      it("integral floats for created_at and turn_count, stored as integers", function()
        local s = valid_session(new_id())
        s.metadata.created_at = 5000.0
        s.metadata.turn_count = 2.0
        local meta = mgr:save(s)
        deep.assert_integer(meta.created_at)
        assert.are.equal(5000, meta.created_at)
        deep.assert_integer(meta.turn_count)
        assert.are.equal(2, meta.turn_count)
      end)

      it("an empty agent_name", function()
        local s = valid_session(new_id())
        s.metadata.agent_name = ""
        assert.are.equal("", mgr:save(s).agent_name)
      end)

      it("a message nested 128 levels deep and a state nested 128 levels deep", function()
        local s = valid_session(new_id())
        s.messages = { nested(128) }
        s.state = nested(128)
        mgr:save(s)
        local loaded = mgr:resume(s.metadata.id)
        deep.assert_same(json.decode(json.encode(nested(128))), loaded.state, { root = "state" })
      end)
    end)
  end)
end

describe("tables with metamethods", function()
  it("are read raw: no __index or __pairs of the caller runs during save", function()
    local mgr = agentsession.memory()
    local ran = false
    local trap = { __index = function() ran = true; error("metamethod ran") end,
                   __pairs = function() ran = true; error("metamethod ran") end }
    local s = setmetatable({}, trap)
    local ok, err = pcall(mgr.save, mgr, s)
    assert.is_false(ok)
    assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
    assert.is_false(ran)
    local good = valid_session(new_id())
    good.state = setmetatable({ cwd = "/" }, trap)
    mgr:save(good)
    assert.is_false(ran)
    assert.are.equal("/", mgr:resume(good.metadata.id).state.cwd)
    mgr:close()
  end)
end)
