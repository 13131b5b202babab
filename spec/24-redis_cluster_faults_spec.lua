-- The Redis store on a real Redis Cluster (helpers.redis_cluster, one cluster
-- for this file) while it changes under running processes (each a
-- spec/helpers/cluster_child.lua): a slot moved between masters key by key,
-- and a master killed with kill -9 and replaced by its replica.
local agentsession = require("agentsession")
local rc = require("helpers.redis_cluster")
local h = require("helpers.sqlite")
local stores = require("helpers.stores")

local session = agentsession.session
local unpack = table.unpack or rawget(_G, "unpack")

local TIMEOUT = 30000 -- ms: timeout_ms of every manager
-- ms: timeout_ms of the writer whose master is killed, which meets "unavailable" twice while
-- no master serves its slot; long beside a call's time on a loaded machine, short beside TIMEOUT
local OUTAGE_TIMEOUT = 5000

local function child(args) return h.popen_helper("cluster_child.lua", args, 300) end
local finish = h.finish

local runs = 0
-- The files a test and its children meet at.
local function files()
  runs = runs + 1
  local base = stores.tmpdir() .. "/cluster" .. runs
  return { ready_w = base .. ".ready-w", ready_r = base .. ".ready-r", phase = base .. ".phase",
    finished = base .. ".finished" }
end

