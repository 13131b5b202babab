#!/bin/sh
# Checks that the rockspec lists every Lua module, builds and installs the rock
# offline into a throw-away tree with luarocks, then loads the installed modules
# from that tree alone and uses them once.
set -e
# Every Lua file under lua/ is a module of build.modules, named after its path (luarocks
# copies the whole lua/ directory, so the installed tree alone would not show one left out).
lua5.4 -e '
  local spec = {}
  assert(loadfile("agentsession-scm-1.rockspec", "t", spec))()
  local listed, bad = {}, {}
  for name, file in pairs(spec.build.modules) do
    if type(file) == "string" then
      local base = "lua/" .. name:gsub("%.", "/")
      if file ~= base .. ".lua" and file ~= base .. "/init.lua" then bad[#bad + 1] = name .. " = " .. file end
      listed[file] = true
    end
  end
  for file in io.popen("find lua -name \"*.lua\" | sort"):lines() do
    if not listed[file] then bad[#bad + 1] = file .. " is not in build.modules" end
  end
  if #bad > 0 then
    io.stderr:write("rock: ", table.concat(bad, "; "), "\n")
    os.exit(1)
  end
'
tree=$(mktemp -d)
# luarocks compiles the objects next to the sources; they are removed with the tree.
trap 'rm -rf "$tree"; rm -f csrc/*/*.o' EXIT
log="$tree/luarocks.log"
if ! luarocks --lua-version=5.4 --tree="$tree" make --deps-mode=none agentsession-scm-1.rockspec >"$log" 2>&1; then
    cat "$log" >&2
    echo "rock: luarocks make failed" >&2
    exit 1
fi
ROCK_TREE="$tree" LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua" \
LUA_CPATH="$tree/lib/lua/5.4/?.so" \
lua5.4 -e '
  local as = require("agentsession")
  assert(package.searchpath("agentsession.core", package.cpath):find(os.getenv("ROCK_TREE"), 1, true))
  local m = as.memory()
  local id = m:save(as.session{ name = "rock", messages = { { n = 1 } } }).id
  assert(math.type(m:resume(id).messages[1].n) == "integer")
  m:close()
  local path = os.getenv("ROCK_TREE") .. "/check.db"
  m = as.sqlite(path)
  id = m:save(as.session{ name = "rock", messages = { { n = 2 } } }).id
  m:close()
  m = as.open(path)
  assert(m:resume(id).messages[1].n == 2)
  m:close()
  local ok, err = pcall(as.redis, { host = "127.0.0.1", port = 1, timeout_ms = 500 })
  assert(not ok and as.is_error(err, "unavailable"), tostring(err))
  local conformance = require("agentsession.conformance")
  assert(package.searchpath("agentsession.conformance", package.path):find(os.getenv("ROCK_TREE"), 1, true))
  local passed, failed, failures = conformance.run(as.memory, { only = "^save:" })
  assert(passed > 0 and failed == 0, failures[1])
  print("rock: installed with luarocks and loaded from " .. os.getenv("ROCK_TREE"))
' 
