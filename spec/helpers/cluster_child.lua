-- The child processes of spec/24-redis_cluster_faults_spec.lua: one program,
-- run on the interpreter of the specs. Arguments: the command, the store as
-- agentsession.open takes it ("redis+cluster://h:p,.../?prefix=P&timeout_ms=N"),
-- then the command's own. The parent steers it with files: READY is made by
-- the child once it has done its first call, PHASE by the parent when the
-- event under test is over (a slot moved, a replica promoted), FINISHED by
-- the parent when the child should stop.
-- Prints "DONE ..." and "STATS ..." when it ends well, "FAIL <why>" when not.

local agentsession = require("agentsession")
local h = require("helpers.sqlite")

io.stdout:setvbuf("line")

local command, uri = arg[1], arg[2]

local function fail(why)
  print("FAIL " .. tostring(why):gsub("\n", "\\n"))
  os.exit(1)
end

local ok, mgr = pcall(agentsession.open, uri)
if not ok then fail(mgr) end

local function one_line(v)
  return (tostring(v):gsub("\n", "\\n"))
end

-- The manager's counters, on one line.
local function stats()
  local st = mgr:stats()
  local parts = {}
  for _, k in ipairs({ "round_trips", "connects", "retries", "redirections", "refreshes" }) do
    parts[#parts + 1] = k .. "=" .. tostring(st[k])
  end
  print("STATS " .. table.concat(parts, " "))
end

local commands = {}

-- writer MODE READY PHASE FINISHED ID...: appends to the sessions ID...,
-- one at a time in turn, the messages { i = i, text = "alpha" } numbered
-- from 1 for each, the i-th with op_id "<ID>-<i>", until FINISHED appears.
-- MODE "strict": any error fails. MODE "retry": an append that raises
-- unavailable is sent again, with its op_id, until it succeeds (120 s at
-- most). Prints "A <id> <i> <phase>" for each append applied, "R <id> <i>
-- <phase>" when a retry finds it applied by an attempt that failed, and
-- "F <id> <i> <phase> <error>" for each failure (phase 1 when PHASE existed
-- as the attempt began, else 0); then "DONE <appends> <failures> <repeats>".
function commands.writer(mode, ready, phase, finished, ...)
  local ids = { ... }
  local next_i = {}
  for _, id in ipairs(ids) do next_i[id] = 1 end
  local appends, failures, repeats, turn = 0, 0, 0, 0
  while not h.exists(finished) do
    turn = turn % #ids + 1
    local id = ids[turn]
    local i = next_i[id]
    local deadline, failed = h.monotime() + 120, false
    while true do
      local after = h.exists(phase) and 1 or 0
      local done, meta, applied = pcall(mgr.append, mgr, id, { { i = i, text = "alpha" } }, { op_id = id .. "-" .. i })
      if done then
        if applied then
          print("A " .. id .. " " .. i .. " " .. after)
        elseif failed then
          repeats = repeats + 1
          print("R " .. id .. " " .. i .. " " .. after)
        else
          fail("the op id " .. id .. "-" .. i .. " was found applied before it was ever sent")
        end
        break
      end
      if mode ~= "retry" or not agentsession.is_error(meta, "unavailable") then fail(meta) end
      failures, failed = failures + 1, true
      print("F " .. id .. " " .. i .. " " .. after .. " " .. one_line(meta))
      if h.monotime() > deadline then
        fail("the append " .. id .. "-" .. i .. " failed for 120 s: " .. one_line(meta))
      end
      h.sleep(0.05)
    end
    next_i[id] = i + 1
    appends = appends + 1
    if appends == 1 then h.write(ready, "ready\n") end
  end
  print("DONE " .. appends .. " " .. failures .. " " .. repeats)
end

-- Whether a session read back is whole: its messages numbered 1..n, n its
-- turn_count, version n + 1 (created empty, then one append per message).
local function whole(s)
  local n = s.metadata.turn_count
  if #s.messages ~= n then return false, #s.messages .. " messages, turn_count " .. n end
  for k, m in ipairs(s.messages) do
    if m.i ~= k then return false, "messages[" .. k .. "].i is " .. tostring(m.i) end
  end
  if s.metadata.version ~= n + 1 then return false, "version " .. s.metadata.version .. " with " .. n .. " messages" end
  return true
end

-- reader READY PHASE FINISHED TAG COUNT ID...: until FINISHED appears (and
-- once more after), resumes the sessions ID... in turn, each read whole and
-- none shorter than the read before it; every 5th turn lists the sessions
-- tagged TAG (COUNT of them, each of ID... among them) and searches "alpha"
-- among them (never fewer found than the search before). Prints "DONE
-- <reads> <reads begun after PHASE> <lists> <searches>".
function commands.reader(ready, phase, finished, tag, count, ...)
  local ids = { ... }
  count = tonumber(count)
  local reads, after, lists, searches, found, turn = 0, 0, 0, 0, 0, 0
  local seen = {}
  local last = false
  while true do
    if h.exists(finished) then last = true end
    turn = turn + 1
    local id = ids[(turn - 1) % #ids + 1]
    local began_after = h.exists(phase)
    local s = mgr:resume(id)
    local good, why = whole(s)
    if not good then fail("a read of " .. id .. " was not whole: " .. why) end
    if s.metadata.turn_count < (seen[id] or 0) then
      fail("a read of " .. id .. " had " .. s.metadata.turn_count .. " messages, one before " .. seen[id])
    end
    seen[id] = s.metadata.turn_count
    reads = reads + 1
    if began_after then after = after + 1 end
    if reads == 1 then h.write(ready, "ready\n") end
    if turn % 5 == 0 then
      local listed = mgr:list{ tag = tag }
      local got = {}
      for _, m in ipairs(listed) do
        if got[m.id] then fail("list{ tag = " .. tag .. " } gave " .. m.id .. " twice") end
        got[m.id] = true
      end
      if #listed ~= count then fail("list{ tag = " .. tag .. " } gave " .. #listed .. " sessions, not " .. count) end
      for _, want in ipairs(ids) do
        if not got[want] then fail("list{ tag = " .. tag .. " } missed " .. want) end
      end
      lists = lists + 1
      local hits = mgr:search("alpha", { tag = tag, limit = 1000 })
      for _, hit in ipairs(hits) do
        if not got[hit.metadata.id] then fail("search gave " .. hit.metadata.id .. ", which list did not") end
      end
      if #hits < found then fail("search found " .. #hits .. " sessions, the one before " .. found) end
      found = #hits
      searches = searches + 1
    end
    if last then break end
  end
  print("DONE " .. reads .. " " .. after .. " " .. lists .. " " .. searches)
end

local fn = commands[command]
if not fn then fail("no command " .. tostring(command)) end
local done, err = pcall(fn, (table.unpack or rawget(_G, "unpack"))(arg, 3))
if not done then fail(err) end
local counted, why = pcall(stats)
if not counted then fail(why) end
mgr:close()
