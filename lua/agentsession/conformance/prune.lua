-- agentsession.conformance.prune: the checks of prune: what it deletes and keeps (before,
-- keep_tag, the filters), dry_run, its result, and the search index it leaves.
local support = require("agentsession.conformance.support")

local show, eq, truthy = support.show, support.eq, support.truthy
local expect_error_in, make_session, messages = support.expect_error_in, support.make_session, support.messages
local is_table, list_ids, save, wait_past = support.is_table, support.list_ids, support.save, support.wait_past
local snapshot, unchanged, meta_of = support.snapshot, support.unchanged, support.meta_of

local checks, check = support.family()

-- prune(opts), checked to be an array of strings; returned sorted.
local function prune(mgr, opts)
  local r = mgr:prune(opts)
  is_table(r, "prune()")
  local out = {}
  for i, id in ipairs(r) do
    truthy(type(id) == "string", "prune()[%d] is %s, not an id", i, show(id))
    out[i] = id
  end
  table.sort(out)
  return out
end

local function sorted(ids)
  local out = {}
  for i, id in ipairs(ids) do out[i] = id end
  table.sort(out)
  return out
end

-- Saves sessions (each a metadata override) and returns their ids, and a
-- time after all of them and before any later write.
local function old_sessions(mgr, metas)
  local ids, last = {}, nil
  for i, meta in ipairs(metas) do
    last = save(mgr, make_session(meta, messages(2)))
    ids[i] = last.id
  end
  wait_past(last.updated_at)
  return ids, last.updated_at + 1
end

check("prune: deletes the sessions updated before `before`, giving their ids", function(mgr)
  local old, cut = old_sessions(mgr, { {}, {}, {} })
  local new = save(mgr, make_session()).id
  eq(sorted(old), prune(mgr, { before = cut }), "prune{ before }")
  eq({ new }, list_ids(mgr), "list() after prune")
  eq({}, prune(mgr, { before = cut }), "a second prune")
end)

check("prune: `before` is strict, and a later write keeps a session", function(mgr)
  local ids, cut = old_sessions(mgr, { {}, {} })
  mgr:tag(ids[1], "touched")
  eq({ ids[2] }, prune(mgr, { before = cut }), "prune after writing to the first")
  local at = meta_of(mgr, ids[1]).updated_at
  eq({}, prune(mgr, { before = at }), "prune{ before = its updated_at }")
  eq({ ids[1] }, prune(mgr, { before = at + 1 }), "prune{ before = its updated_at + 1 }")
end)

check("prune: keep_tag protects the sessions carrying it", function(mgr)
  local ids, cut = old_sessions(mgr, { { tags = { "keep", "x" } }, { tags = { "x" } }, { tags = {} } })
  eq(sorted({ ids[2], ids[3] }), prune(mgr, { before = cut, keep_tag = "keep" }), "prune{ keep_tag }")
  eq({ ids[1] }, list_ids(mgr), "list() after prune")
end)

check("prune: the filters of list choose what it deletes", function(mgr)
  local ids, cut = old_sessions(mgr, {
    { tags = { "t" }, agent_name = "a" }, { tags = { "t" }, agent_name = "b" },
    { tags = {}, agent_name = "a" },
  })
  local fork = mgr:fork(ids[3], "fork").id
  wait_past(meta_of(mgr, fork).updated_at)
  local cut2 = meta_of(mgr, fork).updated_at + 1
  eq({ fork }, prune(mgr, { before = cut2, parent_id = ids[3] }), "prune{ parent_id }")
  eq({ ids[1] }, prune(mgr, { before = cut, tag = "t", agent_name = "a" }), "prune{ tag, agent_name }")
  eq({ ids[3] }, prune(mgr, { before = cut, agent_name = "a" }), "prune{ agent_name }")
  eq({ ids[2] }, list_ids(mgr), "list() after the prunes")
end)

check("prune: dry_run deletes nothing and gives what it would delete", function(mgr)
  local ids, cut = old_sessions(mgr, { { tags = { "keep" } }, {}, {} })
  save(mgr, make_session())
  local before = snapshot(mgr)
  eq(sorted({ ids[2], ids[3] }), prune(mgr, { before = cut, keep_tag = "keep", dry_run = true }),
    "prune{ dry_run = true }")
  unchanged(mgr, before, "prune{ dry_run = true }")
end)

check("prune: deletes more sessions than fit in a batch", function(mgr)
  local metas = {}
  for i = 1, 300 do metas[i] = { tags = i % 3 == 0 and { "keep" } or {} } end
  local ids, cut = old_sessions(mgr, metas)
  local want = {}
  for i, id in ipairs(ids) do if i % 3 ~= 0 then want[#want + 1] = id end end
  eq(sorted(want), prune(mgr, { before = cut, keep_tag = "keep" }), "prune of 300")
  eq(100, #list_ids(mgr), "#list() after prune")
end)

check("prune: a deleted session is no longer found by search", function(mgr)
  local ids = old_sessions(mgr, { { tags = { "keep" } }, {} })
  mgr:append(ids[1], { "searchable needle" })
  mgr:append(ids[2], { "searchable needle" })
  local last = meta_of(mgr, ids[2]).updated_at
  wait_past(last)
  eq({ ids[2] }, prune(mgr, { before = last + 1, keep_tag = "keep" }), "prune{ keep_tag }")
  local r = mgr:search("needle")
  eq(1, #r, "#search('needle')")
  eq(ids[1], r[1].metadata.id, "search('needle')[1]")
end)

check("prune: needs `before`", function(mgr)
  save(mgr, make_session())
  local before = snapshot(mgr)
  expect_error_in("prune{}", "invalid", function() return mgr:prune({}) end)
  expect_error_in("prune{ keep_tag = 'k' }", "invalid", function() return mgr:prune({ keep_tag = "k" }) end)
  expect_error_in("prune{ before = 'soon' }", "invalid", function() return mgr:prune({ before = "soon" }) end)
  unchanged(mgr, before, "the refused prunes")
end)

return checks
