#!/bin/sh
# Writes the agentsession command of a checkout: a sh script that runs bin/agentsession with
# an interpreter and the checkout's Lua layer and C module, by absolute paths, so that it runs
# from anywhere without LUA_PATH set (a LUA_PATH or LUA_CPATH that is set comes after them).
#   sh tools/cli-wrapper.sh OUT LUA BUILD_DIR
# (make writes build/bin/agentsession for lua5.4, build/<lua>/bin/agentsession for the others.)
set -eu
out=$1
lua=$2
build=$3
root=$(cd "$(dirname "$0")/.." && pwd)
case "$lua" in
    lua5.2) suffix=_5_2 ;;
    lua5.3) suffix=_5_3 ;;
    lua5.4) suffix=_5_4 ;;
    *) suffix= ;;
esac
quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
mkdir -p "$(dirname "$out")"
{
    echo "#!/bin/sh"
    echo "# Written by make (tools/cli-wrapper.sh): the agentsession command of this checkout, run by $lua."
    echo "root=$(quote "$root")"
    echo "lua_path=\${LUA_PATH$suffix-\${LUA_PATH-}}"
    echo "lua_cpath=\${LUA_CPATH$suffix-\${LUA_CPATH-}}"
    [ -n "$suffix" ] && echo "unset LUA_PATH$suffix LUA_CPATH$suffix"
    echo "LUA_PATH=\"\$root/lua/?.lua;\$root/lua/?/init.lua;\${lua_path:+\$lua_path;};\""
    echo "LUA_CPATH=\"\$root/$build/?.so;\${lua_cpath:+\$lua_cpath;};\""
    echo "export LUA_PATH LUA_CPATH"
    echo "exec $lua \"\$root/bin/agentsession\" \"\$@\""
} >"$out.tmp"
chmod 755 "$out.tmp"
mv "$out.tmp" "$out"
