-- agentsession.conformance.delete: the checks of delete: removing a session, and saving its id
-- again.
local support = require("agentsession.conformance.support")

local eq, expect_error_in, no_values = support.eq, support.expect_error_in, support.no_values
local make_session, messages, resume = support.make_session, support.messages, support.resume
local list_ids, save = support.list_ids, support.save

local checks, check = support.family()

check("delete: removes the session", function(mgr)
  local keep = save(mgr, make_session()).id
  local gone = save(mgr, make_session()).id
  mgr:delete(gone)
  expect_error_in("resume of the deleted id", "not_found", function() return mgr:resume(gone) end)
  eq({ keep }, list_ids(mgr), "list() ids")
end)

check("delete: returns no value", function(mgr)
  local id = save(mgr, make_session()).id
  no_values("delete()", mgr:delete(id))
end)

check("delete: leaves the other sessions as they were", function(mgr)
  local a = save(mgr, make_session({ tags = { "t" } }, messages(3))).id
  local b = save(mgr, make_session({ tags = { "t" } }, messages(2))).id
  local c = save(mgr, make_session({ tags = { "t" } }, messages(1))).id
  local ra, rc = resume(mgr, a), resume(mgr, c)
  mgr:delete(b)
  eq(ra, resume(mgr, a), "session a")
  eq(rc, resume(mgr, c), "session c")
  eq({ c, a }, list_ids(mgr, { tag = "t" }), "list{ tag = 't' }")
end)

check("delete: deleting twice, the second is not_found", function(mgr)
  local keep = save(mgr, make_session()).id
  local id = save(mgr, make_session()).id
  mgr:delete(id)
  expect_error_in("the second delete", "not_found", function() return mgr:delete(id) end)
  eq({ keep }, list_ids(mgr), "list() ids")
end)

check("delete: the id can be saved again, as a new session", function(mgr)
  local s = make_session({ created_at = 1000 }, messages(3))
  save(mgr, s)
  save(mgr, s)
  mgr:delete(s.metadata.id)
  s.messages = { "again" }
  local meta = save(mgr, s)
  eq(1, meta.version, "version of the new session")
  eq({ "again" }, resume(mgr, s.metadata.id).messages, "messages")
  eq({ s.metadata.id }, list_ids(mgr), "list() ids")
end)

return checks
