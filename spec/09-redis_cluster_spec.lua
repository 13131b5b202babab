-- The helper that runs a real Redis Cluster (3 masters, 3 replicas) for the
-- cluster specs: it starts one whose nodes agree, finds the owner of a slot,
-- moves a slot key by key while the keys stay readable, and promotes a
-- replica after its master is killed.
local rc = require("helpers.redis_cluster")
local rs = require("helpers.redis_server")

-- The keys "{tag}k1" .. "{tag}k<n>", all in one slot, set to "v<i>" through
-- redirections.
local function fill(cluster, tag, n)
  for i = 1, n do assert.equals("OK", cluster:cli("SET", "{" .. tag .. "}k" .. i, "v" .. i)) end
end

-- The first line of a reply (redis-cli --raw ends an error reply with a blank line).
local function first(reply)
  return (reply:match("^[^\n]*"))
end

-- Whether every slot is owned by exactly one entry of a CLUSTER NODES view.
local function covered(view)
  local owners = {}
  for _, e in ipairs(view) do
    for _, r in ipairs(e.slots) do
      for s = r[1], r[2] do owners[s] = (owners[s] or 0) + 1 end
    end
  end
  for s = 0, 16383 do
    if owners[s] ~= 1 then return false, "slot " .. s .. " has " .. tostring(owners[s] or 0) .. " owners" end
  end
  return true
end

