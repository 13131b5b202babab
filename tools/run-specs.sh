#!/bin/sh
# Runs the command given as arguments with AGENTSESSION_TEST_TMP set to a fresh
# private directory, where spec/helpers/redis_server.lua puts its servers.
# Afterwards, however the command ended (failed, killed, or this script
# interrupted by INT or TERM, which are passed on to it as TERM), kills every
# redis-server whose pid is in a *.pid file under that directory, removes the
# directory, and exits with the command's status.
#   sh tools/run-specs.sh lua5.4 /usr/bin/busted [args...]
# The first argument names the interpreter (lua5.1 … lua5.4, luajit): the
# command finds the C module of that interpreter's build directory through
# LUA_CPATH, and the specs learn it from AGENTSESSION_TEST_LUA
# (spec/helpers/interp.lua). SPEC_RUNNER, when set, is a command put before it
# (make valgrind's valgrind and its options).

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentsession-test.XXXXXX") || {
    echo "run-specs: cannot create a temporary directory" >&2
    exit 1
}
chmod 700 "$tmp"
export AGENTSESSION_TEST_TMP="$tmp"
export AGENTSESSION_TEST_LUA="$1"
case "$1" in
    lua5.4) build=build ;;
    *) build="build/$1" ;;
esac
export LUA_CPATH="$PWD/$build/?.so;;"
unset LUA_CPATH_5_2 LUA_CPATH_5_3 LUA_CPATH_5_4
status=1

is_redis() {
    comm=$(cat "/proc/$1/comm" 2>/dev/null || ps -p "$1" -o comm= 2>/dev/null)
    case "$comm" in
        *redis*) return 0 ;;
        *) return 1 ;;
    esac
}

cleanup() {
    trap - EXIT INT TERM
    find "$tmp" -type f -name '*.pid' 2>/dev/null | while IFS= read -r f; do
        pid=$(tr -cd '0-9' < "$f" 2>/dev/null)
        [ -n "$pid" ] || continue
        if is_redis "$pid"; then
            kill -9 "$pid" 2>/dev/null
        fi
    done
    rm -rf "$tmp"
    exit "$status"
}

# On INT or TERM: pass TERM on to the command, wait for it, then clean up.
child=
# shellcheck disable=SC2317 # called from the traps below
interrupted() {
    status=$1
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    cleanup
}
trap cleanup EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

# In the background so that a signal to this script is handled at once (a
# foreground command would delay the trap until it ends); the command then
# has stdin from /dev/null and ignores SIGINT, which arrives as TERM instead.
# shellcheck disable=SC2086 # SPEC_RUNNER is a command and its words
${SPEC_RUNNER:-} "$@" &
child=$!
wait "$child"
status=$?
child=
cleanup