-- Waits (60 s at most) for the file `path`; when it does not come, stops the
-- children and fails with their output.
local function await(path, what, f, pipes)
  local deadline = h.monotime() + 60
  while not h.exists(path) do
    if h.monotime() > deadline then
      h.write(f.finished, "finished\n")
      local outs = {}
      for _, p in ipairs(pipes) do outs[#outs + 1] = finish(p) end
      error(what .. " did not happen within 60 s:\n" .. table.concat(outs, "\n"), 2)
    end
    h.sleep(0.01)
  end
end

-- Reads the child's lines, appending them to `lines`, until done(line) is
-- true; fails when the child ends first.
local function read_until(pipe, lines, done)
  while true do
    local line = pipe:read("*l")
    if line == nil then
      error("the child ended early:\n" .. table.concat(lines, "\n", math.max(1, #lines - 40)), 2)
    end
    lines[#lines + 1] = line
    if line:find("^FAIL ") then error("the child failed: " .. line, 2) end
    if done(line) then return line end
  end
end

-- The counters a child printed: { round_trips = n, ... }.
local function stats_of(out)
  local line = out:match("\nSTATS ([^\n]*)") or out:match("^STATS ([^\n]*)")
  assert.truthy(line, "no STATS line in:\n" .. out:sub(-2000))
  local st = {}
  for k, v in line:gmatch("(%w+)=(%d+)") do st[k] = tonumber(v) end
  return st
end

-- The slot of each session (the slot of its keys), the sessions of each
-- slot, and the hash tag ("{s<j>}") of each slot, from the keys of the masters.
local function slots_of(cluster, prefix)
  local esc = prefix:gsub("%p", "%%%0")
  local slot_of, by_slot, slot_of_tag, tag_of = {}, {}, {}, {}
  for _, master in ipairs(cluster:masters()) do
    for _, key in ipairs(cluster:keys(master, prefix .. "*:meta")) do
      local tag, id = key:match("^" .. esc .. "({s%d+}){(.*)}:meta$")
      assert.truthy(tag, "not the key of a session's metadata: " .. key)
      slot_of_tag[tag] = slot_of_tag[tag] or cluster:keyslot(key)
      local slot = slot_of_tag[tag]
      tag_of[slot] = tag
      slot_of[id] = slot
      by_slot[slot] = by_slot[slot] or {}
      table.insert(by_slot[slot], id)
    end
  end
  return slot_of, by_slot, tag_of
end

describe("redis cluster under change", function()
  local cluster

  setup(function()
    cluster = rc.start()
  end)

  teardown(function()
    if cluster then cluster:stop() end
  end)

  it("a slot moved between masters while one process appends and another reads: nothing lost, doubled or torn",
    function()
    local prefix, n = "mig:", 48
    local mgr = agentsession.redis{ cluster = cluster:seeds(), prefix = prefix, timeout_ms = TIMEOUT }
    for i = 1, n do mgr:save(session{ id = "m" .. i, tags = { "mig" } }) end
    -- the slot holding the most of them
    local slot_of, by_slot, tag_of = slots_of(cluster, prefix)
    local slot, moving = nil, {}
    for s, ids in pairs(by_slot) do
      if #ids > #moving or #ids == #moving and s < slot then slot, moving = s, ids end
    end
    table.sort(moving)
    local counted = 0
    for _ in pairs(slot_of) do counted = counted + 1 end
    assert.are.equal(n, counted)
    local from = cluster:node_of_slot(slot)
    local to = cluster:masters()[1] == from and cluster:masters()[2] or cluster:masters()[1]
    local uri = cluster:uri{ prefix = prefix, timeout_ms = TIMEOUT }
    local f = files()
    local w = child({ "writer", uri, "strict", f.ready_w, f.phase, f.finished, unpack(moving) })
    local r = child({ "reader", uri, f.ready_r, f.phase, f.finished, "mig", n, unpack(moving) })
    await(f.ready_w, "the writer's first append", f, { w, r })
    await(f.ready_r, "the reader's first read", f, { w, r })
    local batches = 0
    local keys = cluster:migrate_slot(slot, from, to, { batch = 3, between = function()
      batches = batches + 1
      h.sleep(0.05)
    end })
    h.write(f.phase, "moved\n")
    -- the writer goes on after the move: 30 appends begun once it was over
    local lines, after = {}, 0
    read_until(w, lines, function(line)
      if line:find("^A %S+ %d+ 1$") then after = after + 1 end
      return after >= 30
    end)
    h.write(f.finished, "finished\n")
    local out_w = table.concat(lines, "\n") .. "\n" .. finish(w)
    local out_r = finish(r)
    assert.is_nil(out_w:find("FAIL", 1, true), out_w:sub(-2000))
    assert.is_nil(out_r:find("FAIL", 1, true), out_r)
    assert.truthy(out_w:find("\nDONE %d+ 0 0\n"), out_w:sub(-2000))
    local reads, reads_after, lists, searches = out_r:match("DONE (%d+) (%d+) (%d+) (%d+)")
    assert.truthy(reads, out_r)
    assert.is_true(tonumber(reads_after) > 0 and tonumber(lists) > 0 and tonumber(searches) > 0, out_r)
    assert.is_true(keys > 0 and batches > 1, keys .. " keys moved in " .. batches .. " batches")
    -- every append acknowledged once, in order, and there
    local acked = {}
    for id, i in ("\n" .. out_w):gmatch("\nA (%S+) (%d+) [01]") do
      acked[id] = (acked[id] or 0) + 1
      assert.are.equal(acked[id], tonumber(i), "the appends to " .. id .. " out of turn")
    end
    for _, id in ipairs(moving) do
      local s = mgr:resume(id)
      assert.is_true((acked[id] or 0) > 0, "no append to " .. id)
      assert.are.equal(acked[id], #s.messages, id)
      for k, m in ipairs(s.messages) do assert.are.equal(k, m.i, id .. ": message " .. k) end
      assert.are.equal(acked[id], s.metadata.turn_count)
      assert.are.equal(acked[id] + 1, s.metadata.version)
    end
    -- the slot and its keys moved; the other sessions are still there
    assert.are.equal(to, cluster:node_of_slot(slot))
    assert.are.equal(0, cluster:count_keys(from, prefix .. tag_of[slot] .. "*"))
    assert.is_true(cluster:count_keys(to, prefix .. tag_of[slot] .. "*") > 0)
    assert.are.equal(n, #mgr:list{ tag = "mig" })
    assert.are.equal(#moving, #mgr:search("alpha", { tag = "mig", limit = 100 }))
    -- a manager that knew the old owner learned the new one
    local st, wst = mgr:stats(), stats_of(out_w)
    assert.is_true(st.redirections + st.refreshes > 0, "the parent: " .. agentsession.json.encode(st))
    assert.is_true(wst.redirections + wst.refreshes > 0, "the writer: " .. agentsession.json.encode(wst))
    mgr:close()
  end)

  it("a master killed while a process writes: once its replica is promoted the same manager goes on, "
    .. "and every write replication kept is there", function()
    local prefix, n = "kill:", 24
    local mgr = agentsession.redis{ cluster = cluster:seeds(), prefix = prefix, timeout_ms = TIMEOUT }
    local ids = {}
    for i = 1, n do
      ids[i] = "k" .. i
      mgr:save(session{ id = ids[i], tags = { "kill" } })
    end
    local slot_of = slots_of(cluster, prefix)
    local victim = cluster:node_of_slot(slot_of.k1)
    local replica = cluster:replica_of(victim)
    assert.truthy(replica, "master " .. victim.port .. " has no replica")
    -- the writer's calls give up after OUTAGE_TIMEOUT while the slot has no master (and it
    -- sends them again): the spec waits for two such failures before the promotion
    local uri = cluster:uri{ prefix = prefix, timeout_ms = OUTAGE_TIMEOUT }
    local f = files()
    local w = child({ "writer", uri, "retry", f.ready_w, f.phase, f.finished, unpack(ids) })
    await(f.ready_w, "the writer's first append", f, { w })
    -- 100 acknowledged appends, then the master's replication offset after
    -- them, and the replica's once it has caught up with it: whatever the
    -- kill loses, those appends the replica holds
    local lines, acks = {}, 0
    read_until(w, lines, function(line)
      if line:find("^[AR] ") then acks = acks + 1 end
      return acks >= 100
    end)
    local kept = {}
    for _, line in ipairs(lines) do
      local id, i = line:match("^[AR] (%S+) (%d+) [01]$")
      if id then kept[#kept + 1] = { id, tonumber(i) } end
    end
    local function offset(node, field)
      local out = node:cli("INFO", "replication")
      return tonumber(out:match(field .. ":(%d+)")) or error("no " .. field .. " in:\n" .. out)
    end
    local target = offset(victim, "master_repl_offset")
    local deadline = h.monotime() + 60
    while offset(replica, "slave_repl_offset") < target do
      assert.is_true(h.monotime() < deadline, "the replica did not catch up with its master within 60 s")
      h.sleep(0.02)
    end
    cluster:kill(victim)
    -- the writer meets the dead master, then the cluster sees it fail (with
    -- cluster-require-full-coverage, every node then refuses every key)
    read_until(w, lines, function(line) return line:find("^F ") ~= nil end)
    cluster:wait_state("fail")
    read_until(w, lines, function(line) return line:find("^F ") ~= nil end)
    cluster:failover(replica)
    h.write(f.phase, "promoted\n")
    local after = 0
    read_until(w, lines, function(line)
      if line:find("^[AR] %S+ %d+ 1$") then after = after + 1 end
      return after >= 50
    end)
    h.write(f.finished, "finished\n")
    local out = "\n" .. table.concat(lines, "\n") .. "\n" .. finish(w)
    assert.is_nil(out:find("\nFAIL", 1, true), out:sub(-3000))
    local appends, failures, repeats = out:match("\nDONE (%d+) (%d+) (%d+)\n")
    assert.truthy(appends, out:sub(-3000))
    assert.is_true(tonumber(failures) > 0 and tonumber(repeats) <= tonumber(failures), out:sub(-3000))
    -- no call begun once the replica was promoted failed
    for line in out:gmatch("\nF (%S+ %d+ 1 [^\n]*)") do error("a call failed after the promotion: " .. line) end
    local acked, promoted = {}, {}
    for id, i, phase in out:gmatch("\n[AR] (%S+) (%d+) ([01])") do
      acked[id .. " " .. i] = true
      if phase == "1" then promoted[#promoted + 1] = { id, tonumber(i) } end
    end
    -- each session whole: its messages in order, each once, each acknowledged
    local present = {}
    local listed = mgr:list{ tag = "kill" }
    assert.are.equal(n, #listed)
    local meta_of = {}
    for _, m in ipairs(listed) do meta_of[m.id] = m end
    for _, id in ipairs(ids) do
      local s = mgr:resume(id)
      assert.are.same(s.metadata, meta_of[id])
      assert.are.equal(#s.messages, s.metadata.turn_count, id)
      assert.are.equal(#s.messages + 1, s.metadata.version, id)
      local last = 0
      for k, m in ipairs(s.messages) do
        assert.is_true(m.i > last, id .. ": message " .. k .. " is " .. m.i .. " after " .. last)
        assert.is_true(acked[id .. " " .. m.i], id .. ": message " .. m.i .. " was never acknowledged")
        present[id .. " " .. m.i] = true
        last = m.i
      end
    end
    for _, a in ipairs(kept) do
      assert.is_true(present[a[1] .. " " .. a[2]], "append " .. a[2] .. " to " .. a[1]
        .. ", acknowledged and replicated before the kill, is lost")
    end
    for _, a in ipairs(promoted) do
      assert.is_true(present[a[1] .. " " .. a[2]], "append " .. a[2] .. " to " .. a[1]
        .. ", acknowledged after the promotion, is lost")
    end
    assert.are.equal("master", (replica:cli("ROLE")):match("^[^\n]*"))
    assert.is_false(victim.running)
    mgr:close()
  end)
end)
