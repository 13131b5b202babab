#!/bin/sh
# Writes a C header holding the Lua layer's source files as byte arrays, for
# the library that carries its Lua layer inside it (csrc/lib/agentsession_lua.c):
#   sh tools/embed-lua.sh OUT FILE...
# Each FILE, a path under lua/, becomes a byte array, and the array
# as_lua_chunks lists them with their module name (lua/agentsession/x/init.lua
# is agentsession.x, lua/agentsession/x/y.lua agentsession.x.y) and the chunk
# name require would give the file, ending with a NULL entry.
set -eu
out=$1
shift
tmp="$out.tmp"
{
    echo "/* Written by tools/embed-lua.sh from the files named below; do not edit. */"
    i=0
    for file in "$@"; do
        echo "/* $file */"
        echo "static const unsigned char as_chunk_$i[] = {"
        od -An -v -tu1 "$file" | sed -e 's/^ *//' -e 's/ *$//' -e '/^$/d' -e 's/  */,/g' -e 's/$/,/'
        echo "};"
        i=$((i + 1))
    done
    echo "static const as_lua_chunk as_lua_chunks[] = {"
    i=0
    for file in "$@"; do
        rel=${file#lua/}
        module=$(printf '%s\n' "$rel" | sed -e 's|/init\.lua$||' -e 's|\.lua$||' -e 's|/|.|g')
        echo "    { \"$module\", \"@$rel\", as_chunk_$i, sizeof as_chunk_$i },"
        i=$((i + 1))
    done
    echo "    { NULL, NULL, NULL, 0 }"
    echo "};"
} > "$tmp"
mv "$tmp" "$out"
