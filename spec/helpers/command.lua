-- The agentsession command as a process, for spec/22-cli_spec.lua: `run` starts it with
-- arguments, a standard input and an environment and returns what it wrote and its exit
-- status; `run_tty` starts it under script(1), so that its standard streams are a terminal.
-- Runs on every Lua the suite runs on (exit statuses go through a file: io.popen's close
-- gives none on Lua 5.1 and LuaJIT).
local interp = require("helpers.interp")

local M = {}

function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.q

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
  return path
end

--- Runs a shell command; true when it exited 0.
function M.sh(command)
  local r = os.execute(command)
  return r == true or r == 0
end

--- The checkout's root (busted runs there).
M.root = assert(io.popen("pwd")):read("*l")

--- The command of the checkout, for the suite's Lua (make writes it).
M.command = M.root .. "/" .. interp.build_dir() .. "/bin/agentsession"

-- A private directory for this run's files, removed when the Lua state closes.
local dir
function M.tmpdir()
  if dir then return dir end
  local base = os.getenv("AGENTSESSION_TEST_TMP")
  if base == nil or base == "" then base = os.getenv("TMPDIR") or "/tmp" end
  dir = assert(io.popen("mktemp -d " .. q(base .. "/cli.XXXXXX"))):read("*l")
  assert(dir and dir ~= "", "cannot create a directory under " .. base)
  M.cleanup = setmetatable({}, { __gc = function() os.execute("rm -rf " .. q(dir)) end })
  return dir
end

local count = 0
--- A new path in the private directory.
function M.path(name)
  count = count + 1
  return M.tmpdir() .. "/" .. count .. "-" .. (name or "file")
end

-- The shell words of a command line: environment (AGENTSESSION_STORE and NO_COLOR unset
-- unless given), the command, its arguments.
local function words(args, o)
  local w = { "env -u AGENTSESSION_STORE -u NO_COLOR" }
  local names = {}
  for k in pairs(o.env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do w[#w + 1] = k .. "=" .. q(o.env[k]) end
  if o.runner then w[#w + 1] = o.runner end
  w[#w + 1] = q(o.command or M.command)
  for _, a in ipairs(args) do w[#w + 1] = q(a) end
  return table.concat(w, " ")
end

--- Runs the command with `args` (an array of strings) from the private directory.
-- o: `stdin` (a string, default none), `env` (a table), `command` (another executable).
-- Returns { out =, err =, status = }.
function M.run(args, o)
  o = o or {}
  local base = M.path("run")
  local stdin = o.stdin and M.write(base .. ".in", o.stdin) or "/dev/null"
  os.execute("cd " .. q(M.tmpdir()) .. " && " .. words(args, o) .. " <" .. q(stdin) .. " >" .. q(base .. ".out")
    .. " 2>" .. q(base .. ".err") .. "; echo $? >" .. q(base .. ".status"))
  local r = { out = M.read(base .. ".out"), err = M.read(base .. ".err"),
    status = tonumber(M.read(base .. ".status"):match("%d+")) }
  os.remove(base .. ".in")
  os.remove(base .. ".out")
  os.remove(base .. ".err")
  os.remove(base .. ".status")
  return r
end

-- Whether script(1) can make a pseudo-terminal here (a chroot without /dev/pts cannot).
local has_pty
local function pty()
  if has_pty == nil then has_pty = M.sh("script -qec true /dev/null </dev/null >/dev/null 2>&1") end
  return has_pty
end

--- Runs the command under script(1): standard input, output and error are one terminal.
-- Where no pseudo-terminal can be made, runs it through spec/helpers/tty_driver.lua
-- instead, which answers the command's terminal test with yes and merges its output and
-- errors as a terminal shows them. o: `input` (typed at the terminal), `env`. Returns
-- { out = what the terminal showed, status = }.
function M.run_tty(args, o)
  o = o or {}
  local base = M.path("tty")
  local feed = o.input and ("printf '%s' " .. q(o.input) .. " | ") or ""
  local tail = o.input and "" or " </dev/null"
  local line
  if pty() then
    line = "script -qec " .. q(words(args, o)) .. " /dev/null"
  else
    line = words(args, { env = o.env, runner = interp.env(M.root) .. " " .. interp.lua,
      command = M.root .. "/spec/helpers/tty_driver.lua" })
  end
  os.execute("cd " .. q(M.tmpdir()) .. " && " .. feed .. line .. " >"
    .. q(base .. ".out") .. " 2>&1" .. tail .. "; echo $? >" .. q(base .. ".status"))
  local r = { out = M.read(base .. ".out"), status = tonumber(M.read(base .. ".status"):match("%d+")) }
  os.remove(base .. ".out")
  os.remove(base .. ".status")
  return r
end

--- The lines of a text.
function M.lines(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

return M
