-- A real Redis Cluster for the specs: redis-server processes on free loopback
-- ports (helpers.redis_server: private directories, stopped and removed when
-- the Lua state closes), joined with `redis-cli --cluster create`.
--
--   local rc = require("helpers.redis_cluster")
--   local cluster = rc.start()            -- 3 masters, 1 replica each; raises if it cannot
--   cluster:seeds()                       --> { "127.0.0.1:PORT", ... }
--   local m = cluster:node_of_slot(cluster:keyslot("p:{s1}all"))
--   cluster:migrate_slot(slot, m, other)  -- IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE
--   cluster:kill(m); cluster:failover(cluster:replica_of(m))
--
-- A node is a helpers.redis_server server (node:cli(...), node.host,
-- node.port) with its cluster node id in node.id; where a method takes a
-- node, "host:port" or the port number will do too.
--
-- The nodes run with cluster-node-timeout 2000 and, unless opts.auto_failover,
-- cluster-replica-no-failover yes: a replica is promoted only when a spec
-- asks (failover), so a killed master stays down until then. Redis's default
-- cluster-require-full-coverage yes holds: while a dead master's slots are
-- not served, every node refuses every key (CLUSTERDOWN) once the failure is
-- detected.
local rs = require("helpers.redis_server")
local system = require("system")

local M = {}

local NODE_TIMEOUT = 2000 -- ms: cluster-node-timeout
local READY_TIMEOUT = 60 -- seconds to wait for the nodes to agree
local POLL = 0.1 -- seconds between polls

local quote, run = rs.quote, rs.run

local function now() return system.monotime() end
local function sleep(s) system.sleep(s) end

local Cluster = {}
Cluster.__index = Cluster

-- How the error replies this helper may get begin.
local ERRORS = { "ERR", "MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN", "IOERR", "NOAUTH", "WRONGPASS", "NOPERM",
  "LOADING", "BUSY", "READONLY", "CROSSSLOT", "WRONGTYPE", "MASTERDOWN" }

