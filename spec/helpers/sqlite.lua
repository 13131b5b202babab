-- Helpers for the SQLite store's own specs (spec/08-sqlite_*_spec.lua) and their
-- child processes (spec/helpers/sqlite_child.lua): temporary directories,
-- child processes, reading store files with LuaSQL, and self-checking sessions.
--
-- Loaded by busted and by child processes alike, so it needs nothing but
-- agentsession, luasystem (a dependency of busted) and, for its LuaSQL
-- functions, lua-sql-sqlite3.

local agentsession = require("agentsession")
local system = require("system")
local interp = require("helpers.interp")
local number_type = require("agentsession.conformance.support").number_type

local M = {}

M.sleep = system.sleep
M.monotime = system.monotime

-- The documented file markers of a store.
M.APPLICATION_ID = 1634169715
M.USER_VERSION = 5

--------------------------------------------------------------------------
-- Shell and files

--- The string quoted for sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs a shell command; returns success, its output (stdout and stderr) and its exit
--- status as sh gives it (128 + n after signal n). The shell prints the status after
--- the output, since pipe:close() does not return it on Lua 5.1 and LuaJIT.
function M.sh(command)
  local pipe = assert(io.popen("{ " .. command .. "\n} 2>&1; printf '\\nexit %d\\n' $?", "r"))
  local all = pipe:read("*a")
  pipe:close()
  local output, status = all:match("^(.*)\nexit (%d+)\n$")
  if not status then return false, all, nil end
  return status == "0", output, tonumber(status)
end

--- Runs a shell command that must succeed; returns its output without the last newline.
function M.must(command)
  local ok, output = M.sh(command)
  if not ok then error("command failed: " .. command .. "\n" .. output, 2) end
  return (output:gsub("\n$", ""))
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- The permission bits of a file as stat prints them ("600"), or nil when it does not exist.
function M.mode(path)
  local ok, output = M.sh("stat -c %a " .. M.q(path))
  if not ok then return nil end
  return (output:gsub("%s+$", ""))
end

--- Absolute path of the repository root (busted runs from there).
M.root = os.getenv("AGENTSESSION_ROOT") or M.must("pwd")

--- The environment a child of the suite's interpreter needs to load agentsession
--- (its build for that interpreter) and these helpers from `root`.
function M.lua_env(root)
  root = root or M.root
  return interp.env(root) .. " AGENTSESSION_ROOT=" .. M.q(root) .. " AGENTSESSION_TEST_LUA=" .. M.q(interp.lua)
end

--- "<_VERSION> <LuaJIT's version or no-jit> <file of agentsession.core on package.cpath>"
--- of this process, to compare a child's with.
function M.lua_of()
  local jit = rawget(_G, "jit")
  local module = "none"
  for template in package.cpath:gmatch("[^;]+") do
    local path = template:gsub("%?", "agentsession/core")
    if M.exists(path) then module = path break end
  end
  return _VERSION .. " " .. (jit and jit.version or "no-jit") .. " " .. module
end

