-- Allocation fault injection over every failure point of the main operations.
--
-- Run by build/fault_test (tests/fault_test.c), which provides the global
-- `fault` (see that file). For each mode (the core's allocator, the Lua
-- state's allocator, and on the SQLite store SQLite's allocator), each
-- store (memory, SQLite on a temporary file, Redis on
-- a redis-server started here, Redis on a Redis Cluster started here,
-- agentsession.custom over a plain Lua table), and each
-- operation, it runs the operation with its N-th allocation failing, for
-- N = 1, 2, 3, ... until a run completes without reaching the armed failure.
-- Each run (a "case") starts from a store set up afresh with faults off and
-- checks:
--   * when the failure was hit and the operation raised: the error is an
--     agentsession error of kind storage (or, for the Lua allocator, Lua's
--     "not enough memory"), and the store's contents (list(), and resume()
--     and export() of every session) are exactly what they were before, read
--     through the same manager and, for SQLite, through a manager opened
--     afresh on the file or the server; the failures allowed to have
--     changed the store are a Redis append whose message says it was applied
--     (the server ran it; only reading its result ran out of memory), and the
--     store must then hold that append whole, and a prune, which commits batch
--     by batch, whose one batch must then be whole: the store as the prune
--     without faults leaves it; an error object names, in
--     `where`, the line of the operation that called the library;
--   * when the operation returned (the failure was not hit, or the code
--     recovered from it): its result and the store's contents equal those of
--     the same operation run without faults, timestamps and generated ids
--     aside;
--   * after the managers are closed and a full collection, the core holds
--     exactly the blocks it held before the case (no leak of core memory).
-- Returns the number of failures (the host exits non-zero when it is not 0).

package.path = "spec/?.lua;" .. package.path
local agentsession = require("agentsession")
local redis_server = require("helpers.redis_server")
local json = agentsession.json
local null, array = agentsession.null, agentsession.array
local fault = assert(rawget(_G, "fault"), "run me with build/fault_test")

-- A sweep that has not completed after this many points has gone wrong.
local CAP = 5000

