-- bench/bench.lua: agentsession performance against lua-cjson and a plain-Lua manager.
--
-- From the repository root, after `make`:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/bench.lua
-- (`make bench` runs exactly that.) On another Lua, with its build (`make LUA=luajit`):
--   LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/luajit/?.so;;' luajit bench/bench.lua
-- `lua5.4 bench/table.lua` runs the main rows on every Lua that has a build and prints one table.
--
-- Options (environment):
--   BENCH_QUICK=1     short rounds, for a smoke run in tests
--   BENCH_ROUNDS=n    rounds per row (default 7; 3 when quick)
--   BENCH_TIME=s      CPU seconds per function per round (default 0.3; 0.02 when quick)
-- Arguments: Lua patterns; only rows whose name matches one of them run (all rows when none).
-- `--rows main`: only the main rows (those marked `main`), each followed by a line for
-- bench/table.lua: "main", the Lua, the row's name, ours and the rival in ns, the ratio and the
-- target, separated by tabs.
--
-- Every row compares ours with a rival measured in the same run, interleaved (see harness.lua).
-- Ratios are informational: the benchmark exits 0 whatever they are, and non-zero only when
-- something errors (including a failed round-trip check of the data under test).
--
-- The SQLite rows compare agentsession.sqlite with a LuaSQL + lua-cjson store (luasql_store.lua)
-- and with itself on a smaller store; they are skipped when agentsession.sqlite or LuaSQL is
-- missing. Their database files live in one directory /tmp/agentsession-bench-XXXXXX, removed
-- (with the -wal and -shm files) when the rows finish, also when a row fails.
--
-- To add a row, append to `rows` below:
--   { name = "...", target = 1.0, make = function(ctx) return ours_fn, rival_fn, cleanup end }
-- `make` may return nil, "reason" to skip the row (e.g. no Redis server can start). A row
-- with `count` times that many calls per round (in `rounds` rounds, when it says); with
-- `wall = true`, in wall-clock time (the Redis row, whose calls wait on the server) instead
-- of CPU time.

local agentsession = require "agentsession"
local cjson = require "cjson"
local harness = require "harness"
local conversation = require "conversation"
local PlainManager = require "plain_manager"
local same = require("agentsession.conformance").same

local h = harness.new{ name_width = 50 }

---------------------------------------------------------------------------------------------------
-- Data under test

local session = conversation.session{ null = agentsession.null }
local id = session.metadata.id
local ours_text = agentsession.json.encode(session)
local cjson_text = cjson.encode(session)

-- Numbers by value only, for lua-cjson, which decodes 1 as 1.0.
local BY_VALUE = { numbers = function(a, b)
  if a ~= b then return tostring(a) .. " vs " .. tostring(b) end
  return nil
end }

-- A copy of table t without the keys of `ignore`.
local function without_keys(t, ignore)
  local out = {}
  for k, v in pairs(t) do
    if not ignore[k] then out[k] = v end
  end
  return out
end

-- Exact structural equality (integers stay integers, floats stay floats; metatables ignored),
-- leaving out the top-level keys of `ignore`. With `by_value`, numbers are compared by value only.
local function deep_equal(a, b, path, ignore, by_value)
  if ignore then a, b = without_keys(a, ignore), without_keys(b, ignore) end
  return same(a, b, by_value and BY_VALUE or nil, path)
end

