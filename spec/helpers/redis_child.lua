-- The child processes of spec/10-redis_spec.lua: one program, the first
-- argument names what it does, the next three say where the store is (host,
-- port, prefix). Run on the interpreter of the specs (helpers.interp).
-- Prints "DONE <count>" when it ends well, "FAIL <why>" when it does not.

local agentsession = require("agentsession")

io.stdout:setvbuf("line")

local role, host, port, prefix = arg[1], arg[2], tonumber(arg[3]), arg[4]
local mgr = agentsession.redis{ host = host, port = port, prefix = prefix }

local function fail(why)
  print("FAIL " .. tostring(why):gsub("\n", "\\n"))
  os.exit(1)
end

-- A writer and a reader run together (see write_and_read in the spec) meet at
-- two files: the reader makes `started` after its first read, which the
-- writer waits for after its first write; the writer makes `finished` when it
-- is done, and the reader reads on until it appears. So the reads surely
-- overlap the writes, however the two processes are scheduled.
local function touch(path)
  local f = assert(io.open(path, "w"))
  f:close()
end

local function wait_for(path, what)
  local deadline = os.time() + 60
  while true do
    local f = io.open(path, "r")
    if f then
      f:close()
      return
    end
    if os.time() > deadline then fail(what .. " did not happen within 60 s") end
    os.execute("sleep 0.01")
  end
end

local commands = {}

-- tagger ID NAME COUNT: adds COUNT tags "NAME-i" to the session ID, one call each,
-- and saves COUNT sessions of its own named NAME-i.
function commands.tagger(id, name, count)
  for i = 1, tonumber(count) do
    mgr:tag(id, name .. "-" .. i)
    mgr:save(agentsession.session{ id = name .. "-own-" .. i, agent_name = name, tags = { name } })
  end
  print("DONE " .. count)
end

-- writer ID COUNT STARTED FINISHED: saves the session ID COUNT times; save i
-- has i messages and state.n = i, name "v<i>".
function commands.writer(id, count, started, finished)
  for i = 1, tonumber(count) do
    local msgs = {}
    for k = 1, i do msgs[k] = { k = k, text = string.rep("x", 50) } end
    mgr:save(agentsession.session{ id = id, name = "v" .. i, messages = msgs, state = { n = i } })
    if i == 1 then wait_for(started, "the reader's first read") end
  end
  touch(finished)
  print("DONE " .. count)
end

-- Waits (60 s at most) until ID exists, then resumes it COUNT times, and on
-- until the writer has finished, handing each session read to check; prints
-- "DONE <reads> <versions seen>", the second telling whether the reads really
-- ran beside the writes.
local function read_loop(id, count, started, finished, check)
  local deadline = os.time() + 60
  while true do
    local ok, err = pcall(mgr.resume, mgr, id, { last = 0 })
    if ok then break end
    if not agentsession.is_error(err, "not_found") then fail(err) end
    if os.time() > deadline then fail("the session " .. id .. " never appeared") end
  end
  local versions, nversions, reads, done = {}, 0, 0, false
  deadline = os.time() + 60
  while reads < tonumber(count) or not done do
    -- whether the writer had finished before this read: then it reads the last version
    local f = io.open(finished, "r")
    if f then
      f:close()
      done = true
    end
    local ok, s = pcall(mgr.resume, mgr, id)
    if not ok then fail(s) end
    check(s)
    reads = reads + 1
    if reads == 1 then touch(started) end
    if not versions[s.metadata.version] then
      versions[s.metadata.version] = true
      nversions = nversions + 1
    end
    if os.time() > deadline then fail("the writer did not finish within 60 s") end
  end
  print("DONE " .. reads .. " " .. nversions)
end

-- reader ID COUNT: resumes ID COUNT times; each must be whole: as many
-- messages as state.n says, and the name of that very save.
function commands.reader(id, count, started, finished)
  read_loop(id, count, started, finished, function(s)
    local n = s.state.n
    if #s.messages ~= n or s.metadata.name ~= "v" .. n or s.messages[n].k ~= n then
      fail("torn read: " .. #s.messages .. " messages, state.n " .. tostring(n)
        .. ", name " .. tostring(s.metadata.name))
    end
  end)
end

-- Whether a session read back is whole: messages[k].k == k for every k, and
-- as many messages as turn_count says (every write below keeps both true).
local function whole(s)
  if #s.messages ~= s.metadata.turn_count then
    return false, #s.messages .. " messages, turn_count " .. s.metadata.turn_count
  end
  for k, m in ipairs(s.messages) do
    if m.k ~= k then return false, "messages[" .. k .. "].k is " .. tostring(m.k) end
  end
  return true
