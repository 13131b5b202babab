-- agentsession.conformance.expect_version: the checks of expect_version: saves and appends
-- that must find the version they expect.
local support = require("agentsession.conformance.support")

local eq, expect_error_in, make_session = support.eq, support.expect_error_in, support.make_session
local messages, deep_copy, resume, save = support.messages, support.deep_copy, support.resume, support.save
local snapshot, unchanged, two_sessions = support.snapshot, support.unchanged, support.two_sessions
local append, concat, append_source = support.append, support.concat, support.append_source

local checks, check = support.family()

check("expect_version: save with the stored version succeeds", function(mgr)
  local s = make_session()
  save(mgr, s)
  save(mgr, s)
  s.messages = { "new" }
  eq(3, mgr:save(s, { expect_version = 2 }).version, "save{ expect_version = 2 }.version")
  eq({ "new" }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("expect_version: save with another version is conflict and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  save(mgr, known)
  local before = snapshot(mgr)
  local s = deep_copy(known)
  s.messages = { "lost" }
  for _, v in ipairs({ 1, 3, 100 }) do
    local err = expect_error_in("save{ expect_version = " .. v .. " } of version 2", "conflict", function()
      return mgr:save(s, { expect_version = v })
    end)
    eq(known.metadata.id, err.id, "err.id")
  end
  unchanged(mgr, before, "a save that lost its version check")
end)

check("expect_version: save with 0 creates a session that does not exist", function(mgr)
  local s = make_session()
  local meta = mgr:save(s, { expect_version = 0 })
  eq(1, meta.version, "save{ expect_version = 0 }.version")
  eq(s.messages, resume(mgr, s.metadata.id).messages, "messages")
end)

check("expect_version: save with 0 of an existing id is conflict and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  local before = snapshot(mgr)
  local s = deep_copy(known)
  s.state = { overwritten = true }
  expect_error_in("save{ expect_version = 0 } of an existing id", "conflict", function()
    return mgr:save(s, { expect_version = 0 })
  end)
  unchanged(mgr, before, "a save{ expect_version = 0 } of an existing id")
end)

check("expect_version: save with a version of a missing id is conflict and stores nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local s = make_session()
  expect_error_in("save{ expect_version = 1 } of a new id", "conflict", function()
    return mgr:save(s, { expect_version = 1 })
  end)
  unchanged(mgr, before, "a save{ expect_version = 1 } of a new id")
  expect_error_in("resume after it", "not_found", function() return mgr:resume(s.metadata.id) end)
end)

check("expect_version: append with the stored version succeeds", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local meta = mgr:append(id, { "x" }, { expect_version = 1, tokens = 3 })
  eq(2, meta.version, "append{ expect_version = 1 }.version")
  eq(103, meta.total_tokens, "append{ expect_version = 1, tokens = 3 }.total_tokens")
  eq(3, mgr:append(id, { "y" }, { expect_version = 2 }).version, "append{ expect_version = 2 }.version")
  eq(concat(messages(3), { "x", "y" }), resume(mgr, id).messages, "messages")
end)

check("expect_version: append with another version is conflict and changes nothing", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" })
  local before = snapshot(mgr)
  for _, v in ipairs({ 1, 3 }) do
    local err = expect_error_in("append{ expect_version = " .. v .. " } of version 2", "conflict", function()
      return mgr:append(id, { "lost" }, { expect_version = v, tokens = 10 })
    end)
    eq(id, err.id, "err.id")
  end
  unchanged(mgr, before, "an append that lost its version check")
end)

check("expect_version: append with 0 is conflict and changes nothing", function(mgr)
  local s = append_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("append{ expect_version = 0 }", "conflict", function()
    return mgr:append(s.metadata.id, { "lost" }, { expect_version = 0 })
  end)
  unchanged(mgr, before, "an append{ expect_version = 0 }")
end)

check("expect_version: every write's version is the one to expect next", function(mgr)
  local s = make_session({ tags = { "a" } }, messages(3))
  local id = s.metadata.id
  eq(1, mgr:save(s, { expect_version = 0 }).version, "save{ expect_version = 0 }.version")
  eq(2, mgr:append(id, { "x" }, { expect_version = 1 }).version, "append{ expect_version = 1 }.version")
  mgr:tag(id, "b")
  eq(4, mgr:append(id, {}, { expect_version = 3 }).version, "append{ expect_version = 3 } after a tag")
  mgr:rename(id, "renamed")
  mgr:untag(id, "a")
  local r = mgr:rewind(id, 2)
  eq(7, r.metadata.version, "version after rename, untag, rewind")
  mgr:fork(id, "copy")
  r.messages[#r.messages + 1] = "last"
  eq(8, mgr:save(r, { expect_version = r.metadata.version }).version, "save{ expect_version = 7 }.version")
  expect_error_in("save with the version before the last write", "conflict", function()
    return mgr:save(r, { expect_version = 7 })
  end)
  eq({ messages(3)[1], messages(3)[2], "last" }, resume(mgr, id).messages, "messages")
end)

check("expect_version: of two copies resumed together, the second save conflicts", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local a, b = resume(mgr, id), resume(mgr, id)
  a.state = { winner = "a" }
  b.state = { winner = "b" }
  mgr:save(a, { expect_version = a.metadata.version })
  expect_error_in("the second save", "conflict", function()
    return mgr:save(b, { expect_version = b.metadata.version })
  end)
  expect_error_in("an append from the stale copy", "conflict", function()
    return mgr:append(id, { "late" }, { expect_version = b.metadata.version })
  end)
  local r = resume(mgr, id)
  eq({ winner = "a" }, r.state, "state")
  eq(2, r.metadata.version, "version")
end)

check("expect_version: without it, the last writer wins", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local a, b = resume(mgr, id), resume(mgr, id)
  a.state = { winner = "a" }
  b.state = { winner = "b" }
  save(mgr, a)
  save(mgr, b)
  append(mgr, id, { "late" })
  local r = resume(mgr, id)
  eq({ winner = "b" }, r.state, "state")
  eq(4, r.metadata.version, "version")
end)

return checks
