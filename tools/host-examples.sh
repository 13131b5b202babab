#!/bin/sh
# make host-examples: the C hosts of examples/host built as a host builds them,
# against the library installed (make install, make install-lua) into a
# temporary prefix, with pkg-config; then run, their output compared with
# examples/host/*.expected; so are the programs of docs/c-api.md. On the way
# it checks what is installed, what the shared library exports, that a static
# link needs no shared library of ours, that the header compiles as C++, that
# the manual's prototypes are the header's, and that uninstall removes it all.
#   CC, CXX, CFLAGS, LDFLAGS as for the build (make passes them);
#   HOST_RUNNER runs each program under a tool (make valgrind sets it).
set -eu
root=$(pwd)
cc=${CC:-cc}
cxx=${CXX:-c++}
cflags="-std=c11 -Wall -Wextra -pedantic -Werror ${CFLAGS:-}"
ldflags=${LDFLAGS:-}
runner=${HOST_RUNNER:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentsession-hosts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
fail() {
    echo "host-examples: $*" >&2
    exit 1
}

# The install, and nothing else.
make --no-print-directory install install-lua PREFIX="$prefix" > "$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log" >&2; fail "make install failed"; }
version=$(sed -n 's/^ *VERSION = "\(.*\)",$/\1/p' lua/agentsession/init.lua)
cat > "$tmp/want" <<EOF
include/agentsession.h
include/agentsession_lua.h
lib/libagentsession.a
lib/libagentsession.so
lib/libagentsession.so.0
lib/libagentsession.so.$version
lib/libagentsession_lua.a
lib/pkgconfig/agentsession-lua.pc
lib/pkgconfig/agentsession.pc
EOF
(cd "$prefix" && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort) > "$tmp/got"
diff -u "$tmp/want" "$tmp/got" || fail "the install is not the files listed"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
libdir=$(pkg-config --variable=libdir agentsession)
[ "$(pkg-config --modversion agentsession)" = "$version" ] \
    || fail "agentsession.pc says $(pkg-config --modversion agentsession), init.lua $version"
readelf -d "$libdir/libagentsession.so" | grep -q 'SONAME.*\[libagentsession\.so\.0\]' \
    || fail "libagentsession.so has no SONAME libagentsession.so.0"
# Only the API: the sanitizers' own symbols aside, every exported symbol is agentsession_*.
others=$(nm -D --defined-only "$libdir/libagentsession.so" | awk '{ print $3 }' \
    | grep -v -e '^agentsession_' -e '^__odr_asan' -e '^__asan' -e '^__ubsan' -e '^_init$' -e '^_fini$' || true)
