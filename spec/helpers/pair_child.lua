-- The child processes of helpers.pair (spec/13-two_processes_spec.lua): one
-- program, run by helpers.pair on the interpreter of the specs. Arguments:
-- the command, the store as agentsession.open takes it ("sqlite:PATH" or
-- "redis://host:port/0?prefix=P"), a file this process creates once its store
-- is open, a file whose appearance starts the work (so that two children start
-- together), then the command's own.
-- Prints "DONE <counts>" when it ends well, "FAIL <why>" when it does not.

local agentsession = require("agentsession")
local h = require("helpers.sqlite")

io.stdout:setvbuf("line")

local command, uri, ready, go = arg[1], arg[2], arg[3], arg[4]

local function fail(why)
  print("FAIL " .. tostring(why):gsub("\n", "\\n"))
  os.exit(1)
end

local ok, mgr = pcall(agentsession.open, uri)
if not ok then fail(mgr) end
h.write(ready, "ready\n")
local deadline = h.monotime() + 30
while not h.exists(go) do
  if h.monotime() > deadline then fail("the go file " .. go .. " did not appear within 30 s") end
  h.sleep(0.001)
end

local commands = {}

-- Waits PAUSE milliseconds between two writes, so that a process waiting for
-- SQLite's write lock (which retries after growing sleeps) gets its turn.
local pause = 0
local function breathe()
  if pause > 0 then h.sleep(pause / 1000) end
end

-- appender ID WHO COUNT PAUSE: appends COUNT messages { who = WHO, i = i } to
-- ID, one call each, with tokens = 1.
function commands.appender(id, who, count, ms)
  pause = tonumber(ms)
  for i = 1, tonumber(count) do
    mgr:append(id, { { who = who, i = i } }, { tokens = 1 })
    breathe()
  end
  print("DONE " .. count)
end

-- tagappender ID WHO COUNT: COUNT times, appends the message { who = WHO,
-- i = i } to ID with tokens = 1, then tags ID "WHO-i"; one call each.
function commands.tagappender(id, who, count)
  for i = 1, tonumber(count) do
    mgr:append(id, { { who = who, i = i } }, { tokens = 1 })
    mgr:tag(id, who .. "-" .. i)
  end
  print("DONE " .. count)
end

-- racer ID MODE COUNT PAUSE: COUNT times, reads ID and writes it back
-- expecting the version it read: MODE "save" saves it with state.counter one
-- more, MODE "append" appends one message { version = <the version read> }.
-- Prints "DONE <written> <conflicts>".
function commands.racer(id, mode, count, ms)
  pause = tonumber(ms)
  local written, conflicts = 0, 0
  for _ = 1, tonumber(count) do
    local s, done, err
    if mode == "save" then
      s = mgr:resume(id)
      s.state.counter = s.state.counter + 1
      done, err = pcall(mgr.save, mgr, s, { expect_version = s.metadata.version })
    else
      s = mgr:resume(id, { last = 0 })
      done, err = pcall(mgr.append, mgr, id, { { version = s.metadata.version } },
        { expect_version = s.metadata.version })
    end
    if done then
      written = written + 1
    elseif agentsession.is_error(err, "conflict") then
      conflicts = conflicts + 1
    else
      fail(err)
    end
    breathe()
  end
  print("DONE " .. written .. " " .. conflicts)
end

