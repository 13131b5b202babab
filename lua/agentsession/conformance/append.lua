-- agentsession.conformance.append: the checks of append: adding messages, and a state, in one
-- write.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local null = agentsession.null
local array_mt = agentsession.array_mt
local now = agentsession.now
local fail, show, same, eq, eq_json = support.fail, support.show, support.same, support.eq, support.eq_json
local eq_exact, truthy, expect_error = support.eq_exact, support.truthy, support.expect_error
local expect_error_in, expect_refused = support.expect_error_in, support.expect_refused
local MISSING, make_session, messages = support.MISSING, support.make_session, support.messages
local deep_copy, wait_past, between = support.deep_copy, support.wait_past, support.between
local resume, meta_of, list, list_ids = support.resume, support.meta_of, support.list, support.list_ids
local save, snapshot, unchanged = support.save, support.snapshot, support.unchanged
local two_sessions, cycle, append = support.two_sessions, support.cycle, support.append
local concat, appended, append_source = support.concat, support.appended, support.append_source
local HAS_INTEGERS, number_type, MAX_INTEGER = support.HAS_INTEGERS, support.number_type, support.MAX_INTEGER

-- An odd integer above 2^53 and 2^62 where Lua has integers; 2^53 - 1 and 2^52 elsewhere.
local BIG_ODD = HAS_INTEGERS and 9007199254740993 or 9007199254740991
local BIG_EVEN = HAS_INTEGERS and 4611686018427387904 or 4503599627370496

local checks, check = support.family()

check("append: adds the messages after the stored ones, in order", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, appended(2, 0))
  append(mgr, id, appended(1, 2))
  eq(concat(messages(3), appended(3, 0)), resume(mgr, id).messages, "messages after two appends")
end)

check("append: many appends of one message keep every message in order", function(mgr)
  local s = make_session(nil, {})
  save(mgr, s)
  for i = 1, 40 do append(mgr, s.metadata.id, { messages(40)[i] }) end
  local r = resume(mgr, s.metadata.id)
  eq(messages(40), r.messages, "messages")
  eq(40, r.metadata.turn_count, "turn_count")
  eq(41, r.metadata.version, "version")
end)

check("append: returns the new metadata, equal to resume(id).metadata and list()[1]", function(mgr)
  local s = append_source(mgr)
  local meta = append(mgr, s.metadata.id, appended(2, 0), { tokens = 5 })
  eq(s.metadata.id, meta.id, "append().id")
  eq(9, meta.turn_count, "append().turn_count")
  eq(105, meta.total_tokens, "append().total_tokens")
  eq(2, meta.version, "append().version")
  eq(meta_of(mgr, s.metadata.id), meta, "append() vs resume().metadata")
  eq(meta, list(mgr)[1], "append() vs list()[1]")
end)

check("append: turn_count grows by the number of messages appended", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  eq(10, append(mgr, id, appended(3, 0)).turn_count, "turn_count after appending 3 to 7")
  eq(11, append(mgr, id, appended(1, 3)).turn_count, "turn_count after appending 1 more")
  eq(11, meta_of(mgr, id).turn_count, "resume().metadata.turn_count")
end)

check("append: total_tokens grows by tokens, by 0 when not given", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  eq(125, append(mgr, id, appended(1, 0), { tokens = 25 }).total_tokens, "after tokens = 25")
  eq(125, append(mgr, id, appended(1, 1)).total_tokens, "after an append without tokens")
  eq(125, append(mgr, id, appended(1, 2), {}).total_tokens, "after an append with {}")
  eq(130, append(mgr, id, {}, { tokens = 5 }).total_tokens, "after an empty append with tokens = 5")
  eq(130, meta_of(mgr, id).total_tokens, "resume().metadata.total_tokens")
end)

check("append: version grows by one with each append", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  save(mgr, s)
  eq(3, append(mgr, id, appended(1, 0)).version, "version after save, save, append")
  eq(4, append(mgr, id, appended(2, 1)).version, "version after another append")
  eq(4, meta_of(mgr, id).version, "resume().metadata.version")
  eq(4, list(mgr)[1].version, "list()[1].version")
end)

check("append: sets updated_at to now and keeps created_at", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  wait_past(meta_of(mgr, id).updated_at)
  local before = now()
  local meta = append(mgr, id, appended(1, 0))
  local after = now()
  between(meta.updated_at, before, after, "append().updated_at")
  between(meta_of(mgr, id).updated_at, before, after, "resume().metadata.updated_at")
  eq(1000, meta.created_at, "append().created_at")
end)

