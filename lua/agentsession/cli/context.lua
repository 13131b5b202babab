--- What every command of agentsession shares: its streams, its stores, its errors, the
-- terminal's questions (colour, progress, confirmation) and ids given by their start.
local agentsession = require("agentsession")
local text = require("agentsession.cli.text")
local walk = require("agentsession.cli.walk")

local M = {}

--- Exit statuses by error kind; any other kind exits 1.
M.STATUS = { usage = 2, not_found = 3, conflict = 4 }

--- The shortest start of an id that stands for the session.
M.MIN_PREFIX = 4

-- The command's own errors, made like the library's: kind and message.
local CliError = {}
CliError.__tostring = function(e) return "agentsession: " .. e.kind .. ": " .. e.message end

local function is_known_error(e)
  return type(e) == "table" and (getmetatable(e) == CliError or agentsession.is_error(e))
end

--- The kind of an error object, the library's or the command's; nil for anything else.
function M.kind(err)
  if is_known_error(err) then return err.kind end
  return nil
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local FD = { stdin = 0, stdout = 1, stderr = 2 }

-- Whether one of the process's standard streams is a terminal: a shell started by
-- os.execute shares them.
local function isatty(name)
  local r = os.execute("test -t " .. FD[name])
  return r == true or r == 0
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The file of a URI that names a SQLite store, or nil (as agentsession.open reads URIs).
function M.sqlite_path(uri)
  if uri == "memory:" then return nil end
  local scheme, rest = uri:match("^(%a[%w+.-]*):(.*)$")
  if scheme == nil then return uri ~= "" and uri or nil end
  if scheme == "sqlite" and rest ~= "" and rest:sub(1, 2) ~= "//" then return rest end
  return nil
end

