-- agentsession.conformance.close: the checks of close: closing again, closed after close, and
-- <close>.
local support = require("agentsession.conformance.support")

-- scoped(open, body): opens a manager into a `<close>` variable, runs body(m)
-- and returns m once its scope has ended; nil where the language has no
-- `<close>` (before Lua 5.4), which this file must still load on.
local scoped = (rawget(_G, "loadstring") or load)([[
  local open, body = ...
  local m <close> = open()
  body(m)
  return m
]], "=(<close> scope)")

local eq, error_text, expect_error_in = support.eq, support.error_text, support.expect_error_in
local no_values, make_session, meta_of = support.no_values, support.make_session, support.meta_of
local save, two_sessions = support.save, support.two_sessions

local checks, check = support.family()

check("close: returns nothing and can be called again", function(mgr)
  save(mgr, make_session())
  no_values("close()", mgr:close())
  no_values("a second close()", mgr:close())
  no_values("a third close()", mgr:close())
end)

check("close: every method raises closed after close", function(mgr)
  local id = two_sessions(mgr).metadata.id
  mgr:close()
  local calls = {
    { "save", function() return mgr:save(make_session()) end },
    { "resume", function() return mgr:resume(id) end },
    { "list", function() return mgr:list() end },
    { "fork", function() return mgr:fork(id) end },
    { "rewind", function() return mgr:rewind(id, 1) end },
    { "tag", function() return mgr:tag(id, "x") end },
    { "untag", function() return mgr:untag(id, "a") end },
    { "rename", function() return mgr:rename(id, "n") end },
    { "delete", function() return mgr:delete(id) end },
    { "append", function() return mgr:append(id, { "x" }) end },
    { "export", function() return mgr:export(id) end },
    { "import", function() return mgr:import('{"metadata":{"id":"x","agent_name":""},"messages":[],"state":{}}') end },
    { "list again", function() return mgr:list() end },
  }
  for _, row in ipairs(calls) do
    local err = expect_error_in(row[1] .. " after close", "closed", row[2])
    eq(error_text("closed", err), tostring(err), "tostring of the closed error")
  end
  no_values("close() after the calls", mgr:close())
end)

check("close: closing one manager leaves another working", function(mgr, ctx)
  save(mgr, make_session())
  local other = ctx.open()
  local s = make_session()
  save(other, s)
  mgr:close()
  eq(s.metadata.id, meta_of(other, s.metadata.id).id, "resume on another manager after close")
end)

check("close: <close> closes the manager at the end of its scope", function(_, ctx)
  local probe = ctx.open()
  local mt
  if debug and debug.getmetatable then mt = debug.getmetatable(probe) else mt = getmetatable(probe) end
  if type(mt) ~= "table" or mt.__close == nil then
    -- No __close: what can be checked is close() itself.
    probe:close()
    expect_error_in("list after close", "closed", function() return probe:list() end)
    return
  end
  if scoped == nil then
    -- No <close> in the language: __close, called as Lua 5.4 calls it, closes the manager.
    no_values("__close(m, nil)", mt.__close(probe, nil))
    expect_error_in("list after __close", "closed", function() return probe:list() end)
    no_values("close() after __close", probe:close())
    return
  end
  local escaped = scoped(ctx.open, function(m) save(m, make_session()) end)
  expect_error_in("list after the scope ended", "closed", function() return escaped:list() end)
  no_values("close() after <close>", escaped:close())
end)

return checks