--- A shell command running the child program `sqlite_child.lua` with the given arguments.
function M.child_command(args, root)
  root = root or M.root
  local words = { M.lua_env(root), interp.lua, M.q(root .. "/spec/helpers/sqlite_child.lua") }
  for _, a in ipairs(args) do words[#words + 1] = M.q(a) end
  return table.concat(words, " ")
end

--- Runs the child program to its end (killed after opts.limit seconds, default 60).
--- opts.prefix: a command that runs it (setpriv …); opts.shell: commands a shell runs
--- first (umask, ulimit, trap); opts.root: where the module and helpers are.
--- Returns success, output (stdout and stderr) and the exit status.
function M.run_child(args, opts)
  opts = opts or {}
  local inner = M.child_command(args, opts.root)
  local command
  if opts.shell then
    command = "sh -c " .. M.q(opts.shell .. "; exec env " .. inner)
  else
    command = "env " .. inner
  end
  return M.sh("timeout -s KILL " .. (opts.limit or 60) .. " " .. (opts.prefix or "") .. " " .. command)
end

--- Starts the program spec/helpers/<script> with the given arguments, killed after `limit`
--- seconds; returns a pipe of its stdout and stderr, read by M.finish.
function M.popen_helper(script, args, limit)
  local words = { "env", interp.env(M.root), "timeout -s KILL " .. limit, interp.lua,
    M.q(M.root .. "/spec/helpers/" .. script) }
  for _, a in ipairs(args) do words[#words + 1] = M.q(a) end
  return assert(io.popen(table.concat(words, " ") .. " 2>&1", "r"))
end

--- What a pipe of M.popen_helper gives until the program ends.
function M.finish(pipe)
  local out = pipe:read("*a")
  pipe:close()
  return out
end

--- Starts the child program in the background with stdout and stderr to files; returns its pid.
function M.spawn_child(args, out, err)
  local command = M.child_command(args) .. " >" .. M.q(out) .. " 2>" .. M.q(err) .. " </dev/null & echo $!"
  local pipe = assert(io.popen(command, "r"))
  local pid = tonumber(pipe:read("*l"))
  pipe:close()
  assert(pid, "could not start " .. command)
  return pid
end

--- Is that process still running (not gone, not a zombie), and is it one of our children?
function M.alive(pid)
  local stat = M.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %b() (%a)")
  if state == "Z" or state == "X" then return false end
  local cmdline = M.read("/proc/" .. pid .. "/cmdline") or ""
  -- While a process is inside execve its command line reads as empty for a moment:
  -- that is our child on its way from the shell to Lua, not a process that ended.
  if cmdline == "" then return true end
  return cmdline:find("sqlite_child.lua", 1, true) ~= nil
end

--- Sends SIGKILL to one of our children (by its pid) and waits until it is gone.
function M.kill9(pid)
  if M.alive(pid) then os.execute(string.format("kill -9 %d 2>/dev/null", pid)) end
  local deadline = M.monotime() + 10
  while M.alive(pid) do
    if M.monotime() > deadline then error("process " .. pid .. " survived kill -9") end
    M.sleep(0.005)
  end
end

--- Waits until `fn()` is true; fails with `what` after `seconds`.
function M.wait_until(fn, seconds, what)
  local deadline = M.monotime() + seconds
  while not fn() do
    if M.monotime() > deadline then error("timed out waiting for " .. what, 2) end
    M.sleep(0.005)
  end
end

function M.tmpdir()
  return M.must("mktemp -d /tmp/agentsession-spec08-XXXXXX")
end

function M.rmdir(dir)
  assert(dir:match("^/tmp/agentsession%-spec08%-"), "refusing to remove " .. dir)
  os.execute("chmod -R u+rwX " .. M.q(dir) .. " 2>/dev/null; rm -rf " .. M.q(dir))
end

--- Copies the module (lua/, the interpreter's build of agentsession.core) and the spec
--- helpers under dir/mod, readable by every user, for child processes that run as another user.
function M.copy_module(dir)
  local mod = dir .. "/mod"
  local build = interp.build_dir()
  M.must("mkdir -p " .. M.q(mod .. "/" .. build) .. " " .. M.q(mod .. "/spec")
    .. " && cp -R " .. M.q(M.root .. "/lua") .. " " .. M.q(mod .. "/")
    .. " && cp -R " .. M.q(M.root .. "/" .. build .. "/agentsession") .. " " .. M.q(mod .. "/" .. build .. "/")
    .. " && cp -R " .. M.q(M.root .. "/spec/helpers") .. " " .. M.q(mod .. "/spec/")
    .. " && chmod -R a+rX " .. M.q(mod) .. " && chmod a+rx " .. M.q(dir))
  return mod
end

--- The command prefix that runs a program as an unprivileged user (nobody), or ""
--- when the tests do not run as root (then the file modes deny the current user already).
--- Fails, saying why, when running as root without setpriv.
function M.unprivileged_prefix()
  local uid = M.must("id -u")
  if uid ~= "0" then return "", false end
  local ok = M.sh("command -v setpriv")
  if not ok then
    error("setpriv (util-linux) is needed to run a child as an unprivileged user, and it is missing")
  end
  return "setpriv --reuid=65534 --regid=65534 --clear-groups", true
end

--------------------------------------------------------------------------
-- LuaSQL

local function driver()
  local ok, luasql = pcall(require, "luasql.sqlite3")
  if not ok then
    error("LuaSQL for SQLite (Debian lua-sql-sqlite3) is needed to inspect store files: " .. tostring(luasql), 3)
  end
  return luasql
end

--- Opens a LuaSQL connection; `fn(conn)` runs with it, then everything is closed.
--- The file must exist unless `create` is true (LuaSQL would create it).
function M.with_db(path, fn, create)
  assert(create or M.exists(path), "no such file: " .. path)
  local env = assert(driver().sqlite3())
  local conn, err = env:connect(path)
  if not conn then
    env:close()
    error("LuaSQL cannot open " .. path .. ": " .. tostring(err), 2)
  end
  local ok, result = pcall(fn, conn)
  conn:close()
  env:close()
  if not ok then error(result, 0) end
  return result
end

--- All rows of a query on an open connection, each a table keyed by column name.
function M.rows(conn, sql)
  local cur, err = conn:execute(sql)
  if not cur then error("SQL failed: " .. sql .. ": " .. tostring(err), 2) end
  if type(cur) ~= "userdata" then return {} end
  local rows = {}
  while true do
    local row = cur:fetch({}, "a")
    if not row then break end
    rows[#rows + 1] = row
  end
  cur:close()
  return rows
end

--- Executes statements on an open connection, failing on error.
function M.exec(conn, sql)
  local result, err = conn:execute(sql)
  if not result then error("SQL failed: " .. sql .. ": " .. tostring(err), 2) end
  return result
end

--- Rows of one query on a file.
function M.query(path, sql)
  return M.with_db(path, function(conn) return M.rows(conn, sql) end)
end

--- The single value of a one-row, one-column query on a file.
function M.value(path, sql)
  return M.with_db(path, function(conn)
    local cur, err = conn:execute(sql)
    if not cur then error("SQL failed: " .. sql .. ": " .. tostring(err), 2) end
    local v = cur:fetch()
    cur:close()
    return v
  end)
end

--- PRAGMA integrity_check as one string ("ok" when the file is sound).
function M.integrity(path)
  local rows = M.with_db(path, function(conn)
    local cur, err = conn:execute("PRAGMA integrity_check")
    if not cur then return { "integrity_check failed to run: " .. tostring(err) } end
    local out = {}
    while true do
      local v = cur:fetch()
      if not v then break end
      out[#out + 1] = v
    end
    cur:close()
    return out
  end)
  return table.concat(rows, "\n")
end

--- The SQL expressions giving a messages row's session (rid) and 0-based position
--- from its key, slot = rid * 2^32 + pos. `row` prefixes the column name (for
--- example "NEW." in a trigger).
function M.message_key(row)
  row = row or ""
  return "(" .. row .. "slot >> 32)", "(" .. row .. "slot & 4294967295)"
end

--- The key of message `pos` (0-based) of the session whose row id is `rid`.
function M.slot(rid, pos)
  return rid * 4294967296 + pos
end

--- The decimal text of an integer for SQL (Lua 5.1 writes large numbers with an exponent).
function M.int(n)
  return string.format("%d", n)
end

--- The sessions row of `id` (every column), or nil.
function M.session_row(path, id)
  return M.query(path, "SELECT * FROM sessions WHERE id = '" .. id:gsub("'", "''") .. "'")[1]
end

--- The number of message rows of the session whose row id is `rid`.
function M.message_rows(path, rid)
  return M.value(path, "SELECT count(*) FROM messages WHERE slot >= " .. M.int(M.slot(rid, 0))
    .. " AND slot < " .. M.int(M.slot(rid + 1, 0)))
end

--- Problems with the documented schema's invariants (an empty array when there are none):
--- no orphan tags or messages, nmsgs = number of message rows with positions 0..nmsgs-1,
--- and counter.seq at least every session's and tag's seq.
function M.schema_problems(path)
  return M.with_db(path, function(conn)
    local problems = {}
    local function check(sql, what)
      for _, row in ipairs(M.rows(conn, sql)) do
        local parts = {}
        for k, v in pairs(row) do parts[#parts + 1] = k .. "=" .. tostring(v) end
        table.sort(parts)
        problems[#problems + 1] = what .. ": " .. table.concat(parts, " ")
      end
    end
    local rid, pos = M.message_key()
    local keyed = "(SELECT " .. rid .. " AS rid, " .. pos .. " AS pos FROM messages)"
    check("SELECT rid, pos FROM " .. keyed .. " WHERE rid NOT IN (SELECT rid FROM sessions)", "orphan message")
    check("SELECT rid, pos FROM tags WHERE rid NOT IN (SELECT rid FROM sessions)", "orphan tag")
    check("SELECT s.id, s.nmsgs, count(m.pos) AS rows, min(m.pos) AS lo, max(m.pos) AS hi"
      .. " FROM sessions s LEFT JOIN " .. keyed .. " m ON m.rid = s.rid GROUP BY s.rid"
      .. " HAVING count(m.pos) <> s.nmsgs OR (s.nmsgs > 0 AND (min(m.pos) <> 0 OR max(m.pos) <> s.nmsgs - 1))",
      "message rows do not match nmsgs")
    check([[SELECT id, seq FROM sessions WHERE seq > (SELECT seq FROM counter)]], "session seq beyond counter")
    if #M.rows(conn, "SELECT name FROM pragma_table_info('sessions') WHERE name = 'ops'") > 0 then
      check("SELECT id, typeof(ops) AS type, length(ops) AS n FROM sessions WHERE ops IS NOT NULL"
        .. " AND (typeof(ops) <> 'blob' OR length(ops) % 8 <> 0 OR length(ops) > 800)", "op id digests")
    end
    check([[SELECT count(*) AS n FROM counter HAVING count(*) <> 1]], "counter rows")
    return problems
  end)
end

--------------------------------------------------------------------------
-- Self-checking sessions: every message carries its position and a hash chained
-- over the messages before it; the state records the message count and last hash
-- as of the session's last full save.

-- One step of FNV-1a: (h xor byte) * 16777619 mod 2^32. With Lua's bitwise
-- operators where it has them (5.3 and later, loaded from text since older Luas
-- cannot parse them); elsewhere the xor of the low byte from a table and the
-- product in two halves, each exact in a double.
local fnv_step
if math.type then
  fnv_step = load("return function(h, b) return ((h ~ b) * 16777619) & 0xffffffff end")()
else
  local xor8 = {}
  for a = 0, 255 do
    for b = 0, 255 do
      local x, bit, p, q = 0, 1, a, b
      while p > 0 or q > 0 do
        if p % 2 ~= q % 2 then x = x + bit end
        p, q, bit = math.floor(p / 2), math.floor(q / 2), bit * 2
      end
      xor8[a * 256 + b] = x
    end
  end
  fnv_step = function(h, b)
    local low = h % 256
    h = h - low + xor8[low * 256 + b]
    local hi, lo = math.floor(h / 65536), h % 65536
    return ((hi * 16777619) % 65536 * 65536 + lo * 16777619) % 4294967296
  end
end

--- 32-bit FNV-1a of a string.
function M.fnv(s, h)
  h = h or 2166136261
  for i = 1, #s do h = fnv_step(h, s:byte(i)) end
  return h
end

--- `count` messages following a message (or none), for chain `sid`; `rnd(a, b)` picks pad lengths.
function M.chain(sid, previous, count, rnd)
  local out = {}
  local i = previous and previous.i or 0
  local h = previous and previous.h or 0
  for _ = 1, count do
    i = i + 1
    local len = rnd(0, 20) == 0 and rnd(2000, 6000) or rnd(5, 300)
    local pad = string.rep(string.char(97 + i % 26), len)
    h = M.fnv(sid .. "/" .. i .. "/" .. pad, h)
    out[#out + 1] = { i = i, sid = sid, h = h, pad = pad, role = i % 2 == 1 and "user" or "assistant" }
  end
  return out
end

--- The state that matches a session's messages.
function M.state_of(messages)
  local last = messages[#messages]
  return { n = #messages, h = last and last.h or 0 }
end

--- nil when the session is self-consistent, else a description of the first problem.
function M.check_session(s)
  local meta, msgs = s.metadata, s.messages
  if meta.turn_count ~= #msgs then
    return string.format("%s: turn_count %s but %d messages", meta.id, tostring(meta.turn_count), #msgs)
  end
  local h, sid = 0, msgs[1] and msgs[1].sid
  for i, m in ipairs(msgs) do
    if type(m) ~= "table" or m.i ~= i or m.sid ~= sid or type(m.pad) ~= "string" then
      return string.format("%s: message %d is not message %d of chain %s", meta.id, i, i, tostring(sid))
    end
    h = M.fnv(sid .. "/" .. i .. "/" .. m.pad, h)
    if m.h ~= h then
      return string.format("%s: message %d breaks the hash chain", meta.id, i)
    end
  end
  local st = s.state
  if type(st) ~= "table" or number_type(st.n) ~= "integer" or number_type(st.h) ~= "integer" then
    return meta.id .. ": state is not {n=, h=}"
  end
  -- the state was written with the messages of a full save; rewinds and short forks
  -- may leave it ahead of the messages, appends behind them (on the same prefix)
  if st.n <= #msgs then
    local expect = st.n == 0 and 0 or msgs[st.n].h
    if st.h ~= expect then
      return string.format("%s: state {n=%d, h=%d} does not match message %d", meta.id, st.n, st.h, st.n)
    end
  end
  local seen = {}
  for _, t in ipairs(meta.tags) do
    if seen[t] then return meta.id .. ": tag " .. t .. " twice" end
    seen[t] = true
  end
  return nil
end

--------------------------------------------------------------------------
-- Deterministic sample sessions with values that must round trip exactly.

-- The largest integer of a message of the sample sessions, and -0.0 (made at run
-- time: Lua 5.1 merges the constants 0 and -0.0 of a function).
local BIG = interp.has_integers and math.maxinteger or 2 ^ 53
local NEG_ZERO = -1 / math.huge

function M.sample_sessions(prefix, count)
  local null = agentsession.null
  local out = {}
  for k = 1, count do
    local msgs = agentsession.array()
    for i = 1, (k * 3) % 7 do
      msgs[i] = {
        role = i % 2 == 1 and "user" or "assistant",
        content = string.format("message %d of session %d: caf\195\169 \240\159\152\128 \"quoted\"\n", i, k),
        n = i * 1000000007 * 1000, f = i / 8 + 0.1, neg = NEG_ZERO, big = BIG - i,
        flags = agentsession.array({ true, false, null }), empty_array = agentsession.array(), empty_object = {},
      }
    end
    out[k] = {
      metadata = {
        id = string.format("%s-%02d", prefix, k),
        name = k % 3 == 0 and nil or ("session " .. k),
        tags = agentsession.array(k % 2 == 0 and { "even", "t" .. k } or { "odd" }),
        agent_name = k % 2 == 0 and "agent-even" or "",
        created_at = 1700000000000 + k, updated_at = 0,
        turn_count = #msgs, total_tokens = k * 12345,
      },
      messages = msgs,
      state = { k = k, cwd = "/home/user/" .. k, pi = 3.141592653589793, tiny = 5e-324,
        list = agentsession.array({ 1, 2.0, "3" }) },
    }
  end
  return out
end

--------------------------------------------------------------------------
-- The plan of a concurrent writer: what process `k` does in `n` steps

function M.concurrent_plan(k, n)
  local ops = {}
  for i = 1, n do
    local step = i % 5
    if step == 0 then
      ops[#ops + 1] = { op = "save", id = string.format("w%d-%04d", k, i) }
    elseif step == 1 then
      ops[#ops + 1] = { op = "tag", tag = string.format("w%d-t%04d", k, i) }
    elseif step == 2 then
      ops[#ops + 1] = { op = "rename", name = string.format("w%d-n%04d", k, i) }
    elseif step == 3 then
      ops[#ops + 1] = { op = "list" }
    else
      -- every other save is deleted again four steps later
      local victim = i - 4
      if victim % 10 == 0 and victim > 0 then
        ops[#ops + 1] = { op = "delete", id = string.format("w%d-%04d", k, victim) }
      else
        ops[#ops + 1] = { op = "resume_shared" }
      end
    end
  end
  return ops
end

--- The ids a concurrent writer leaves behind.
function M.concurrent_survivors(k, n)
  local alive = {}
  for _, op in ipairs(M.concurrent_plan(k, n)) do
    if op.op == "save" then alive[op.id] = true elseif op.op == "delete" then alive[op.id] = nil end
  end
  return alive
end

return M
