-- Real redis-server processes for the specs, each on a free loopback port with
-- its own private directory, persistence off.
--
--   local rs = require("helpers.redis_server")
--   local srv = rs.start({ password = "pw" })   -- raises if no server comes up
--   srv:cli("SET", "k", "v")                     --> "OK", 0
--
-- Every server started is stopped, and its directory removed, when the Lua
-- state closes (busted closes it on exit); tools/run-specs.sh kills whatever a
-- killed busted leaves behind.
local M = {}

local HOST = "127.0.0.1"
local ATTEMPTS = 20 -- ports tried by start()
local UP_TIMEOUT = 5 -- seconds to wait for a started server to answer
local STOP_TIMEOUT = 3 -- seconds to wait for SHUTDOWN before kill -9
local POLL = 0.05 -- seconds between polls

--- `s` quoted for sh: any bytes but NUL.
local function quote(s)
  s = tostring(s)
  assert(not s:find("\0", 1, true), "shell argument contains a NUL byte")
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end
M.quote = quote

local function sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end

local function now()
  -- os.clock() is CPU time, os.time() whole seconds: ask date for wall time.
  local p = io.popen("date +%s.%N 2>/dev/null")
  local t = p and tonumber(p:read("*l") or "")
  if p then p:close() end
  return t or os.time()
end

--- Runs `cmd` under sh; returns its stdout and exit status (128+n if killed
--- by signal n). Raises if sh could not be started. The status comes from
--- the shell itself, on a last line of the output: pipe:close() gives no
--- status on Lua 5.1 and LuaJIT.
local function run(cmd)
  local p, err = io.popen("(" .. cmd .. "\n); echo \"<exit $?>\"", "r")
  if not p then error("cannot run: " .. cmd .. ": " .. tostring(err), 0) end
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)<exit (%d+)>\n$")
  if not text then error("cannot run: " .. cmd .. ": no exit status in its output", 0) end
  return text, tonumber(code)
end
M.run = run

--- Whether `cmd` exits with status 0 (os.execute gives a number on Lua 5.1
--- and LuaJIT, true or nil on 5.2 and later).
local function succeeds(cmd)
  local status = os.execute(cmd)
  return status == true or status == 0
