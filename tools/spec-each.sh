#!/bin/sh
# Runs the busted suite once on each interpreter named, each with its own
# module build (tools/run-specs.sh), SPEC_JOBS of them at a time (default 2:
# a suite spends much of its time waiting on servers and child processes);
# prints each run's output and "N passed, M failed" under its interpreter's
# name, then their sum as the last line, and fails when any run failed.
#   sh tools/spec-each.sh lua5.1 lua5.2 lua5.3 lua5.4 luajit
dir=$(mktemp -d "${TMPDIR:-/tmp}/agentsession-spec.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
printf '%s\n' "$@" | xargs -P "${SPEC_JOBS:-2}" -I{} sh -c '
    sh tools/run-specs.sh "$1" /usr/bin/busted -o spec/helpers/summary.lua >"$2/$1.log" 2>&1
    echo "$?" >"$2/$1.status"
    echo "==== busted on $1: $(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$2/$1.log" | tail -n 1)"
' sh {} "$dir"
passed=0
failed=0
status=0
results=
for lua in "$@"; do
    echo "==== busted on $lua"
    cat "$dir/$lua.log"
    run=$(cat "$dir/$lua.status" 2>/dev/null || echo 1)
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$dir/$lua.log" | tail -n 1)
    if [ -z "$summary" ]; then
        p=0
        m=1
        summary="no summary (exit $run)"
    else
        p=${summary%% passed*}
        m=${summary#*, }
        m=${m%% failed}
        [ "$run" -ne 0 ] && [ "$m" -eq 0 ] && m=1
    fi
    [ "$run" -eq 0 ] || status=1
    passed=$((passed + p))
    failed=$((failed + m))
    results="$results
  $lua: $summary"
done
echo "==== busted on every Lua:$results"
echo "$passed passed, $failed failed"
exit "$status"
