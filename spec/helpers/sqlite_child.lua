-- The child processes of the SQLite store's specs (spec/08-sqlite_*_spec.lua):
-- one program, the first argument names what it does. Run with LUA_PATH/LUA_CPATH
-- set as helpers.sqlite.child_command does. Output is line-oriented for the specs
-- to read.

local agentsession = require("agentsession")
local h = require("helpers.sqlite")
local deep = require("helpers.deep")

io.stdout:setvbuf("line")

local unpack = table.unpack or rawget(_G, "unpack")

local function one_line(s)
  return (tostring(s):gsub("\n", "\\n"))
end

-- "ok" or "error <kind> <message>" for the result of pcall.
local function outcome(ok, err)
  if ok then return "ok" end
  if agentsession.is_error(err) then
    return "error " .. tostring(err.kind) .. " " .. one_line(err.message)
  end
  return "error lua " .. one_line(err)
end

local commands = {}

-- lua: prints "LUA " and helpers.sqlite.lua_of() of this process.
function commands.lua()
  print("LUA " .. h.lua_of())
end

-- save_samples PATH PREFIX COUNT: saves the sample sessions; prints "META <json>" for each.
function commands.save_samples(path, prefix, count)
  local mgr = agentsession.sqlite(path)
  for _, s in ipairs(h.sample_sessions(prefix, tonumber(count))) do
    print("META " .. agentsession.json.encode(mgr:save(s)))
  end
  mgr:close()
  print("END")
end

-- check_samples PATH PREFIX COUNT: resumes the sample sessions and compares them;
-- prints "SAME id" or "DIFF id why", "LIST id,id,…", then tags and forks, printing "FORK id".
function commands.check_samples(path, prefix, count)
  local mgr = agentsession.sqlite(path)
  for _, s in ipairs(h.sample_sessions(prefix, tonumber(count))) do
    local loaded = mgr:resume(s.metadata.id)
    local ok1, why1 = deep.compare(s.messages, loaded.messages, { root = "messages" })
    local ok2, why2 = deep.compare(s.state, loaded.state, { root = "state" })
    if ok1 and ok2 then
      print("SAME " .. s.metadata.id .. " " .. agentsession.json.encode(loaded.metadata))
    else
      print("DIFF " .. s.metadata.id .. " " .. one_line(why1 or why2))
    end
  end
  print("LIST " .. table.concat(require("helpers.stores").ids(mgr:list()), ","))
  mgr:tag(prefix .. "-01", "from-child")
  print("FORK " .. mgr:fork(prefix .. "-02", "forked by a child").id)
  mgr:close()
  print("END")
end

