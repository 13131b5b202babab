#!/bin/sh
# The rock as its users get it, checked offline in a scratch directory outside the checkout,
# which it leaves as it found it:
#  - the checkout's files, tracked or new but not ignored, as they are now, become a git
#    checkout of their own there;
#  - `luarocks make` in it installs into a tree of its own and leaves `git status --porcelain`
#    empty (what the builtin backend compiles next to the sources, .gitignore covers);
#  - meanwhile `make dist` in it writes the release tarball and rockspec; from another directory,
#    `luarocks pack` makes the source rock of that rockspec with its source.url pointed at the
#    local tarball, and `luarocks install --deps-mode=none` builds the source rock into an empty
#    tree;
#  - each tree then serves the module alone, used once, and its agentsession command lists
#    the store the module wrote.
# luarocks runs without a network where `unshare -rn` can give it an empty network namespace
# (offline by its inputs alone elsewhere: local files, --deps-mode=none), with TMPDIR in the
# scratch directory, and with CFLAGS -O0 instead of its -O2, which shortens the two builds and
# changes nothing of what is packed, installed or left behind.
# Usage: sh tools/rock-check.sh VERSION (make rock passes the Makefile's VERSION).
set -e
version=$1
if [ -z "$version" ]; then
    echo "usage: sh tools/rock-check.sh VERSION" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
