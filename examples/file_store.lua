-- A session store written in plain Lua: each session is a file in a folder.
-- agentsession.custom turns its four functions into a full manager (checks,
-- timestamps, UUIDs, fork names, tags, list order and filters, errors).
--
--   local file_store = dofile("examples/file_store.lua")   -- or require it
--   local mgr = file_store.open("/path/to/an/existing/folder")
--
-- Run as a script, it proves itself with the conformance suite:
--   lua5.4 examples/file_store.lua        (any Lua from 5.1 on; make demo's environment, see README)
--
-- The folder holds:
--   index.json         every session's metadata and the name of its file
--   <n>.jsonl          one session: its metadata, its state, its op_ids (the
--                      manager's record of the appends it applied, see
--                      docs/custom-stores.md), then one message per line (one
--                      JSON text per line, so a value nested as deep as the
--                      codec allows still fits)
--
-- Every write is atomic: the new session file is written under a new name,
-- then the index is replaced (written to a temporary file, then renamed over
-- the old one, which POSIX makes atomic), and only then is the old session
-- file removed. A process that dies at any point leaves the index naming the
-- old file or the new one, both whole; at worst an unreferenced file remains.
-- Plain Lua cannot fsync, so a power cut may lose the last writes. One process
-- at a time may use a folder (plain Lua has no file locks).

local agentsession = require("agentsession")
local json = agentsession.json

local M = {}

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text, err = f:read("*a")
  f:close()
  if not text then error("cannot read " .. path .. ": " .. tostring(err), 0) end
  return text
end

-- Writes a file whole or not at all: a temporary file, then a rename.
local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("cannot write " .. tmp .. ": " .. tostring(err), 0) end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:close() else f:close() end
  if ok then ok, werr = os.rename(tmp, path) end
  if not ok then
    os.remove(tmp)
    error("cannot write " .. path .. ": " .. tostring(werr), 0)
  end
end

local HEADER = 3 -- lines before the messages

local function encode_session(s)
  local lines = { json.encode(s.metadata), json.encode(s.state), json.encode(s.op_ids or agentsession.array()) }
  for i, m in ipairs(s.messages) do lines[i + HEADER] = json.encode(m) end
  return table.concat(lines, "\n") .. "\n"
end

-- Decodes a JSON text read from `path`; a damaged one raises a plain error
-- naming the file, which the manager reports as `storage`.
local function decode(text, path, what)
  local ok, value = pcall(json.decode, text)
  if not ok then error("damaged " .. what .. " in " .. path .. ": " .. tostring(value), 0) end
  return value
end

-- Only the messages the manager's hint asks for are decoded ({ last = n } or
-- { from = i, count = n }); a session holding part of them says which in `window`.
local function decode_session(text, path, hint)
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  if #lines < HEADER then error("damaged session file " .. path, 0) end
  local total = #lines - HEADER
  local first, last = 1, total
  if hint and hint.last then
    first = math.max(1, total - hint.last + 1)
  elseif hint and hint.from then
    first = math.min(hint.from, total + 1)
    last = math.min(total, first + (hint.count or total) - 1)
  end
  local messages = agentsession.array()
  for i = first, last do
    messages[#messages + 1] = decode(lines[i + HEADER], path, "message " .. i)
  end
  return {
    metadata = decode(lines[1], path, "metadata"),
    state = decode(lines[2], path, "state"),
    op_ids = decode(lines[3], path, "op_ids"),
    messages = messages,
    window = (first > 1 or last < total) and { first = first, total = total } or nil,
  }
end

--- The backend for agentsession.custom: the four functions it needs.
function M.backend(dir)
  local index_path = dir .. "/index.json"
  -- { next = n, sessions = { [id] = { file = name, metadata = {…} } } }
  local index = { next = 1, sessions = {} }
  local text = read_file(index_path)
  if text then
    index = decode(text, index_path, "index")
    local n = type(index) == "table" and index.next
    if type(n) ~= "number" or n ~= math.floor(n) or type(index.sessions) ~= "table" then
      error("damaged index " .. index_path, 0)
    end
  end

  local function commit()
    write_atomic(index_path, json.encode(index))
  end

  local backend = {}

  function backend.load(id, hint)
    local entry = index.sessions[id]
    if entry == nil then return nil end
    local path = dir .. "/" .. entry.file
    local body = read_file(path)
    if body == nil then error("missing session file " .. path, 0) end
    return decode_session(body, path, hint)
  end

  function backend.store(session)
    local id = session.metadata.id
    local old, n = index.sessions[id], index.next
    local name = n .. ".jsonl" -- a new name for every write; the index says whose it is
    write_atomic(dir .. "/" .. name, encode_session(session))
    index.sessions[id] = { file = name, metadata = session.metadata }
    index.next = n + 1
    local ok, err = pcall(commit)
    if not ok then -- the index on disk is the old one: so is the one in memory
      index.sessions[id], index.next = old, n
      os.remove(dir .. "/" .. name)
      error(err, 0)
    end
    if old then os.remove(dir .. "/" .. old.file) end
  end

  function backend.remove(id)
    local old = index.sessions[id]
    if old == nil then return false end
    index.sessions[id] = nil
    local ok, err = pcall(commit)
    if not ok then
      index.sessions[id] = old
      error(err, 0)
    end
    os.remove(dir .. "/" .. old.file)
    return true
  end

  function backend.list()
    local out = {}
    for _, entry in pairs(index.sessions) do out[#out + 1] = entry.metadata end
    return out
  end

  return backend
end

--- A manager over the folder `dir`, which must exist.
function M.open(dir, opts)
  return agentsession.custom(M.backend(dir), opts)
end

-- Whether a shell command succeeded: os.execute gives true on Lua 5.2 and
-- later, 0 on Lua 5.1 and LuaJIT.
local function succeeds(command)
  local status = os.execute(command)
  return status == true or status == 0
end

-- Run as a script: the conformance suite, each check on a new empty folder.
local function main()
  local conformance = require("agentsession.conformance")
  local root = os.tmpname()
  os.remove(root)
  assert(succeeds("mkdir -m 700 '" .. root .. "'"), "cannot create " .. root)
  local made = 0
  local passed, failed, failures = conformance.run(function()
    made = made + 1
    local dir = root .. "/" .. made
    assert(succeeds("mkdir '" .. dir .. "'"), "cannot create " .. dir)
    return M.open(dir)
  end)
  os.execute("rm -rf '" .. root .. "'")
  for _, line in ipairs(failures) do print("FAIL " .. line) end
  print(string.format("file store: %d passed, %d failed", passed, failed))
  os.exit(failed == 0 and 0 or 1)
end

-- `lua examples/file_store.lua` loads this chunk under the very name it
-- puts in arg[0]; dofile and require load it from a script of another name
-- (arg[0] is that script, whatever its file is called).
local function run_as_script()
  if type(arg) ~= "table" or type(arg[0]) ~= "string" or type(debug) ~= "table" then return false end
  return debug.getinfo(1, "S").source == "@" .. arg[0]
end

if run_as_script() then main() end

return M
