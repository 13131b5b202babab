-- agentsession.conformance.window: the checks of resume last and window: reading the last
-- messages or a range of them, and saving such a window back.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local null = agentsession.null
local array_mt = agentsession.array_mt
local fail, show, same, eq, truthy = support.fail, support.show, support.same, support.eq, support.truthy
local expect_error, expect_error_in = support.expect_error, support.expect_error_in
local make_session, messages, deep_copy = support.make_session, support.messages, support.deep_copy
local is_table, resume, meta_of = support.is_table, support.resume, support.meta_of
local list_ids, save, snapshot = support.list_ids, support.save, support.snapshot
local unchanged, rewind_source = support.unchanged, support.rewind_source
local number_type, MAX_INTEGER = support.number_type, support.MAX_INTEGER

local checks, check = support.family()

------------------------------------------------------------------ resume last

check("resume last: {last = n} gives the last n messages and the stored metadata", function(mgr)
  local id = rewind_source(mgr)
  local full = resume(mgr, id)
  local r = resume(mgr, id, { last = 2 })
  eq({ messages(5)[4], messages(5)[5] }, r.messages, "messages")
  eq(full.metadata, r.metadata, "metadata")
  eq(7, r.metadata.turn_count, "turn_count")
  eq(full.state, r.state, "state")
  eq(messages(5), resume(mgr, id).messages, "a later full resume")
end)

check("resume last: n past the end gives every message", function(mgr)
  local id = rewind_source(mgr)
  eq(messages(5), resume(mgr, id, { last = 10 }).messages, "messages with last = 10")
  eq(messages(5), resume(mgr, id, { last = 5 }).messages, "messages with last = 5")
end)

check("resume last: n = 0 gives no message but the state", function(mgr)
  local id = rewind_source(mgr)
  local r = resume(mgr, id, { last = 0 })
  truthy(next(r.messages) == nil, "messages: expected none, got %s", show(r.messages))
  eq({ cwd = "/r", list = { 1 } }, r.state, "state")
  eq(meta_of(mgr, id), r.metadata, "metadata")
end)

------------------------------------------------------------------ window

-- Resumes a window, checking its `window` field is { first, count, total, version }.
local function window(mgr, id, opts)
  local w = resume(mgr, id, opts)
  is_table(w.window, "resume(id, " .. (opts.last and "{ last }" or "{ from }") .. ").window")
  for _, k in ipairs({ "first", "count", "total", "version" }) do
    truthy(number_type(w.window[k]) == "integer", "window.%s is %s, not an integer", k, show(w.window[k]))
  end
  return w
end

local function window_source(mgr, n)
  local s = make_session({ turn_count = 7, total_tokens = 70, tags = { "w" }, created_at = 1000 },
    messages(n or 10), { cwd = "/w", step = 1 })
  return save(mgr, s).id
end

check("window: resume{ last = n } carries window { first, count, total, version }", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 3 })
  eq({ first = 8, count = 3, total = 10, version = 1 }, w.window, "window")
  eq({ messages(10)[8], messages(10)[9], messages(10)[10] }, w.messages, "messages")
  eq(meta_of(mgr, id), w.metadata, "metadata")
  eq({ cwd = "/w", step = 1 }, w.state, "state")
  eq({ first = 1, count = 10, total = 10, version = 1 }, window(mgr, id, { last = 20 }).window,
    "window of last = 20")
  eq({ first = 11, count = 0, total = 10, version = 1 }, window(mgr, id, { last = 0 }).window,
    "window of last = 0")
end)

check("window: resume{ from = i, count = n } gives those messages and their window", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { from = 4, count = 2 })
  eq({ messages(10)[4], messages(10)[5] }, w.messages, "messages")
  eq({ first = 4, count = 2, total = 10, version = 1 }, w.window, "window")
  w = window(mgr, id, { from = 9 })
  eq({ messages(10)[9], messages(10)[10] }, w.messages, "messages from 9")
  eq({ first = 9, count = 2, total = 10, version = 1 }, w.window, "window from 9")
  w = window(mgr, id, { from = 8, count = 50 })
  eq({ first = 8, count = 3, total = 10, version = 1 }, w.window, "window of a count past the end")
end)

check("window: from past the end gives no message, first = total + 1", function(mgr)
  local id = window_source(mgr, 4)
  local w = window(mgr, id, { from = 9 })
  truthy(next(w.messages) == nil, "messages: expected none, got %s", show(w.messages))
  eq({ first = 5, count = 0, total = 4, version = 1 }, w.window, "window")
  eq({ cwd = "/w", step = 1 }, w.state, "state")
end)

