-- agentsession.conformance.resume: the checks of resume: the session it gives back, a copy of
-- what was saved that shares nothing with the store.
local support = require("agentsession.conformance.support")

local show, eq, truthy, make_session = support.show, support.eq, support.truthy, support.make_session
local messages, deep_copy, resume, save = support.messages, support.deep_copy, support.resume, support.save

local checks, check = support.family()

check("resume: returns a table of exactly metadata, messages and state", function(mgr)
  local s = make_session({ tags = { "a" }, turn_count = 2, total_tokens = 99 })
  local meta = save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  for k in pairs(r) do
    truthy(k == "metadata" or k == "messages" or k == "state", "the session has an unknown key %s", show(k))
  end
  eq(meta, r.metadata, "metadata")
  eq(s.messages, r.messages, "messages")
  eq(s.state, r.state, "state")
end)

check("resume: returns an independent copy (changing it changes nothing stored)", function(mgr)
  local s = make_session(nil, messages(3), { cwd = "/home/user", list = { 1, 2 } })
  save(mgr, s)
  local first = resume(mgr, s.metadata.id)
  local expected = deep_copy(first)
  first.metadata.name = "changed"
  first.metadata.tags[1] = "changed"
  first.metadata.turn_count = 99
  first.messages[1].content = "changed"
  first.messages[#first.messages + 1] = "added"
  first.state.cwd = "/changed"
  first.state.list[1] = 42
  eq(expected, resume(mgr, s.metadata.id), "resume() after changing an earlier result")
end)

check("resume: returns new tables on each call", function(mgr)
  local s = make_session()
  save(mgr, s)
  local a, b = resume(mgr, s.metadata.id), resume(mgr, s.metadata.id)
  for _, part in ipairs({ { "session", a, b }, { "metadata", a.metadata, b.metadata },
    { "metadata.tags", a.metadata.tags, b.metadata.tags }, { "messages", a.messages, b.messages },
    { "messages[1]", a.messages[1], b.messages[1] }, { "state", a.state, b.state } }) do
    truthy(not rawequal(part[2], part[3]), "two resume() calls returned the same %s table", part[1])
  end
  eq(a, b, "second resume()")
end)

check("resume: changing the caller's table after save changes nothing stored", function(mgr)
  local s = make_session({ tags = { "a" } }, messages(2), { cwd = "/a", list = { 1 } })
  local meta = save(mgr, s)
  local expected = { metadata = deep_copy(meta), messages = deep_copy(s.messages), state = deep_copy(s.state) }
  s.metadata.name = "changed"
  s.metadata.tags[2] = "b"
  s.messages[1].content = "changed"
  s.messages[3] = "added"
  s.state.cwd = "/changed"
  s.state.list[2] = 2
  eq(expected, resume(mgr, s.metadata.id), "resume()")
end)

check("resume: gives back what was saved, on a store of many sessions", function(mgr)
  local saved = {}
  for i = 1, 12 do
    local s = make_session({ name = "s" .. i, tags = { "t" .. i }, turn_count = i }, messages(i), { i = i })
    saved[i] = s
    save(mgr, s)
  end
  for i, s in ipairs(saved) do
    local r = resume(mgr, s.metadata.id)
    eq(s.metadata.id, r.metadata.id, "session " .. i .. " id")
    eq("s" .. i, r.metadata.name, "session " .. i .. " name")
    eq({ "t" .. i }, r.metadata.tags, "session " .. i .. " tags")
    eq(messages(i), r.messages, "session " .. i .. " messages")
    eq({ i = i }, r.state, "session " .. i .. " state")
  end
end)

return checks
