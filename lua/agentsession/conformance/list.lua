-- agentsession.conformance.list: the checks of list: its order, its filters, limit and offset.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local show, eq, truthy, make_session = support.show, support.eq, support.truthy, support.make_session
local messages, deep_copy, wait_past = support.messages, support.deep_copy, support.wait_past
local resume, meta_of, list, ids = support.resume, support.meta_of, support.list, support.ids
local list_ids, save = support.list_ids, support.save

local checks, check = support.family()

check("list: an empty store lists nothing", function(mgr)
  local l = list(mgr)
  truthy(next(l) == nil, "list() of an empty store gave %s", show(l))
end)

check("list: gives metadata equal to resume(id).metadata", function(mgr)
  local a = save(mgr, make_session({ tags = { "x", "y" }, turn_count = 3, total_tokens = 5 }))
  local f = mgr:fork(a.id, "copy")
  local l = list(mgr)
  eq(2, #l, "#list()")
  eq(meta_of(mgr, f.id), l[1], "list()[1]")
  eq(meta_of(mgr, a.id), l[2], "list()[2]")
end)

check("list: lists every session once", function(mgr)
  local want = {}
  for i = 1, 25 do want[save(mgr, make_session({ name = "s" .. i })).id] = true end
  local seen = {}
  for i, id in ipairs(list_ids(mgr)) do
    truthy(want[id], "list()[%d] is %s, not a saved session", i, show(id))
    truthy(not seen[id], "list() gives %s twice", show(id))
    seen[id] = true
  end
  for id in pairs(want) do truthy(seen[id], "list() is missing %s", show(id)) end
end)

check("list: puts the most recently updated first", function(mgr)
  local saved = {}
  for i = 1, 4 do
    local meta = save(mgr, make_session({ name = "s" .. i }))
    saved[i] = meta.id
    wait_past(meta.updated_at)
  end
  local l = list(mgr)
  eq({ saved[4], saved[3], saved[2], saved[1] }, ids(l), "list() ids")
  for i = 2, #l do
    truthy(l[i - 1].updated_at > l[i].updated_at, "list()[%d].updated_at %s is not after list()[%d].updated_at %s",
      i - 1, show(l[i - 1].updated_at), i, show(l[i].updated_at))
  end
end)

check("list: ties on updated_at go to the most recent write", function(mgr)
  local saved = {}
  for i = 1, 100 do saved[i] = save(mgr, make_session(nil, { i })).id end
  local expected = {}
  for i = 100, 1, -1 do expected[#expected + 1] = saved[i] end
  local l = list(mgr)
  eq(expected, ids(l), "list() ids (saved in a tight loop, newest first)")
  for i = 2, #l do
    truthy(l[i - 1].updated_at >= l[i].updated_at, "list()[%d] is older than list()[%d]", i - 1, i)
  end
end)

check("list: a write moves the session to the front", function(mgr)
  local a = save(mgr, make_session(nil, messages(3))).id
  local b = save(mgr, make_session()).id
  local c = save(mgr, make_session()).id
  eq({ c, b, a }, list_ids(mgr), "list() after saving a, b, c")
  save(mgr, resume(mgr, a))
  eq({ a, c, b }, list_ids(mgr), "list() after saving a again")
  mgr:tag(b, "t")
  eq({ b, a, c }, list_ids(mgr), "list() after tagging b")
  mgr:rename(c, "new name")
  eq({ c, b, a }, list_ids(mgr), "list() after renaming c")
  mgr:rewind(a, 1)
  eq({ a, c, b }, list_ids(mgr), "list() after rewinding a")
  mgr:untag(b, "t")
  eq({ b, a, c }, list_ids(mgr), "list() after untagging b")
end)

check("list: a fork comes first", function(mgr)
  local a = save(mgr, make_session()).id
  local b = save(mgr, make_session()).id
  local f = mgr:fork(a).id
  eq({ f, b, a }, list_ids(mgr), "list() after forking a")
end)

-- Four sessions saved s1..s4 (s4 most recent).
local function filter_sessions(mgr)
  local s1 = save(mgr, make_session({ tags = { "a", "b" }, agent_name = "x" })).id
  local s2 = save(mgr, make_session({ tags = { "a" }, agent_name = "y" })).id
  local s3 = save(mgr, make_session({ tags = { "b" }, agent_name = "x" })).id
  local s4 = save(mgr, make_session({ tags = {}, agent_name = "x" })).id
  return s1, s2, s3, s4
end

check("list: an empty filter lists everything", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  eq({ s4, s3, s2, s1 }, list_ids(mgr, {}), "list{}")
end)

check("list: filter tag", function(mgr)
  local s1, s2, s3 = filter_sessions(mgr)
  eq({ s2, s1 }, list_ids(mgr, { tag = "a" }), "list{ tag = 'a' }")
  eq({ s3, s1 }, list_ids(mgr, { tag = "b" }), "list{ tag = 'b' }")
  eq({}, list_ids(mgr, { tag = "missing" }), "list{ tag = 'missing' }")
end)

check("list: filter tags needs every one of them", function(mgr)
  local s1, s2 = filter_sessions(mgr)
  eq({ s1 }, list_ids(mgr, { tags = { "a", "b" } }), "list{ tags = { 'a', 'b' } }")
  eq({ s1 }, list_ids(mgr, { tags = { "b", "a" } }), "list{ tags = { 'b', 'a' } }")
  eq({ s2, s1 }, list_ids(mgr, { tags = { "a" } }), "list{ tags = { 'a' } }")
  eq({}, list_ids(mgr, { tags = { "a", "missing" } }), "list{ tags = { 'a', 'missing' } }")
end)

check("list: filter agent_name", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  eq({ s4, s3, s1 }, list_ids(mgr, { agent_name = "x" }), "list{ agent_name = 'x' }")
  eq({ s2 }, list_ids(mgr, { agent_name = "y" }), "list{ agent_name = 'y' }")
  eq({}, list_ids(mgr, { agent_name = "" }), "list{ agent_name = '' }")
end)

check("list: filter parent_id finds the forks of a session", function(mgr)
  local a = save(mgr, make_session()).id
  local b = save(mgr, make_session()).id
  local f1 = mgr:fork(a, "one").id
  mgr:fork(b, "other")
  local f2 = mgr:fork(a, "two").id
  local g = mgr:fork(f1, "grandchild").id
  eq({ f2, f1 }, list_ids(mgr, { parent_id = a }), "list{ parent_id = a }")
  eq({ g }, list_ids(mgr, { parent_id = f1 }), "list{ parent_id = fork }")
  eq({}, list_ids(mgr, { parent_id = g }), "list{ parent_id = a session without forks }")
end)

check("list: limit", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  eq({ s4, s3 }, list_ids(mgr, { limit = 2 }), "list{ limit = 2 }")
  eq({ s4 }, list_ids(mgr, { limit = 1 }), "list{ limit = 1 }")
  eq({ s4, s3, s2, s1 }, list_ids(mgr, { limit = 10 }), "list{ limit = 10 }")
end)

check("list: offset", function(mgr)
  local s1, s2, s3 = filter_sessions(mgr)
  eq({ s3, s2, s1 }, list_ids(mgr, { offset = 1 }), "list{ offset = 1 }")
  eq({ s1 }, list_ids(mgr, { offset = 3 }), "list{ offset = 3 }")
  eq({ s3, s2 }, list_ids(mgr, { limit = 2, offset = 1 }), "list{ limit = 2, offset = 1 }")
end)

check("list: limit and offset page through the whole list", function(mgr)
  for i = 1, 10 do save(mgr, make_session({ name = "s" .. i })) end
  local all, paged = list_ids(mgr), {}
  for offset = 0, 9, 3 do
    for _, id in ipairs(list_ids(mgr, { limit = 3, offset = offset })) do paged[#paged + 1] = id end
  end
  eq(all, paged, "pages of 3")
end)

check("list: limit 0 gives nothing", function(mgr)
  filter_sessions(mgr)
  eq({}, list_ids(mgr, { limit = 0 }), "list{ limit = 0 }")
end)

check("list: an offset past the end gives nothing", function(mgr)
  filter_sessions(mgr)
  eq({}, list_ids(mgr, { offset = 4 }), "list{ offset = 4 } of 4")
  eq({}, list_ids(mgr, { offset = 100 }), "list{ offset = 100 }")
end)

check("list: filters combine, limit and offset counted after them", function(mgr)
  local s1, _, s3 = filter_sessions(mgr)
  eq({ s3, s1 }, list_ids(mgr, { agent_name = "x", tag = "b" }), "list{ agent_name = 'x', tag = 'b' }")
  eq({ s3 }, list_ids(mgr, { agent_name = "x", tag = "b", limit = 1 }), "... limit = 1")
  eq({ s1 }, list_ids(mgr, { agent_name = "x", tag = "b", offset = 1 }), "... offset = 1")
  eq({ s1 }, list_ids(mgr, { agent_name = "x", tags = { "a", "b" } }), "list{ agent_name = 'x', tags = { a, b } }")
  eq({}, list_ids(mgr, { agent_name = "y", tag = "b" }), "list{ agent_name = 'y', tag = 'b' }")
end)

check("list: deleted sessions are not listed", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  mgr:delete(s3)
  eq({ s4, s2, s1 }, list_ids(mgr), "list() after a delete")
  eq({ s1 }, list_ids(mgr, { tag = "b" }), "list{ tag = 'b' } after a delete")
  mgr:delete(s1)
  mgr:delete(s2)
  mgr:delete(s4)
  eq({}, list_ids(mgr), "list() after deleting all")
end)

check("list: changing the result changes nothing stored", function(mgr)
  local s = make_session({ tags = { "a" } })
  save(mgr, s)
  local l = list(mgr)
  local expected = deep_copy(l)
  l[1].name = "changed"
  l[1].tags[1] = "changed"
  l[1].id = "changed"
  l[2] = { id = "added" }
  eq(expected, list(mgr), "list()")
  eq("my-task", meta_of(mgr, s.metadata.id).name, "name")
end)

check("list: has_tag works on listed metadata", function(mgr)
  save(mgr, make_session({ tags = { "production", "eu" } }))
  local meta = list(mgr)[1]
  truthy(agentsession.has_tag(meta, "eu"), "has_tag(list()[1], 'eu') is false")
  truthy(not agentsession.has_tag(meta, "us"), "has_tag(list()[1], 'us') is true")
end)

return checks