describe("helpers.redis_cluster", function()
  local cluster

  setup(function()
    cluster = rc.start()
  end)

  teardown(function()
    if cluster then cluster:stop() end
  end)

  it("starts 3 masters with a replica each, whose nodes all agree", function()
    local masters, replicas = cluster:masters(), cluster:replicas()
    assert.equals(3, #masters)
    assert.equals(3, #replicas)
    assert.equals(6, #cluster:seeds())
    local replicated = {}
    for _, r in ipairs(replicas) do
      local m = cluster:master_of(r)
      assert.is_nil(replicated[m], "two replicas of " .. m.port)
      replicated[m] = true
      assert.equals("slave", first(r:cli("ROLE")))
    end
    for _, m in ipairs(masters) do
      assert.is_true(replicated[m], "master " .. m.port .. " has no replica")
      assert.equals(m, cluster:master_of(cluster:replica_of(m)))
      assert.is_true(m.port + 10000 <= 65535)
      assert.equals(40, #m.id)
    end
    assert.is_nil(cluster:unready())
    for _, node in ipairs(cluster.nodes) do
      assert.truthy((node:cli("CLUSTER", "INFO")):find("cluster_state:ok", 1, true))
      assert.is_true(covered(cluster:view(node)))
    end
  end)

  it("finds the slot of a key and the master that owns it", function()
    local slot = cluster:keyslot("{s1}k")
    assert.equals(cluster:keyslot("{s1}other"), slot)
    local owner = cluster:node_of_slot(slot)
    assert.equals("OK", (owner:cli("SET", "{s1}direct", "x")))
    for _, m in ipairs(cluster:masters()) do
      if m ~= owner then
        assert.equals("MOVED " .. slot .. " " .. owner.host .. ":" .. owner.port, first(m:cli("GET", "{s1}direct")))
      end
    end
    fill(cluster, "s1", 7)
    assert.equals(8, cluster:count_keys(owner, "{s1}*"))
    assert.same({ "{s1}k1", "{s1}k2", "{s1}k3" }, cluster:keys(owner, "{s1}k[1-3]"))
    assert.equals(0, cluster:count_keys(owner, "{nothing}*"))
    assert.is_true(cluster:count_keys(owner) >= 8)
  end)

  it("moves a slot in batches, its keys readable through ASK on the way, and every node learns it", function()
    fill(cluster, "mv", 25)
    local slot = cluster:keyslot("{mv}k")
    local from = cluster:node_of_slot(slot)
    local to = cluster:masters()[1] == from and cluster:masters()[2] or cluster:masters()[1]
    local steps, asked = {}, 0
    local moved = cluster:migrate_slot(slot, from, to, { batch = 4, between = function(n)
      steps[#steps + 1] = n
      -- midway: a key already moved is served by the target after ASKING
      -- only, one not yet moved still by the source
      if n < 25 then
        local gone = cluster:keys(to, "{mv}*")[1]
        assert.equals("ASK " .. slot .. " " .. to.host .. ":" .. to.port, first(from:cli("GET", gone)))
        assert.equals("MOVED " .. slot .. " " .. from.host .. ":" .. from.port, first(to:cli("GET", gone)))
        local out = rs.run("printf 'ASKING\\nGET %s\\n' " .. rs.quote(gone) .. " | " .. to:cli_prefix() .. " --raw")
        assert.equals("OK\nv" .. gone:match("k(%d+)$") .. "\n", out)
        local left = cluster:keys(from, "{mv}*")[1]
        assert.equals("v" .. left:match("k(%d+)$"), (from:cli("GET", left)))
        asked = asked + 1
      end
    end })
    assert.equals(25, moved)
    assert.same({ 4, 8, 12, 16, 20, 24, 25 }, steps)
    assert.equals(6, asked)
    assert.is_nil(cluster:unready())
    for _, node in ipairs(cluster:running()) do
      assert.equals(to.id, (function()
        for _, e in ipairs(cluster:view(node)) do
          for _, r in ipairs(e.slots) do if slot >= r[1] and slot <= r[2] then return e.id end end
        end
      end)(), "the owner of slot " .. slot .. " as " .. node.port .. " sees it")
    end
    assert.equals(to, cluster:node_of_slot(slot))
    assert.equals(25, cluster:count_keys(to, "{mv}*"))
    assert.equals(0, cluster:count_keys(from, "{mv}*"))
    for i = 1, 25 do assert.equals("v" .. i, cluster:cli("GET", "{mv}k" .. i)) end
  end)

  it("moves slots with redis-cli --cluster reshard", function()
    local from, to = cluster:masters()[1], cluster:masters()[3]
    local function owned(node)
      local n = 0
      for _, e in ipairs(cluster:view()) do
        if e.id == node.id then
          for _, r in ipairs(e.slots) do n = n + r[2] - r[1] + 1 end
        end
      end
      return n
    end
    local a, b = owned(from), owned(to)
    cluster:reshard(from, to, 10)
    assert.equals(a - 10, owned(from))
    assert.equals(b + 10, owned(to))
    assert.is_true(covered(cluster:view()))
  end)

  it("promotes a replica after its master is killed, with what it had replicated", function()
    fill(cluster, "kf", 10)
    local victim = cluster:node_of_slot(cluster:keyslot("{kf}k"))
    local replica = cluster:replica_of(victim)
    -- the replica holds what the master had once its offset caught up
    local offset = tonumber((victim:cli("INFO", "replication")):match("master_repl_offset:(%d+)"))
    local deadline = os.time() + 30
    while tonumber((replica:cli("INFO", "replication")):match("slave_repl_offset:(%d+)")) < offset do
      assert.is_true(os.time() < deadline, "the replica did not catch up")
      os.execute("sleep 0.05")
    end
    cluster:kill(victim)
    assert.is_false(victim.running)
    assert.truthy((cluster:unready() or ""):find("on a stopped node", 1, true))
    local _, code = victim:cli("PING")
    assert.are_not.equal(0, code)
    cluster:failover(replica)
    assert.equals("master", first(replica:cli("ROLE")))
    assert.equals(replica, cluster:node_of_slot(cluster:keyslot("{kf}k")))
    assert.equals(3, #cluster:masters())
    assert.equals(2, #cluster:replicas())
    assert.equals(5, #cluster:seeds())
    for i = 1, 10 do assert.equals("v" .. i, (replica:cli("GET", "{kf}k" .. i))) end
    assert.equals("OK", cluster:cli("SET", "{kf}after", "x"))
    assert.is_nil(cluster:unready())
  end)

  it("gives a redis+cluster URI of the running nodes", function()
    local uri = cluster:uri{ prefix = "p:x", timeout_ms = 30000 }
    assert.equals("redis+cluster://" .. table.concat(cluster:seeds(), ",") .. "/?prefix=p%3Ax&timeout_ms=30000", uri)
    assert.equals("redis+cluster://" .. table.concat(cluster:seeds(), ",") .. "/", cluster:uri())
  end)

  it("raises, saying why, when its nodes cannot start", function()
    local ok, err = pcall(rc.start, { config = { "no-such-directive yes" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no-such-directive", 1, true), tostring(err))
  end)
end)
