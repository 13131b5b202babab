-- agentsession.conformance.save: the checks of save: what it returns, what it keeps exactly,
-- and saving again.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local null = agentsession.null
local array_mt = agentsession.array_mt
local show, eq, eq_exact, truthy = support.show, support.eq, support.eq_exact, support.truthy
local new_id, make_session, unnamed = support.new_id, support.make_session, support.unnamed
local messages, deep_copy, is_table = support.messages, support.deep_copy, support.is_table
local resume, meta_of, list, list_ids = support.resume, support.meta_of, support.list, support.list_ids
local save = support.save
local number_type, MAX_INTEGER = support.number_type, support.MAX_INTEGER

local checks, check = support.family()

local METADATA_FIELDS = {
  id = true, name = true, tags = true, agent_name = true, created_at = true, updated_at = true,
  turn_count = true, total_tokens = true, version = true, parent_id = true,
}
local INTEGER_FIELDS = { "created_at", "updated_at", "turn_count", "total_tokens", "version" }


check("save: returns the stored metadata, equal to resume(id).metadata", function(mgr)
  local s = make_session({ tags = { "a", "b" }, turn_count = 4, total_tokens = 1234 })
  local meta = save(mgr, s)
  eq(s.metadata.id, meta.id, "save().id")
  eq("my-task", meta.name, "save().name")
  eq({ "a", "b" }, meta.tags, "save().tags")
  eq("code-agent", meta.agent_name, "save().agent_name")
  eq(4, meta.turn_count, "save().turn_count")
  eq(1234, meta.total_tokens, "save().total_tokens")
  eq(1, meta.version, "save().version")
  eq(nil, meta.parent_id, "save().parent_id")
  eq(meta_of(mgr, s.metadata.id), meta, "save() vs resume().metadata")
end)

check("save: metadata has the documented fields, its numbers integers", function(mgr)
  local meta = save(mgr, make_session({ created_at = 5000.0, turn_count = 2.0 }))
  for _, m in ipairs({ meta, meta_of(mgr, meta.id), list(mgr)[1] }) do
    for k in pairs(m) do
      truthy(METADATA_FIELDS[k], "metadata has an unknown field %s", show(k))
    end
    for _, field in ipairs(INTEGER_FIELDS) do
      truthy(number_type(m[field]) == "integer", "metadata.%s is %s, not an integer", field, show(m[field]))
    end
    is_table(m.tags, "metadata.tags")
    truthy(type(m.agent_name) == "string", "metadata.agent_name is %s", show(m.agent_name))
  end
  eq(5000, meta.created_at, "created_at given as 5000.0")
  eq(2, meta.turn_count, "turn_count given as 2.0")
end)

check("save: keeps id, name, agent_name, tags and counts exactly", function(mgr)
  local s = make_session({
    id = "séance-🙂-" .. new_id(), name = "naïve 名前 \240\159\152\128", agent_name = "",
    tags = { "ünïcode", "标签", "b", "a" }, turn_count = 4294967295, total_tokens = MAX_INTEGER,
  })
  save(mgr, s)
  local m = meta_of(mgr, s.metadata.id)
  eq(s.metadata.id, m.id, "id")
  eq(s.metadata.name, m.name, "name")
  eq("", m.agent_name, "agent_name")
  eq({ "ünïcode", "标签", "b", "a" }, m.tags, "tags")
  eq(4294967295, m.turn_count, "turn_count")
  eq(MAX_INTEGER, m.total_tokens, "total_tokens")
  eq(m, list(mgr)[1], "list()[1]")
end)

check("save: keeps a 255-byte id, 255-byte tag and 1024-byte name", function(mgr)
  local s = make_session({ id = string.rep("i", 255), tags = { string.rep("t", 255) }, name = string.rep("n", 1024) })
  save(mgr, s)
  local m = meta_of(mgr, s.metadata.id)
  eq(string.rep("i", 255), m.id, "id")
  eq({ string.rep("t", 255) }, m.tags, "tags")
  eq(string.rep("n", 1024), m.name, "name")
end)

check("save: an unset name stays nil", function(mgr)
  local s = unnamed(make_session())
  local meta = save(mgr, s)
  eq(nil, meta.name, "save().name")
  eq(nil, meta_of(mgr, s.metadata.id).name, "resume().metadata.name")
  eq(nil, list(mgr)[1].name, "list()[1].name")
end)

check("save: drops repeated tags, keeping the first of each", function(mgr)
  local s = make_session({ tags = { "x", "y", "x", "z", "y" } })
  eq({ "x", "y", "z" }, save(mgr, s).tags, "save().tags")
  eq({ "x", "y", "z" }, meta_of(mgr, s.metadata.id).tags, "resume().metadata.tags")
end)