local check_failures = {}
local function check(what, ok, why)
  if not ok then
    check_failures[#check_failures + 1] = what .. ": " .. tostring(why)
    io.stderr:write("bench: round-trip check failed: ", what, ": ", tostring(why), "\n")
  end
end

do
  check("json.decode(json.encode(session))",
    deep_equal(session, agentsession.json.decode(ours_text), "session"))
  local m = agentsession.memory()
  m:save(session)
  local back = m:resume(id)
  check("memory save+resume messages", deep_equal(session.messages, back.messages, "messages"))
  check("memory save+resume state", deep_equal(session.state, back.state, "state"))
  check("memory save+resume metadata", deep_equal(session.metadata, back.metadata, "metadata",
    { created_at = true, updated_at = true, version = true, parent_id = true }))
  m:close()
end

---------------------------------------------------------------------------------------------------
-- Rows

local sink = {} -- keeps results alive so no work can be skipped

---------------------------------------------------------------------------------------------------
-- SQLite stores: ours (agentsession.sqlite) and the rival (luasql_store.lua), in temporary files

local has_luasql, LuaSQLStore = pcall(require, "luasql_store")

local function luasql_missing()
  if not has_luasql then
    return "LuaSQL (Debian package lua-sql-sqlite3) is not installed: " ..
      tostring(LuaSQLStore):match("^[^\n]*")
  end
  return nil
end

-- Every store opened here, so that cleanup can close it and remove its files.
local temp = { dir = nil, stores = {} }

local function temp_path(name)
  if not temp.dir then
    local p = assert(io.popen("mktemp -d /tmp/agentsession-bench-XXXXXX"))
    local dir = p:read("*l")
    p:close()
    assert(dir and dir ~= "", "bench: mktemp -d failed")
    temp.dir = dir
  end
  return temp.dir .. "/" .. name
end

local function open_store(kind, name)
  local path = temp_path(name)
  local store
  if kind == "ours" then
    store = agentsession.sqlite(path)
  else
    store = LuaSQLStore.new(path)
  end
  temp.stores[#temp.stores + 1] = { store = store, path = path }
  return store
end

-- Closes the stores (all of them, or those in `only`) and removes their files.
local function close_stores(only)
  local keep = {}
  for _, e in ipairs(temp.stores) do
    local wanted = only == nil
    for _, s in ipairs(only or {}) do
      if s == e.store then wanted = true end
    end
    if wanted then
      pcall(e.store.close, e.store)
      for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(e.path .. suffix) end
    else
      keep[#keep + 1] = e
    end
  end
  temp.stores = keep
  if #keep == 0 and temp.dir then
    os.remove(temp.dir) -- the directory, now empty
    temp.dir = nil
  end
end

-- A session sharing `base`'s messages and state, with its own metadata table.
local function session_like(base, new_id)
  local md = {}
  for k, v in pairs(base.metadata) do md[k] = v end
  md.id = new_id or md.id
  return { metadata = md, messages = base.messages, state = base.state }
end

local IGNORED_METADATA = { created_at = true, updated_at = true, version = true, parent_id = true }

-- save then resume, compared with what was saved (by value only for the lua-cjson rival).
local function check_save_resume(what, mgr, s, by_value)
  mgr:save(s)
  local back = mgr:resume(s.metadata.id)
  check(what .. " messages", deep_equal(s.messages, back.messages, "messages", nil, by_value))
  check(what .. " state", deep_equal(s.state, back.state, "state", nil, by_value))
  check(what .. " metadata", deep_equal(s.metadata, back.metadata, "metadata", IGNORED_METADATA,
    by_value))
end

-- Fixture of rows c and d: a big and a small store, populated once.
local LIST_BIG = h.quick and 2000 or 20000
local LIST_SMALL = 200
local list_fixture

-- Ten sessions of each store, spread through it, say "zephyrine": the word search looks for.
local RARE = "zephyrine"

local function populate(mgr, n)
  local agents = { "code-agent", "review-agent", "planner", "support-bot", "data-agent",
    "ops-agent", "" }
  local wall0, cpu0 = agentsession.now(), os.clock()
  for i = 1, n do
    mgr:save(agentsession.session{
      id = string.format("list-%06d", i),
      name = "task " .. i,
      tags = { "t" .. (i % 10), i % 2 == 0 and "even" or "odd" },
      agent_name = agents[i % #agents + 1],
      messages = {
        { role = "user", content = "Please look at issue #" .. i .. " and fix it." },
        { role = "assistant", content = "Done: the " .. (i % (n / 10) == 0 and RARE .. " " or "")
          .. "fix for issue #" .. i .. " is committed.",
          usage = { prompt_tokens = 900 + i % 100, completion_tokens = 40 } },
      },
      state = { cwd = "/home/user/project", step = i },
    })
  end
  return (agentsession.now() - wall0) / 1000, os.clock() - cpu0
end

local function get_list_fixture()
  if not list_fixture then
    local big, small = open_store("ours", "list-big.db"), open_store("ours", "list-small.db")
    local wall_big, cpu_big = populate(big, LIST_BIG)
    local wall_small, cpu_small = populate(small, LIST_SMALL)
    h:printf("  (populating, one save each: %d sessions in %.1f s wall / %.1f s CPU, " ..
      "%d in %.2f s / %.2f s%s)\n", LIST_BIG, wall_big, cpu_big, LIST_SMALL, wall_small,
      cpu_small, h.quick and "; BENCH_QUICK: 2000 instead of 20000" or "")
    list_fixture = { big = big, small = small }
  end
  return list_fixture
end

-- list(filter) on a store of sessions list-000001 … list-<n> saved in that order must return
-- the 20 most recent (matching the tag, when given), newest first.
local function check_list(what, mgr, n, filter)
  local tag_num = filter.tag and tonumber(filter.tag:match("^t(%d)$"))
  local want = {}
  for i = n, 1, -1 do
    if #want == filter.limit then break end
    if not tag_num or i % 10 == tag_num then want[#want + 1] = string.format("list-%06d", i) end
  end
  local got = mgr:list(filter)
  local ok, why = #got == #want, string.format("%d items, expected %d", #got, #want)
  for k = 1, math.min(#got, #want) do
    if not ok then break end
    local md = got[k]
    if md.id ~= want[k] then
      ok, why = false, string.format("item %d is %s, expected %s", k, tostring(md.id), want[k])
    elseif filter.tag and not agentsession.has_tag(md, filter.tag) then
      ok, why = false, string.format("item %d (%s) lacks tag %s", k, md.id, filter.tag)
    elseif k > 1 and md.updated_at > got[k - 1].updated_at then
      ok, why = false, string.format("item %d is newer than item %d", k, k - 1)
    end
  end
  check(what, ok, why)
end

-- Row e's sessions: the bench conversation's messages cycled to n.
local function cycled_messages(n)
  local src, t = session.messages, {}
  for i = 1, n do t[i] = src[(i - 1) % #src + 1] end
  return t
end

-- The last n of cycled_messages(total): sessions of different lengths that end alike.
local function ending_messages(n, total)
  local all, t = cycled_messages(total), {}
  for i = 1, n do t[i] = all[total - n + i] end
  return t
end

-- Two distinct messages, set alternately as message n+1 by row e's timed saves.
local extra_messages = {
  { role = "user", content = "Run the failing spec again and show me the output." },
  { role = "user", content = "Looks good. Commit it with a short message, please." },
}


-- Saves `count` sessions of the messages `msgs` (and `state`, when given) named
-- after `label`; returns their ids.
local function save_pool(mgr, label, count, msgs, state)
  local ids = {}
  for k = 1, count do
    ids[k] = mgr:save(agentsession.session{ id = string.format("bench-%s-%d", label, k),
      messages = msgs, state = state }).id
  end
  return ids
end

-- A function that runs op(id) on each of the ids in turn, one per call.
local function in_turn(ids, op)
  local k = 0
  return function()
    k = k % #ids + 1
    sink[1] = op(ids[k])
  end
end

-- Row f's sessions: pools of 3,000 and of 10 messages, each appended to in
-- turn, so that each grows by only a few messages over the whole run.
local function append_pools(mgr, tag)
  local one = { extra_messages[1] }
  local function append(sid) return mgr:append(sid, one) end
  return in_turn(save_pool(mgr, "append-" .. tag .. "-3000", 20, cycled_messages(3000)), append),
         in_turn(save_pool(mgr, "append-" .. tag .. "-10", 100, cycled_messages(10)), append)
end

-- A window's save after one new message, on pools of sessions of 3000 and of
-- 30 messages, each saved to in turn: resume{ last = 20 }, one more message, save.
-- The sessions end with the same messages and the pools are as large, so the
-- windows are alike as the sessions grow.
local function window_pools(mgr, tag)
  local big = save_pool(mgr, "window-" .. tag .. "-3000", 20, ending_messages(3000, 3000))
  local small = save_pool(mgr, "window-" .. tag .. "-30", 20, ending_messages(30, 3000))
  local function save_window(sid)
    local w = mgr:resume(sid, { last = 20 })
    w.messages[#w.messages + 1] = extra_messages[1]
    return mgr:save(w)
  end
  local w = mgr:resume(big[1], { last = 20 })
  w.messages[21] = extra_messages[2]
  mgr:save(w)
  local all = mgr:resume(big[1])
  check(tag .. " window save keeps the history", #all.messages == 3001
    and deep_equal(ending_messages(3000, 3000)[1], all.messages[1], "messages[1]")
    and deep_equal(extra_messages[2], all.messages[3001], "messages[3001]"), "messages differ")
  return in_turn(big, save_window), in_turn(small, save_window)
end

-- Appends of one message with a new state and without, to a pool of sessions of 10 messages.
local function state_pools(mgr, tag)
  local ids = save_pool(mgr, "state-" .. tag, 100, cycled_messages(10), session.state)
  local one = { extra_messages[1] }
  mgr:append(ids[1], one, { state = session.state })
  check(tag .. " append with state", deep_equal(session.state, mgr:resume(ids[1]).state, "state"))
  return in_turn(ids, function(sid) return mgr:append(sid, one, { state = session.state }) end),
         in_turn(ids, function(sid) return mgr:append(sid, one) end)
end

-- Appends of one message with tokens, with an op_id and without, to a pool of
-- sessions of 10 messages, each appended to in turn. The op ids are UUIDs made
-- beforehand, as a caller makes one for every attempt of an append. Each session
-- first takes more op ids than a store keeps, so the timed appends find a full
-- record and drop the oldest.
local OP_IDS = 20000 -- more than the timed appends of a row

local function op_id_pools(mgr, tag)
  local ids = save_pool(mgr, "op-" .. tag, h.quick and 10 or 100, cycled_messages(10))
  local one = { extra_messages[1] }
  local op_ids, n = {}, 0
  for k = 1, OP_IDS do op_ids[k] = agentsession.uuid() end
  for r = 1, 110 do
    for k, sid in ipairs(ids) do mgr:append(sid, one, { tokens = 1, op_id = "warm-" .. r .. "-" .. k }) end
  end
  local meta, applied = mgr:append(ids[1], one, { tokens = 1, op_id = "warm-110-1" })
  check(tag .. " append with a repeated op_id", applied == false and meta.turn_count == 110,
    "applied " .. tostring(applied) .. ", turn_count " .. tostring(meta.turn_count))
  return in_turn(ids, function(sid)
           n = n + 1
           return mgr:append(sid, one, { tokens = 1, op_id = assert(op_ids[n], "out of op ids") })
         end),
         in_turn(ids, function(sid) return mgr:append(sid, one, { tokens = 1 }) end)
end

-- A redis-server of the benchmark's on a free loopback port (spec/helpers/redis_server.lua),
-- and a manager on it: the `make` of a row timing pools(mgr, tag) on Redis.
local function on_redis(pools)
  return function()
    local saved = package.path
    package.path = "spec/?.lua;" .. package.path
    local started, srv = pcall(function() return require("helpers.redis_server").start() end)
    package.path = saved
    if not started then return nil, "no redis-server could start: " .. tostring(srv) end
    local m = agentsession.redis{ host = srv.host, port = srv.port, prefix = "bench:" }
    local ours, rival = pools(m, "redis")
    return ours, rival, function()
      m:close()
      srv:stop()
    end
  end
end

-- The `make` of a row timing the two functions pools(mgr, tag) gives, on a
-- new memory manager or on a SQLite file of the benchmark's.
local function on_memory(pools)
  return function()
    local m = agentsession.memory()
    local ours, rival = pools(m, "memory")
    return ours, rival, function() m:close() end
  end
end

local function on_sqlite(pools, file)
  return function()
    return pools(open_store("ours", file), "sqlite")
  end
end

local rows = {
  {
    name = "json.encode / cjson.encode", main = true, target = 1.0,
    make = function()
      local encode, cencode = agentsession.json.encode, cjson.encode
      return function() sink[1] = encode(session) end,
             function() sink[1] = cencode(session) end
    end,
  },
  {
    -- Both decoders read the same text (agentsession's encoding of the session).
    name = "json.decode / cjson.decode", main = true, target = 1.0,
    make = function()
      local decode, cdecode = agentsession.json.decode, cjson.decode
      return function() sink[1] = decode(ours_text) end,
             function() sink[1] = cdecode(ours_text) end
    end,
  },
  {
    name = "memory save+resume / cjson enc+dec", main = true, target = 1.25,
    make = function()
      local m = agentsession.memory()
      local cencode, cdecode = cjson.encode, cjson.decode
      return function() m:save(session); sink[1] = m:resume(id) end,
             function() sink[1] = cdecode(cencode(session)) end,
             function() m:close() end
    end,
  },
  {
    name = "memory save+resume / plain-Lua cjson manager", main = true, target = 0.6,
    make = function()
      local m = agentsession.memory()
      local p = PlainManager.new()
      return function() m:save(session); sink[1] = m:resume(id) end,
             function() p:save(session); sink[1] = p:resume(id) end,
             function() m:close() end
    end,
  },
  {
    -- Repeated saves of one session: agentsession.sqlite rewrites only the metadata row when no
    -- message changed (real behaviour, but its best case; row b below is the worst case).
    name = "sqlite save+resume / LuaSQL+cjson blob store", main = true, target = 0.8,
    make = function()
      local why = luasql_missing()
      if why then return nil, why end
      local m, r = open_store("ours", "a-ours.db"), open_store("rival", "a-rival.db")
      check_save_resume("sqlite save+resume", m, session)
      check_save_resume("LuaSQL store save+resume", r, session, true)
      return function() m:save(session); sink[1] = m:resume(id) end,
             function() r:save(session); sink[1] = r:resume(id) end,
             function() close_stores{ m, r } end
    end,
  },
  {
    -- Every op stores the conversation under a fresh id (so every message row is written),
    -- reads it back and deletes it.
    name = "sqlite save new+resume+delete / LuaSQL+cjson", target = 0.8,
    make = function()
      local why = luasql_missing()
      if why then return nil, why end
      local m, r = open_store("ours", "b-ours.db"), open_store("rival", "b-rival.db")
      local ms, rs = session_like(session), session_like(session)
      for _, t in ipairs({ { "sqlite", m, ms, false }, { "LuaSQL store", r, rs, true } }) do
        local what, mgr, s, by_value = t[1], t[2], t[3], t[4]
        s.metadata.id = "bench-b-check"
        check_save_resume(what .. " save new+resume", mgr, s, by_value)
        mgr:delete(s.metadata.id)
        local ok, err = pcall(mgr.resume, mgr, s.metadata.id)
        check(what .. " delete", not ok and (by_value or agentsession.is_error(err, "not_found")),
          ok and "the session is still there" or err)
      end
      local n = 0
      local function op(mgr, s)
        n = n + 1
        local sid = "bench-b-" .. n
        s.metadata.id = sid
        mgr:save(s)
        sink[1] = mgr:resume(sid)
        mgr:delete(sid)
      end
      return function() op(m, ms) end,
             function() op(r, rs) end,
             function() close_stores{ m, r } end
    end,
  },
  {
    -- The same call on a store of LIST_BIG small sessions and on one of LIST_SMALL (the
    -- fixture is shared with the next row and removed at the end).
    name = string.format("sqlite list{limit=20}: %d / %d sessions", LIST_BIG, LIST_SMALL),
    target = 2.0,
    make = function()
      local f = get_list_fixture()
      local filter = { limit = 20 }
      check_list("sqlite list{limit=20}, big store", f.big, LIST_BIG, filter)
      check_list("sqlite list{limit=20}, small store", f.small, LIST_SMALL, filter)
      return function() sink[1] = f.big:list(filter) end,
             function() sink[1] = f.small:list(filter) end
    end,
  },
  {
    -- Session i carries tag "t" .. (i % 10): the filter matches one session in ten.
    name = string.format("sqlite list{tag=,limit=20}: %d / %d sessions", LIST_BIG, LIST_SMALL),
    target = 2.0,
    make = function()
      local f = get_list_fixture()
      local filter = { tag = "t3", limit = 20 }
      check_list("sqlite list{tag=t3,limit=20}, big store", f.big, LIST_BIG, filter)
      check_list("sqlite list{tag=t3,limit=20}, small store", f.small, LIST_SMALL, filter)
      return function() sink[1] = f.big:list(filter) end,
             function() sink[1] = f.small:list(filter) end
    end,
  },
  {
    -- A search reads the index, not the store: the same word, in ten sessions of each store.
    name = string.format("sqlite search, a word in 10: %d / %d sessions", LIST_BIG, LIST_SMALL),
    target = 2.0,
    make = function()
      local f = get_list_fixture()
      for _, t in ipairs({ { "big", f.big, LIST_BIG }, { "small", f.small, LIST_SMALL } }) do
        local hits = t[2]:search(RARE)
        check("sqlite search, " .. t[1] .. " store", #hits == 10 and hits[1].metadata.id
          == string.format("list-%06d", t[3]) and hits[1].index == 2, #hits .. " sessions found")
      end
      return function() sink[1] = f.big:search(RARE) end,
             function() sink[1] = f.small:search(RARE) end
    end,
  },
  {
    -- Does the cost of saving one new message grow with the history already stored?
    -- Method: two sessions whose messages are the bench conversation's cycled to 3000 and to
    -- 10, each saved once untimed (every row written). The check then sets message n+1 and
    -- saves (inserting row n+1) and resumes. Each timed op sets messages[n+1] to the other of
    -- two distinct messages and calls save: the n earlier messages are unchanged, so the store
    -- has exactly one message row to write (an update of row n+1) plus the metadata. save takes
    -- the whole table, so it still has to look at all n+1 messages; the json.encode row below
    -- shows what encoding them alone costs.
    name = "sqlite save, 1 new msg: 3000-msg / 10-msg session", target = 1.0,
    make = function()
      local m = open_store("ours", "e.db")
      local function make_op(n)
        local msgs = cycled_messages(n)
        local s = session_like(session, "bench-e-" .. n)
        s.messages = msgs
        s.metadata.turn_count = n + 1
        m:save(s)
        msgs[n + 1] = extra_messages[1]
        check_save_resume(string.format("sqlite save, 1 new msg (%d-msg session)", n), m, s)
        local k = 0
        return function()
          k = k + 1
          msgs[n + 1] = extra_messages[k % 2 + 1]
          sink[1] = m:save(s)
        end
      end
      return make_op(3000), make_op(10), function() close_stores{ m } end
    end,
  },
  {
    -- For reading the row above: encoding the same message arrays, without the extra message.
    name = "json.encode 3000-msg / 10-msg messages",
    make = function()
      local encode = agentsession.json.encode
      local big, small = cycled_messages(3000), cycled_messages(10)
      return function() sink[1] = encode(big) end,
             function() sink[1] = encode(small) end
    end,
  },
  {
    -- Appending hands over only the new message: its cost must not grow with the history.
    name = "memory append 1 msg: 3000-msg / 10-msg session", main = true, target = 1.5, count = 200,
    make = on_memory(append_pools),
  },
  {
    name = "sqlite append 1 msg: 3000-msg / 10-msg session", main = true, target = 1.5, count = 200,
    make = on_sqlite(append_pools, "append.db"),
  },
  {
    -- A store written in Lua: the specs' backend (spec/helpers/lua_backend.lua) with every
    -- optional function, whose load honours the hint { last = 0 } that a write needing only
    -- the metadata of a session this manager wrote gives it.
    name = "custom append 1 msg: 3000-msg / 10-msg session", target = 1.5, count = 200,
    make = function()
      local saved = package.path
      package.path = "spec/?.lua;" .. package.path
      local backends = require("helpers.lua_backend")
      package.path = saved
      local m = agentsession.custom(backends.new{ fast = true })
      local big, small = append_pools(m, "custom")
      return big, small, function() m:close() end
    end,
  },
  {
    -- A window's save reads and writes the window, not the history (see window_pools).
    name = "memory window save, 1 new msg: 3000 / 30-msg session", target = 1.5, count = 200,
    make = on_memory(window_pools),
  },
  {
    name = "sqlite window save, 1 new msg: 3000 / 30-msg session", main = true, target = 1.5, count = 200,
    make = on_sqlite(window_pools, "window.db"),
  },
  {
    -- The state replaced in the same write: what it adds to an append (informational).
    name = "memory append 1 msg with state / without",
    count = 200,
    make = on_memory(state_pools),
  },
  {
    name = "sqlite append 1 msg with state / without",
    count = 200,
    make = on_sqlite(state_pools, "state.db"),
  },
  {
    -- An op_id makes an append one that can be sent again: what recording and looking it up
    -- add (see op_id_pools).
    name = "memory append 1 msg with op_id / without", target = 1.2, count = 500, rounds = 15,
    make = on_memory(op_id_pools),
  },
  {
    name = "sqlite append 1 msg with op_id / without", target = 1.2, count = 100, rounds = 15,
    make = on_sqlite(op_id_pools, "op_id.db"),
  },
  {
    -- Wall time: most of an append to Redis is the round trip and the server's script.
    name = "redis append 1 msg with op_id / without", target = 1.2, count = 100, rounds = 15, wall = true,
    make = on_redis(op_id_pools),
  },
  {
    -- A fork shares the stored messages of its source (the delete keeps the store from growing).
    name = "memory fork+delete / resume: 3000-msg session", target = 0.2,
    make = function()
      local m = agentsession.memory()
      local id3000 = m:save(agentsession.session{ messages = cycled_messages(3000) }).id
      return function() m:delete(m:fork(id3000).id) end,
             function() sink[1] = m:resume(id3000) end,
             function() m:close() end
    end,
  },
  {
    -- resume{ last = n } reads only the last n message rows.
    name = "sqlite resume{last=20} / resume: 3000-msg session",
    make = function()
      local m = open_store("ours", "last.db")
      local id3000 = m:save(agentsession.session{ messages = cycled_messages(3000) }).id
      return function() sink[1] = m:resume(id3000, { last = 20 }) end,
             function() sink[1] = m:resume(id3000) end
    end,
  },
}

---------------------------------------------------------------------------------------------------
-- Run

local patterns, main_only = {}, false
do
  local args, i = { ... }, 1
  while i <= #args do
    if args[i] == "--rows" then
      if args[i + 1] ~= "main" then error("bench: --rows takes 'main'", 0) end
      main_only, i = true, i + 2
    else
      patterns[#patterns + 1], i = args[i], i + 1
    end
  end
end

local function selected(name, main)
  if main_only and not main then return false end
  if #patterns == 0 then return true end
  for _, p in ipairs(patterns) do
    if name:find(p) then return true end
  end
  return false
end

-- The Lua running this: "Lua 5.4", or LuaJIT's version.
local jit = rawget(_G, "jit")
local LUA_NAME = jit and jit.version or _VERSION

h:printf("agentsession benchmark (%s, lua-cjson %s)\n", LUA_NAME, cjson._VERSION or "?")
h:printf("conversation: %d messages, %d bytes as agentsession.json, %d bytes as cjson " ..
  "(%.1f KiB)\n", #session.messages, #ours_text, #cjson_text, #ours_text / 1024)
h:printf("timing: best of %d interleaved rounds, ~%.2f s CPU per function per round%s\n\n",
  h.rounds, h.round_time, h.quick and " (BENCH_QUICK)" or "")
h:header()

local function run_rows()
  for _, row in ipairs(rows) do
    if selected(row.name, row.main) then
      local ours, rival, cleanup = row.make()
      if not ours then
        h:printf("%-" .. h.name_width .. "s skipped: %s\n", row.name, tostring(rival))
      else
        local timer = h
        if row.count then -- a fixed number of calls per round (the calls change what they time)
          timer = harness.new{ count = h.quick and math.max(1, math.floor(row.count / 10)) or row.count,
            rounds = not h.quick and row.rounds or h.rounds, quick = h.quick,
            clock = row.wall and require("system").monotime or nil }
        end
        local ours_ns, rival_ns = timer:compare(ours, rival)
        local ratio = h:ratio(row.name, ours_ns, rival_ns, row.target)
        if main_only then
          h:printf("main\t%s\t%s\t%.1f\t%.1f\t%.4f\t%s\n", LUA_NAME, row.name, ours_ns, rival_ns, ratio,
            row.target and string.format("%.2f", row.target) or "")
        end
        if cleanup then cleanup() end
        assert(sink[1] ~= nil, row.name .. ": the timed functions produced nothing")
        sink[1] = nil
      end
    end
  end
end

-- Bytes written per save, from the kernel's count of this process's writes (/proc/self/io
-- wchar: every write and pwrite, WAL frames and checkpoints alike). Not a timing: it shows
-- whether a store rewrites a session's history when one message is added.
local function written_bytes()
  local f = io.open("/proc/self/io")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("wchar:%s*(%d+)"))
end

local function bytes_per_save(store, n, saves)
  local msgs = cycled_messages(n)
  local s = session_like(session, "bench-io-" .. n)
  s.messages = msgs
  store:save(s)
  local before = written_bytes()
  for k = 1, saves do
    msgs[n + 1] = extra_messages[k % 2 + 1]
    store:save(s)
  end
  return (written_bytes() - before) / saves
end

local function report_writes()
  local name = "bytes written per save, 1 new msg: 3000-msg / 10-msg session"
  if not selected(name) then return end
  if written_bytes() == nil then
    h:printf("%s: skipped (no /proc/self/io)\n", name)
    return
  end
  local saves = h.quick and 20 or 200
  h:printf("\n%s (average of %d saves, /proc/self/io wchar)\n", name, saves)
  local function line(label, store)
    local big, small = bytes_per_save(store, 3000, saves), bytes_per_save(store, 10, saves)
    h:printf("  %-36s %10.1f KiB %10.1f KiB  ratio %6.2f\n", label, big / 1024, small / 1024,
      big / small)
  end
  line("agentsession.sqlite", open_store("ours", "io.db"))
  if luasql_missing() then
    h:printf("  LuaSQL+cjson blob store: skipped: %s\n", luasql_missing())
  else
    line("LuaSQL+cjson blob store", open_store("rival", "io-rival.db"))
  end
end

local function report_redis()
  local name = "redis store operations per second"
  if not selected(name) then return end
  require("redis_bench").report(h, session, cycled_messages)
end

-- The cost of the search index to appends, against the build of the commit before it, and
-- prune; on Lua 5.4, the Lua that build is made for.
local function report_index()
  local name = "search index: append against the commit before, and prune"
  if not selected(name) then return end
  if LUA_NAME ~= "Lua 5.4" then
    h:printf("\n%s: on Lua 5.4 only\n", name)
    return
  end
  require("index_bench").report(h)
end

-- The Redis store on a real cluster: list over the shards, appends from several processes;
-- on Lua 5.4 (the store's C is the same under every Lua).
local function report_cluster()
  local name = "redis cluster: list over the shards, appends from several processes"
  if not selected(name) then return end
  if LUA_NAME ~= "Lua 5.4" then
    h:printf("\n%s: on Lua 5.4 only\n", name)
    return
  end
  require("cluster_bench").report(h)
end

local ok, err = xpcall(function()
  run_rows()
  if not main_only then
    report_writes()
    report_redis()
    report_index()
    report_cluster()
  end
end, debug.traceback)
close_stores() -- whatever is still open (the list fixture, or a failed row's stores)
if not ok then error(err, 0) end

if #check_failures > 0 then
  io.stderr:write(string.format("bench: %d round-trip check(s) failed; the figures above " ..
    "measure code that does not round-trip this data\n", #check_failures))
  os.exit(1)
end