local dir = fault.tmpdir()
local failures = {}
local points = { core = 0, lua = 0, sqlite = 0 }
-- The allocators swept: FAULT_MODES, default "core lua sqlite" (SQLite's on the SQLite store).
local sweep_modes = {}
for mode in (os.getenv("FAULT_MODES") or "core lua sqlite"):gmatch("%S+") do
  assert(points[mode], "FAULT_MODES: unknown allocator " .. mode)
  sweep_modes[#sweep_modes + 1] = mode
end
local recovered = 0

local function fail(mode, store, op, n, what)
  local line = string.format("FAIL [%s allocator] store %s, op %s, N=%s: %s", mode, store, op,
                             tostring(n), what)
  failures[#failures + 1] = line
  print(line)
end

-- ---------------------------------------------------------------- values

local function show(v)
  if type(v) == "string" then return string.format("%q", #v > 120 and v:sub(1, 120) .. "..." or v) end
  if math.type(v) == "float" then return string.format("%.17g (float)", v) end
  return tostring(v)
end

-- nil when a and b are equal (integers apart from floats, arrays marked alike),
-- else where they first differ.
local function diff(a, b, path)
  if type(a) ~= type(b) then return path .. ": " .. show(a) .. " vs " .. show(b) end
  if type(a) ~= "table" then
    if a == b and math.type(a) == math.type(b) then return nil end
    return path .. ": " .. show(a) .. " vs " .. show(b)
  end
  if getmetatable(a) ~= getmetatable(b) then return path .. ": metatables differ" end
  local keys = {}
  for k in pairs(a) do keys[#keys + 1] = k end
  for k in pairs(b) do if rawget(a, k) == nil then keys[#keys + 1] = k end end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  for _, k in ipairs(keys) do
    local d = diff(rawget(a, k), rawget(b, k), path .. "." .. tostring(k))
    if d then return d end
  end
  return nil
end

local UUID = string.rep("%x", 8) .. "%-" .. string.rep("%x", 4) .. "%-" .. string.rep("%x", 4)
             .. "%-" .. string.rep("%x", 4) .. "%-" .. string.rep("%x", 12)

local function norm_string(s)
  s = s:gsub(UUID, "<uuid>")
  s = s:gsub('("created_at":)%-?%d+', "%10"):gsub('("updated_at":)%-?%d+', "%10")
  return s
end

-- The value with timestamps zeroed and generated ids (UUIDs) replaced.
local function normalize(v)
  if type(v) == "string" then return norm_string(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    local nk = type(k) == "string" and norm_string(k) or k
    if k == "created_at" or k == "updated_at" then out[nk] = 0 else out[nk] = normalize(x) end
  end
  return setmetatable(out, getmetatable(v))
end

-- Everything a manager holds: list(), and resume() and export() of each session.
local function snapshot(mgr)
  local snap = { list = mgr:list(), sessions = {} }
  for _, m in ipairs(snap.list) do
    snap.sessions[m.id] = { resume = mgr:resume(m.id), export = mgr:export(m.id) }
  end
  return snap
end

-- A snapshot to compare with another run's: normalized, list sorted by id
-- (a manager opened afresh on a custom backend orders equal timestamps by the
-- backend's order, and timestamps differ between runs).
local function norm_snapshot(snap)
  local n = normalize(snap)
  table.sort(n.list, function(x, y) return x.id < y.id end)
  return n
end

-- ---------------------------------------------------------------- data

local function conversation()
  return array{
    { role = "user", content = "List the Lua files, please. \u{e9}\u{1F600}" },
    { role = "assistant", content = null, tool_calls = array{
      { id = "call_1", type = "function",
        ["function"] = { name = "ls", arguments = "{\"dir\":\".\"}" } } } },
    { role = "tool", tool_call_id = "call_1",
      content = { files = array{ "a.lua", "b.lua" }, count = 2, ratio = 0.5, none = array{},
                  big = math.maxinteger, neg = -7, flag = true } },
  }
end

local function seed_sessions()
  return {
    agentsession.session{ id = "s1", name = "alpha", tags = { "t1", "t2" }, agent_name = "agent-a",
                          messages = conversation(), state = { cwd = "/home/user", depth = 3 } },
    agentsession.session{ id = "s2", tags = { "t1" }, agent_name = "agent-b",
                          messages = array{ { role = "user", content = "hi" }, "hello", 42 },
                          state = array{ 1, 2.5, "x" } },
    agentsession.session{ id = "s3", name = "gamma", agent_name = "agent-a" },
  }
end

local import_new = json.encode{
  metadata = { id = "imported", name = "from elsewhere", tags = array{ "t1", "imp" },
               agent_name = "agent-c", created_at = 1000, updated_at = 2000, turn_count = 2,
               total_tokens = 40 },
  messages = array{ { role = "user", content = "x" }, { role = "assistant", content = array{ 1, 2, 3 } } },
  state = { k = "v", nested = { deep = array{ null, false } } },
}

local import_s1 = json.encode{
  metadata = { id = "s1", name = null, tags = array{ "t5" }, agent_name = "agent-z",
               created_at = 1500, updated_at = 2500, turn_count = 1, total_tokens = 9 },
  messages = array{ { role = "user", content = "replaced" } },
  state = array{},
}

local codec_value = { metadata = { id = "s1", tags = array{ "a", "b" } }, messages = conversation(),
                      state = { cwd = "/tmp", n = 1.0, list = array{ 1, 2, 3 } } }
local codec_text = json.encode(codec_value)

-- ---------------------------------------------------------------- stores

-- A store written in Lua: a plain table of sessions (the wrapper hands `store`
-- new tables and never hands `load`'s result on). With `optional`, it has every
-- optional function too. Each write builds what it needs, then makes one
-- assignment, so a memory error inside it changes nothing.
local function new_backend(optional)
  local data = {}
  local b = {
    load = function(id) return data[id] end,
    store = function(s) data[s.metadata.id] = s end,
    remove = function(id)
      local had = data[id] ~= nil
      data[id] = nil
      return had
    end,
    list = function()
      local out = {}
      for _, s in pairs(data) do out[#out + 1] = s.metadata end
      return out
    end,
  }
  if not optional then return b end
  local function first(msgs, n)
    local out = array{}
    for i = 1, n do out[i] = msgs[i] end
    return out
  end
  function b.query(f)
    local out = {}
    for _, s in pairs(data) do
      local m, ok = s.metadata, true
      if f.agent_name and m.agent_name ~= f.agent_name then ok = false end
      if f.parent_id and m.parent_id ~= f.parent_id then ok = false end
      for _, t in ipairs(f.tags or {}) do
        if ok and not agentsession.has_tag(m, t) then ok = false end
      end
      if ok then out[#out + 1] = m end
    end
    return out
  end
  function b.update(meta)
    local s = data[meta.id]
    data[meta.id] = { metadata = meta, messages = s.messages, state = s.state, op_ids = s.op_ids }
  end
  function b.rewind(id, keep, meta)
    local s = data[id]
    data[id] = { metadata = meta, messages = first(s.messages, keep), state = s.state, op_ids = s.op_ids }
  end
  function b.fork(source, meta, count)
    local s = data[source]
    data[meta.id] = { metadata = meta, messages = first(s.messages, count), state = s.state }
  end
  function b.append(id, msgs, meta)
    local s = data[id]
    local all = first(s.messages, #s.messages)
    for _, m in ipairs(msgs) do all[#all + 1] = m end
    data[id] = { metadata = meta, messages = all, state = s.state, op_ids = s.op_ids }
  end
  function b.append_op(id, msgs, meta, op_ids)
    local s = data[id]
    local all = first(s.messages, #s.messages)
    for _, m in ipairs(msgs) do all[#all + 1] = m end
    data[id] = { metadata = meta, messages = all, state = s.state, op_ids = op_ids }
  end
  return b
end

local case_no = 0

local function remove_db(path)
  if path then
    os.remove(path)
    os.remove(path .. "-wal")
    os.remove(path .. "-shm")
  end
end

local function copy_file(from, to)
  local f = assert(io.open(from, "rb"))
  local data = f:read("a")
  f:close()
  f = assert(io.open(to, "wb"))
  f:write(data)
  f:close()
end

local server
local function redis_port()
  server = server or redis_server.start()
  return server.port
end

local cluster
local function cluster_seeds()
  cluster = cluster or require("helpers.redis_cluster").start()
  return cluster:seeds()
end

local template
local function sqlite_template()
  if not template then
    template = dir .. "/template.db"
    local m = agentsession.sqlite(template)
    for _, s in ipairs(seed_sessions()) do m:save(s) end
    m:close() -- the last connection checkpoints the log into the file
  end
  return template
end

local stores = {
  {
    name = "memory",
    new = function() return agentsession.memory() end,
  },
  {
    name = "sqlite",
    -- each case's file is a copy of one seeded once (cheaper than seeding it)
    new = function(c)
      c.path = dir .. "/case" .. case_no .. ".db"
      copy_file(sqlite_template(), c.path)
      return agentsession.sqlite(c.path)
    end,
    seeded = true,
    -- a manager opened afresh on what the case's manager wrote
    reopen = function(c) return agentsession.sqlite(c.path) end,
  },
  {
    name = "redis",
    -- each case on a prefix of its own, on one server started for the sweep
    new = function(c)
      c.prefix = "fault" .. case_no .. ":"
      return agentsession.redis{ port = redis_port(), prefix = c.prefix }
    end,
    reopen = function(c) return agentsession.redis{ port = redis_port(), prefix = c.prefix } end,
  },
  {
    name = "redis cluster",
    -- each case on a prefix of its own, on one cluster (3 masters) started for the sweep
    new = function(c)
      c.prefix = "fault" .. case_no .. ":"
      return agentsession.redis{ cluster = cluster_seeds(), prefix = c.prefix, timeout_ms = 30000 }
    end,
    reopen = function(c)
      return agentsession.redis{ cluster = cluster_seeds(), prefix = c.prefix, timeout_ms = 30000 }
    end,
  },
  {
    name = "custom",
    new = function(c)
      c.backend = new_backend(false)
      return agentsession.custom(c.backend)
    end,
  },
  {
    name = "custom (optional functions)",
    new = function(c)
      c.backend = new_backend(true)
      return agentsession.custom(c.backend)
    end,
  },
}

-- A new store with three sessions (faults off).
local function new_case(store)
  case_no = case_no + 1
  local c = { store = store, extra = {} }
  c.mgr = store.new(c)
  if not store.seeded then
    for _, s in ipairs(seed_sessions()) do c.mgr:save(s) end
  end
  return c
end

local function close_case(c)
  if c.mgr then c.mgr:close() end
  for _, m in ipairs(c.extra) do m:close() end
  remove_db(c.path)
  remove_db(c.newpath)
end

-- ---------------------------------------------------------------- operations

local function mgr_result(c, m)
  -- a manager a constructor returned: what it holds (sorted as norm_snapshot
  -- does: a new custom manager orders equal timestamps by the backend's order)
  c.extra[#c.extra + 1] = m
  local snap = snapshot(m)
  table.sort(snap.list, function(x, y) return x.id < y.id end)
  return snap
end

-- An append with an op_id sent again after the case's run, whatever the run
-- did: the session must then hold the case's messages once, after its three.
local function sent_again(c)
  c.mgr:append("s1", c.msgs, { op_id = "fault-op" })
  local msgs = c.mgr:resume("s1").messages
  if #msgs ~= 3 + #c.msgs then
    return "sent again after the run, the append left " .. #msgs .. " messages, not " .. 3 + #c.msgs
  end
end

-- name; prepare(c) -> args (faults off, before the store is looked at);
-- run(c, args) (armed); post(c, result) -> a comparable value (faults off);
-- after(c) -> why the store is wrong after the case (faults off), or nil;
-- only = the stores it applies to.
local ops = {
  { name = "save (new id)",
    prepare = function()
      return agentsession.session{ name = "new", tags = { "t1", "t9" }, agent_name = "agent-n",
                                   messages = conversation(), state = { x = array{ 1 } } }
    end,
    run = function(c, s) return c.mgr:save(s) end },
  { name = "save (replace, expect_version)",
    prepare = function(c)
      local s = c.mgr:resume("s1")
      s.messages[#s.messages + 1] = { role = "user", content = "one more" }
      s.messages[1] = { role = "user", content = "changed" }
      s.metadata.tags = array{ "t2", "t7" }
      s.state = { cwd = "/elsewhere" }
      return s
    end,
    run = function(c, s) return c.mgr:save(s, { expect_version = 1 }) end },
  { name = "resume", run = function(c) return c.mgr:resume("s1") end },
  { name = "resume{last=2}", run = function(c) return c.mgr:resume("s1", { last = 2 }) end },
  { name = "resume{from,count}", run = function(c) return c.mgr:resume("s1", { from = 2, count = 1 }) end },
  { name = "save (window)",
    prepare = function(c)
      local w = c.mgr:resume("s1", { last = 1 })
      w.messages[#w.messages + 1] = { role = "assistant", content = "after the window" }
      w.state = { cwd = "/window" }
      return w
    end,
    run = function(c, w) return c.mgr:save(w) end },
  { name = "list", run = function(c) return c.mgr:list() end },
  { name = "list{tag=}", run = function(c) return c.mgr:list{ tag = "t1" } end },
  { name = "list{limit,offset}", run = function(c) return c.mgr:list{ limit = 2, offset = 1 } end },
  -- ten sessions of one shard of a cluster (CRC16 of each id, mod 16, is 0) make the whole
  -- page: the shard gives most of them as score and member, read after the merge
  { name = "list (a page from one shard)", only = { ["redis cluster"] = true },
    prepare = function(c)
      for _, id in ipairs{ "one-shard-1", "one-shard-69", "one-shard-78", "one-shard-86", "one-shard-97",
                           "one-shard-100", "one-shard-111", "one-shard-122", "one-shard-133",
                           "one-shard-144" } do
        c.mgr:save(agentsession.session{ id = id, tags = { "t1" } })
      end
    end,
    run = function(c) return c.mgr:list{ limit = 10 } end },
  { name = "fork", run = function(c) return c.mgr:fork("s1") end },
  { name = "fork{at=}", run = function(c) return c.mgr:fork("s1", "branch", { at = 1 }) end },
  { name = "rewind", run = function(c) return c.mgr:rewind("s1", 1) end },
  { name = "tag", run = function(c) return c.mgr:tag("s1", { "t3", "t1", "t4" }) end },
  { name = "untag", run = function(c) return c.mgr:untag("s1", "t1") end },
  { name = "rename", run = function(c) return c.mgr:rename("s1", "renamed") end },
  { name = "delete", run = function(c) return c.mgr:delete("s2") end },
  { name = "append",
    prepare = function()
      return array{ { role = "user", content = "appended" }, { role = "assistant", content = array{ 1.5, null } } }
    end,
    run = function(c, msgs) return c.mgr:append("s1", msgs, { tokens = 7, expect_version = 1 }) end },
  { name = "append (state)",
    prepare = function()
      return array{ { role = "user", content = "with a state" } }
    end,
    run = function(c, msgs) return c.mgr:append("s1", msgs, { state = { step = array{ 2, null } } }) end },
  { name = "append (op_id)",
    prepare = function(c)
      c.msgs = array{ { role = "user", content = "once" }, { role = "assistant", content = array{ null } } }
      return c.msgs
    end,
    -- nothing allocates after the call: a failure there would be this file's
    run = function(c, msgs)
      local meta, applied = c.mgr:append("s1", msgs, { op_id = "fault-op", tokens = 3 })
      return applied and meta
    end,
    after = sent_again },
  { name = "append (op_id applied before)",
    prepare = function(c)
      c.msgs = array{ { role = "user", content = "once" } }
      c.mgr:append("s1", c.msgs, { op_id = "fault-op" })
      return c.msgs
    end,
    run = function(c, msgs)
      local meta, applied = c.mgr:append("s1", msgs, { op_id = "fault-op" })
      return not applied and meta
    end,
    after = sent_again },
  { name = "export", run = function(c) return c.mgr:export("s1") end },
  { name = "import", run = function(c) return c.mgr:import(import_new) end },
  { name = "import (replace)", run = function(c) return c.mgr:import(import_s1, { replace = true }) end },
  { name = "search", run = function(c) return c.mgr:search("lua FILES") end },
  { name = "search (phrase, filter)",
    run = function(c) return c.mgr:search('"the lua" please', { tag = "t1", limit = 5 }) end },
  { name = "search (name)", run = function(c) return c.mgr:search("gamma") end },
  -- one session, so that one batch of every store holds all it deletes: a
  -- failure leaves it whole, kept or gone (`batches`)
  { name = "prune", batches = true,
    run = function(c) return c.mgr:prune{ before = 2 ^ 62, agent_name = "agent-b" } end },
  { name = "prune (dry_run, keep_tag)",
    run = function(c) return c.mgr:prune{ before = 2 ^ 62, keep_tag = "t2", dry_run = true } end },
  { name = "json.encode", codec = true, run = function() return json.encode(codec_value) end },
  { name = "json.decode", codec = true, run = function() return json.decode(codec_text) end },
  { name = "constructor",
    run = function(c)
      if c.store.name == "memory" then return agentsession.memory() end
      if c.store.name == "sqlite" then return agentsession.sqlite(c.path) end
      if c.store.name == "redis" then return agentsession.redis{ port = redis_port(), prefix = c.prefix } end
      if c.store.name == "redis cluster" then
        return agentsession.redis{ cluster = cluster_seeds(), prefix = c.prefix, timeout_ms = 30000 }
      end
      return agentsession.custom(c.backend)
    end,
    post = mgr_result },
  { name = "open(uri)", only = { memory = true, sqlite = true },
    run = function(c)
      -- not a tail call, which would leave open no caller to name
      local m = agentsession.open(c.store.name == "memory" and "memory:" or "sqlite:" .. c.path)
      return m
    end,
    post = mgr_result },
  { name = "sqlite(new file)", only = { sqlite = true },
    prepare = function(c)
      c.newpath = c.path .. ".new"
      return c.newpath
    end,
    run = function(_, path) return agentsession.sqlite(path) end,
    post = mgr_result,
    -- whatever a failed open left, the file opens afterwards as an empty store
    after = function(c)
      local m = agentsession.sqlite(c.newpath)
      local n = #m:list()
      m:close()
      if n ~= 0 then return "the new file holds " .. n .. " sessions" end
    end },
}

-- ---------------------------------------------------------------- one case

local function is_oom(mode, err)
  if agentsession.is_error(err, "storage") then return err.message:find("memory", 1, true) ~= nil end
  return mode == "lua" and err == "not enough memory"
end

-- Why an error object raised by op.run does not name the line of op.run that
-- called the library (nil when it does): a failure deep in the call, even one
-- caught and raised again, is raised where the caller made the call.
local function wrong_where(op, err)
  local info = debug.getinfo(op.run, "S")
  local prefix = info.short_src .. ":"
  local line = type(err.where) == "string" and err.where:sub(1, #prefix) == prefix
               and tonumber(err.where:sub(#prefix + 1):match("^(%d+):$"))
  if line and line >= info.linedefined and line <= info.lastlinedefined then return nil end
  return string.format("raised %s with where %q, not a line of %s:%d-%d", tostring(err),
                       tostring(err.where), info.short_src, info.linedefined, info.lastlinedefined)
end

-- What a run left: the operation's result, the store seen through its
-- manager and (SQLite) through a manager opened afresh.
local function contents(c, op)
  if op.codec then return {} end
  local t = { same = snapshot(c.mgr) }
  if c.store.reopen then
    local m = c.store.reopen(c)
    t.fresh = snapshot(m)
    m:close()
  end
  return t
end

local function norm_contents(t)
  local n = {}
  for k, v in pairs(t) do n[k] = norm_snapshot(v) end
  return n
end

-- Runs op with the n-th allocation of `mode` failing ("none": the reference
-- run). Returns hit, and for the reference its normalized result and contents.
local function run_case(mode, store, op, n, ref)
  collectgarbage("collect") -- (a full collection runs the finalizers it finds too)
  local live = fault.live()
  local c = op.codec and { extra = {} } or new_case(store)
  local args = op.prepare and op.prepare(c) or nil
  local before = not op.codec and mode ~= "none" and contents(c, op) or nil
  local hit, ok, res = fault.run(mode, n, function() return op.run(c, args) end)
  local sname = store and store.name or "-"
  local result, after
  if mode == "none" then
    if not ok then error(op.name .. " on " .. sname .. " fails without faults: " .. tostring(res)) end
  elseif hit and not ok then
    if not is_oom(mode, res) then
      fail(mode, sname, op.name, n, "raised " .. tostring(res) .. " (" .. type(res)
           .. "), not a storage error" .. (mode == "lua" and " or \"not enough memory\"" or ""))
    end
    local why = agentsession.is_error(res) and wrong_where(op, res)
    if why then fail(mode, sname, op.name, n, why) end
    local applied = sname:find("^redis") and op.name:find("^append") and agentsession.is_error(res)
                    and res.message:find("append was applied", 1, true) ~= nil
    if applied then
      -- the server ran the append: the store must hold it, whole, as the run without faults left it
      local d = diff(ref.after, norm_contents(contents(c, op)), "contents")
      if d then fail(mode, sname, op.name, n, "says the append was applied, but the store differs: " .. d) end
    elseif before then
      local now = contents(c, op)
      -- a prune commits batch by batch: its one batch here is whole, done or not
      local whole = op.batches and not diff(ref.after, norm_contents(now), "contents")
      for k, v in pairs(before) do
        local d = not whole and diff(v, now[k], "contents")
        if d then fail(mode, sname, op.name, n, "failed, and the store changed (" .. k .. " manager): " .. d) end
      end
    end
  elseif not ok then
    fail(mode, sname, op.name, n, "failed without reaching the armed failure: " .. tostring(res))
  end
  if ok then
    if hit then recovered = recovered + 1 end
    result = normalize(op.post and op.post(c, res) or res)
    after = norm_contents(contents(c, op))
    if ref then
      local d = diff(ref.result, result, "result") or diff(ref.after, after, "contents")
      if d then
        fail(mode, sname, op.name, n, (hit and "recovered from the failure, but " or "")
             .. "differs from the run without faults: " .. d)
      end
    end
  end
  if op.after then
    local why = op.after(c)
    if why then fail(mode, sname, op.name, n, why) end
  end
  close_case(c)
  -- the result may hold a manager (closed above); let it go with the rest
  c, args, res, before = nil, nil, nil, nil -- luacheck: ignore
  collectgarbage("collect")
  local leaked = fault.live() - live
  if leaked ~= 0 then
    fail(mode, sname, op.name, n, string.format("the core holds %d block(s) more than before the case", leaked))
  end
  return hit, { result = result, after = after }
end

-- ---------------------------------------------------------------- the sweep

local start = os.clock()
local op_names, nstores = {}, 0
local store_list = { false }
-- The stores swept: FAULT_STORES (names separated by commas), default all of them.
local wanted = os.getenv("FAULT_STORES")
for _, s in ipairs(stores) do
  if wanted == nil or ("," .. wanted .. ","):find("," .. s.name .. ",", 1, true) then
    store_list[#store_list + 1] = s
  end
end

for _, store in ipairs(store_list) do
  if store then nstores = nstores + 1 end
  for _, op in ipairs(ops) do
    local applies = (store == false) == (op.codec == true)
                    and (op.only == nil or (store and op.only[store.name]))
    if applies then
      op_names[op.name] = true
      local sname = store and store.name or "-"
      local _, ref = run_case("none", store or nil, op, 0, nil)
      local modes = {}
      for _, mode in ipairs(sweep_modes) do
        if mode ~= "sqlite" or sname == "sqlite" then modes[#modes + 1] = mode end
      end
      for _, mode in ipairs(modes) do
        local n = 1
        while true do
          local hit = run_case(mode, store or nil, op, n, ref)
          if not hit then break end
          points[mode] = points[mode] + 1
          if n >= CAP then
            fail(mode, sname, op.name, n, "the sweep did not complete within " .. CAP .. " failure points")
            break
          end
          n = n + 1
        end
      end
    end
  end
end

-- The custom constructor once more, as the registry fills: taking its
-- references may then need memory (a manager made without them must close).
do
  local backend, held = new_backend(false), {}
  collectgarbage("collect")
  local live = fault.live()
  for k = 1, 40 do
    local n = 1
    while true do
      local hit, ok, res = fault.run("lua", n, function() return agentsession.custom(backend) end)
      if ok then res:close() elseif hit and not is_oom("lua", res) then
        fail("lua", "custom", "constructor", n, "with " .. k .. " managers open, raised " .. tostring(res))
      elseif not hit then
        fail("lua", "custom", "constructor", n, "failed without reaching the armed failure: " .. tostring(res))
      end
      res = nil -- luacheck: ignore
      collectgarbage("collect")
      if not hit then break end
      points.lua = points.lua + 1
      n = n + 1
    end
    held[k] = agentsession.custom(backend)
  end
  for _, m in ipairs(held) do m:close() end
  held = nil -- luacheck: ignore
  collectgarbage("collect")
  if fault.live() ~= live then
    fail("lua", "custom", "constructor", "-", "the core holds " .. (fault.live() - live)
         .. " block(s) more after the constructor sweep")
  end
end

local nops = 0
for _ in pairs(op_names) do nops = nops + 1 end
remove_db(template)
os.remove(dir)
if server then server:stop() end
if cluster then cluster:stop() end

print(string.format("fault: %d allocation-failure points swept (%d core, %d Lua, %d SQLite) over %d "
                    .. "operations on %d stores, %d failed", points.core + points.lua + points.sqlite,
                    points.core, points.lua, points.sqlite, nops, nstores, #failures))
if os.getenv("FAULT_VERBOSE") then
  print(string.format("fault: %d recovered, %.1f s", recovered, os.clock() - start))
end
return #failures
