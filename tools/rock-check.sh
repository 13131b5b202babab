#!/bin/sh
# Builds and installs the rock offline into a throw-away tree with luarocks, then
# loads the installed module from that tree alone and uses it once.
set -e
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
  print("rock: installed with luarocks and loaded from " .. os.getenv("ROCK_TREE"))
' 
