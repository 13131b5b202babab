-- search and prune on every store (helpers.stores): each store's index against
-- reading every text (a memory manager given the same writes) over a random
-- mix of every kind of write, with unicode text, phrases, filters, limit and
-- offset; long histories; prune's batches and progress; and what only SQLite
-- (its FTS5 tables) and Redis (its word sets) keep.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local managers = require("helpers.managers")
local h = require("helpers.sqlite")
local sqlite_case = require("helpers.sqlite_case")
local error_of = require("helpers.expect").error_of

local track, close_all = managers.track, managers.close_all
local array = agentsession.array

-- A generator of its own, the same on every Lua: x -> x * 69069 + 1 mod 2^32.
local function generator(seed)
  local x = seed % 4294967296
  return function(a, b)
    x = (x * 69069 + 1) % 4294967296
    return a + math.floor(x / 4294967296 * (b - a + 1))
  end
end

local WORDS = { "alpha", "Beta", "GAMMA", "café", "naïve", "東京", "straße", "x1", "42", "“quoted”—dash",
  "re-entry", "don't", "parser", "fix", "the", "Ωmega", "ünïcode" }

local function text(rnd, n)
  local out = {}
  for i = 1, n do out[i] = WORDS[rnd(1, #WORDS)] end
  return table.concat(out, rnd(1, 4) == 1 and ", " or " ")
end

local function message(rnd)
  local r = rnd(1, 4)
  if r == 1 then return text(rnd, rnd(1, 8)) end
  if r == 2 then return { role = "user", content = text(rnd, rnd(2, 12)) } end
  if r == 3 then
    return { role = "assistant", content = array({ { type = "text", text = text(rnd, rnd(1, 6)) } }), n = rnd(1, 99) }
  end
  return { role = "tool", content = { words = array({ text(rnd, 2), text(rnd, 3) }) } }
end

local function messages(rnd, n)
  local out = array()
  for i = 1, n do out[i] = message(rnd) end
  return out
end

-- The store's ids and indexes of a search, as a sorted set of "id#index",
-- with its twin's ids (twins: the reference's id of each of the store's).
local function hits(mgr, query, opts, twins)
  local out = {}
  for _, hit in ipairs(mgr:search(query, opts)) do
    local id = hit.metadata.id
    out[#out + 1] = (twins and twins[id] or id) .. "#" .. hit.index
  end
  table.sort(out)
  return out
end

-- A search's results follow list order: they are a subsequence of list() with the same filter.
local function assert_in_list_order(mgr, query, filter)
  local position = {}
  for i, m in ipairs(mgr:list(filter)) do position[m.id] = i end
  local opts = { limit = 100000 }
  for k, v in pairs(filter or {}) do opts[k] = v end
  local last = 0
  for i, hit in ipairs(mgr:search(query, opts)) do
    local p = position[hit.metadata.id]
    assert.truthy(p, "search('" .. query .. "')[" .. i .. "] is not listed")
    assert.is_true(p > last, "search('" .. query .. "') is not in list order at " .. i)
    last = p
  end
end

-- One random write to a store and to the reference; `ids` is the store's ids,
-- `twins` maps them to the reference's.
local function random_write(rnd, mgr, ref, ids, twins)
  local r = rnd(1, 100)
  local id = ids[rnd(1, math.max(1, #ids))]
  local tid = id and twins[id]
  local function both(method, ...)
    mgr[method](mgr, id, ...)
    ref[method](ref, tid, ...)
  end
  if #ids < 4 or r <= 15 then
    local s = agentsession.session{ name = text(rnd, rnd(1, 3)), tags = { "t" .. rnd(1, 3) },
      agent_name = rnd(1, 2) == 1 and "a" or "b", messages = messages(rnd, rnd(0, 6)) }
    mgr:save(s)
    ref:save(s)
    ids[#ids + 1] = s.metadata.id
    twins[s.metadata.id] = s.metadata.id
  elseif r <= 35 then
    both("append", messages(rnd, rnd(1, 3)))
  elseif r <= 43 then
    both("rewind", rnd(0, 6))
  elseif r <= 50 then
    local at = rnd(0, 5)
    local f = mgr:fork(id, "fork " .. text(rnd, 1), { at = at })
    local g = ref:fork(tid, "fork " .. text(rnd, 1), { at = at })
    ids[#ids + 1] = f.id
    twins[f.id] = g.id
    mgr:rename(f.id, "fork")
    ref:rename(g.id, "fork")
  elseif r <= 58 then
    -- a window's save: the last messages replaced, one more added
    local last = rnd(1, 3)
    local w, v = mgr:resume(id, { last = last }), ref:resume(tid, { last = last })
    local more = messages(rnd, 2)
    w.messages[1], v.messages[1] = more[1], more[1]
    w.messages[#w.messages + 1], v.messages[#v.messages + 1] = more[2], more[2]
    mgr:save(w)
    ref:save(v)
  elseif r <= 66 then
    local tag = "t" .. rnd(1, 3)
    if rnd(1, 2) == 1 then both("tag", tag) else both("untag", tag) end
  elseif r <= 72 then
    both("rename", text(rnd, rnd(1, 3)))
  elseif r <= 80 then
    local s, t = mgr:resume(id), ref:resume(tid)
    local msgs = messages(rnd, rnd(0, 5))
    s.messages, t.messages = msgs, msgs
    mgr:save(s)
    ref:save(t)
  elseif r <= 86 then
    local doc = agentsession.json.decode(mgr:export(id))
    doc.messages = messages(rnd, rnd(1, 3))
    doc.metadata.name = text(rnd, 2)
    mgr:import(agentsession.json.encode(doc), { replace = true })
    local rdoc = agentsession.json.decode(ref:export(tid))
    rdoc.messages, rdoc.metadata.name = doc.messages, doc.metadata.name
    ref:import(agentsession.json.encode(rdoc), { replace = true })
  elseif r <= 95 then
    both("delete")
    for i, x in ipairs(ids) do
      if x == id then table.remove(ids, i) break end
    end
  else
    local cut = agentsession.now() + 1
    while agentsession.now() < cut do end
    local agent = rnd(1, 2) == 1 and "a" or "b"
    local gone, rgone = {}, {}
    for _, x in ipairs(mgr:prune{ before = cut, agent_name = agent, keep_tag = "t1" }) do gone[x] = true end
    for _, x in ipairs(ref:prune{ before = cut, agent_name = agent, keep_tag = "t1" }) do rgone[x] = true end
    for i = #ids, 1, -1 do
      assert.are.equal(rgone[twins[ids[i]]] == true, gone[ids[i]] == true, ids[i] .. " pruned in one only")
      if gone[ids[i]] then table.remove(ids, i) end
    end
  end
end

local QUERIES = { "alpha", "BETA", "gamma beta", "café", "CAFÉ", "naïve", "東京", "straße", "x1", "42",
  "quoted", "dash", "entry", "don t", "parser fix", '"parser fix"', '"the alpha"', "Ωmega", "ünïcode",
  "fork", "t2", "user", "tool", "words", '"fix the parser"', "alpha beta gamma" }

for _, store in ipairs(stores) do
  describe(store.name .. ":", function()
    after_each(close_all)

    it("search finds what reading every text finds, after a random mix of every kind of write", function()
      local mgr, ref = track(store.new()), track(agentsession.memory())
      local rnd = generator(20240611 + #store.name)
      local ids, twins = {}, {}
      for step = 1, 160 do
        random_write(rnd, mgr, ref, ids, twins)
        if step % 40 == 0 then
          for _, q in ipairs(QUERIES) do
            local what = "step " .. step .. ": search('" .. q .. "'"
            local opts = { limit = 100000 }
            assert.are.same(hits(ref, q, opts), hits(mgr, q, opts, twins), what .. ")")
            for _, f in ipairs({ { tag = "t2" }, { agent_name = "a" }, { tags = { "t1", "t3" } } }) do
              local o = { limit = 100000 }
              for k, v in pairs(f) do o[k] = v end
              assert.are.same(hits(ref, q, o), hits(mgr, q, o, twins), what .. ", a filter)")
            end
          end
          assert_in_list_order(mgr, "alpha")
          assert_in_list_order(mgr, "the", { tag = "t3" })
        end
      end
      -- limit and offset page the same order
      local all = mgr:search("the", { limit = 100000 })
      local paged = {}
      for offset = 0, #all + 2, 3 do
        for _, hit in ipairs(mgr:search("the", { limit = 3, offset = offset })) do paged[#paged + 1] = hit end
      end
      assert.are.equal(#all, #paged)
      for i = 1, #all do assert.are.equal(all[i].metadata.id, paged[i].metadata.id) end
    end)

    it("search follows a long history: appends one by one, a rewind and a window's save", function()
      local mgr = track(store.new())
      local s = agentsession.session{ name = "long" }
      mgr:save(s)
      local id = s.metadata.id
      for i = 1, 150 do mgr:append(id, { { role = "user", content = "message m" .. i .. " common" } }) end
      local r = mgr:search("m137")
      assert.are.equal(137, r[1] and r[1].index)
      assert.truthy(r[1].snippet:find("message m137 common", 1, true), r[1].snippet)
      assert.are.equal(150, mgr:search("common")[1].index)
      mgr:rewind(id, 100)
      assert.are.same({}, mgr:search("m137"))
      assert.are.equal(100, mgr:search("common")[1].index)
      local w = mgr:resume(id, { last = 10 })
      w.messages[10] = "replaced m100"
      w.messages[11] = "added m101"
      mgr:save(w)
      assert.are.equal(100, mgr:search("m100")[1].index)
      assert.are.same({}, mgr:search('"m100 common"'))
      assert.are.equal(101, mgr:search("added")[1].index)
      assert.are.equal(99, mgr:search("common")[1].index)
      local f = mgr:fork(id, "copy", { at = 50 })
      local found = mgr:search("m50 common")
      assert.are.same({ f.id, id }, { found[1].metadata.id, found[2].metadata.id })
      assert.are.same({ 50, 50 }, { found[1].index, found[2].index })
    end)

    it("prune reports each batch to progress, and stops at an error it raises", function()
      local mgr = track(store.new())
      for i = 1, 600 do mgr:save(agentsession.session{ id = "p" .. i, tags = { i % 2 == 0 and "even" or "odd" } }) end
      local last = mgr:list({ limit = 1 })[1].updated_at
      while agentsession.now() <= last do end
      local seen = {}
      local gone = mgr:prune{ before = last + 1, tag = "odd", progress = function(n) seen[#seen + 1] = n end }
      assert.are.equal(300, #gone)
      assert.is_true(#seen >= 1)
      for i = 2, #seen do assert.is_true(seen[i] >= seen[i - 1], "progress went back") end
      assert.are.equal(300, seen[#seen])
      -- a progress function that calls its manager gets an error, which ends the prune
      local busy = error_of("invalid", mgr.prune, mgr, { before = last + 1, progress = function() mgr:list() end })
      assert.truthy(busy.message:find("busy", 1, true), busy.message)
      -- (a backend's own prune deletes everything in one step, then reports)
      local left = #mgr:list()
      assert.is_true(left < 300, left .. " left")
      if left == 0 then return end
      -- an error raised by progress ends the prune: what the batches before deleted stays deleted
      local calls = 0
      local err = error_of("storage", mgr.prune, mgr, { before = last + 1, progress = function()
        calls = calls + 1
        error("stop here")
      end })
      assert.truthy(err.message:find("options.progress raised: .*stop here"), err.message)
      assert.are.equal(1, calls)
      assert.is_true(#mgr:list() < left, "the first batch was not deleted")
      assert.are.equal(#mgr:list(), #mgr:prune{ before = last + 1 })
      assert.are.same({}, mgr:list())
    end)
  end)
end

describe("sqlite: the search index", function()
  after_each(close_all)

  it("moves search_recent into the FTS5 table 64 rows at a time, and finds what is in either", function()
    local path = stores.new_file()
    local mgr = track(agentsession.sqlite(path))
    local s = agentsession.session{ name = "recent" }
    mgr:save(s)
    for i = 1, 200 do
      mgr:append(s.metadata.id, { "word w" .. i })
      local recent = h.value(path, "SELECT count(*) FROM search_recent")
      assert.is_true(recent < 64, i .. ": " .. recent .. " rows in search_recent")
      if i == 62 then assert.are.equal(63, recent) end -- the label and 62 messages
      if i == 63 then assert.are.equal(0, recent) end
    end
    for _, i in ipairs({ 1, 62, 63, 64, 130, 199, 200 }) do
      assert.are.equal(i, mgr:search("w" .. i)[1].index, "w" .. i)
    end
    assert.are.equal(200, mgr:search("word")[1].index)
    assert.are.equal(1, h.value(path, "SELECT count(*) FROM search WHERE search MATCH '\"w5\"'"))
    sqlite_case.assert_sound(path, "after 200 appends")
    mgr:rewind(s.metadata.id, 10)
    assert.are.same({}, mgr:search("w150"))
    assert.are.equal(0, h.value(path, "SELECT count(*) FROM search WHERE search MATCH '\"w150\"'"))
    mgr:delete(s.metadata.id)
    assert.are.equal(0, h.value(path, "SELECT count(*) FROM search WHERE search MATCH '\"word\"'"))
    assert.are.equal(0, h.value(path, "SELECT count(*) FROM search_recent"))
    sqlite_case.assert_sound(path, "after the delete")
  end)
end)

describe("redis: the word index", function()
  after_each(close_all)

  it("answers a search in one round trip, reading only the sessions that hold every word", function()
    local mgr = track((stores.new_redis()))
    for i = 1, 200 do
      mgr:save(agentsession.session{ messages = { "filler text " .. i, i % 50 == 0 and "rare needle" or "hay" } })
    end
    local before = mgr:stats().round_trips
    local r = mgr:search("rare needle")
    assert.are.equal(4, #r)
    assert.are.equal(1, mgr:stats().round_trips - before)
    for _, hit in ipairs(r) do assert.are.same({ 2, "rare needle" }, { hit.index, hit.snippet }) end
  end)

  it("removes every key of its index with the sessions, by delete and by prune", function()
    local srv = stores.redis_server()
    local mgr, prefix = stores.new_redis()
    track(mgr)
    for i = 1, 20 do
      mgr:save(agentsession.session{ name = "n" .. i, tags = { "t" }, messages = { "shared words " .. i } })
    end
    mgr:delete(mgr:list()[1].id)
    mgr:prune{ before = agentsession.now() + 1000 }
    assert.are.same({ prefix .. "seq" }, srv:keys(prefix .. "*"))
  end)

  it("keeps the index on a server without SMISMEMBER (before 6.2) too", function()
    local srv = require("helpers.redis_server").start({ without = { "SMISMEMBER" } })
    local mgr = track(agentsession.redis{ host = srv.host, port = srv.port })
    local ref = track(agentsession.memory())
    local rnd = generator(77)
    local ids, twins = {}, {}
    for _ = 1, 60 do random_write(rnd, mgr, ref, ids, twins) end
    for _, q in ipairs(QUERIES) do
      assert.are.same(hits(ref, q, { limit = 1000 }), hits(mgr, q, { limit = 1000 }, twins), "search('" .. q .. "')")
    end
    mgr:close()
    srv:stop()
  end)

  it("finds the messages a session written without the index gets afterwards, at their index", function()
    local srv = stores.redis_server()
    local mgr, prefix = stores.new_redis()
    track(mgr)
    local id = mgr:save(agentsession.session{ name = "before", messages = { "old one", "old two" } }).id
    -- as a store of an earlier version left it: no keys of the index
    srv:cli("DEL", prefix .. "{" .. id .. "}:mw", prefix .. "{" .. id .. "}:words")
    for _, k in ipairs({ "old", "one", "two", "before" }) do srv:cli("SREM", prefix .. "w:" .. k, id) end
    assert.are.same({}, mgr:search("old"))
    mgr:append(id, { "new three" })
    assert.are.equal(3, mgr:search("new")[1].index)
    assert.are.same({}, mgr:search("old"))
    mgr:rewind(id, 1)
    assert.are.same({}, mgr:search("new"))
    mgr:delete(id)
    assert.are.same({ prefix .. "seq" }, srv:keys(prefix .. "*"))
  end)
end)