--- Runs the command on `node`; returns the reply as redis-cli --raw prints
--- it, raising when redis-cli fails or the reply is an error (redis-cli exits
--- 0 on those).
local function must(node, ...)
  local out, code, err = node:cli(...)
  local what = table.concat({ ... }, " ")
  if code ~= 0 then
    error("redis_cluster: " .. what .. " on " .. node.host .. ":" .. node.port .. " failed (redis-cli status "
      .. code .. "): " .. err .. out, 3)
  end
  local first = out:match("^[^\n]*")
  for _, prefix in ipairs(ERRORS) do
    if first:sub(1, #prefix) == prefix then
      error("redis_cluster: " .. what .. " on " .. node.host .. ":" .. node.port .. " replied " .. first, 3)
    end
  end
  return out
end

--- The key/value lines of an INFO or CLUSTER INFO reply, as a table.
local function fields(text)
  local t = {}
  for k, v in text:gmatch("([%w_]+):([^\r\n]*)") do t[k] = v end
  return t
end

--- CLUSTER NODES parsed: an array of entries { id, host, port, flags (a set),
--- master (an id or nil), link, slots (an array of { first, last }), open
--- (the "[slot->-id]" and "[slot-<-id]" entries, as text) }.
local function parse_nodes(text)
  local entries = {}
  for line in text:gmatch("[^\r\n]+") do
    local words = {}
    for w in line:gmatch("%S+") do words[#words + 1] = w end
    if #words >= 8 then
      local host, port = words[2]:match("^(.-):(%d+)@")
      local e = { id = words[1], host = host, port = tonumber(port), flags = {},
        master = words[4] ~= "-" and words[4] or nil, link = words[8], slots = {}, open = {} }
      for f in words[3]:gmatch("[^,]+") do e.flags[f] = true end
      for i = 9, #words do
        local w = words[i]
        if w:sub(1, 1) == "[" then
          e.open[#e.open + 1] = w
        else
          local a, b = w:match("^(%d+)%-(%d+)$")
          if a then
            e.slots[#e.slots + 1] = { tonumber(a), tonumber(b) }
          else
            e.slots[#e.slots + 1] = { tonumber(w), tonumber(w) }
          end
        end
      end
      entries[#entries + 1] = e
    end
  end
  return entries
end
M.parse_nodes = parse_nodes

--- The node object for `node`: a node, "host:port", or a port number.
function Cluster:node(node)
  if type(node) == "table" then return node end
  local port = tonumber(type(node) == "string" and node:match(":(%d+)$") or node)
  for _, n in ipairs(self.nodes) do
    if n.port == port then return n end
  end
  error("redis_cluster: no node " .. tostring(node), 2)
end

function Cluster:by_id(id)
  for _, n in ipairs(self.nodes) do
    if n.id == id then return n end
  end
  return nil
end

--- The nodes still running, in the order they were started.
function Cluster:running()
  local r = {}
  for _, n in ipairs(self.nodes) do
    if n.running then r[#r + 1] = n end
  end
  return r
end

--- A running node's view of the cluster (CLUSTER NODES parsed); the first
--- running node's unless `node` is given.
function Cluster:view(node)
  node = node and self:node(node) or self:running()[1]
  if not node then error("redis_cluster: no node is running", 2) end
  return parse_nodes(must(node, "CLUSTER", "NODES"))
end

--- The running masters, by their first slot (masters without slots last).
function Cluster:masters()
  local list = {}
  for _, e in ipairs(self:view()) do
    local n = self:by_id(e.id)
    if n and n.running and e.flags.master and not e.flags.fail then
      list[#list + 1] = { node = n, first = e.slots[1] and e.slots[1][1] or math.huge }
    end
  end
  table.sort(list, function(a, b)
    if a.first ~= b.first then return a.first < b.first end
    return a.node.port < b.node.port
  end)
  local r = {}
  for i, x in ipairs(list) do r[i] = x.node end
  return r
end

--- The running replicas, by port.
function Cluster:replicas()
  local r = {}
  for _, e in ipairs(self:view()) do
    local n = self:by_id(e.id)
    if n and n.running and e.flags.slave then r[#r + 1] = n end
  end
  table.sort(r, function(a, b) return a.port < b.port end)
  return r
end

--- The master a replica replicates (a node, running or not).
function Cluster:master_of(replica)
  replica = self:node(replica)
  for _, e in ipairs(self:view()) do
    if e.id == replica.id then
      if not e.master then error("redis_cluster: " .. replica.port .. " is not a replica", 2) end
      return self:by_id(e.master)
    end
  end
  error("redis_cluster: node " .. replica.port .. " is not in the cluster", 2)
end

--- A running replica of `master`, or nil.
function Cluster:replica_of(master)
  master = self:node(master)
  for _, e in ipairs(self:view()) do
    local n = self:by_id(e.id)
    if e.master == master.id and n and n.running then return n end
  end
  return nil
end

--- The master that owns `slot`, as the first running node sees it.
function Cluster:node_of_slot(slot)
  for _, e in ipairs(self:view()) do
    for _, r in ipairs(e.slots) do
      if slot >= r[1] and slot <= r[2] then return self:by_id(e.id) end
    end
  end
  error("redis_cluster: no node owns slot " .. tostring(slot), 2)
end

--- The slot of `key` (CLUSTER KEYSLOT on a running node).
function Cluster:keyslot(key)
  local node = self:running()[1]
  return tonumber((must(node, "CLUSTER", "KEYSLOT", key)))
end

--- The keys of `node` matching `pattern` (default "*"), sorted (SCAN). Keys
--- must not contain newlines.
function Cluster:keys(node, pattern)
  node = self:node(node)
  local out, code = run(node:cli_prefix() .. " --scan --pattern " .. quote(pattern or "*") .. " </dev/null 2>&1")
  if code ~= 0 then error("redis_cluster: SCAN on " .. node.port .. " failed: " .. out, 2) end
  local keys = {}
  for line in out:gmatch("[^\n]+") do keys[#keys + 1] = line end
  table.sort(keys)
  return keys
end

--- How many keys `node` holds (DBSIZE), or how many match `pattern` (SCAN).
function Cluster:count_keys(node, pattern)
  node = self:node(node)
  if pattern == nil then return tonumber((must(node, "DBSIZE"))) end
  return #self:keys(node, pattern)
end

--- Runs a command with `redis-cli -c` (following MOVED and ASK) from the
--- first running node; returns its reply as in node:cli, raising as must.
function Cluster:cli(...)
  local node = self:running()[1]
  local parts = { "redis-cli -c -h " .. node.host .. " -p " .. node.port, "--raw" }
  for i = 1, select("#", ...) do parts[#parts + 1] = quote((select(i, ...))) end
  local out, code = run(table.concat(parts, " ") .. " </dev/null 2>&1")
  out = out:gsub("\n$", "")
  local first = out:match("^[^\n]*")
  if code ~= 0 then error("redis_cluster: redis-cli -c failed (status " .. code .. "): " .. out, 2) end
  for _, prefix in ipairs(ERRORS) do
    if first:sub(1, #prefix) == prefix then error("redis_cluster: redis-cli -c replied " .. first, 2) end
  end
  return out
end

--- kill -9 of a node; returns once the process is gone.
function Cluster:kill(node)
  self:node(node):kill()
  return self
end

--- One line per running node saying what keeps the cluster from being ready,
--- or nil when every running node says cluster_state:ok, all agree on who
--- serves which slot (a running master) and on the role of every running
--- node, no slot is being migrated, and every replica of a running master has
--- its link up.
function Cluster:unready()
  local problems, signature, first = {}, nil, nil
  for _, node in ipairs(self:running()) do
    local where = node.host .. ":" .. node.port
    local info_out, c1 = node:cli("CLUSTER", "INFO")
    local nodes_out, c2 = node:cli("CLUSTER", "NODES")
    local repl_out, c3 = node:cli("INFO", "replication")
    if c1 ~= 0 or c2 ~= 0 or c3 ~= 0 then
      problems[#problems + 1] = where .. ": does not answer"
    else
      local state = fields(info_out).cluster_state
      if state ~= "ok" then problems[#problems + 1] = where .. ": cluster_state:" .. tostring(state) end
      local parts = {}
      for _, e in ipairs(parse_nodes(nodes_out)) do
        local n = self:by_id(e.id)
        for _, r in ipairs(e.slots) do
          parts[#parts + 1] = string.format("%05d-%05d %s", r[1], r[2], e.id)
          if not (n and n.running) then
            problems[#problems + 1] = where .. ": sees slots " .. r[1] .. "-" .. r[2] .. " on a stopped node"
          end
        end
        if n and n.running then
          if e.flags.fail or e.flags["fail?"] then
            problems[#problems + 1] = where .. ": sees " .. n.port .. " failing"
          end
          parts[#parts + 1] = "node " .. e.id .. (e.flags.master and " master" or " replica of " .. tostring(e.master))
        end
        if #e.open > 0 then
          problems[#problems + 1] = where .. ": sees open slots " .. table.concat(e.open, " ") .. " on " .. e.id
        end
        if e.flags.myself and e.flags.slave then
          local master = self:by_id(e.master)
          local link = fields(repl_out).master_link_status
          if master and master.running and link ~= "up" then
            problems[#problems + 1] = where .. ": master_link_status:" .. tostring(link)
          end
        end
      end
      table.sort(parts)
      local sig = table.concat(parts, "\n")
      if signature == nil then
        signature, first = sig, where
      elseif sig ~= signature then
        problems[#problems + 1] = where .. ": sees another slot map or roles than " .. first
      end
    end
  end
  if #problems == 0 then return nil end
  return table.concat(problems, "\n")
end

--- What the nodes say, for an error message: each running node's CLUSTER
--- NODES and the tail of its log.
function Cluster:describe()
  local parts = {}
  for _, node in ipairs(self.nodes) do
    parts[#parts + 1] = "-- node " .. node.host .. ":" .. node.port .. (node.running and "" or " (stopped)")
    if node.running then parts[#parts + 1] = (node:cli("CLUSTER", "NODES")) end
    parts[#parts + 1] = "log: " .. rs.run("tail -n 8 " .. quote(node.dir .. "/redis.log") .. " 2>&1")
  end
  return table.concat(parts, "\n")
end

--- Polls until the cluster is ready (see unready), raising after `seconds`
--- (default 60) with what was still wrong.
function Cluster:wait_ready(seconds)
  local deadline = now() + (seconds or READY_TIMEOUT)
  while true do
    local why = self:unready()
    if not why then return self end
    if now() > deadline then
      error("redis_cluster: not ready after " .. (seconds or READY_TIMEOUT) .. " s:\n" .. why .. "\n"
        .. self:describe(), 2)
    end
    sleep(POLL)
  end
end

--- cluster_state as `node` reports it ("ok", "fail"), or nil when it does
--- not answer.
function Cluster:state(node)
  local out, code = self:node(node):cli("CLUSTER", "INFO")
  if code ~= 0 then return nil end
  return fields(out).cluster_state
end

--- Polls until every running node reports cluster_state `state` (after a
--- master is killed, "fail" once the others have seen it gone), raising after
--- `seconds` (default 60).
function Cluster:wait_state(state, seconds)
  local deadline = now() + (seconds or READY_TIMEOUT)
  while true do
    local all = true
    for _, node in ipairs(self:running()) do
      if self:state(node) ~= state then all = false end
    end
    if all then return self end
    if now() > deadline then
      error("redis_cluster: not every node says cluster_state:" .. state .. " after " .. (seconds or READY_TIMEOUT)
        .. " s:\n" .. self:describe(), 2)
    end
    sleep(POLL)
  end
end

--- Promotes `replica` (CLUSTER FAILOVER TAKEOVER, or the mode given: "" for
--- a coordinated one with a live master, "FORCE"), then waits until it says
--- role master and the cluster is ready.
function Cluster:failover(replica, mode)
  replica = self:node(replica)
  mode = mode or "TAKEOVER"
  local out
  if mode == "" then
    out = must(replica, "CLUSTER", "FAILOVER")
  else
    out = must(replica, "CLUSTER", "FAILOVER", mode)
  end
  if out ~= "OK" then error("redis_cluster: CLUSTER FAILOVER " .. mode .. " replied " .. out, 2) end
  local deadline = now() + READY_TIMEOUT
  while (replica:cli("ROLE")):match("^[^\n]*") ~= "master" do
    if now() > deadline then
      error("redis_cluster: " .. replica.port .. " did not become a master:\n" .. self:describe(), 2)
    end
    sleep(POLL)
  end
  return self:wait_ready()
end

--- Moves `slot` from the master `from` to the master `to` as Redis Cluster
--- does it, step by step: CLUSTER SETSLOT IMPORTING on `to`, MIGRATING on
--- `from`, then CLUSTER GETKEYSINSLOT and MIGRATE ... KEYS in batches of
--- opts.batch keys (default 10), calling opts.between(moved) after each batch
--- (the keys moved so far; when it raises, the move is finished, without
--- calling it again, before the error is raised again), then CLUSTER SETSLOT NODE on `to`, on `from` and
--- on every other running master; waits until the cluster is ready again.
--- Returns the number of keys moved.
function Cluster:migrate_slot(slot, from, to, opts)
  opts = opts or {}
  from, to = self:node(from), self:node(to)
  local batch = opts.batch or 10
  local timeout = tostring(opts.timeout_ms or 10000)
  local function ok(node, ...)
    local out = must(node, ...)
    if out ~= "OK" then
      error("redis_cluster: " .. table.concat({ ... }, " ") .. " on " .. node.port .. " replied " .. out, 3)
    end
  end
  ok(to, "CLUSTER", "SETSLOT", tostring(slot), "IMPORTING", from.id)
  ok(from, "CLUSTER", "SETSLOT", tostring(slot), "MIGRATING", to.id)
  local moved, failed = 0, nil
  while true do
    local out = must(from, "CLUSTER", "GETKEYSINSLOT", tostring(slot), tostring(batch))
    local keys = {}
    for key in out:gmatch("[^\n]+") do keys[#keys + 1] = key end
    if #keys == 0 then break end
    local reply = must(from, "MIGRATE", to.host, tostring(to.port), "", "0", timeout, "KEYS",
      (table.unpack or rawget(_G, "unpack"))(keys))
    if reply ~= "OK" and reply ~= "NOKEY" then
      error("redis_cluster: MIGRATE of slot " .. slot .. " replied " .. reply, 2)
    end
    moved = moved + #keys
    -- a callback that raises leaves no slot half-moved: the move ends first
    if opts.between and not failed then
      local done, err = pcall(opts.between, moved)
      if not done then failed = { err } end
    end
  end
  ok(to, "CLUSTER", "SETSLOT", tostring(slot), "NODE", to.id)
  ok(from, "CLUSTER", "SETSLOT", tostring(slot), "NODE", to.id)
  for _, m in ipairs(self:masters()) do
    if m ~= to and m ~= from then ok(m, "CLUSTER", "SETSLOT", tostring(slot), "NODE", to.id) end
  end
  self:wait_ready()
  if failed then error(failed[1], 0) end
  return moved
end

--- Moves `count` slots from `from` to `to` with `redis-cli --cluster
--- reshard`, then waits until the cluster is ready.
function Cluster:reshard(from, to, count)
  from, to = self:node(from), self:node(to)
  local cmd = "redis-cli --cluster reshard " .. from.host .. ":" .. from.port
    .. " --cluster-from " .. from.id .. " --cluster-to " .. to.id
    .. " --cluster-slots " .. string.format("%d", count) .. " --cluster-yes"
  local out, code = run(cmd .. " </dev/null 2>&1")
  if code ~= 0 or out:find("[ERR]", 1, true) then
    error("redis_cluster: reshard failed (status " .. code .. "):\n" .. out, 2)
  end
  return self:wait_ready()
end

--- "host:port" of every running node, masters first.
function Cluster:seeds()
  local seeds, seen = {}, {}
  for _, n in ipairs(self:masters()) do
    seeds[#seeds + 1] = n.host .. ":" .. n.port
    seen[n] = true
  end
  for _, n in ipairs(self:running()) do
    if not seen[n] then seeds[#seeds + 1] = n.host .. ":" .. n.port end
  end
  return seeds
end

--- Percent-encodes everything outside [A-Za-z0-9._~-].
local function pct(s)
  return (tostring(s):gsub("[^%w%._~%-]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- "redis+cluster://h:p,h:p/?k=v&..." for the running nodes (or the "h:p" of
--- `seeds`), with the query's keys sorted: cluster:uri{ prefix = "p:", timeout_ms = 30000 }.
function Cluster:uri(query, seeds)
  local keys = {}
  for k in pairs(query or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = pct(k) .. "=" .. pct(query[k]) end
  return "redis+cluster://" .. table.concat(seeds or self:seeds(), ",") .. "/"
    .. (#parts > 0 and "?" .. table.concat(parts, "&") or "")
end

--- Stops every node.
function Cluster:stop()
  for _, n in ipairs(self.nodes) do pcall(n.stop, n) end
  return self
end

--- Starts a cluster of opts.masters masters (default 3, at least 3) with
--- opts.replicas replicas each (default 1), opts.config extra configuration
--- lines for every node, opts.auto_failover to let replicas promote
--- themselves; waits until it is ready. Raises, saying why, when it cannot.
function M.start(opts)
  opts = opts or {}
  local masters, replicas = opts.masters or 3, opts.replicas or 1
  assert(masters >= 3, "Redis Cluster needs 3 masters or more")
  local config = { "cluster-enabled yes", "cluster-config-file nodes.conf",
    "cluster-node-timeout " .. NODE_TIMEOUT,
    -- a replica's first sync starts at once (a master otherwise waits 5 s for more replicas)
    "repl-diskless-sync-delay 0" }
  if not opts.auto_failover then config[#config + 1] = "cluster-replica-no-failover yes" end
  for _, line in ipairs(opts.config or {}) do config[#config + 1] = line end
  local self = setmetatable({ nodes = {} }, Cluster)
  for i = 1, masters * (1 + replicas) do
    -- the cluster bus listens on port + 10000
    self.nodes[i] = rs.start{ config = config, max_port = 54999 }
  end
  local addrs = {}
  for i, n in ipairs(self.nodes) do addrs[i] = n.host .. ":" .. n.port end
  local out, code = run("redis-cli --cluster create " .. table.concat(addrs, " ")
    .. " --cluster-replicas " .. string.format("%d", replicas) .. " --cluster-yes </dev/null 2>&1")
  if code ~= 0 or not out:find("All 16384 slots covered", 1, true) then
    local why = "redis_cluster: redis-cli --cluster create failed (status " .. code .. "):\n" .. out
      .. "\n" .. self:describe()
    self:stop()
    error(why, 2)
  end
  for _, n in ipairs(self.nodes) do n.id = must(n, "CLUSTER", "MYID") end
  local ok, err = pcall(self.wait_ready, self)
  if not ok then
    self:stop()
    error(err, 2)
  end
  return self
end

M.Cluster = Cluster
return M