-- stateappender ID COUNT STARTED: appends COUNT messages { i = i }, each with
-- the state { i = i } in the same call; after the first, waits for the file
-- STARTED (the reader's first read), so the reads overlap the appends.
function commands.stateappender(id, count, started)
  for i = 1, tonumber(count) do
    mgr:append(id, { { i = i } }, { state = { i = i } })
    if i == 1 then
      local until_t = h.monotime() + 60
      while not h.exists(started) do
        if h.monotime() > until_t then fail("the reader's first read did not happen within 60 s") end
        h.sleep(0.001)
      end
    end
  end
  print("DONE " .. count)
end

-- statereader ID COUNT STARTED: reads the last message and the state of ID
-- until the message { i = COUNT } appears, failing when a read's last message
-- and state disagree; makes the file STARTED after its first read of a
-- message. Prints "DONE <reads> <versions seen>".
function commands.statereader(id, count, started)
  count = tonumber(count)
  local reads, versions, seen, last = 0, 0, {}, 0
  local until_t = h.monotime() + 60
  while last < count do
    if h.monotime() > until_t then fail("the message " .. count .. " did not appear within 60 s") end
    local s = mgr:resume(id, { last = 1 })
    reads = reads + 1
    local m = s.messages[1]
    local i = m and m.i or 0
    local state_i = s.state.i or 0
    if i ~= state_i then
      fail("version " .. s.metadata.version .. ": the last message is " .. i .. " but the state " .. state_i)
    end
    if not seen[s.metadata.version] then
      seen[s.metadata.version] = true
      versions = versions + 1
    end
    last = i
    if i > 0 and not h.exists(started) then h.write(started, "started\n") end
  end
  print("DONE " .. reads .. " " .. versions)
end

-- appendone ID: appends one message { from = "child" }.
function commands.appendone(id)
  mgr:append(id, { { from = "child" } })
  print("DONE 1")
end

-- op_appender ID WHO COUNT PAUSE: appends COUNT messages { who = WHO, i = i },
-- one call each, the i-th with op_id "op-<i>" and tokens = 1, as another
-- process sends the same op ids. Prints "DONE <applied> <repeats>" and the
-- i of every append it applied, in one line "APPLIED i i ...".
function commands.op_appender(id, who, count, ms)
  pause = tonumber(ms)
  local applied, repeats, mine = 0, 0, {}
  for i = 1, tonumber(count) do
    local _, done = mgr:append(id, { { who = who, i = i } }, { op_id = "op-" .. i, tokens = 1 })
    if done then
      applied = applied + 1
      mine[#mine + 1] = i
    else
      repeats = repeats + 1
    end
    breathe()
  end
  print("APPLIED " .. table.concat(mine, " "))
  print("DONE " .. applied .. " " .. repeats)
end

-- pruner BEFORE KEEP: prunes what was last updated before BEFORE (Unix ms)
-- and does not carry the tag KEEP; prints "GONE <id>" for each id it deleted.
function commands.pruner(before, keep)
  local gone = mgr:prune{ before = tonumber(before), keep_tag = keep }
  for _, id in ipairs(gone) do print("GONE " .. id) end
  print("DONE " .. #gone)
end

-- toucher SEED N: writes to the sessions old-1 .. old-N in an order drawn from
-- SEED: appends a message ("W <id>"), tags it "keep" ("K <id>"), or saves a new
-- session new-<i> ("N <id>"); "G <id>" when it was gone already.
function commands.toucher(seed, n)
  math.randomseed(tonumber(seed))
  local order = {}
  for i = 1, tonumber(n) do order[i] = i end
  for i = #order, 2, -1 do
    local j = math.random(1, i)
    order[i], order[j] = order[j], order[i]
  end
  local count = 0
  for _, i in ipairs(order) do
    local id, r = "old-" .. i, math.random(1, 3)
    local done, err
    if r == 1 then
      done, err = pcall(mgr.append, mgr, id, { "touched " .. i })
      if done then print("W " .. id) end
    elseif r == 2 then
      done, err = pcall(mgr.tag, mgr, id, "keep")
      if done then print("K " .. id) end
    else
      done, err = pcall(mgr.save, mgr, agentsession.session{ id = "new-" .. i, messages = { "new " .. i } })
      if done then print("N new-" .. i) end
    end
    if not done then
      if not agentsession.is_error(err, "not_found") then fail(err) end
      print("G " .. id)
    end
    count = count + 1
  end
  print("DONE " .. count)
end

local fn = commands[command]
if not fn then fail("no command " .. tostring(command)) end
local done, err = pcall(fn, (table.unpack or rawget(_G, "unpack"))(arg, 5))
if not done then fail(err) end
mgr:close()
