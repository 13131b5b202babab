-- agentsession.conformance.timestamps: the checks of timestamps: created_at and updated_at, as
-- save and every other write set them.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local now = agentsession.now
local fail, show, eq, make_session = support.fail, support.show, support.eq, support.make_session
local messages, wait_past, between = support.messages, support.wait_past, support.between
local meta_of, list, save = support.meta_of, support.list, support.save
local number_type = support.number_type

local checks, check = support.family()

check("timestamps: save sets created_at to now when it is 0", function(mgr)
  local before = now()
  local meta = save(mgr, make_session({ created_at = 0 }))
  local after = now()
  between(meta.created_at, before, after, "save().created_at")
  eq(meta.created_at, meta_of(mgr, meta.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: save sets created_at to now when it is nil", function(mgr)
  local s = make_session()
  s.metadata.created_at = nil
  local before = now()
  local meta = save(mgr, s)
  local after = now()
  between(meta.created_at, before, after, "save().created_at")
end)

check("timestamps: save keeps a non-zero created_at as given", function(mgr)
  local meta = save(mgr, make_session({ created_at = 1000 }))
  eq(1000, meta.created_at, "save().created_at")
  eq(1000, meta_of(mgr, meta.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: re-saving with created_at 0 keeps the stored created_at", function(mgr)
  local s = make_session({ created_at = 1000 })
  save(mgr, s)
  s.metadata.created_at = 0
  eq(1000, save(mgr, s).created_at, "save().created_at")
  eq(1000, meta_of(mgr, s.metadata.id).created_at, "resume().metadata.created_at")
  local t = make_session({ created_at = 0 })
  local first = save(mgr, t)
  wait_past(first.updated_at)
  eq(first.created_at, save(mgr, t).created_at, "created_at of a second save")
end)

check("timestamps: re-saving with created_at nil keeps the stored created_at", function(mgr)
  local s = make_session({ created_at = 1000 })
  save(mgr, s)
  s.metadata.created_at = nil
  eq(1000, save(mgr, s).created_at, "save().created_at")
  eq(1000, meta_of(mgr, s.metadata.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: re-saving with a non-zero created_at keeps the one given", function(mgr)
  local s = make_session({ created_at = 1000 })
  save(mgr, s)
  s.metadata.created_at = 2000
  eq(2000, save(mgr, s).created_at, "save().created_at")
  eq(2000, meta_of(mgr, s.metadata.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: save sets updated_at to now, whatever is given", function(mgr)
  local s = make_session({ updated_at = 12345 })
  local before = now()
  local first = save(mgr, s)
  between(first.updated_at, before, now(), "save().updated_at")
  wait_past(first.updated_at)
  before = now()
  local second = save(mgr, s)
  local after = now()
  between(second.updated_at, before, after, "updated_at of a second save")
  between(meta_of(mgr, s.metadata.id).updated_at, before, after, "resume().metadata.updated_at")
end)

local function updated_by(name, op)
  check("timestamps: " .. name .. " sets updated_at to now", function(mgr)
    local s = make_session({ tags = { "a", "b" } }, messages(4))
    local meta = save(mgr, s)
    wait_past(meta.updated_at)
    local before = now()
    op(mgr, s.metadata.id)
    local after = now()
    between(meta_of(mgr, s.metadata.id).updated_at, before, after, "updated_at after " .. name)
    between(list(mgr)[1].updated_at, before, after, "list()[1].updated_at after " .. name)
  end)
end
updated_by("rewind", function(mgr, id) mgr:rewind(id, 2) end)
updated_by("tag", function(mgr, id) mgr:tag(id, "new") end)
updated_by("untag", function(mgr, id) mgr:untag(id, "a") end)
updated_by("rename", function(mgr, id) mgr:rename(id, "renamed") end)

check("timestamps: rewind, tag, untag and rename keep created_at", function(mgr)
  local s = make_session({ created_at = 1000, tags = { "a" } }, messages(4))
  save(mgr, s)
  local id = s.metadata.id
  eq(1000, mgr:rewind(id, 2).metadata.created_at, "rewind().metadata.created_at")
  mgr:tag(id, "b")
  eq(1000, meta_of(mgr, id).created_at, "created_at after tag")
  mgr:untag(id, "a")
  eq(1000, meta_of(mgr, id).created_at, "created_at after untag")
  mgr:rename(id, "n")
  eq(1000, meta_of(mgr, id).created_at, "created_at after rename")
end)

check("timestamps: a later write never gets an earlier updated_at", function(mgr)
  local stamps = {}
  local a = make_session(nil, messages(30))
  local b = make_session()
  local function stamp(what, v)
    stamps[#stamps + 1] = { what, v }
  end
  for i = 1, 30 do
    stamp("save a #" .. i, save(mgr, a).updated_at)
    stamp("save b #" .. i, save(mgr, b).updated_at)
    stamp("rewind #" .. i, mgr:rewind(a.metadata.id, 30 - i).metadata.updated_at)
    mgr:tag(b.metadata.id, "t" .. i)
    stamp("tag #" .. i, meta_of(mgr, b.metadata.id).updated_at)
    stamp("fork #" .. i, mgr:fork(b.metadata.id).updated_at)
    mgr:rename(a.metadata.id, "n" .. i)
    stamp("rename #" .. i, meta_of(mgr, a.metadata.id).updated_at)
    mgr:untag(b.metadata.id, "t" .. i)
    stamp("untag #" .. i, meta_of(mgr, b.metadata.id).updated_at)
  end
  for i = 2, #stamps do
    local prev, cur = stamps[i - 1], stamps[i]
    if number_type(cur[2]) ~= "integer" then fail("%s: updated_at is %s", cur[1], show(cur[2])) end
    if cur[2] < prev[2] then
      fail("%s got updated_at %d, earlier than %d of the write before (%s)", cur[1], cur[2], prev[2], prev[1])
    end
  end
end)

return checks
