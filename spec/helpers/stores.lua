-- The stores every contract spec runs against: one entry per store. Each
-- `new(opts)` returns a fresh, empty manager.
local agentsession = require("agentsession")

local M = {}

--- Runs a shell command; true when it exited with status 0 (os.execute returns
--- the status itself on Lua 5.1 and LuaJIT, true or nil on 5.2 and later).
function M.execute(command)
  local result = os.execute(command)
  return result == true or result == 0
end

-- An object whose finalizer calls fn: a table with __gc from Lua 5.2 on, a
-- newproxy userdata on 5.1 and LuaJIT, whose tables have no finalizers.
local function finalizer(fn)
  local newproxy = rawget(_G, "newproxy")
  if newproxy then
    local proxy = newproxy(true)
    getmetatable(proxy).__gc = fn
    return proxy
  end
  return setmetatable({}, { __gc = fn })
end

-- A private directory for this process's store files: under the directory
-- tools/run-specs.sh removes afterwards (AGENTSESSION_TEST_TMP) when there is
-- one, and removed when the Lua state closes (busted closes it on exit from
-- Lua 5.2 on).
local dir
function M.tmpdir()
  if dir == nil then
    local name = os.tmpname()
    os.remove(name)
    local base = os.getenv("AGENTSESSION_TEST_TMP")
    if base then name = base .. "/stores" .. name:gsub("[^%w]", "-") end
    assert(M.execute("mkdir -m 700 '" .. name .. "'"), "cannot create " .. name)
    dir = name
    M.cleanup = finalizer(function() os.execute("rm -rf '" .. name .. "'") end)
  end
  return dir
end

local files = 0
function M.new_file()
  files = files + 1
  return M.tmpdir() .. "/store" .. files .. ".db"
end

--- The ids of a list() result, in its order.
function M.ids(list)
  local ids = {}
  for i, meta in ipairs(list) do ids[i] = meta.id end
  return ids
end

-- One redis-server for the contract specs, started by the first Redis store
-- made (it raises, failing the spec, when no server can start). Each manager
-- gets a prefix of its own, so each starts empty.
local server
function M.redis_server()
  if server == nil then server = require("helpers.redis_server").start() end
  return server
end

local prefixes = 0
function M.new_redis(opts)
  local srv = M.redis_server()
  prefixes = prefixes + 1
  local o = { host = srv.host, port = srv.port, prefix = "spec" .. prefixes .. ":" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return agentsession.redis(o), o.prefix
end

M[1] = { name = "memory", new = function(opts) return agentsession.memory(opts) end }
M[2] = { name = "sqlite", new = function(opts) return agentsession.sqlite(M.new_file(), opts) end }
M[3] = { name = "redis", new = function(opts) return (M.new_redis(opts)) end }
M[4] = { name = "custom", new = function(opts)
  return agentsession.custom(require("helpers.lua_backend").new(), opts)
end }
M[5] = { name = "custom with every optional function", new = function(opts)
  return agentsession.custom(require("helpers.lua_backend").new{ fast = true }, opts)
end }

-- examples/file_store.lua: a folder of JSON files, each store in a new folder.
local folders = 0
function M.new_folder()
  folders = folders + 1
  local path = M.tmpdir() .. "/folder" .. folders
  assert(M.execute("mkdir '" .. path .. "'"), "cannot create " .. path)
  return path
end
M[6] = { name = "file store example", new = function(opts)
  return dofile("examples/file_store.lua").open(M.new_folder(), opts)
end }

return M