-- crash_writer PATH LOG SEED ITER: writes self-checking sessions until killed (or 30 s).
-- Logs "B op id" before each operation, and after each committed transaction
-- "C id n" (the session has n messages), "T id" (exists, count unchanged) or "D id".
function commands.crash_writer(path, logpath, seed, iter)
  math.randomseed(tonumber(seed))
  local rnd = math.random
  local mgr = agentsession.sqlite(path)
  local log = assert(io.open(logpath, "a"))
  local function say(line)
    log:write(line, "\n")
    log:flush()
  end
  local known, ids = {}, {}
  local function add(id)
    if not known[id] then
      known[id] = true
      ids[#ids + 1] = id
    end
  end
  local function drop(id)
    known[id] = nil
    for i, x in ipairs(ids) do
      if x == id then
        table.remove(ids, i)
        break
      end
    end
  end
  for _, m in ipairs(mgr:list()) do add(m.id) end
  say("S " .. iter)
  local created, step = 0, 0
  local deadline = h.monotime() + 30
  local function sid_of(s) return s.messages[1] and s.messages[1].sid or s.metadata.id end
  while h.monotime() < deadline do
    step = step + 1
    local r = rnd(1, 100)
    local id = ids[rnd(1, math.max(#ids, 1))]
    if #ids < 5 or (r <= 12 and #ids < 40) then
      created = created + 1
      local nid = string.format("i%s-%d", iter, created)
      say("B create " .. nid)
      local msgs = h.chain(nid, nil, rnd(0, 6), rnd)
      local s = agentsession.session({ id = nid, name = "crash " .. nid, agent_name = "crash",
        tags = { "t" .. rnd(1, 5) }, messages = msgs, state = h.state_of(msgs) })
      s.metadata.turn_count = #msgs
      local meta = mgr:save(s)
      add(nid)
      say("C " .. nid .. " " .. meta.turn_count)
    elseif r <= 30 then
      say("B grow " .. id)
      local s = mgr:resume(id)
      if #s.messages > 40 then
        s.messages = { unpack(s.messages, 1, 10) }
      end
      for _, m in ipairs(h.chain(sid_of(s), s.messages[#s.messages], rnd(1, 3), rnd)) do
        s.messages[#s.messages + 1] = m
      end
      s.state = h.state_of(s.messages)
      s.metadata.turn_count = #s.messages
      say("C " .. id .. " " .. mgr:save(s).turn_count)
    elseif r <= 40 then
      say("B rechain " .. id)
      local s = mgr:resume(id)
      if #s.messages > 0 then
        local j = rnd(1, #s.messages)
        local kept = { unpack(s.messages, 1, j - 1) }
        for _, m in ipairs(h.chain(sid_of(s), kept[#kept], #s.messages - j + 1, rnd)) do
          kept[#kept + 1] = m
        end
        s.messages = kept
        s.state = h.state_of(kept)
        say("C " .. id .. " " .. mgr:save(s).turn_count)
      end
    elseif r <= 55 then
      say("B append " .. id)
      local s = mgr:resume(id)
      if s.state.n > #s.messages then
        s.state = h.state_of(s.messages)
        say("C " .. id .. " " .. mgr:save(s).turn_count)
      end
      local more = h.chain(sid_of(s), s.messages[#s.messages], rnd(1, 3), rnd)
      for _, m in ipairs(more) do s.messages[#s.messages + 1] = m end
      s.metadata.turn_count = #s.messages
      say("C " .. id .. " " .. mgr:save(s).turn_count)
    elseif r <= 63 then
      say("B rewind " .. id)
      local s = mgr:rewind(id, rnd(0, 8))
      say("C " .. id .. " " .. #s.messages)
      s.state = h.state_of(s.messages)
      say("C " .. id .. " " .. mgr:save(s).turn_count)
    elseif r <= 71 then
      say("B tag " .. id)
      mgr:tag(id, { "t" .. rnd(1, 5), "u" .. rnd(1, 5) })
      say("T " .. id)
    elseif r <= 76 then
      say("B untag " .. id)
      mgr:untag(id, "t" .. rnd(1, 5))
      say("T " .. id)
    elseif r <= 80 then
      say("B rename " .. id)
      mgr:rename(id, "renamed " .. step)
      say("T " .. id)
    elseif r <= 88 then
      say("B fork " .. id)
      local meta
      if rnd(1, 2) == 1 then
        meta = mgr:fork(id)
      else
        meta = mgr:fork(id, "fork at", { at = rnd(0, 6) })
      end
      add(meta.id)
      say("C " .. meta.id .. " " .. meta.turn_count)
    elseif r <= 96 or #ids > 30 then
      say("B delete " .. id)
      mgr:delete(id)
      drop(id)
      say("D " .. id)
    else
      say("B read " .. id)
      mgr:list({ tag = "t1" })
      mgr:resume(id, { last = 2 })
      say("T " .. id)
    end
  end
  say("TIMEOUT")
end

-- pruner PATH BEFORE KEEP MARKER: prunes the sessions updated before BEFORE
-- (Unix ms) that do not carry KEEP, creating MARKER after its first batch;
-- prints "PRUNED n" after each batch and "DONE n" at the end.
function commands.pruner(path, before, keep, marker)
  local mgr = agentsession.sqlite(path)
  local gone = mgr:prune{ before = tonumber(before), keep_tag = keep, progress = function(n)
    print("PRUNED " .. n)
    io.stdout:flush()
    if not h.exists(marker) then h.write(marker, "pruning\n") end
  end }
  print("DONE " .. #gone)
end

-- concurrent PATH K N SHARED GO: waits for the file GO, then follows
-- helpers.sqlite.concurrent_plan(K, N).
-- Prints "ERROR …" and exits 1 on the first error, else "DONE K".
function commands.concurrent(path, k, n, shared, go)
  h.wait_until(function() return h.exists(go) end, 20, go)
  local mgr = agentsession.sqlite(path)
  for i, op in ipairs(h.concurrent_plan(tonumber(k), tonumber(n))) do
    local ok, err = pcall(function()
      if op.op == "save" then
        mgr:save(agentsession.session({ id = op.id, agent_name = "w" .. k, tags = { "w" .. k },
          messages = { { role = "user", content = op.id } }, state = { k = tonumber(k), i = i } }))
      elseif op.op == "tag" then
        mgr:tag(shared, op.tag)
      elseif op.op == "rename" then
        mgr:rename(shared, op.name)
      elseif op.op == "list" then
        mgr:list({ agent_name = "w" .. k })
      elseif op.op == "delete" then
        mgr:delete(op.id)
      else
        mgr:resume(shared, { last = 3 })
      end
    end)
    if not ok then
      print(string.format("ERROR writer %s step %d (%s): %s", k, i, op.op, one_line(err)))
      os.exit(1)
    end
  end
  mgr:close()
  print("DONE " .. k)
end

-- race PATH K GO: waits for GO, then opens the (new) store and saves session "race-K".
function commands.race(path, k, go)
  -- a tight wait, so that the processes start within a fraction of a millisecond
  local deadline = h.monotime() + 20
  while not h.exists(go) do
    if h.monotime() > deadline then error("timed out waiting for " .. go) end
    h.sleep(0.0002)
  end
  local ok, err = pcall(function()
    local mgr = agentsession.sqlite(path)
    mgr:save(agentsession.session({ id = "race-" .. k, agent_name = "race" }))
    mgr:close()
  end)
  print(ok and ("DONE " .. k) or ("ERROR " .. k .. " " .. outcome(ok, err)))
end

-- lock PATH MARKER SECONDS: holds SQLite's write lock (BEGIN IMMEDIATE through LuaSQL)
-- for SECONDS, writing MARKER once it has it; prints "RELEASING" just before COMMIT, "RELEASED" after.
function commands.lock(path, marker, seconds)
  local luasql = require("luasql.sqlite3")
  local env = assert(luasql.sqlite3())
  local conn = assert(env:connect(path))
  assert(conn:execute("BEGIN IMMEDIATE"))
  h.write(marker, "locked\n")
  h.sleep(tonumber(seconds))
  print("RELEASING")
  assert(conn:execute("COMMIT"))
  print("RELEASED")
  conn:close()
  env:close()
end

-- perm PATH: creates or opens the store, saves a session and, while it is open,
-- prints "MODE <suffix> <mode or missing>" for the file, -wal and -shm.
function commands.perm(path)
  local mgr = agentsession.sqlite(path)
  mgr:save(agentsession.session({ agent_name = "perm", messages = { "hello" } }))
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do
    print("MODE " .. (suffix == "" and "db" or suffix) .. " " .. (h.mode(path .. suffix) or "missing"))
  end
  mgr:close()
  print("END")
end

-- probe PATH: tries the constructor and, when it works, operations touching every
-- table; prints "<op> ok" or "<op> error <kind> <message>" for each, then "END".
function commands.probe(path)
  local ok, mgr = pcall(agentsession.sqlite, path)
  print("sqlite " .. outcome(ok, mgr))
  if ok then
    local ops = {
      { "list", function() return mgr:list() end },
      { "resume", function() return mgr:resume("no-such-session") end },
      { "list_tag", function() return mgr:list({ tag = "x" }) end },
      { "save", function()
        return mgr:save(agentsession.session({ id = "probe", agent_name = "probe", tags = { "x" }, messages = { 1 } }))
      end },
      { "delete", function() return mgr:delete("no-such-session") end },
    }
    for _, op in ipairs(ops) do
      print(op[1] .. " " .. outcome(pcall(op[2])))
    end
    mgr:close()
  end
  print("END")
end

-- The sessions of the damaged-page test: deterministic from their number.
local function corrupt_sample(k)
  local state = k * 7919
  local function rnd(a, b)
    state = (state * 1103515245 + 12345) % 2147483648
    return a + state % (b - a + 1)
  end
  local id = string.format("c-%03d", k)
  local msgs = h.chain(id, nil, 12, rnd)
  local s = agentsession.session({ id = id, name = "corrupt " .. k, agent_name = "agent" .. k % 3,
    tags = { "c", "k" .. k % 5 }, messages = msgs, state = h.state_of(msgs) })
  s.metadata.turn_count = #msgs
  return s
end

-- make_corrupt_sample PATH COUNT: the store the damaged-page test damages.
function commands.make_corrupt_sample(path, count)
  local mgr = agentsession.sqlite(path)
  for k = 1, tonumber(count) do mgr:save(corrupt_sample(k)) end
  mgr:close()
  print("END")
end

-- probe_corrupt PATH COUNT: like probe, on a store of COUNT corrupt_sample sessions
-- whose pages were damaged; also prints "WRONG …" when a call returns wrong data.
function commands.probe_corrupt(path, count)
  count = tonumber(count)
  local ok, mgr = pcall(agentsession.sqlite, path)
  print("sqlite " .. outcome(ok, mgr))
  if not ok then
    print("END")
    return
  end
  local function try(name, fn)
    local done, err = pcall(fn)
    print(name .. " " .. outcome(done, err))
  end
  try("list", function()
    for _, m in ipairs(mgr:list()) do
      local k = tonumber(m.id:match("^c%-(%d+)$"))
      if not k or k < 1 or k > count or m.turn_count ~= 12 then
        print("WRONG list returned " .. m.id .. " with " .. tostring(m.turn_count) .. " turns")
      end
    end
  end)
  for k = 1, count do
    local expected = corrupt_sample(k)
    try("resume " .. expected.metadata.id, function()
      local got = mgr:resume(expected.metadata.id)
      local same, why = deep.compare(expected.messages, got.messages, { root = "messages", metatables = "ignore" })
      if same then same, why = deep.compare(expected.state, got.state, { root = "state" }) end
      if not same then print("WRONG resume " .. expected.metadata.id .. " " .. why) end
    end)
  end
  try("list_tag", function() mgr:list({ tag = "k2" }) end)
  try("list_agent", function() mgr:list({ agent_name = "agent1" }) end)
  try("resume_last", function() mgr:resume("c-001", { last = 2 }) end)
  try("save", function() mgr:save(corrupt_sample(count + 1)) end)
  try("fork", function() mgr:fork("c-003") end)
  try("delete", function() mgr:delete("c-004") end)
  mgr:close()
  print("END")
end

-- big_save PATH BYTES: saves a session of about BYTES bytes of messages; prints
-- "SAVE ok" or "SAVE error <kind> <message>", then "LIST <n>" or "LIST error …" and "END".
function commands.big_save(path, bytes)
  local mgr = agentsession.sqlite(path)
  local msgs, chunk = {}, string.rep("x", 16 * 1024)
  for i = 1, math.ceil(tonumber(bytes) / #chunk) do msgs[i] = { i = i, text = chunk } end
  local ok, err = pcall(mgr.save, mgr, agentsession.session({ id = "big", agent_name = "big", messages = msgs }))
  print("SAVE " .. outcome(ok, err))
  local listed, list = pcall(mgr.list, mgr)
  print("LIST " .. (listed and tostring(#list) or outcome(listed, list)))
  mgr:close()
  print("END")
end

-- full_ops PATH: run under a file-size limit the parent sets. Tries each write on the
-- sessions "medium" (64 messages of 16 KiB) and "small": those that must grow the file past
-- the limit (save, append, import, fork) and those that may fit (rewind, tag, rename,
-- delete). Prints "OP <name> ok" or "OP <name> error <kind> <message>" for each and, after
-- a failed one, "KEPT <name>" when every session exports as before and no new session
-- appeared (or "CHANGED <name> <what>"); then "LIST <n>" and "END".
function commands.full_ops(path)
  local mgr = agentsession.sqlite(path)
  local chunk = string.rep("y", 16 * 1024)
  local function big(n)
    local t = {}
    for i = 1, n do t[i] = { i = i, text = chunk } end
    return t
  end
  local function snapshot()
    local all = {}
    for _, m in ipairs(mgr:list()) do all[m.id] = mgr:export(m.id) end
    return all
  end
  local ops = {
    { "save", function()
      return mgr:save(agentsession.session({ id = "big", agent_name = "big", messages = big(256) }))
    end },
    { "append", function() return mgr:append("medium", big(256)) end },
    { "import", function()
      return mgr:import((mgr:export("medium"):gsub('"id":"medium"', '"id":"imported"', 1)))
    end },
    { "fork", function() return mgr:fork("medium", "copy") end },
    { "rewind", function() return mgr:rewind("medium", 1) end },
    { "tag", function() return mgr:tag("small", "full-disk") end },
    { "rename", function() return mgr:rename("small", "renamed on a full disk") end },
    { "delete", function() return mgr:delete("small") end },
  }
  for _, op in ipairs(ops) do
    local before = snapshot()
    local ok, err = pcall(op[2])
    print("OP " .. op[1] .. " " .. outcome(ok, err))
    if not ok then
      local after, what = snapshot(), nil
      for id, doc in pairs(before) do
        if after[id] ~= doc then what = "session " .. id end
      end
      for id in pairs(after) do
        if before[id] == nil then what = "new session " .. id end
      end
      print(what and ("CHANGED " .. op[1] .. " " .. what) or ("KEPT " .. op[1]))
    end
  end
  print("LIST " .. #mgr:list())
  mgr:close()
  print("END")
end

-- relative NAME: from the working directory, opens the store at the relative path NAME,
-- saves session "rel" with two messages, prints "MODE <mode or missing>" of NAME,
-- closes it, opens NAME again and prints "RESUMED <messages>" (or the error), "LIST <n>", "END".
function commands.relative(name)
  local mgr = agentsession.sqlite(name)
  mgr:save(agentsession.session({ id = "rel", agent_name = "rel", messages = { "one", "two" } }))
  print("MODE " .. (h.mode(name) or "missing"))
  mgr:close()
  local again = agentsession.sqlite(name)
  local ok, s = pcall(again.resume, again, "rel")
  print("RESUMED " .. (ok and table.concat(s.messages, ",") or outcome(ok, s)))
  print("LIST " .. #again:list())
  again:close()
  print("END")
end

-- ops PATH ID OP…: runs each operation on session ID of the store at PATH and prints
-- "<op> ok" or "<op> error <kind> <message>" for each, then "END". Operations:
-- resume, resume_last (the last 2 messages), fork, rewind (to 1), tag, rename, list,
-- save (a session of that id with one message).
function commands.ops(path, id, ...)
  local mgr = agentsession.sqlite(path)
  local calls = {
    resume = function() return mgr:resume(id) end,
    resume_last = function() return mgr:resume(id, { last = 2 }) end,
    fork = function() return mgr:fork(id) end,
    rewind = function() return mgr:rewind(id, 1) end,
    tag = function() return mgr:tag(id, "ops") end,
    rename = function() return mgr:rename(id, "ops") end,
    list = function() return mgr:list() end,
    save = function()
      return mgr:save(agentsession.session({ id = id, agent_name = "ops", messages = { "saved" } }))
    end,
  }
  for _, op in ipairs({ ... }) do
    print(op .. " " .. outcome(pcall(assert(calls[op], op))))
  end
  mgr:close()
  print("END")
end

local command = commands[arg[1]]
if not command then
  io.stderr:write("sqlite_child.lua: unknown command ", tostring(arg[1]), "\n")
  os.exit(2)
end
command(unpack(arg, 2))
