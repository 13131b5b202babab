-- The Redis store on a real Redis Cluster (helpers.redis_cluster: 3 masters,
-- 3 replicas, one cluster for this file): the contract (the conformance
-- suite), sessions spread over every master in 16 index shards, list and
-- search giving what a memory store gives for the same writes, two processes
-- writing one session at once, redis+cluster:// URIs, passwords, bad options
-- and an unreachable cluster.
local agentsession = require("agentsession")
local conformance = require("agentsession.conformance")
local rc = require("helpers.redis_cluster")
local rs = require("helpers.redis_server")
local managers = require("helpers.managers")
local run_pair = require("helpers.pair").run

local track, close_all = managers.track, managers.close_all
local session, is_error = agentsession.session, agentsession.is_error

local TIMEOUT = 30000 -- ms: timeout_ms of every manager on the cluster

-- An integer: math.type says so where Lua has integers, elsewhere an integral number.
local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

-- The shards (CRC16 mod 16, from the node's CLUSTER KEYSLOT of each id as a
-- hash tag) of the ids, asked with one redis-cli.
local function shards_of(node, ids)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  for _, id in ipairs(ids) do f:write("CLUSTER KEYSLOT {", id, "}\n") end
  f:close()
  local out, code = rs.run("redis-cli -h " .. node.host .. " -p " .. node.port .. " < " .. rs.quote(path))
  os.remove(path)
  assert(code == 0, out)
  local shards = {}
  for slot in out:gmatch("(%d+)") do shards[#shards + 1] = tonumber(slot) % 16 end
  assert(#shards == #ids, out)
  return shards
end

-- The error fn raises; fails when it raises none or one of another kind.
local function raises(kind, fn, context)
  local ok, err = pcall(fn)
  assert.is_false(ok, (context or "") .. ": no error")
  assert.is_true(is_error(err, kind), (context or "") .. ": " .. tostring(err))
  return err
end

describe("redis cluster", function()
  local cluster
  local prefixes = 0

  -- A manager on a prefix of its own (so it starts empty); its prefix.
  local function new(opts)
    prefixes = prefixes + 1
    local o = { cluster = cluster:seeds(), prefix = "c" .. prefixes .. ":", timeout_ms = TIMEOUT }
    for k, v in pairs(opts or {}) do o[k] = v end
    return track(agentsession.redis(o)), o.prefix
  end

  setup(function()
    cluster = rc.start()
  end)

  teardown(function()
    if cluster then cluster:stop() end
  end)

  after_each(close_all)

  it("passes the conformance suite", function()
    local passed, failed, failures = conformance.run(function()
      prefixes = prefixes + 1
      return agentsession.redis{ cluster = cluster:seeds(), prefix = "k" .. prefixes .. ":", timeout_ms = TIMEOUT }
    end)
    assert.are.equal(0, failed, "failed " .. failed .. " check(s):\n" .. table.concat(failures, "\n"))
    assert.are.equal(#conformance.checks, passed)
  end)

  it("spreads sessions over every master, in 16 shards whose slots fall in the 16 sixteenths", function()
    local mgr, prefix = new()
    local n = 300
    for i = 1, n do mgr:save(session{ id = "spread-" .. i, tags = { "t" .. i % 4 }, messages = { "word" .. i } }) end
    local esc = prefix:gsub("%p", "%%%0")
    local metas, shard_slots, total_metas = {}, {}, 0
    for _, master in ipairs(cluster:masters()) do
      local shards = 0
      metas[master] = 0
      for _, key in ipairs(cluster:keys(master, prefix .. "*")) do
        -- every key carries its shard's hash tag, first after the prefix
        local j, rest = key:match("^" .. esc .. "{s(%d+)}(.*)$")
        assert.truthy(j, "a key without a shard's hash tag: " .. key)
        if rest == "all" then
          shards = shards + 1
          shard_slots[#shard_slots + 1] = cluster:keyslot(key)
          assert.equals(master, cluster:node_of_slot(shard_slots[#shard_slots]))
        elseif rest:match("^{spread%-%d+}:meta$") then
          metas[master] = metas[master] + 1
        end
      end
      total_metas = total_metas + metas[master]
      -- after a default `--cluster create` each of 3 masters holds 4 or 5
      -- of the 16 sixteenths whole and a part of one or two more
      assert.is_true(shards >= 4, "master " .. master.port .. " holds " .. shards .. " shards")
      assert.is_true(metas[master] > n / 6, "master " .. master.port .. " holds " .. metas[master] .. " sessions")
    end
    assert.equals(n, total_metas)
    assert.equals(16, #shard_slots)
    table.sort(shard_slots)
    for k, slot in ipairs(shard_slots) do
      assert.is_true(slot >= (k - 1) * 1024 and slot < k * 1024, "shard " .. k .. " has slot " .. slot)
    end
    assert.equals(n, #mgr:list())
    assert.equals(75, #mgr:list{ tag = "t1" })
    assert.equals(1, #mgr:search("word17"))
  end)

  describe("list and search", function()
    local cl, mem
    local ids = {} -- the id of a session on the cluster -> its id in memory (they differ for forks)

    -- The same writes on both managers.
    setup(function()
      cl = agentsession.redis{ cluster = cluster:seeds(), prefix = "same:", timeout_ms = TIMEOUT }
      mem = agentsession.memory()
      local function both(fn)
        local a, b = fn(cl), fn(mem)
        if type(a) == "table" and a.id then ids[a.id] = b.id end
        return a, b
      end
      local words = { "alpha", "beta", "gamma", "delta", "omega" }
      for i = 1, 60 do
        local tags = {}
        if i % 2 == 0 then tags[#tags + 1] = "red" end
        if i % 3 == 0 then tags[#tags + 1] = "green" end
        if i % 5 == 0 then tags[#tags + 1] = "blue" end
        local msgs = {
          { role = "user", content = words[i % 5 + 1] .. " text " .. i },
          { role = "assistant", content = words[i * 7 % 5 + 1] .. " " .. words[i * 3 % 5 + 1] },
        }
        both(function(m)
          return m:save(session{ id = "l" .. i, name = "n" .. i, agent_name = "a" .. i % 3, tags = tags,
            messages = msgs })
        end)
      end
      for i = 1, 60, 7 do both(function(m) return m:append("l" .. i, { { content = "gamma delta more" } }) end) end
      for i = 3, 60, 11 do both(function(m) return m:tag("l" .. i, "blue") end) end
      for i = 2, 60, 13 do both(function(m) return m:untag("l" .. i, "red") end) end
      for i = 5, 60, 17 do both(function(m) return m:rename("l" .. i, "renamed omega") end) end
      for _, i in ipairs({ 4, 9, 4 }) do both(function(m) return m:fork("l" .. i) end) end
      both(function(m) return m:fork("l9", "fork beta", { at = 1 }) end)
      for _, i in ipairs({ 10, 20, 30 }) do both(function(m) return m:delete("l" .. i) end) end
      -- sessions of one updated_at: ties, ordered by write
      for _, i in ipairs({ 3, 1, 6, 2, 5, 4, 1 }) do
        local doc = agentsession.json.encode{
          metadata = { id = "tie" .. i, name = "tie", tags = { "tie" }, agent_name = "a1", created_at = 1700000000000,
            updated_at = 1700000000000, turn_count = 1, total_tokens = 0 },
          messages = { { content = "alpha tie " .. i } }, state = {},
        }
        both(function(m) return m:import(doc, { replace = true }) end)
      end
      -- last, 30 sessions of one shard: a page of the list all from one shard, most of
      -- which the shard gives as score and member, read after the merge
      local candidates = {}
      for i = 1, 800 do candidates[i] = "skew" .. i end
      local shard, skew = shards_of(cluster:masters()[1], candidates), {}
      for i, id in ipairs(candidates) do
        if shard[i] == shard[1] and #skew < 30 then skew[#skew + 1] = id end
      end
      assert.are.equal(30, #skew)
      for k, id in ipairs(skew) do
        both(function(m)
          return m:save(session{ id = id, agent_name = "a" .. k % 2, tags = { "skew" },
            messages = { { content = "skew " .. k } } })
        end)
        ids[id] = id
      end
      for i = 1, 60 do ids["l" .. i] = "l" .. i end
      for i = 1, 6 do ids["tie" .. i] = "tie" .. i end
    end)

    teardown(function()
      if cl then cl:close() end
    end)

    local filters = {
      {}, { limit = 5 }, { limit = 7, offset = 3 }, { offset = 50 }, { offset = 1000 }, { limit = 0 },
      { tag = "red" }, { tag = "red", limit = 4, offset = 2 }, { tags = { "red", "blue" } },
      { agent_name = "a1" }, { agent_name = "a1", tag = "red", limit = 3, offset = 1 }, { parent_id = "l4" },
      { parent_id = "l9", limit = 1, offset = 1 }, { tag = "tie" }, { tag = "tie", limit = 2, offset = 3 },
      { tag = "nothing" }, { limit = 20 }, { limit = 20, offset = 7 }, { limit = 40 },
      { tag = "skew", limit = 25 }, { tag = "skew", agent_name = "a1", limit = 12, offset = 2 },
    }
    for _, f in ipairs(filters) do
      it("list " .. agentsession.json.encode(f) .. " gives the sessions a memory store gives, in its order", function()
        local got, want = {}, {}
        for i, m in ipairs(cl:list(f)) do got[i] = ids[m.id] or ("unknown " .. m.id) end
        for i, m in ipairs(mem:list(f)) do want[i] = m.id end
        assert.are.same(want, got)
        if not (f.limit == 0 or f.offset == 1000 or f.tag == "nothing") then assert.is_true(#want > 0) end
      end)
    end

    local searches = {
      { "alpha" }, { "alpha", { limit = 100 } }, { "gamma", { limit = 5, offset = 2 } }, { "gamma", { tag = "red" } },
      { '"gamma delta"' }, { "omega", { agent_name = "a1" } }, { "blue" }, { "renamed" },
      { "beta", { parent_id = "l9" } }, { "tie", { limit = 3, offset = 2 } }, { "alpha", { offset = 500 } },
      { "text 17" }, { "nothing" },
    }
    for _, s in ipairs(searches) do
      local query, opts = s[1], s[2]
      it("search " .. query .. " " .. agentsession.json.encode(opts or {})
        .. " finds what a memory store finds, in its order", function()
        local got, want = {}, {}
        for i, hit in ipairs(cl:search(query, opts)) do
          got[i] = { id = ids[hit.metadata.id] or ("unknown " .. hit.metadata.id), index = hit.index,
            snippet = hit.snippet }
        end
        for i, hit in ipairs(mem:search(query, opts)) do
          want[i] = { id = hit.metadata.id, index = hit.index, snippet = hit.snippet }
        end
        assert.are.same(want, got)
        if query ~= "nothing" and not (opts and opts.offset == 500) then assert.is_true(#want > 0) end
      end)
    end
  end)

  it("two processes, each opened through another master, appending to one session and tagging it at once "
    .. "lose nothing and keep each one's order", function()
    local mgr, prefix = new()
    local masters = cluster:masters()
    local uri = {}
    for i = 1, 2 do
      uri[i] = cluster:uri({ prefix = prefix, timeout_ms = TIMEOUT }, { masters[i].host .. ":" .. masters[i].port })
    end
    local n, switches, attempts = 100, 0, 0
    repeat
      attempts = attempts + 1
      local id = "both-" .. attempts
      mgr:save(session{ id = id })
      local out_a, out_b = run_pair(uri, { "tagappender", id, "a", n }, { "tagappender", id, "b", n })
      assert.truthy(out_a:find("DONE " .. n, 1, true), out_a)
      assert.truthy(out_b:find("DONE " .. n, 1, true), out_b)
      local r = mgr:resume(id)
      assert.are.equal(2 * n, #r.messages)
      assert.are.equal(2 * n, r.metadata.turn_count)
      assert.are.equal(2 * n, r.metadata.total_tokens)
      assert.are.equal(4 * n + 1, r.metadata.version)
      local next_of = { a = 1, b = 1 }
      for pos, m in ipairs(r.messages) do
        assert.are.equal(next_of[m.who], m.i, "message " .. pos .. " of " .. tostring(m.who))
        next_of[m.who] = next_of[m.who] + 1
        if pos > 1 and m.who ~= r.messages[pos - 1].who then switches = switches + 1 end
      end
      assert.are.same({ a = n + 1, b = n + 1 }, next_of)
      assert.are.equal(2 * n, #r.metadata.tags)
      local last = { a = 0, b = 0 }
      for _, t in ipairs(r.metadata.tags) do
        local who, i = t:match("^(%a)%-(%d+)$")
        assert.are.equal(last[who] + 1, tonumber(i), "tag " .. t)
        last[who] = tonumber(i)
      end
      assert.are.equal(attempts, #mgr:list())
      assert.are.equal(1, #mgr:list{ tags = { "a-" .. n, "b-1" } })
    until switches > 1 or attempts == 5
    -- the writes did run at once: the two processes' messages interleave
    assert.is_true(switches > 1, "in " .. attempts .. " runs, one process always appended all its messages first")
  end)

  describe("redis+cluster:// URIs", function()
    it("open the store the options open, with a prefix percent-decoded", function()
      local prefix = "uri x:"
      local by_uri = track(agentsession.open(cluster:uri{ prefix = prefix, timeout_ms = TIMEOUT }))
      by_uri:save(session{ id = "u1", messages = { "hello" } })
      local by_opts = track(agentsession.redis{ cluster = cluster:seeds(), prefix = prefix, timeout_ms = TIMEOUT })
      assert.are.equal("hello", by_opts:resume("u1").messages[1])
      local keys = 0
      for _, master in ipairs(cluster:masters()) do keys = keys + cluster:count_keys(master, prefix .. "*") end
      assert.is_true(keys > 0, "no key begins with " .. prefix)
      local st = by_uri:stats()
      assert.are.equal("redis", st.kind)
      assert.truthy(st.location:find("^redis cluster at "), st.location)
    end)

    it("need one node of the cluster, a replica too, and take options beside the URI", function()
      local replica = cluster:replicas()[1]
      local one = "redis+cluster://" .. replica.host .. ":" .. replica.port .. "/?prefix=one%3A"
      local mgr = track(agentsession.open(one, { timeout_ms = TIMEOUT }))
      for i = 1, 20 do mgr:save(session{ id = "o" .. i }) end
      assert.are.equal(20, #mgr:list())
      local other = track(agentsession.open("redis+cluster://" .. table.concat(cluster:seeds(), ",")
        .. "/?prefix=one%3A&timeout_ms=" .. TIMEOUT))
      assert.are.equal(20, #other:list())
    end)

    it("without a node, or with a node that is not host:port, are invalid", function()
      local seed = cluster:seeds()[1]
      track(agentsession.open("redis+cluster://" .. seed .. "/")) -- one good node is enough
      for _, uri in ipairs({ "redis+cluster://", "redis+cluster:///?prefix=p", "redis+cluster://" .. seed .. ",/",
        "redis+cluster://127.0.0.1:notaport/", "redis+cluster://" .. seed .. ",127.0.0.1:99999/" }) do
        raises("invalid", function() return agentsession.open(uri) end, uri)
      end
    end)
  end)

  describe("options", function()
    it("with cluster and host, port or db are invalid", function()
      local seeds = cluster:seeds()
      track(agentsession.redis{ cluster = seeds, prefix = "bad:" }) -- without them, valid
      for _, extra in ipairs({ { host = "127.0.0.1" }, { port = cluster.nodes[1].port }, { db = 1 } }) do
        local o = { cluster = seeds, prefix = "bad:" }
        for k, v in pairs(extra) do o[k] = v end
        local key = next(extra)
        raises("invalid", function() return agentsession.redis(o) end, "cluster with " .. key)
      end
    end)

    it("with an empty cluster list, or a node that is not host:port, are invalid", function()
      local seed = cluster:seeds()[1]
      track(agentsession.redis{ cluster = { seed } }) -- one good node is enough
      local bad = { {}, { "127.0.0.1" }, { "127.0.0.1:" }, { ":" .. cluster.nodes[1].port }, { "127.0.0.1:0" },
        { "127.0.0.1:65536" }, { "127.0.0.1:7000x" }, { seed, "localhost" }, { seed, 7000 }, { seed, false } }
      for _, list in ipairs(bad) do
        local err = raises("invalid", function() return agentsession.redis{ cluster = list } end,
          agentsession.json.encode(list))
        assert.truthy(err.message:find("cluster", 1, true), err.message)
      end
    end)
  end)

  it("raises unavailable for a cluster none of whose nodes answers, and uses the first that does", function()
    local gone = rs.start()
    gone:stop()
    local dead = gone.host .. ":" .. gone.port
    raises("unavailable", function()
      return agentsession.redis{ cluster = { dead }, timeout_ms = 1000 }
    end, "redis{ cluster = { " .. dead .. " } }")
    raises("unavailable", function()
      return agentsession.open("redis+cluster://" .. dead .. "/?timeout_ms=1000")
    end, "a URI of " .. dead)
    local seeds = cluster:seeds()
    table.insert(seeds, 1, dead)
    local mgr = track(agentsession.redis{ cluster = seeds, prefix = "first:", timeout_ms = TIMEOUT })
    mgr:save(session{ id = "s" })
    assert.are.equal(1, #mgr:list())
  end)

  it("serves every operation of the C library (build/capi_test)", function()
    local out, code = rs.run("build/capi_test redis-cluster capi-cluster: "
      .. table.concat(cluster:seeds(), " ") .. " 2>&1")
    assert.are.equal(0, code, out)
    local checks = out:match("capi_test: (%d+) checks, 0 failed")
    assert.truthy(checks, out)
    assert.is_true(tonumber(checks) > 100, out)
  end)

  it("counts its work in stats", function()
    local mgr = new()
    for i = 1, 40 do mgr:save(session{ id = "st" .. i }) end
    assert.are.equal(40, #mgr:list())
    local st = mgr:stats()
    assert.are.equal("redis", st.kind)
    assert.truthy(st.location:find("^redis cluster at "), st.location)
    for _, k in ipairs({ "round_trips", "connects", "retries", "redirections", "refreshes" }) do
      assert.is_true(is_integer(st[k]) and st[k] >= 0, k .. " = " .. tostring(st[k]))
    end
    -- the sessions are on every master, and list reads them all
    assert.is_true(st.connects >= #cluster:masters(), "connects = " .. st.connects)
    assert.is_true(st.round_trips >= 40 + 1)
  end)

  it("authenticates with a password, or a username and password, on every node", function()
    local nodes = cluster:running()
    finally(function()
      for _, node in ipairs(nodes) do
        node:cli("ACL", "DELUSER", "agent")
        node:cli("CONFIG", "SET", "requirepass", "")
        node.password = nil
        node:cli("CONFIG", "SET", "masterauth", "")
      end
    end)
    for _, node in ipairs(nodes) do
      assert.are.equal("OK", (node:cli("CONFIG", "SET", "masterauth", "pw:1")))
      assert.are.equal("OK", (node:cli("CONFIG", "SET", "requirepass", "pw:1")))
      node.password = "pw:1"
      assert.are.equal("OK", (node:cli("ACL", "SETUSER", "agent", "on", ">secret", "~*", "&*", "+@all")))
    end
    local seeds = cluster:seeds()
    local mgr = track(agentsession.redis{ cluster = seeds, password = "pw:1", prefix = "auth:", timeout_ms = TIMEOUT })
    for i = 1, 30 do mgr:save(session{ id = "a" .. i }) end
    assert.are.equal(30, #mgr:list())
    local user = track(agentsession.redis{ cluster = seeds, username = "agent", password = "secret", prefix = "auth:",
      timeout_ms = TIMEOUT })
    assert.are.equal(30, #user:list())
    local by_uri = track(agentsession.open("redis+cluster://:pw%3A1@" .. table.concat(seeds, ",")
      .. "/?prefix=auth%3A&timeout_ms=" .. TIMEOUT))
    assert.are.equal(30, #by_uri:list())
    for _, o in ipairs({ { password = "wrong" }, { username = "agent", password = "pw:1" }, {} }) do
      o.cluster, o.prefix, o.timeout_ms = seeds, "auth:", TIMEOUT
      local err = raises("invalid", function() return agentsession.redis(o) end, "password " .. tostring(o.password))
      assert.truthy(err.message:find("password", 1, true), err.message)
    end
  end)
end)
