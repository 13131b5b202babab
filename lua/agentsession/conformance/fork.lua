-- agentsession.conformance.fork: the checks of fork: the copy's id, name, parent_id and
-- contents, its independence from its source, and fork at k.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local now = agentsession.now
local show, eq, truthy, make_session = support.show, support.eq, support.truthy, support.make_session
local unnamed, messages, between = support.unnamed, support.messages, support.between
local is_table, resume, meta_of, save = support.is_table, support.resume, support.meta_of, support.save
local snapshot = support.snapshot

local checks, check = support.family()

local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function fork_source(mgr)
  local s = make_session({ tags = { "a", "b" }, turn_count = 4, total_tokens = 500, created_at = 1000 },
    messages(4), { cwd = "/src", n = 1, list = { 1, 2 } })
  save(mgr, s)
  return s
end

check("fork: gives the copy a new UUID v4 id", function(mgr)
  local src = fork_source(mgr)
  local a = mgr:fork(src.metadata.id, "copy")
  local b = mgr:fork(src.metadata.id, "copy")
  for _, meta in ipairs({ a, b }) do
    truthy(type(meta) == "table" and type(meta.id) == "string", "fork() returned %s", show(meta))
    truthy(#meta.id == 36 and meta.id:match(UUID_V4) and meta.id == meta.id:lower(),
      "%s is not a lowercase UUID v4", show(meta.id))
    truthy(meta.id ~= src.metadata.id, "the fork has the id of its source")
  end
  truthy(a.id ~= b.id, "two forks got the same id %s", show(a.id))
end)

check("fork: copies messages, state, tags, agent_name, turn_count and total_tokens", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "copy")
  local copy = resume(mgr, meta.id)
  eq(messages(4), copy.messages, "messages")
  eq({ cwd = "/src", n = 1, list = { 1, 2 } }, copy.state, "state")
  eq({ "a", "b" }, copy.metadata.tags, "tags")
  eq("code-agent", copy.metadata.agent_name, "agent_name")
  eq(4, copy.metadata.turn_count, "turn_count")
  eq(500, copy.metadata.total_tokens, "total_tokens")
end)

check("fork: uses the name given", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "experiment-branch")
  eq("experiment-branch", meta.name, "fork().name")
  eq("experiment-branch", meta_of(mgr, meta.id).name, "resume(fork).metadata.name")
end)

check("fork: names the copy '<name> (fork)' when no name is given", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id)
  eq("my-task (fork)", meta.name, "fork().name")
  eq("my-task (fork)", meta_of(mgr, meta.id).name, "resume(fork).metadata.name")
  eq("my-task (fork) (fork)", mgr:fork(meta.id).name, "name of a fork of the fork")
end)

check("fork: leaves the copy unnamed when the source is unnamed and no name is given", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  local meta = mgr:fork(s.metadata.id)
  eq(nil, meta.name, "fork().name")
  eq(nil, meta_of(mgr, meta.id).name, "resume(fork).metadata.name")
end)

check("fork: uses the name given when the source is unnamed", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  eq("given", mgr:fork(s.metadata.id, "given").name, "fork().name")
end)

check("fork: sets parent_id to the source id", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id)
  eq(src.metadata.id, meta.parent_id, "fork().parent_id")
  eq(src.metadata.id, meta_of(mgr, meta.id).parent_id, "resume(fork).metadata.parent_id")
  eq(nil, meta_of(mgr, src.metadata.id).parent_id, "the source's parent_id")
  eq(meta.id, mgr:fork(meta.id).parent_id, "parent_id of a fork of the fork")
end)

check("fork: sets created_at and updated_at to now", function(mgr)
  local src = fork_source(mgr)
  local before = now()
  local meta = mgr:fork(src.metadata.id)
  local after = now()
  between(meta.created_at, before, after, "fork().created_at")
  between(meta.updated_at, before, after, "fork().updated_at")
  eq(meta.created_at, meta.updated_at, "fork().updated_at vs created_at")
end)

check("fork: returns the stored metadata of the copy", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "copy")
  is_table(meta, "fork()'s result")
  eq(meta_of(mgr, meta.id), meta, "fork() vs resume(fork).metadata")
end)

check("fork: leaves the source untouched", function(mgr)
  local src = fork_source(mgr)
  local before = snapshot(mgr)
  mgr:fork(src.metadata.id, "copy")
  mgr:fork(src.metadata.id, nil, { at = 1 })
  eq(before.sessions[1], resume(mgr, src.metadata.id), "source")
end)

check("fork: changing the copy does not change the source", function(mgr)
  local src = fork_source(mgr)
  local source_before = resume(mgr, src.metadata.id)
  local meta = mgr:fork(src.metadata.id, "copy")
  local copy = resume(mgr, meta.id)
  copy.messages[#copy.messages + 1] = "only in the copy"
  copy.messages[1].content = "changed in the copy"
  copy.state.cwd = "/copy"
  copy.state.list[1] = 9
  save(mgr, copy)
  mgr:rewind(meta.id, 2)
  mgr:tag(meta.id, "copy-only")
  mgr:untag(meta.id, "a")
  mgr:rename(meta.id, "renamed copy")
  eq(source_before, resume(mgr, src.metadata.id), "source")
end)

check("fork: changing the source does not change the copy", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "copy")
  local copy_before = resume(mgr, meta.id)
  local original = resume(mgr, src.metadata.id)
  original.messages[1].content = "changed in the source"
  original.messages[5] = "only in the source"
  original.state.list[2] = 7
  save(mgr, original)
  mgr:tag(src.metadata.id, "source-only")
  mgr:rewind(src.metadata.id, 1)
  eq(copy_before, resume(mgr, meta.id), "copy")
  mgr:delete(src.metadata.id)
  eq(copy_before, resume(mgr, meta.id), "copy after deleting the source")
end)

check("fork: with {at = k} keeps the first k messages", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "early", { at = 2 })
  eq(2, meta.turn_count, "fork().turn_count")
  eq("early", meta.name, "fork().name")
  local copy = resume(mgr, meta.id)
  eq({ messages(4)[1], messages(4)[2] }, copy.messages, "messages")
  eq(2, copy.metadata.turn_count, "resume(fork).metadata.turn_count")
  eq(messages(4), resume(mgr, src.metadata.id).messages, "source messages")
end)

check("fork: with {at = k} past the end keeps every message", function(mgr)
  local s = make_session({ turn_count = 9 }, messages(4))
  save(mgr, s)
  local meta = mgr:fork(s.metadata.id, nil, { at = 10 })
  eq(4, meta.turn_count, "fork().turn_count")
  eq("my-task (fork)", meta.name, "fork().name")
  eq(messages(4), resume(mgr, meta.id).messages, "messages")
end)

check("fork: with {at = 0} keeps no message", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, nil, { at = 0 })
  eq(0, meta.turn_count, "fork().turn_count")
  local copy = resume(mgr, meta.id)
  truthy(next(copy.messages) == nil, "messages: expected none, got %s", show(copy.messages))
  eq({ cwd = "/src", n = 1, list = { 1, 2 } }, copy.state, "state")
end)

return checks