check("window: a whole resume has no window", function(mgr)
  local id = window_source(mgr)
  eq(nil, resume(mgr, id).window, "resume(id).window")
end)

check("window: saving the last 2 with one more message keeps the other 8", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  w.messages[#w.messages + 1] = { role = "assistant", content = "m11" }
  local meta = save(mgr, w)
  local all = messages(10)
  all[11] = { role = "assistant", content = "m11" }
  eq(all, resume(mgr, id).messages, "messages after the save")
  eq(2, meta.version, "version")
  eq(meta, meta_of(mgr, id), "save()'s result")
end)

check("window: saving keeps the messages before it exactly", function(mgr)
  local before = {
    { n = MAX_INTEGER, f = 1.0, tiny = 5e-324 }, setmetatable({}, array_mt), {}, null, "caf\195\169\0",
    { deep = { { 0.1 } } },
  }
  for _, m in ipairs(messages(3)) do before[#before + 1] = m end
  local s = make_session(nil, before)
  save(mgr, s)
  local w = window(mgr, s.metadata.id, { last = 1 })
  w.messages[1] = { changed = true }
  save(mgr, w)
  local expected = deep_copy(before)
  expected[#expected] = { changed = true }
  local got = resume(mgr, s.metadata.id).messages
  local ok, why = same(expected, got, "json", "messages")
  if not ok then fail("%s", why) end
end)

check("window: a changed message is replaced, and one removed from its end is removed", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 4 })
  w.messages[1].content = "changed"
  table.remove(w.messages)
  table.remove(w.messages)
  save(mgr, w)
  local expected = messages(8)
  expected[7].content = "changed"
  eq(expected, resume(mgr, id).messages, "messages")
end)

check("window: save sets the state, name, tags and counts given, as any save", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 1 })
  w.state = { cwd = "/new" }
  w.metadata.name = "renamed"
  w.metadata.tags = { "x" }
  w.metadata.turn_count = 42
  w.metadata.created_at = 0
  local meta = save(mgr, w)
  local r = resume(mgr, id)
  eq({ cwd = "/new" }, r.state, "state")
  eq("renamed", r.metadata.name, "name")
  eq({ "x" }, r.metadata.tags, "tags")
  eq(42, r.metadata.turn_count, "turn_count")
  eq(1000, r.metadata.created_at, "created_at")
  eq(meta, r.metadata, "save()'s result")
  eq(messages(10), r.messages, "messages")
end)

check("window: saving after another write is conflict and changes nothing", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  mgr:append(id, { { role = "user", content = "meanwhile" } })
  w.messages[#w.messages + 1] = { role = "assistant", content = "late" }
  local before = snapshot(mgr)
  expect_error("conflict", function() return mgr:save(w) end)
  unchanged(mgr, before, "a conflicting window save")
end)

check("window: saving a window of a deleted session is conflict and stores nothing", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  mgr:delete(id)
  expect_error("conflict", function() return mgr:save(w) end)
  eq({}, list_ids(mgr), "list() ids")
end)

check("window: one that stops before the end is invalid and changes nothing", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { from = 3, count = 2 })
  local before = snapshot(mgr)
  expect_error("invalid", function() return mgr:save(w) end)
  w.messages[#w.messages + 1] = { content = "more" }
  expect_error("invalid", function() return mgr:save(w) end)
  unchanged(mgr, before, "saving a window short of the end")
end)

check("window: the window of last = 0 saved with new messages appends them", function(mgr)
  local id = window_source(mgr, 3)
  local w = window(mgr, id, { last = 0 })
  w.messages = { { content = "a" }, { content = "b" } }
  save(mgr, w)
  local all = messages(3)
  all[4], all[5] = { content = "a" }, { content = "b" }
  eq(all, resume(mgr, id).messages, "messages")
end)

check("window: expect_version other than the window's version is invalid", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  local before = snapshot(mgr)
  expect_error("invalid", function() return mgr:save(w, { expect_version = 2 }) end)
  unchanged(mgr, before, "a window saved with another expect_version")
  eq(2, save(mgr, w, { expect_version = 1 }).version, "saved with expect_version = its version")
end)

check("window: a window field that is not a window is invalid", function(mgr)
  local id = window_source(mgr)
  local before = snapshot(mgr)
  for i, bad in ipairs({ "x", { first = 0, total = 10, version = 1 }, { first = 1, total = 10 },
      { first = 12, count = 0, total = 10, version = 1 }, { first = 1.5, total = 10, version = 1 } }) do
    local w = window(mgr, id, { last = 1 })
    w.window = bad
    expect_error_in("window #" .. i, "invalid", function() return mgr:save(w) end)
  end
  unchanged(mgr, before, "saving bad windows")
end)

return checks