--- A new context over `sys` (see agentsession.cli.main).
function M.new(sys)
  sys = sys or {}
  local stdin, stdout, stderr = sys.stdin or io.stdin, sys.stdout or io.stdout, sys.stderr or io.stderr
  local getenv = sys.getenv or os.getenv
  local ttys = {}
  local managers, files = {}, {}
  local progress_width = 0
  local ctx = { stdin = stdin, getenv = getenv }

  --- Raises an error of the command: kind and message.
  function ctx.fail(kind, message)
    error(setmetatable({ kind = kind, message = message }, CliError), 0)
  end

  --- Whether the stream ("stdin", "stdout", "stderr") is a terminal.
  function ctx.tty(name)
    if ttys[name] == nil then ttys[name] = (sys.isatty or isatty)(name) and true or false end
    return ttys[name]
  end

  --- Whether to colour standard output: a terminal, and NO_COLOR unset or empty.
  function ctx.colour()
    return ctx.tty("stdout") and (getenv("NO_COLOR") or "") == ""
  end

  local function clear_progress()
    if progress_width > 0 then
      stderr:write("\r", string.rep(" ", progress_width), "\r")
      progress_width = 0
    end
  end

  --- Writes to standard output; a failed write is an io error.
  function ctx.write(...)
    local ok, err = stdout:write(...)
    if not ok then ctx.fail("io", "cannot write to standard output: " .. tostring(err)) end
  end

  --- Writes "agentsession: <kind>: <message>" on standard error.
  function ctx.report(kind, message)
    clear_progress()
    stderr:write("agentsession: ", kind, ": ", text.one_line(tostring(message)), "\n")
  end

  --- Reports an error object (the library's or the command's) as ctx.report does.
  function ctx.report_error(err, prefix)
    if is_known_error(err) then
      ctx.report(err.kind, (prefix or "") .. err.message)
    else
      ctx.report("error", (prefix or "") .. tostring(err))
    end
  end

  --- A progress line on standard error when it is a terminal (and standard output is not
  -- the terminal too, when `to_stdout`): returns `step(n)`, to call after each session, and
  -- `done()`, which clears the line.
  function ctx.progress(label, total, to_stdout)
    if not ctx.tty("stderr") or (to_stdout and ctx.tty("stdout")) then
      return function() end, function() end
    end
    local every = total and math.max(1, math.floor(total / 200)) or 50
    local shown = -every
    local function step(n)
      if n - shown < every and n ~= total then return end
      shown = n
      local line = label .. ": " .. n .. (total and "/" .. total or "")
        .. ((total or n) == 1 and " session" or " sessions")
      stderr:write("\r", line, string.rep(" ", progress_width - #line))
      stderr:flush()
      progress_width = #line
    end
    return step, clear_progress
  end

  --- Asks a yes/no question on the terminal; true for "y" or "yes".
  function ctx.confirm(question)
    clear_progress()
    stderr:write(question, " [y/N] ")
    stderr:flush()
    local answer = stdin:read("*l")
    return answer ~= nil and (answer:lower():match("^%s*y%s*$") or answer:lower():match("^%s*yes%s*$")) ~= nil
  end

  --- Chooses the store of --store (nil: $AGENTSESSION_STORE).
  function ctx.set_store(uri)
    if uri == nil or uri == "" then uri = getenv("AGENTSESSION_STORE") end
    if uri == "" then uri = nil end
    ctx.store_uri = uri
  end

  --- A manager of a URI, closed when the command ends. A SQLite file must exist unless
  -- `create`.
  function ctx.open_uri(uri, create)
    local path = M.sqlite_path(uri)
    if path and not create and not exists(path) then
      ctx.fail("not_found", "no store at " .. path .. " (a command that only reads creates none)")
    end
    -- counts beyond 2^53 on a Lua without integers read as the nearest number, so that a
    -- walk never stops on them (dump and copy move the stored text as it is)
    local mgr = agentsession.open(uri, { big_integers = "float" })
    managers[#managers + 1] = mgr
    return mgr
  end

  --- The manager of the command's store (--store or $AGENTSESSION_STORE).
  function ctx.open(create)
    if not ctx.store_uri then
      ctx.fail("usage", "no store: give --store URI or set AGENTSESSION_STORE (agentsession --help)")
    end
    return ctx.open_uri(ctx.store_uri, create)
  end

  --- A file to read, or standard input for "-".
  function ctx.input(path)
    if path == "-" then return stdin end
    local f, err = io.open(path, "rb")
    if not f then ctx.fail("io", "cannot read " .. tostring(err)) end
    files[#files + 1] = f
    return f
  end

  --- A function writing to `path` (nil or "-": standard output), and one that ends the
  -- writing. A file the command creates is private to the user (0600): it holds sessions.
  function ctx.output(path)
    if path == nil or path == "-" then
      return ctx.write, function()
        local ok, err = stdout:flush()
        if not ok then ctx.fail("io", "cannot write to standard output: " .. tostring(err)) end
      end
    end
    if not exists(path) then os.execute("(umask 077 && : > " .. quote(path) .. ") 2>/dev/null") end
    local f, err = io.open(path, "wb")
    if not f then ctx.fail("io", "cannot write " .. tostring(err)) end
    files[#files + 1] = f
    local function write(...)
      local ok, werr = f:write(...)
      if not ok then ctx.fail("io", "cannot write " .. path .. ": " .. tostring(werr)) end
    end
    local function finish()
      local ok, cerr = f:close()
      files[#files] = nil
      if not ok then ctx.fail("io", "cannot write " .. path .. ": " .. tostring(cerr)) end
    end
    return write, finish
  end

  --- Calls fn(id); when the id is not a session's but the start of exactly one session's id
  -- (at least MIN_PREFIX characters), calls fn with that id instead. Returns what fn returns.
  function ctx.with_id(mgr, id, fn)
    local ok, a, b = pcall(fn, id)
    if ok then return a, b end
    if not agentsession.is_error(a, "not_found") or #id < M.MIN_PREFIX then error(a, 0) end
    local matches = {}
    walk.newest_first(mgr, {}, function(m)
      if m.id:sub(1, #id) == id then matches[#matches + 1] = m.id end
      if #matches > 5 then return false end
    end)
    if #matches == 0 then error(a, 0) end
    if #matches > 1 then
      local shown = {}
      for i = 1, math.min(#matches, 5) do shown[i] = matches[i] end
      ctx.fail("not_found", "no session with id \"" .. id .. "\", and " .. (#matches > 5 and "more than 5" or #matches)
        .. " start with it: " .. table.concat(shown, ", "))
    end
    return fn(matches[1])
  end

  --- Runs fn; an error raised is reported on standard error, one line. Returns the exit
  -- status: fn's result, or the status of the error's kind.
  function ctx.guard(fn)
    local ok, result = xpcall(fn, function(e)
      if is_known_error(e) then return e end
      return setmetatable({ kind = "error", message = tostring(e) }, CliError)
    end)
    if ok then return result end
    ctx.report(result.kind, result.message)
    return M.STATUS[result.kind] or 1
  end

  --- Closes the managers and files the command opened.
  function ctx.close()
    for _, f in ipairs(files) do pcall(f.close, f) end
    for _, mgr in ipairs(managers) do pcall(mgr.close, mgr) end
    files, managers = {}, {}
    pcall(stdout.flush, stdout)
  end

  return ctx
end

return M
