-- agentsession.conformance.version: the checks of version: 1 on creation, one more with each
-- write, unchanged by reads.
local support = require("agentsession.conformance.support")

local eq, make_session, messages, resume = support.eq, support.make_session, support.messages, support.resume
local meta_of, list, save = support.meta_of, support.list, support.save

local checks, check = support.family()

check("version: is 1 on creation", function(mgr)
  local s = make_session({ version = 42 })
  eq(1, save(mgr, s).version, "save().version")
  eq(1, meta_of(mgr, s.metadata.id).version, "resume().metadata.version")
  eq(1, list(mgr)[1].version, "list()[1].version")
end)

check("version: grows by one with each save", function(mgr)
  local s = make_session()
  for i = 1, 4 do eq(i, save(mgr, s).version, "version of save #" .. i) end
  eq(4, meta_of(mgr, s.metadata.id).version, "resume().metadata.version")
end)

local function bumped_by(name, op)
  check("version: grows by one with " .. name, function(mgr)
    local s = make_session({ tags = { "a", "b" } }, messages(4))
    save(mgr, s)
    save(mgr, s)
    op(mgr, s.metadata.id)
    eq(3, meta_of(mgr, s.metadata.id).version, "version after save, save, " .. name)
    eq(3, list(mgr)[1].version, "list()[1].version after save, save, " .. name)
  end)
end
bumped_by("rewind", function(mgr, id) eq(3, mgr:rewind(id, 1).metadata.version, "rewind().metadata.version") end)
bumped_by("tag", function(mgr, id) mgr:tag(id, "c") end)
bumped_by("untag", function(mgr, id) mgr:untag(id, "a") end)
bumped_by("rename", function(mgr, id) mgr:rename(id, "renamed") end)

check("version: tag, untag and rename are writes even when nothing changes", function(mgr)
  local s = make_session({ tags = { "a" } })
  save(mgr, s)
  local id = s.metadata.id
  mgr:tag(id, "a")
  eq(2, meta_of(mgr, id).version, "version after tag of a present tag")
  mgr:untag(id, "absent")
  eq(3, meta_of(mgr, id).version, "version after untag of an absent tag")
  mgr:rename(id, "my-task")
  eq(4, meta_of(mgr, id).version, "version after rename to the same name")
end)

check("version: a fork starts at 1 and the source keeps its version", function(mgr)
  local s = make_session()
  save(mgr, s)
  save(mgr, s)
  local fork = mgr:fork(s.metadata.id)
  eq(1, fork.version, "fork().version")
  eq(1, meta_of(mgr, fork.id).version, "resume(fork).metadata.version")
  eq(2, meta_of(mgr, s.metadata.id).version, "source version")
end)

check("version: reads do not change it", function(mgr)
  local s = make_session()
  save(mgr, s)
  resume(mgr, s.metadata.id)
  resume(mgr, s.metadata.id, { last = 1 })
  list(mgr)
  list(mgr, { tag = "production" })
  eq(1, meta_of(mgr, s.metadata.id).version, "version after reads")
end)

return checks