check("append: keeps state, name, tags, agent_name and parent_id", function(mgr)
  local s = append_source(mgr)
  local fork = mgr:fork(s.metadata.id, "child")
  local before = resume(mgr, fork.id)
  append(mgr, fork.id, appended(2, 0))
  local after = resume(mgr, fork.id)
  eq(before.state, after.state, "state")
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "created_at", "parent_id" }) do
    eq(before.metadata[field], after.metadata[field], "metadata." .. field)
  end
  eq(concat(messages(3), appended(2, 0)), after.messages, "messages")
end)

check("append: an empty array is a write that adds nothing", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local other = save(mgr, make_session()).id
  local first = meta_of(mgr, id)
  wait_past(meta_of(mgr, other).updated_at)
  local meta = append(mgr, id, {})
  eq(2, meta.version, "append(id, {}).version")
  truthy(meta.updated_at > first.updated_at, "append(id, {}) left updated_at at %s", show(meta.updated_at))
  eq(7, meta.turn_count, "append(id, {}).turn_count")
  eq(messages(3), resume(mgr, id).messages, "messages")
  eq({ id, other }, list_ids(mgr), "list() ids after append(id, {})")
  eq(3, append(mgr, id, agentsession.array()).version, "version after append(id, array())")
end)

check("append: moves the session to the front of list, filtered or not", function(mgr)
  local a = append_source(mgr).metadata.id
  local b = save(mgr, make_session({ tags = { "a" } })).id
  eq({ b, a }, list_ids(mgr), "list() before the append")
  append(mgr, a, appended(1, 0))
  eq({ a, b }, list_ids(mgr), "list() after appending to a")
  eq({ a, b }, list_ids(mgr, { tag = "a" }), "list{ tag = 'a' } after appending to a")
  eq({ a }, list_ids(mgr, { tags = { "a", "b" }, agent_name = "code-agent" }), "list{ tags, agent_name }")
end)

check("append: values stay exact", function(mgr)
  local s = append_source(mgr)
  local values = { MAX_INTEGER, BIG_ODD, -7, 1.0, 0.1, -2.5, null, true, false, "a\0b 😀",
    agentsession.array(), {}, { list = agentsession.array(), object = {}, n = BIG_EVEN, f = 2.0 } }
  append(mgr, s.metadata.id, values)
  local r = resume(mgr, s.metadata.id)
  eq_json(concat(messages(3), values), r.messages, "messages")
  -- 1.0 is a float where Lua has integers; elsewhere it is the number 1, written as 1
  truthy(number_type(r.messages[7]) == (HAS_INTEGERS and "float" or "integer"), "messages[7] (1.0) came back as %s",
    show(r.messages[7]))
end)

check("append: does not modify the caller's table, nor see later changes to it", function(mgr)
  local s = append_source(mgr)
  local msgs = { { role = "user", content = "x", list = { 1, 2 } }, agentsession.array() }
  local copy = deep_copy(msgs)
  append(mgr, s.metadata.id, msgs)
  eq_exact(copy, msgs, "the appended table after append")
  msgs[1].content = "changed"
  msgs[1].list[3] = 3
  msgs[3] = "added"
  eq_json(concat(messages(3), copy), resume(mgr, s.metadata.id).messages, "messages")
end)

check("append: resume{ last = n } gives the appended messages", function(mgr)
  local s = append_source(mgr)
  append(mgr, s.metadata.id, appended(2, 0))
  eq(appended(2, 0), resume(mgr, s.metadata.id, { last = 2 }).messages, "resume{ last = 2 }")
  eq({ messages(3)[3], appended(2, 0)[1], appended(2, 0)[2] }, resume(mgr, s.metadata.id, { last = 3 }).messages,
    "resume{ last = 3 }")
end)

check("append: after a rewind, goes after the kept messages", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  mgr:rewind(id, 1)
  local meta = append(mgr, id, appended(2, 0))
  eq(3, meta.turn_count, "turn_count")
  eq({ messages(3)[1], appended(2, 0)[1], appended(2, 0)[2] }, resume(mgr, id).messages, "messages")
end)

check("append: a fork and its source do not see each other's appends", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local fork = mgr:fork(id, "copy").id
  local early = mgr:fork(id, "early", { at = 1 }).id
  append(mgr, id, { "only in the source" })
  append(mgr, fork, { "only in the fork" })
  append(mgr, early, { "only in the early fork" })
  eq(concat(messages(3), { "only in the source" }), resume(mgr, id).messages, "source messages")
  eq(concat(messages(3), { "only in the fork" }), resume(mgr, fork).messages, "fork messages")
  eq({ messages(3)[1], "only in the early fork" }, resume(mgr, early).messages, "early fork messages")
end)

