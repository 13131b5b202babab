-- agentsession.conformance.labels: the checks of tag, untag and rename: the writes of a
-- session's tags and name.
local support = require("agentsession.conformance.support")

local show, eq, truthy, expect_error_in = support.show, support.eq, support.truthy, support.expect_error_in
local expect_refused, no_values = support.expect_refused, support.no_values
local make_session, unnamed, resume = support.make_session, support.unnamed, support.resume
local meta_of, list, list_ids, save = support.meta_of, support.list, support.list_ids, support.save
local snapshot, unchanged, rewind_source = support.snapshot, support.unchanged, support.rewind_source

local checks, check = support.family()

local function tag_source(mgr, tags)
  local s = make_session({ tags = tags or { "a" } })
  save(mgr, s)
  return s.metadata.id
end

check("tag: a string is appended and the tag array returned", function(mgr)
  local id = tag_source(mgr)
  eq({ "a", "b" }, mgr:tag(id, "b"), "tag(id, 'b')")
  eq({ "a", "b" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

check("tag: an array appends those missing, in order, without repeats", function(mgr)
  local id = tag_source(mgr)
  eq({ "a", "c", "b", "d" }, mgr:tag(id, { "c", "a", "b", "c", "d" }), "tag(id, { c, a, b, c, d })")
  eq({ "a", "c", "b", "d" }, meta_of(mgr, id).tags, "resume().metadata.tags")
  eq({ "a", "c", "b", "d" }, list(mgr)[1].tags, "list()[1].tags")
end)

check("tag: tags already present are left as they are", function(mgr)
  local id = tag_source(mgr, { "a", "b" })
  eq({ "a", "b" }, mgr:tag(id, "a"), "tag(id, 'a')")
  eq({ "a", "b" }, mgr:tag(id, { "b", "a" }), "tag(id, { b, a })")
  eq({ "a", "b" }, mgr:tag(id, {}), "tag(id, {})")
  eq({ "a", "b" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

-- Runs `write` on session `id` and checks that its messages, its state and
-- the metadata fields named are as they were.
local function keeps_all_but(mgr, id, write, fields)
  local before = resume(mgr, id)
  write()
  local after = resume(mgr, id)
  eq(before.messages, after.messages, "messages")
  eq(before.state, after.state, "state")
  for _, field in ipairs(fields) do
    eq(before.metadata[field], after.metadata[field], "metadata." .. field)
  end
end

check("tag: changes nothing but tags, updated_at and version", function(mgr)
  local id = tag_source(mgr)
  keeps_all_but(mgr, id, function() mgr:tag(id, "z") end,
    { "id", "name", "agent_name", "created_at", "turn_count", "total_tokens" })
end)

local function refused_tag(name, method, arg, misuse)
  check(name, function(mgr)
    local id = tag_source(mgr, { "a", "b" })
    local before = snapshot(mgr)
    local what = method .. "(id, " .. show(arg) .. ")"
    local call = function() return mgr[method](mgr, id, arg) end
    if misuse then expect_refused(what, call) else expect_error_in(what, "invalid", call) end
    unchanged(mgr, before, what)
  end)
end
refused_tag("tag: an empty tag is invalid and changes nothing", "tag", "")
refused_tag("tag: an empty tag in an array is invalid and changes nothing", "tag", { "c", "" })
refused_tag("tag: a non-string entry is invalid and changes nothing", "tag", { "c", 5 })
refused_tag("tag: a control character is invalid and changes nothing", "tag", { "c", "d\ne" })
refused_tag("untag: a non-string entry is invalid and changes nothing", "untag", { "a", 5 })
refused_tag("tag: a number instead of tags is refused and changes nothing", "tag", 5, true)

------------------------------------------------------------------ untag

check("untag: a string is removed and the rest returned", function(mgr)
  local id = tag_source(mgr, { "a", "b", "c", "d" })
  eq({ "a", "c", "d" }, mgr:untag(id, "b"), "untag(id, 'b')")
  eq({ "a", "c", "d" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

check("untag: an array removes them, ignoring absent ones", function(mgr)
  local id = tag_source(mgr, { "a", "b", "c", "d" })
  eq({ "b", "d" }, mgr:untag(id, { "c", "missing", "a" }), "untag(id, { c, missing, a })")
  eq({ "b", "d" }, meta_of(mgr, id).tags, "resume().metadata.tags")
  eq({ "b", "d" }, list(mgr)[1].tags, "list()[1].tags")
end)

check("untag: an absent tag is fine and removes nothing", function(mgr)
  local id = tag_source(mgr, { "a", "b" })
  eq({ "a", "b" }, mgr:untag(id, "missing"), "untag(id, 'missing')")
  eq({ "a", "b" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

check("untag: removing every tag leaves an empty array", function(mgr)
  local id = tag_source(mgr, { "a", "b" })
  local tags = mgr:untag(id, { "a", "b" })
  truthy(type(tags) == "table" and next(tags) == nil, "untag(id, { a, b }) returned %s", show(tags))
  local stored = meta_of(mgr, id).tags
  truthy(type(stored) == "table" and next(stored) == nil, "resume().metadata.tags is %s", show(stored))
  eq({}, list_ids(mgr, { tag = "a" }), "list{ tag = 'a' }")
end)

------------------------------------------------------------------ rename

check("rename: sets the name", function(mgr)
  local id = tag_source(mgr)
  mgr:rename(id, "final-delivery")
  eq("final-delivery", meta_of(mgr, id).name, "resume().metadata.name")
  eq("final-delivery", list(mgr)[1].name, "list()[1].name")
end)

check("rename: returns no value", function(mgr)
  local id = tag_source(mgr)
  no_values("rename()", mgr:rename(id, "x"))
end)

check("rename: names an unnamed session", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  mgr:rename(s.metadata.id, "named")
  eq("named", meta_of(mgr, s.metadata.id).name, "resume().metadata.name")
end)

check("rename: changes nothing but name, updated_at and version", function(mgr)
  local id = rewind_source(mgr)
  keeps_all_but(mgr, id, function() mgr:rename(id, "renamed") end,
    { "id", "tags", "agent_name", "created_at", "turn_count", "total_tokens" })
end)

check("rename: a non-string name is refused and changes nothing", function(mgr)
  local id = tag_source(mgr)
  local before = snapshot(mgr)
  expect_refused("rename(id, 5)", function() return mgr:rename(id, 5) end)
  expect_refused("rename(id, {})", function() return mgr:rename(id, {}) end)
  unchanged(mgr, before, "rename with a non-string name")
end)

check("rename: a name with a control character is invalid and changes nothing", function(mgr)
  local id = tag_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("rename(id, 'two\\nlines')", "invalid", function() return mgr:rename(id, "two\nlines") end)
  unchanged(mgr, before, "rename with a control character")
end)

return checks
