-- agentsession.conformance.too_large: the checks of too_large: sessions over 16 MiB, refused
-- without a trace. These checks carry slow = true; skip = "^too_large:" leaves them out.
local support = require("agentsession.conformance.support")

local expect_error_in, make_session = support.expect_error_in, support.make_session
local deep_copy, snapshot, unchanged = support.deep_copy, support.snapshot, support.unchanged
local two_sessions = support.two_sessions

local checks, check = support.family()

local SEVENTEEN_MIB = 17 * 1024 * 1024

check("too_large: a session over 16 MiB is refused and nothing is stored", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local s = make_session(nil, { string.rep("x", SEVENTEEN_MIB) })
  local id = s.metadata.id
  expect_error_in("save of a 17 MiB session", "too_large", function() return mgr:save(s) end)
  s = nil -- luacheck: ignore 311
  collectgarbage()
  expect_error_in("resume after the failed save", "not_found", function() return mgr:resume(id) end)
  unchanged(mgr, before, "a too_large save")
end, { slow = true })

check("too_large: replacing a session with one over 16 MiB keeps the stored one", function(mgr)
  local known = two_sessions(mgr)
  local before = snapshot(mgr)
  local s = deep_copy(known)
  s.state = { blob = string.rep("y", SEVENTEEN_MIB) }
  expect_error_in("save of a 17 MiB state", "too_large", function() return mgr:save(s) end)
  s = nil -- luacheck: ignore 311
  collectgarbage()
  unchanged(mgr, before, "a too_large save")
end, { slow = true })

check("too_large: an append that takes a session past 16 MiB is refused and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  local before = snapshot(mgr)
  local big = { "small", string.rep("z", SEVENTEEN_MIB) }
  expect_error_in("append of 17 MiB", "too_large", function()
    return mgr:append(known.metadata.id, big, { tokens = 5 })
  end)
  big = nil -- luacheck: ignore 311
  collectgarbage()
  unchanged(mgr, before, "a too_large append")
end, { slow = true })

return checks