check("append: to a session saved without messages", function(mgr)
  local s = make_session()
  s.messages = nil
  save(mgr, s)
  append(mgr, s.metadata.id, { "first" })
  eq({ "first" }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("append: state replaces the stored state in the same write", function(mgr)
  local s = make_session(nil, messages(2), { cwd = "/old", keep = false })
  save(mgr, s)
  local meta = mgr:append(s.metadata.id, { { content = "x" } }, { state = { cwd = "/new", list = { 1, 2 } } })
  local r = resume(mgr, s.metadata.id)
  eq({ cwd = "/new", list = { 1, 2 } }, r.state, "state")
  eq(3, #r.messages, "number of messages")
  eq(meta, r.metadata, "append()'s result")
  eq(2, meta.version, "version")
  mgr:append(s.metadata.id, { { content = "y" } })
  eq({ cwd = "/new", list = { 1, 2 } }, resume(mgr, s.metadata.id).state, "state after an append without state")
end)

check("append: state = null stores a JSON null, any JSON value is kept", function(mgr)
  local s = make_session(nil, messages(1))
  save(mgr, s)
  mgr:append(s.metadata.id, {}, { state = null })
  truthy(rawequal(resume(mgr, s.metadata.id).state, null), "state: expected null, got %s",
    show(resume(mgr, s.metadata.id).state))
  mgr:append(s.metadata.id, {}, { state = setmetatable({}, array_mt) })
  local ok, why = same(setmetatable({}, array_mt), resume(mgr, s.metadata.id).state, "json", "state")
  if not ok then fail("%s", why) end
end)

check("append: a state that cannot be encoded is invalid and changes nothing", function(mgr)
  local s = make_session(nil, messages(2))
  save(mgr, s)
  local before = snapshot(mgr)
  expect_error("invalid", function()
    return mgr:append(s.metadata.id, { { content = "x" } }, { state = { f = print } })
  end)
  unchanged(mgr, before, "an append with a bad state")
end)

check("append: a missing id is not_found and changes nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local err = expect_error_in("append to a missing id", "not_found", function()
    return mgr:append(MISSING, { "x" })
  end)
  eq(MISSING, err.id, "err.id")
  unchanged(mgr, before, "a failed append")
end)

check("append: messages that are not an array are refused and change nothing", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  expect_error_in("append(id, { role = 'user' })", "invalid", function()
    return mgr:append(id, { role = "user", content = "x" })
  end)
  expect_error_in("append(id, a sparse table)", "invalid", function()
    return mgr:append(id, { [1] = "a", [3] = "c" })
  end)
  expect_refused("append(id, 'x')", function() return mgr:append(id, "x") end)
  expect_refused("append(id, 5)", function() return mgr:append(id, 5) end)
  unchanged(mgr, before, "a refused append")
end)

check("append: a message that cannot be encoded is invalid and nothing is appended", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  local bad = {
    { "a function", { "fine", { content = print } }, "messages[2]" },
    { "NaN", { "fine", "fine", { score = 0 / 0 } }, "messages[3]" },
    { "invalid UTF-8", { "caf\233" }, "messages[1]" },
    { "a cycle", { "fine", cycle() }, "messages[2]" },
  }
  for _, row in ipairs(bad) do
    local err = expect_error_in("append of " .. row[1], "invalid", function() return mgr:append(id, row[2]) end)
    truthy(type(err.message) == "string" and err.message:find(row[3], 1, true),
      "append of %s: the message %s does not name %s", row[1], show(err.message), row[3])
  end
  unchanged(mgr, before, "an append of a message that cannot be encoded")
end)

check("append: negative or fractional tokens are refused and change nothing", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  expect_refused("append with tokens = -1", function() return mgr:append(id, { "x" }, { tokens = -1 }) end)
  expect_refused("append with tokens = 1.5", function() return mgr:append(id, { "x" }, { tokens = 1.5 }) end)
  unchanged(mgr, before, "an append with bad tokens")
end)

-- total_tokens' limit: 2^63-1, or where Lua has no integers 2^53, past which a store's
-- count could not be read back (big_integers = "error").
check("append: turn_count or total_tokens past their limits is invalid and changes nothing", function(mgr)
  local s = make_session({ turn_count = 4294967294, total_tokens = MAX_INTEGER - 1 })
  save(mgr, s)
  local id = s.metadata.id
  local meta = append(mgr, id, { "x" }, { tokens = 1 })
  eq(4294967295, meta.turn_count, "turn_count at its limit")
  eq(MAX_INTEGER, meta.total_tokens, "total_tokens at its limit")
  local before = snapshot(mgr)
  expect_error_in("append past turn_count 2^32-1", "invalid", function() return mgr:append(id, { "y" }) end)
  expect_error_in("append past total_tokens " .. (HAS_INTEGERS and "2^63-1" or "2^53"), "invalid", function()
    return mgr:append(id, {}, { tokens = 1 })
  end)
  unchanged(mgr, before, "an append past a limit")
end)

return checks
