-- agentsession.conformance.op_id: the checks of appends that can be retried: an append
-- carrying an op_id is applied at most once to its session.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local fail, show, eq, truthy = support.fail, support.show, support.eq, support.truthy
local expect_error_in, expect_refused = support.expect_error_in, support.expect_refused
local MISSING, make_session, messages = support.MISSING, support.make_session, support.messages
local resume, meta_of, save = support.resume, support.meta_of, support.save
local snapshot, unchanged, concat = support.snapshot, support.unchanged, support.concat
local appended, append_source, two_sessions = support.appended, support.append_source, support.two_sessions
local list = support.list

-- How many op ids a store remembers per session, at least.
local KEPT = 100

local checks, check = support.family()

-- mgr:append(id, msgs, { op_id = op_id } plus opts): its two results, checked for their types.
local function append_op(mgr, id, msgs, op_id, opts)
  local o = { op_id = op_id }
  for k, v in pairs(opts or {}) do o[k] = v end
  local meta, applied = mgr:append(id, msgs, o)
  if type(meta) ~= "table" then fail("append with op_id %s returned %s, not the metadata", show(op_id), show(meta)) end
  if type(applied) ~= "boolean" then
    fail("append with op_id %s returned %s as its second value, not a boolean", show(op_id), show(applied))
  end
  return meta, applied
end

-- The append must have been applied (true) or not (false).
local function expect_applied(want, applied, what)
  if applied ~= want then fail("%s: the second value is %s, expected %s", what, show(applied), show(want)) end
end

check("op_id: an append with an op_id is applied, and returns the new metadata and true", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local meta, applied = append_op(mgr, id, appended(2, 0), "op-first", { tokens = 5 })
  expect_applied(true, applied, "the first append with op-first")
  eq(9, meta.turn_count, "append().turn_count")
  eq(105, meta.total_tokens, "append().total_tokens")
  eq(2, meta.version, "append().version")
  eq(meta_of(mgr, id), meta, "append() vs resume().metadata")
  eq(concat(messages(3), appended(2, 0)), resume(mgr, id).messages, "messages")
end)

check("op_id: sent again, the append changes nothing and returns the current metadata and false", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local first = append_op(mgr, id, appended(2, 0), "op-repeat")
  local before = snapshot(mgr)
  local meta, applied = append_op(mgr, id, appended(2, 0), "op-repeat")
  expect_applied(false, applied, "the repeat of op-repeat")
  eq(first, meta, "the repeat's metadata")
  unchanged(mgr, before, "an append whose op_id was applied")
  eq(concat(messages(3), appended(2, 0)), resume(mgr, id).messages, "messages after the repeat")
end)

check("op_id: a repeat with other messages, tokens, state or a stale expect_version still changes nothing",
  function(mgr)
    local s = append_source(mgr)
    local id = s.metadata.id
    local first = append_op(mgr, id, appended(1, 0), "op-other", { expect_version = 1 })
    local before = snapshot(mgr)
    local rows = {
      { "other messages", appended(3, 10), {} },
      { "tokens", appended(1, 0), { tokens = 99 } },
      { "a state", appended(1, 0), { state = { replaced = true } } },
      { "expect_version of the version before", appended(1, 0), { expect_version = 1 } },
      { "expect_version 0", appended(1, 0), { expect_version = 0 } },
      { "no message", {}, {} },
    }
    for _, row in ipairs(rows) do
      local meta, applied = append_op(mgr, id, row[2], "op-other", row[3])
      expect_applied(false, applied, "the repeat with " .. row[1])
      eq(first, meta, "the repeat's metadata with " .. row[1])
    end
    unchanged(mgr, before, "the repeats of an applied op_id")
  end)

check("op_id: an append with another op_id, or without one, applies", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append_op(mgr, id, appended(1, 0), "op-a")
  local _, applied = append_op(mgr, id, appended(1, 1), "op-b")
  expect_applied(true, applied, "an append with op-b after op-a")
  local meta = mgr:append(id, appended(1, 2))
  eq(4, meta.version, "version after an append without op_id")
  _, applied = append_op(mgr, id, appended(1, 3), "OP-A")
  expect_applied(true, applied, "an append with OP-A (op ids are compared as they are)")
  eq(concat(messages(3), appended(4, 0)), resume(mgr, id).messages, "messages")
end)

check("op_id: is remembered per session: another session applies the same op_id", function(mgr)
  local a = append_source(mgr).metadata.id
  local b = save(mgr, make_session(nil, messages(1))).id
  append_op(mgr, a, { "to a" }, "op-shared")
  local _, applied = append_op(mgr, b, { "to b" }, "op-shared")
  expect_applied(true, applied, "op-shared on a second session")
  eq({ messages(1)[1], "to b" }, resume(mgr, b).messages, "the second session's messages")
  _, applied = append_op(mgr, b, { "to b" }, "op-shared")
  expect_applied(false, applied, "op-shared again on the second session")
end)

