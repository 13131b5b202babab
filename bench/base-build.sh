#!/bin/sh
# bench/base-build.sh DIR: builds, under DIR, the Lua 5.4 module of the commit before the search
# index (the parent of the commit that added csrc/core/as_search.c), for bench/index_bench.lua
# to time appends against; prints the directory of that build's checkout. A build made before
# is used again. Prints "skip: <why>" instead when there is no git history to take it from.
set -e
dir=$1
if ! first=$(git log --diff-filter=A --format=%H -- csrc/core/as_search.c 2>/dev/null | tail -n 1) \
        || [ -z "$first" ]; then
    echo "skip: no git history with the commit that added csrc/core/as_search.c"
    exit 0
fi
base=$(git rev-parse "$first^")
out=$dir/$base
if [ ! -f "$out/build/agentsession/core.so" ]; then
    rm -rf "$out"
    mkdir -p "$out"
    git archive "$base" | tar -x -C "$out"
    make -C "$out" -s build/agentsession/core.so >&2
fi
echo "$out"