end
M.succeeds = succeeds

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- The last `n` lines of a file, or a note that it cannot be read.
local function tail(path, n)
  local s = read_file(path)
  if s == nil then return "(" .. path .. " does not exist)" end
  local lines = {}
  for line in s:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local first = math.max(1, #lines - (n or 20) + 1)
  return table.concat(lines, "\n", first)
end

--- Whether process `pid` exists and is not a zombie (pid 1 may not reap the
--- daemonized servers).
local function alive(pid)
  if not pid then return false end
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= "Z" and state ~= "X"
  end
  if read_file("/proc/self/stat") then return false end -- /proc works: gone
  return succeeds("kill -0 " .. pid .. " 2>/dev/null")
end

--- Polls until `pid` is gone or `seconds` have passed; whether it is gone.
local function wait_gone(pid, seconds)
  local deadline = now() + seconds
  while alive(pid) do
    if now() > deadline then return false end
    sleep(POLL)
  end
  return true
end

--- A random port from 20000 to `max` (default 59999).
local function random_port(max)
  max = max or 59999
  local f = io.open("/dev/urandom", "rb")
  if f then
    local b = f:read(4)
    f:close()
    if b and #b == 4 then
      local b1, b2, b3, b4 = b:byte(1, 4)
      return 20000 + (((b4 * 256 + b3) * 256 + b2) * 256 + b1) % (max - 20000 + 1)
    end
  end
  return math.random(20000, max)
end

--- Percent-encodes everything outside [A-Za-z0-9._~-].
local function pct(s)
  return (tostring(s):gsub("[^%w%._~%-]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Base directory -------------------------------------------------------------

local base -- where the per-server directories go
local own_base = false -- whether base is ours to remove at close
local function base_dir()
  if base then return base end
  local env = os.getenv("AGENTSESSION_TEST_TMP")
  if env and env ~= "" and succeeds("test -d " .. quote(env)) then
    base = env
  else
    local name = os.tmpname()
    os.remove(name)
    if not succeeds("mkdir -m 700 " .. quote(name)) then
      error("redis_server: cannot create directory " .. name, 0)
    end
    base, own_base = name, true
  end
  return base
end

-- Servers ----------------------------------------------------------------------

local registry = {} -- every server started, in order

local Server = {}
Server.__index = Server

--- The redis-cli command line for this server, without the command.
function Server:cli_prefix()
  local cmd = "redis-cli -h " .. self.host .. " -p " .. self.port
  if self.password then cmd = cmd .. " -a " .. quote(self.password) .. " --no-auth-warning" end
  return cmd
end

--- The redis-server command line that starts this server.
function Server:command()
  local d = self.dir
  local args = {
    "redis-server",
    "--port", tostring(self.port),
    "--bind", HOST,
    "--dir", quote(d),
    "--save", "''",
    "--appendonly", self.durable and "yes" or "no",
    "--daemonize", "yes",
    "--pidfile", quote(d .. "/redis.pid"),
    "--logfile", quote(d .. "/redis.log"),
    "--protected-mode", "no",
    "--enable-debug-command", "local",
    "--databases", tostring(self.databases),
  }
  if self.durable then
    args[#args + 1] = "--appendfsync"
    args[#args + 1] = "always"
  end
  if self.password then
    args[#args + 1] = "--requirepass"
    args[#args + 1] = quote(self.password)
  end
  for _, name in ipairs(self.without) do
    args[#args + 1] = "--rename-command " .. name .. " ''"
  end
  for _, line in ipairs(self.config) do
    local name, rest = line:match("^%s*([%w%-]+)%s*(.-)%s*$")
    assert(name, "config line without a name: " .. line)
    args[#args + 1] = "--" .. name
    for word in rest:gmatch("%S+") do args[#args + 1] = quote(word) end
  end
  return table.concat(args, " ")
end

--- Whether the server answering on our port is the one whose pid is in our
--- pidfile; returns that pid when it is.
function Server:is_up()
  local pid = tonumber((read_file(self.dir .. "/redis.pid") or ""):match("%d+"))
  if not pid then return nil end
  local out, code = run("timeout 1 " .. self:cli_prefix() .. " INFO server </dev/null 2>/dev/null")
  if code ~= 0 then return nil end
  local answered = tonumber(out:match("process_id:(%d+)"))
  if answered and answered == pid then return pid end
  return nil
end

--- Starts redis-server on self.port and waits until it is up. Returns true,
--- or false and why.
function Server:launch()
  local d = self.dir
  os.remove(d .. "/redis.pid")
  os.remove(d .. "/redis.log")
  local cmd = self:command()
  self.last_command = cmd
  local out, code = run(cmd .. " </dev/null 2>&1")
  if code ~= 0 then
    return false, "redis-server exited with status " .. code .. ": " .. out
  end
  local deadline = now() + UP_TIMEOUT
  repeat
    local pid = self:is_up()
    if pid then
      self.pid, self.running = pid, true
      -- a durable server answers INFO while it still reads its file back
      local info = run("timeout 1 " .. self:cli_prefix() .. " INFO persistence </dev/null 2>/dev/null")
      if info:find("\nloading:0", 1, true) then return true end
    end
    local log = read_file(d .. "/redis.log") or ""
    if log:find("aborting", 1, true) or log:find("Could not create server TCP listening socket", 1, true) then
      return false, "redis-server could not listen on port " .. self.port
    end
    sleep(POLL)
  until now() > deadline
  -- Not up in time: do not leave it half-started.
  local pid = tonumber((read_file(d .. "/redis.pid") or ""):match("%d+"))
  if pid and alive(pid) then
    os.execute("kill -9 " .. pid .. " 2>/dev/null")
    wait_gone(pid, STOP_TIMEOUT)
  end
  return false, "redis-server did not answer INFO server with its own pid within " .. UP_TIMEOUT .. " s"
end

function Server:failure(why)
  return "redis_server: " .. why .. "\ncommand: " .. tostring(self.last_command)
    .. "\ntail of " .. self.dir .. "/redis.log:\n" .. tail(self.dir .. "/redis.log", 20)
end

--- Runs redis-cli against this server with the given arguments (each passed
--- as one argument, any bytes but NUL) and returns its stdout, without the
--- trailing newline, its exit status, and its stderr. Raises if redis-cli
--- cannot be run. Note redis-cli exits 0 on an error reply ("ERR ...").
function Server:cli(...)
  local parts = { self:cli_prefix(), "--raw" }
  for i = 1, select("#", ...) do parts[#parts + 1] = quote((select(i, ...))) end
  local errfile = self.dir .. "/cli.err"
  local cmd = table.concat(parts, " ")
  local out, code = run(cmd .. " </dev/null 2>" .. quote(errfile))
  local err = read_file(errfile) or ""
  os.remove(errfile)
  if code == 126 or code == 127 then
    error("redis_server: cannot run redis-cli (status " .. code .. "): " .. cmd .. "\n" .. err, 2)
  end
  out = out:gsub("\n$", "")
  return out, code, err
end

--- Stops the server: SHUTDOWN NOSAVE, then kill -9 if it is still there after
--- 3 s. Idempotent.
function Server:stop()
  if not self.running then return self end
  local pid = self.pid
  if alive(pid) then
    run("timeout " .. STOP_TIMEOUT .. " " .. self:cli_prefix() .. " SHUTDOWN NOSAVE </dev/null >/dev/null 2>&1")
    if not wait_gone(pid, STOP_TIMEOUT) then
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      wait_gone(pid, STOP_TIMEOUT)
    end
  end
  self.running = false
  return self
end

--- kill -9 (a crash), then waits until the process is gone.
function Server:kill()
  if self.pid and alive(self.pid) then
    os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
    if not wait_gone(self.pid, STOP_TIMEOUT) then
      error("redis_server: pid " .. self.pid .. " still there after kill -9", 2)
    end
  end
  self.running = false
  return self
end

--- Starts the server again on the same port and directory (stopping it first
--- if it runs). Data survives only on a durable server (its append-only file
--- is read back). Raises if it does not come up.
function Server:restart()
  self:stop()
  local ok, why = self:launch()
  if not ok then error(self:failure(why), 2) end
  return self
end

--- Makes the server unresponsive for `seconds` (DEBUG SLEEP in the
--- background) without closing its connections; returns once it is asleep.
function Server:pause(seconds)
  assert(type(seconds) == "number" and seconds > 0, "pause: seconds must be a positive number")
  self.pauses = (self.pauses or 0) + 1
  local done = self.dir .. "/pause" .. self.pauses .. ".done"
  os.remove(done)
  os.execute("(" .. self:cli_prefix() .. " DEBUG SLEEP " .. string.format("%.3f", seconds)
    .. " </dev/null >/dev/null 2>&1; echo $? > " .. quote(done) .. ") </dev/null >/dev/null 2>&1 &")
  local probe = "timeout 0.2 " .. self:cli_prefix() .. " PING </dev/null >/dev/null 2>&1"
  local deadline = now() + seconds + UP_TIMEOUT
  while true do
    local status = read_file(done)
    if status and status:match("%d+") then
      os.remove(done)
      if tonumber(status:match("%d+")) ~= 0 then
        error("redis_server: DEBUG SLEEP failed (redis-cli status " .. status:match("%d+") .. ")", 2)
      end
      return self -- slept and woke before a probe caught it: too short to see
    end
    if not succeeds(probe) then return self end -- asleep
    if now() > deadline then error("redis_server: server did not go to sleep on DEBUG SLEEP", 2) end
    sleep(POLL)
  end
end

--- "redis://[:password@]127.0.0.1:PORT/DB[?prefix=PREFIX]"; db defaults to 0.
function Server:url(db, prefix)
  local auth = self.password and (":" .. pct(self.password) .. "@") or ""
  local url = "redis://" .. auth .. self.host .. ":" .. self.port .. "/" .. string.format("%d", db or 0)
  if prefix then url = url .. "?prefix=" .. pct(prefix) end
  return url
end

--- The keys matching `pattern` (default "*"), sorted. Keys must not contain
--- newlines.
function Server:keys(pattern)
  local out, code, err = self:cli("KEYS", pattern or "*")
  if code ~= 0 then error("redis_server: KEYS failed (status " .. code .. "): " .. err, 2) end
  local keys = {}
  for line in (out .. "\n"):gmatch("([^\n]*)\n") do
    if line ~= "" then keys[#keys + 1] = line end
  end
  table.sort(keys)
  return keys
end

--- Starts a new server on a random free loopback port. opts: password,
--- databases (default 16), durable (an append-only file, fsync'd before each
--- reply, so every acknowledged write survives a kill -9), without (an array
--- of commands the server does not have, as one of an older version), config
--- (an array of configuration lines, "name value ...", each word one argument:
--- { "cluster-enabled yes" }), max_port (the highest port to try, default
--- 59999; a cluster node needs port + 10000 free too, so below 55536).
--- Raises, with the log tail and the command tried, if no server comes up in
--- 20 attempts.
function M.start(opts)
  opts = opts or {}
  assert(opts.password == nil or type(opts.password) == "string", "password must be a string")
  local databases = opts.databases or 16
  assert(type(databases) == "number" and databases == math.floor(databases) and databases > 0,
    "databases must be a positive integer")
  local max_port = opts.max_port or 59999
  assert(type(max_port) == "number" and max_port == math.floor(max_port) and max_port > 20000 and max_port < 65536,
    "max_port must be an integer from 20001 to 65535")
  local root = base_dir()
  local out, code = run("mktemp -d " .. quote(root .. "/redis.XXXXXX") .. " 2>&1")
  if code ~= 0 then error("redis_server: cannot create a directory under " .. root .. ": " .. out, 2) end
  local srv = setmetatable({
    host = HOST,
    password = opts.password,
    databases = databases,
    durable = opts.durable and true or false,
    without = opts.without or {},
    config = opts.config or {},
    dir = (out:gsub("\n$", "")),
    running = false,
  }, Server)
  os.execute("chmod 700 " .. quote(srv.dir))
  registry[#registry + 1] = srv
  local why
  for attempt = 1, ATTEMPTS do
    -- what a failed attempt left (a cluster node's configuration file names
    -- its port) must not follow the server to its next port
    if attempt > 1 then os.execute("find " .. quote(srv.dir) .. " -mindepth 1 -delete 2>/dev/null") end
    srv.port = random_port(max_port)
    local ok
    ok, why = srv:launch()
    if ok then return srv end
  end
  error(srv:failure("no server came up in " .. ATTEMPTS .. " attempts; last: " .. tostring(why)), 2)
end

--- Stops every server still running.
function M.stop_all()
  for _, srv in ipairs(registry) do
    pcall(srv.stop, srv)
  end
end

-- At state close: stop every server, remove the directories. Lua 5.1 and
-- LuaJIT call __gc on userdata only, which newproxy makes there.
local function cleanup()
  M.stop_all()
  for _, srv in ipairs(registry) do
    if srv.pid and alive(srv.pid) then os.execute("kill -9 " .. srv.pid .. " 2>/dev/null") end
    os.execute("rm -rf " .. quote(srv.dir))
  end
  if own_base and base then os.execute("rm -rf " .. quote(base)) end
end
local newproxy = rawget(_G, "newproxy")
if newproxy then
  M.cleanup = newproxy(true)
  getmetatable(M.cleanup).__gc = cleanup
else
  M.cleanup = setmetatable({}, { __gc = cleanup })
end

M.Server = Server
return M
