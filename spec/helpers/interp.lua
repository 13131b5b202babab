--- The Lua interpreter the specs run on, and how a child process runs the same one.
-- tools/run-specs.sh sets AGENTSESSION_TEST_LUA to the interpreter's command
-- (lua5.1, lua5.2, lua5.3, lua5.4 or luajit) and LUA_CPATH to its build directory;
-- a spec that starts a child Lua uses `M.lua` and `M.env(root)` so that the
-- child runs the interpreter and the module build of the suite.
local M = {}

--- The interpreter's command: "lua5.4", "luajit", ….
M.lua = os.getenv("AGENTSESSION_TEST_LUA") or "lua5.4"

--- The build directory of the C module for an interpreter, relative to the root:
--- "build" for lua5.4 (as `make` builds it), "build/<command>" for the others.
function M.build_dir(lua)
  lua = lua or M.lua
  if lua == "lua5.4" then return "build" end
  return "build/" .. lua
end

--- Whether numbers have an integer subtype (Lua 5.3 and 5.4).
M.has_integers = math.type ~= nil

--- Whether this is LuaJIT.
M.jit = rawget(_G, "jit") ~= nil

--- The five interpreters the module supports, by command.
M.all = { "lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit" }

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The environment words (LUA_PATH=… LUA_CPATH=…) a child `lua` (default M.lua) needs
--- to load agentsession and the spec helpers from `root` (an absolute path).
function M.env(root, lua)
  return "LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;;")
    .. " LUA_CPATH=" .. q(root .. "/" .. M.build_dir(lua) .. "/?.so;;")
end

return M