end

local function numbered(from, to)
  local msgs = {}
  for k = from, to do msgs[#msgs + 1] = { k = k, text = string.rep("y", 40) } end
  return msgs
end

-- A session of the messages 1..n, tagged "mix", its turn_count n.
local function numbered_session(id, n)
  local s = agentsession.session{ id = id, messages = numbered(1, n), tags = { "mix", "n" .. n } }
  s.metadata.turn_count = n
  return s
end

-- One write of the mix on the session `id` (which exists): a save, an append,
-- a rewind, a tag and an untag, or a fork of it; each keeps `whole` true.
local function mixed_write(id, i)
  local op = i % 5
  if op == 0 then
    mgr:save(numbered_session(id, math.random(1, 30)))
  elseif op == 1 then
    local n = mgr:resume(id, { last = 0 }).metadata.turn_count
    mgr:append(id, numbered(n + 1, n + math.random(1, 5)))
  elseif op == 2 then
    mgr:rewind(id, math.random(0, 20))
  elseif op == 3 then
    mgr:tag(id, "t" .. i)
    mgr:untag(id, "t" .. i)
  else
    mgr:fork(id, "f" .. i, { at = math.random(0, 10) })
  end
end

-- mixer ID COUNT STARTED FINISHED: COUNT writes of the mix on ID (created first).
function commands.mixer(id, count, started, finished)
  mgr:save(numbered_session(id, 3))
  wait_for(started, "the checker's first read")
  for i = 1, tonumber(count) do mixed_write(id, i) end
  touch(finished)
  print("DONE " .. count)
end

-- checker ID COUNT: resumes ID (and lists it) COUNT times; every read must be
-- whole, and versions never go back.
function commands.checker(id, count, started, finished)
  local version = 0
  read_loop(id, count, started, finished, function(s)
    local good, why = whole(s)
    if not good then fail("torn read of " .. id .. ": " .. why) end
    if s.metadata.version < version then fail("version went back") end
    version = s.metadata.version
    for _, meta in ipairs(mgr:list{ tag = "mix" }) do
      if meta.id == id and meta.version < version then fail("list gave an older version") end
    end
  end)
end

-- crasher N: writes of the mix on sessions c1..cN (created first) until the
-- server goes away; prints "C <id> <version>" after each acknowledged write,
-- then "GONE <message>" when a call fails as unavailable.
function commands.crasher(n)
  n = tonumber(n)
  for j = 1, n do print("C c" .. j .. " " .. mgr:save(numbered_session("c" .. j, 2)).version) end
  for i = 1, 1000000 do
    local id = "c" .. math.random(1, n)
    local ok, err = pcall(function()
      mixed_write(id, i)
      print("C " .. id .. " " .. mgr:resume(id, { last = 0 }).metadata.version)
    end)
    if not ok then
      if agentsession.is_error(err, "unavailable") then
        print("GONE " .. tostring(err))
        return
      end
      fail(err)
    end
  end
  fail("the server was never stopped")
end

-- retrier ID COUNT: saves the session ID, then appends COUNT messages
-- { k = k } to it, the k-th with op_id "op-<k>". An append that fails as
-- unavailable is sent again, with its op_id, until it succeeds (for up to
-- 60 s). Prints "A k" when the k-th is applied, "R k" when a retry finds it
-- applied by an attempt that failed, "F k <error>" for each failure; then
-- "DONE <count> <failures> <repeats>".
function commands.retrier(id, count)
  mgr:save(agentsession.session{ id = id })
  local failures, repeats = 0, 0
  for k = 1, tonumber(count) do
    local deadline, failed = os.time() + 60, false
    while true do
      local ok, meta, applied = pcall(mgr.append, mgr, id, { { k = k } }, { op_id = "op-" .. k })
      if ok then
        if applied then
          print("A " .. k)
        elseif failed then
          repeats = repeats + 1
          print("R " .. k)
        else
          fail("op-" .. k .. " was found applied before it was ever sent")
        end
        break
      end
      if not agentsession.is_error(meta, "unavailable") then fail(meta) end
      failures, failed = failures + 1, true
      print("F " .. k .. " " .. tostring(meta):gsub("\n", "\\n"))
      if os.time() > deadline then fail("append " .. k .. " failed for 60 s: " .. tostring(meta)) end
      os.execute("sleep 0.02")
    end
  end
  print("DONE " .. count .. " " .. failures .. " " .. repeats)
end

local fn = commands[role]
if not fn then fail("no command " .. tostring(role)) end
local ok, err = pcall(fn, (table.unpack or rawget(_G, "unpack"))(arg, 5))
if not ok then fail(err) end
mgr:close()