check("op_id: the op ids of the last " .. KEPT .. " appends that carried one are all remembered", function(mgr)
  local s = make_session(nil, {})
  save(mgr, s)
  local id = s.metadata.id
  local total = KEPT + 5
  for i = 1, total do
    append_op(mgr, id, { i }, "op-" .. i)
    -- appends without an op_id in between do not push any out
    if i % 10 == 0 then mgr:append(id, {}) end
  end
  local before = snapshot(mgr)
  for i = total, total - KEPT + 1, -1 do
    local _, applied = append_op(mgr, id, { i }, "op-" .. i)
    if applied then fail("op-%d, one of the last %d op ids, was applied again", i, KEPT) end
  end
  unchanged(mgr, before, "the repeats of the last " .. KEPT .. " op ids")
  eq(total, #resume(mgr, id).messages, "number of messages")
end)

check("op_id: an empty append with an op_id is recorded like any other", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local _, applied = append_op(mgr, id, {}, "op-empty", { tokens = 3 })
  expect_applied(true, applied, "the empty append")
  local meta
  meta, applied = append_op(mgr, id, {}, "op-empty", { tokens = 3 })
  expect_applied(false, applied, "the empty append again")
  eq(103, meta.total_tokens, "total_tokens")
  eq(2, meta.version, "version")
end)

check("op_id: survives save, rewind, tag, untag, rename and a replacing import", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append_op(mgr, id, appended(1, 0), "op-kept")
  local steps = {
    { "save", function() save(mgr, resume(mgr, id)) end },
    { "save of a window", function()
      local w = mgr:resume(id, { last = 1 })
      w.messages[#w.messages + 1] = "added to a window"
      save(mgr, w)
    end },
    { "rewind", function() mgr:rewind(id, 4) end },
    { "tag", function() mgr:tag(id, "kept") end },
    { "untag", function() mgr:untag(id, "kept") end },
    { "rename", function() mgr:rename(id, "renamed") end },
    { "import with replace", function() mgr:import(mgr:export(id), { replace = true }) end },
  }
  for _, step in ipairs(steps) do
    step[2]()
    local before = snapshot(mgr)
    local _, applied = append_op(mgr, id, appended(1, 0), "op-kept")
    expect_applied(false, applied, "op-kept after " .. step[1])
    unchanged(mgr, before, "op-kept sent again after " .. step[1])
  end
end)

check("op_id: a fork, and an imported export, start without op ids", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append_op(mgr, id, appended(1, 0), "op-source")
  local fork = mgr:fork(id, "copy").id
  local _, applied = append_op(mgr, fork, { "in the fork" }, "op-source")
  expect_applied(true, applied, "op-source on a fork of its session")
  local doc = agentsession.json.decode(mgr:export(id))
  truthy(doc.op_ids == nil and doc.metadata.op_ids == nil, "export carries op ids: %s", mgr:export(id))
  doc.metadata.id = "op-imported-" .. id
  mgr:import(agentsession.json.encode(doc))
  _, applied = append_op(mgr, doc.metadata.id, { "in the copy" }, "op-source")
  expect_applied(true, applied, "op-source on an imported export of its session")
end)

check("op_id: deleting the session removes its op ids", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append_op(mgr, id, appended(1, 0), "op-deleted")
  mgr:delete(id)
  expect_error_in("an append with op-deleted to the deleted session", "not_found", function()
    return mgr:append(id, { "x" }, { op_id = "op-deleted" })
  end)
  save(mgr, make_session({ id = id }, {}))
  local _, applied = append_op(mgr, id, { "after" }, "op-deleted")
  expect_applied(true, applied, "op-deleted on a new session saved under the deleted one's id")
  eq({ "after" }, resume(mgr, id).messages, "messages of the new session")
end)

check("op_id: resume, list and append's result show no op ids", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local meta = append_op(mgr, id, appended(1, 0), "op-hidden")
  local r = resume(mgr, id)
  for k in pairs(r) do
    truthy(k == "metadata" or k == "messages" or k == "state", "resume() has a field %s", show(k))
  end
  for _, m in ipairs({ meta, r.metadata, list(mgr)[1], (append_op(mgr, id, {}, "op-hidden")) }) do
    for k, v in pairs(m) do
      truthy(type(v) ~= "string" or not v:find("op-hidden", 1, true), "metadata.%s shows the op id", tostring(k))
    end
  end
end)

check("op_id: to a missing id is not_found and changes nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local err = expect_error_in("an append with an op_id to a missing id", "not_found", function()
    return mgr:append(MISSING, { "x" }, { op_id = "op-missing" })
  end)
  eq(MISSING, err.id, "err.id")
  unchanged(mgr, before, "a failed append with an op_id")
end)

check("op_id: one that is not 1 to 128 bytes of text is invalid and changes nothing", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  local bad = {
    { "an empty string", "" }, { "129 bytes", string.rep("x", 129) }, { "a number", 7 },
    { "a table", { "op" } }, { "true", true }, { "a control character", "op\n1" },
    { "invalid UTF-8", "op\255" },
  }
  for _, row in ipairs(bad) do
    local err = expect_error_in("an append with op_id = " .. row[1], "invalid", function()
      return mgr:append(id, { "x" }, { op_id = row[2] })
    end)
    truthy(type(err.message) == "string" and err.message:find("op_id", 1, true),
      "op_id = %s: the message %s does not name op_id", row[1], show(err.message))
  end
  expect_refused("an append with op_id = a function", function()
    return mgr:append(id, { "x" }, { op_id = print })
  end)
  unchanged(mgr, before, "appends with bad op ids")
  local long = string.rep("\195\169", 64)
  local _, applied = append_op(mgr, id, { "long" }, long)
  expect_applied(true, applied, "an op_id of 128 bytes")
  _, applied = append_op(mgr, id, { "long" }, long)
  expect_applied(false, applied, "an op_id of 128 bytes, again")
end)

return checks
