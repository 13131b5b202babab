-- The stores every contract spec runs against: one entry per store. Each
-- `new(opts)` returns a fresh, empty manager.
local agentsession = require("agentsession")

local M = {}

-- A private directory for this process's store files, removed when the Lua
-- state closes (busted closes it on exit).
local dir
function M.tmpdir()
  if dir == nil then
    local name = os.tmpname()
    os.remove(name)
    assert(os.execute("mkdir -m 700 '" .. name .. "'"), "cannot create " .. name)
    dir = name
    M.cleanup = setmetatable({}, { __gc = function() os.execute("rm -rf '" .. name .. "'") end })
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

M[1] = { name = "memory", new = function(opts) return agentsession.memory(opts) end }
M[2] = { name = "sqlite", new = function(opts) return agentsession.sqlite(M.new_file(), opts) end }

return M