check("save: does not modify the caller's table", function(mgr)
  local s = make_session({ tags = { "b", "a", "b" }, version = 7 },
    { { role = "user", content = "x", n = 1, f = 1.5 }, agentsession.array(), {}, null },
    { nested = { list = { 1, 2, 3 } } })
  s.metadata.created_at = nil
  local copy = deep_copy(s)
  local inner, meta_table, msgs = s.messages[1], s.metadata, s.messages
  save(mgr, s)
  eq_exact(copy, s, "session after save")
  truthy(rawequal(inner, s.messages[1]) and rawequal(meta_table, s.metadata) and rawequal(msgs, s.messages),
    "save replaced tables inside the caller's session")
  save(mgr, s)
  eq_exact(copy, s, "session after a second save")
end)

check("save: nil messages are [] and a nil state an empty object", function(mgr)
  local s = make_session()
  s.messages, s.state = nil, nil
  save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  truthy(next(r.messages) == nil, "messages: expected [], got %s", show(r.messages))
  truthy(getmetatable(r.messages) == array_mt, "messages: expected [] (array_mt), got %s", show(r.messages))
  truthy(type(r.state) == "table" and next(r.state) == nil and getmetatable(r.state) ~= array_mt,
    "state: expected {} (an empty object), got %s", show(r.state))
end)

check("save: keeps every message, the last one included", function(mgr)
  local s = make_session(nil, messages(7))
  save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  eq(7, #r.messages, "#messages")
  eq(messages(7)[7], r.messages[7], "messages[7]")
  eq(messages(7), r.messages, "messages")
end)

check("save: keeps a one-message history", function(mgr)
  local s = make_session(nil, { { role = "user", content = "only" } })
  save(mgr, s)
  eq({ { role = "user", content = "only" } }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("save: keeps the state", function(mgr)
  local state = { cwd = "/work", step = 3, ratio = 0.25, list = { 1, "two", null }, nested = { ok = true, n = {} } }
  local s = make_session(nil, nil, state)
  save(mgr, s)
  eq(deep_copy(state), resume(mgr, s.metadata.id).state, "state")
end)

check("save: saving again replaces the messages with fewer", function(mgr)
  local s = make_session(nil, messages(5))
  save(mgr, s)
  s.messages = { "only one" }
  save(mgr, s)
  eq({ "only one" }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("save: saving again replaces the messages with more", function(mgr)
  local s = make_session(nil, messages(2))
  save(mgr, s)
  s.messages = messages(6)
  save(mgr, s)
  eq(messages(6), resume(mgr, s.metadata.id).messages, "messages")
end)

check("save: saving again replaces state, name, tags, agent_name and counts", function(mgr)
  local s = make_session({ tags = { "a" }, turn_count = 1, total_tokens = 5 })
  save(mgr, s)
  s.metadata.name, s.metadata.tags, s.metadata.agent_name = "renamed", { "x", "y" }, "other-agent"
  s.metadata.turn_count, s.metadata.total_tokens = 9, 99
  s.state = { step = 2 }
  local meta = save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  eq(meta, r.metadata, "save() vs resume().metadata")
  eq("renamed", r.metadata.name, "name")
  eq({ "x", "y" }, r.metadata.tags, "tags")
  eq("other-agent", r.metadata.agent_name, "agent_name")
  eq(9, r.metadata.turn_count, "turn_count")
  eq(99, r.metadata.total_tokens, "total_tokens")
  eq({ step = 2 }, r.state, "state")
end)

check("save: saving again can remove the name", function(mgr)
  local s = make_session()
  save(mgr, s)
  unnamed(s)
  eq(nil, save(mgr, s).name, "save().name")
  eq(nil, meta_of(mgr, s.metadata.id).name, "resume().metadata.name")
end)

check("save: saving again keeps one session per id", function(mgr)
  local s = make_session()
  save(mgr, s)
  local other = save(mgr, make_session())
  s.messages = { "again" }
  save(mgr, s)
  eq({ s.metadata.id, other.id }, list_ids(mgr), "list() ids")
end)

check("save: a resumed session saved again comes back the same", function(mgr)
  local s = make_session({ tags = { "a", "b" }, turn_count = 2, total_tokens = 7 }, messages(3),
    { k = { 1, 2.5, "x", null, true } })
  local first = save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  local again = save(mgr, r)
  local r2 = resume(mgr, s.metadata.id)
  eq(r.messages, r2.messages, "messages")
  eq(r.state, r2.state, "state")
  eq(first.version + 1, again.version, "version")
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "created_at", "turn_count", "total_tokens" }) do
    eq(first[field], r2.metadata[field], "metadata." .. field)
  end
end)

return checks
