-- agentsession.conformance.lineage: the checks of lineage: a fork's parent_id through every
-- write, and list{ parent_id }.
local support = require("agentsession.conformance.support")

local eq, messages, resume, meta_of = support.eq, support.messages, support.resume, support.meta_of
local list_ids, save, append, concat = support.list_ids, support.save, support.append, support.concat
local appended, append_source = support.appended, support.append_source

local checks, check = support.family()

check("lineage: a fork keeps its parent_id through every write", function(mgr)
  local s = append_source(mgr)
  local id = mgr:fork(s.metadata.id, "child").id
  append(mgr, id, { "x" })
  mgr:tag(id, "t")
  mgr:rename(id, "renamed")
  mgr:rewind(id, 2)
  save(mgr, resume(mgr, id))
  mgr:save(resume(mgr, id), { expect_version = 6 })
  eq(s.metadata.id, meta_of(mgr, id).parent_id, "parent_id after append, tag, rename, rewind, save")
  eq({ id }, list_ids(mgr, { parent_id = s.metadata.id }), "list{ parent_id = source }")
end)

check("lineage: list{ parent_id } orders the forks by their latest write", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local f1 = mgr:fork(id, "one").id
  local f2 = mgr:fork(id, "two").id
  eq({ f2, f1 }, list_ids(mgr, { parent_id = id }), "list{ parent_id } after two forks")
  append(mgr, f1, { "x" })
  eq({ f1, f2 }, list_ids(mgr, { parent_id = id }), "list{ parent_id } after an append to the first")
  eq({ f1 }, list_ids(mgr, { parent_id = id, limit = 1 }), "list{ parent_id, limit = 1 }")
  append(mgr, id, { "y" })
  eq({ f1, f2 }, list_ids(mgr, { parent_id = id }), "list{ parent_id } after an append to the source")
end)

check("lineage: a fork at k of an appended session has its first k messages", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, appended(3, 0))
  local meta = mgr:fork(id, "mid", { at = 5 })
  eq(5, meta.turn_count, "fork().turn_count")
  eq(id, meta.parent_id, "fork().parent_id")
  eq(concat(messages(3), appended(2, 0)), resume(mgr, meta.id).messages, "the fork's messages")
  eq(concat(messages(3), appended(3, 0)), resume(mgr, id).messages, "the source's messages")
end)

return checks
