#!/bin/sh
# Writes a C header holding Lua source files as byte arrays, for the library
# that carries its Lua layer inside it (csrc/lib/agentsession_lua.c):
#   sh tools/embed-lua.sh OUT NAME=FILE...
# Each NAME becomes `static const unsigned char NAME[]` with FILE's bytes.
set -eu
out=$1
shift
tmp="$out.tmp"
{
    echo "/* Written by tools/embed-lua.sh from the files named below; do not edit. */"
    for pair in "$@"; do
        name=${pair%%=*}
        file=${pair#*=}
        echo "/* $file */"
        echo "static const unsigned char ${name}[] = {"
        od -An -v -tu1 "$file" | sed -e 's/^ *//' -e 's/ *$//' -e '/^$/d' -e 's/  */,/g' -e 's/$/,/'
        echo "};"
    done
} > "$tmp"
mv "$tmp" "$out"