# Every Lua file under lua/ is a module of build.modules, named after its path (luarocks
# copies the whole lua/ directory, so an installed tree alone would not show one left out).
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
name=agentsession-$version
work=$(mktemp -d)
make_pid=
cleanup() {
    if [ -n "$make_pid" ]; then
        kill "$make_pid" 2>/dev/null || true
        wait "$make_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
src="$work/checkout"
release="$work/release"
mkdir "$src" "$release" "$work/tmp"
export TMPDIR="$work/tmp"
echo 'variables = { CFLAGS = "-O0 -fPIC" }' >"$work/luarocks-config.lua"
export LUAROCKS_CONFIG="$work/luarocks-config.lua"
offline=
network="no network namespace here, so offline by its inputs alone"
if unshare -rn true 2>/dev/null; then
    offline="unshare -rn"
    network="with no network"
fi

fail() {
    [ -f "$2" ] && cat "$2" >&2
    echo "rock: $1" >&2
    exit 1
}

# A tracked file deleted in the working tree is left out (tar names it on stderr).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -z "$(git rev-parse --show-prefix)" ]; then
    git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$src"
else
    tar --exclude=./build -cf - . | tar -xf - -C "$src"
fi
cd "$src"
git -c init.defaultBranch=main init -q
git add -A
git -c user.name=rock-check -c user.email=rock-check@localhost -c commit.gpgsign=false \
    commit -q --no-verify -m "the files of the checkout"

$offline luarocks --lua-version=5.4 --tree="$work/make-tree" make --deps-mode=none \
    agentsession-scm-1.rockspec >"$work/make.log" 2>&1 &
make_pid=$!

${MAKE:-make} --no-print-directory -s dist >"$work/dist.log" 2>&1 || fail "make dist failed" "$work/dist.log"
$offline luarocks --lua-version=5.4 lint "build/dist/$name-1.rockspec" >"$work/lint.log" 2>&1 \
    || fail "luarocks lint of the release rockspec failed" "$work/lint.log"
cp "build/dist/$name.tar.gz" "$release/"
sed "s|^  url = \"https://.*\",\$|  url = \"file://$release/$name.tar.gz\",|" "build/dist/$name-1.rockspec" \
    >"$release/$name-1.rockspec"
[ "$(grep -c "file://" "$release/$name-1.rockspec")" = 1 ] \
    || fail "the release rockspec has no source.url line to point at the local tarball"

cd "$release"
$offline luarocks --lua-version=5.4 pack "$name-1.rockspec" >"$work/pack.log" 2>&1 \
    || fail "luarocks pack failed" "$work/pack.log"
[ -f "$name-1.src.rock" ] || fail "luarocks pack made no $name-1.src.rock" "$work/pack.log"
$offline luarocks --lua-version=5.4 install --deps-mode=none --tree="$work/rock-tree" "$name-1.src.rock" \
    >"$work/install.log" 2>&1 || fail "luarocks install of $name-1.src.rock failed" "$work/install.log"

pid=$make_pid
make_pid=
wait "$pid" || fail "luarocks make failed" "$work/make.log"
cd "$src"
left=$(git status --porcelain)
[ -z "$left" ] || fail "luarocks make left files git does not ignore:
$left"
cd "$release"

# use_tree TREE [LUA_VERSION]: the module from TREE alone, used once with each store, by the
# interpreter of that Lua (default 5.4).
use_tree() {
    lv=${2:-5.4}
    ROCK_TREE="$1" ROCK_VERSION="$version" \
    LUA_PATH="$1/share/lua/$lv/?.lua;$1/share/lua/$lv/?/init.lua" LUA_CPATH="$1/lib/lua/$lv/?.so" \
    "lua$lv" -e '
      local tree = os.getenv("ROCK_TREE")
      local as = require("agentsession")
      assert(as.VERSION == os.getenv("ROCK_VERSION"), as.VERSION)
      local found
      for pattern in package.cpath:gmatch("[^;]+") do
        local file = io.open((pattern:gsub("%?", "agentsession/core")), "rb")
        if file then file:close() found = pattern break end
      end
      assert(found and found:find(tree, 1, true), "agentsession.core is not from the tree")
      local m = as.memory()
      local id = m:save(as.session{ name = "rock", messages = { { n = 1 } } }).id
      assert(m:resume(id).messages[1].n == 1)
      if math.type then assert(math.type(m:resume(id).messages[1].n) == "integer") end
      m:close()
      local path = tree .. "/check.db"
      m = as.sqlite(path)
      id = m:save(as.session{ name = "rock", messages = { { n = 2 } } }).id
      m:close()
      m = as.open(path)
      assert(m:resume(id).messages[1].n == 2)
      m:close()
      local ok, err = pcall(as.redis, { host = "127.0.0.1", port = 1, timeout_ms = 500 })
      assert(not ok and as.is_error(err, "unavailable"), tostring(err))
      local conformance = require("agentsession.conformance")
      assert(package.loaded["agentsession.conformance"] == conformance)
      local passed, failed, failures = conformance.run(as.memory, { only = "^save:" })
      assert(passed > 0 and failed == 0, failures[1])
    ' || fail "the module installed in $1 does not work"
    # the agentsession command it installs, with the tree's modules and the system's argparse
    LUA_PATH="$1/share/lua/$lv/?.lua;$1/share/lua/$lv/?/init.lua;;" LUA_CPATH="$1/lib/lua/$lv/?.so" \
        "$1/bin/agentsession" --store "$1/check.db" list --json 2>&1 | grep -q '"name":"rock"' \
        || fail "the agentsession command installed in $1 does not list its store"
}
use_tree "$work/make-tree"
use_tree "$work/rock-tree"

# The rock on the older Luas (lua >= 5.1, < 5.5): luarocks make for each, one after the
# other in the same checkout, which each leaves clean.
cd "$src"
for lv in 5.1 5.2 5.3; do
    $offline luarocks --lua-version=$lv --tree="$work/make-tree-$lv" make --deps-mode=none \
        agentsession-scm-1.rockspec >"$work/make-$lv.log" 2>&1 \
        || fail "luarocks --lua-version=$lv make failed" "$work/make-$lv.log"
    left=$(git status --porcelain)
    [ -z "$left" ] || fail "luarocks --lua-version=$lv make left files git does not ignore:
$left"
    use_tree "$work/make-tree-$lv" $lv
done
echo "rock: luarocks make left the checkout clean; make dist, luarocks pack and luarocks install" \
    "of $name-1.src.rock built it ($network); each tree served the module alone and its command;" \
    "luarocks make built it for Lua 5.1, 5.2 and 5.3 too"