[ -z "$others" ] || fail "libagentsession.so exports more than its API: $others"
for a in libagentsession.a libagentsession_lua.a; do
    others=$(nm --defined-only "$libdir/$a" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ { print $3 }' \
        | grep -v -e '^agentsession_' -e '^luaopen_agentsession' -e '^__odr_asan' -e '^__asan' || true)
    [ -z "$others" ] || fail "$a defines global symbols beside its API: $others"
done

# The hosts, as their comments say to build them.
# shellcheck disable=SC2046,SC2086 # pkg-config's output is a list of words
$cc $cflags -o "$tmp/npc" examples/host/npc.c $(pkg-config --cflags --libs agentsession) \
    -Wl,-rpath,"$libdir" $ldflags || fail "npc.c does not build"
# shellcheck disable=SC2046,SC2086
$cc $cflags -o "$tmp/npc-static" examples/host/npc.c $(pkg-config --cflags agentsession) \
    "$libdir/libagentsession.a" -Wl,--as-needed $(pkg-config --static --libs agentsession) $ldflags \
    || fail "npc.c does not build with libagentsession.a"
if readelf -d "$tmp/npc-static" | grep -q 'NEEDED.*libagentsession'; then
    fail "npc-static needs libagentsession.so"
fi
# shellcheck disable=SC2046,SC2086
$cxx -std=c++11 -Wall -Wextra -pedantic -Werror ${CFLAGS:-} -o "$tmp/header_cxx" tests/header_cxx.cpp \
    $(pkg-config --cflags --libs agentsession) -Wl,-rpath,"$libdir" $ldflags \
    || fail "the headers do not build as C++"
# shellcheck disable=SC2046,SC2086
$cc $cflags -o "$tmp/embed_lua" examples/host/embed_lua.c \
    $(pkg-config --cflags --libs agentsession-lua lua5.4) $ldflags || fail "embed_lua.c does not build"

# Their runs. npc runs twice on one store: a game started again gives the same story.
run() {
    name=$1
    shift
    $runner "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" || {
        cat "$tmp/$name.out" "$tmp/$name.err" >&2
        fail "$name failed"
    }
    diff -u "examples/host/$name.expected" "$tmp/$name.out" || fail "$name printed other lines than $name.expected"
    [ ! -s "$tmp/$name.err" ] || { cat "$tmp/$name.err" >&2; fail "$name wrote to standard error"; }
}
run npc "$tmp/npc" "$tmp/npc.db"
run npc "$tmp/npc" "$tmp/npc.db"
run npc "$tmp/npc-static" "$tmp/npc-static.db"
out=$($runner "$tmp/header_cxx") || fail "header_cxx failed"
[ "$out" = "c++: version 1, listed" ] || fail "header_cxx printed: $out"
# Lua finds no module file where it looks: what the script requires is in the program.
mkdir "$tmp/nowhere"
export LUA_PATH="$tmp/nowhere/?.lua" LUA_CPATH="$tmp/nowhere/?.so"
unset LUA_INIT LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT_5_4
run embed_lua "$tmp/embed_lua" "$root/examples/host/agent.lua" "$tmp/agent.db"

# docs/c-api.md: its programs build and run; its prototypes (blocks of
# declarations) and fragments (the other blocks, each compiled as the body of
# a function) compile against the installed headers; it shows every function.
mkdir "$tmp/doc"
awk -v dir="$tmp/doc" '
    /^```c$/ { n++; file = sprintf("%s/block%02d.c", dir, n); inside = 1; next }
    /^```$/ { inside = 0; next }
    inside { print > file }
' docs/c-api.md
{
    echo "#include <agentsession.h>"
    echo "#include <agentsession_lua.h>"
    echo "#include <stdio.h>"
} > "$tmp/doc/all.c"
for block in "$tmp/doc"/block*.c; do
    name=$(basename "$block" .c)
    if grep -q 'int main(' "$block"; then
        # shellcheck disable=SC2046,SC2086
        $cc $cflags -o "$tmp/doc/$name" "$block" $(pkg-config --cflags --libs agentsession) \
            -Wl,-rpath,"$libdir" $ldflags || fail "the program of docs/c-api.md in $name does not build"
        $runner "$tmp/doc/$name" > "$tmp/doc/$name.out" 2> "$tmp/doc/$name.err" \
            && [ ! -s "$tmp/doc/$name.err" ] \
            || { cat "$tmp/doc/$name.err" >&2; fail "the program of docs/c-api.md in $name failed"; }
    elif grep -q -v -E '^(agentsession_status|void|int|const char) |^ ' "$block"; then
        printf 'void doc_%s(agentsession_manager *m, const char *id);\n' "$name" >> "$tmp/doc/all.c"
        printf 'void doc_%s(agentsession_manager *m, const char *id) {\n' "$name" >> "$tmp/doc/all.c"
        echo "    agentsession_error err; (void)m; (void)id; (void)err;" >> "$tmp/doc/all.c"
        cat "$block" >> "$tmp/doc/all.c"
        echo "}" >> "$tmp/doc/all.c"
    else
        cat "$block" >> "$tmp/doc/all.c"
    fi
done
# shellcheck disable=SC2046
$cc -std=c11 -fsyntax-only $(pkg-config --cflags agentsession) "$tmp/doc/all.c" \
    || fail "the prototypes or fragments of docs/c-api.md do not compile against the headers"
for f in $(sed -n 's/^AGENTSESSION_API [^(]*[ *]\(agentsession_[a-z_]*\)(.*/\1/p' csrc/lib/agentsession.h); do
    grep -q "$f(" docs/c-api.md || fail "docs/c-api.md does not show $f"
done

make --no-print-directory uninstall PREFIX="$prefix" > "$tmp/uninstall.log" 2>&1 \
    || { cat "$tmp/uninstall.log" >&2; fail "make uninstall failed"; }
left=$(find "$prefix" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "host-examples: npc (shared and static), embed_lua, the C++ header check and docs/c-api.md as expected"
