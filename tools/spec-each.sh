#!/bin/sh
# Runs the busted suite once on each interpreter named, each with its own
# module build (tools/run-specs.sh), one after the other; prints each run's
# "N passed, M failed" under its interpreter's name, then their sum as the
# last line, and fails when any run failed.
#   sh tools/spec-each.sh lua5.1 lua5.2 lua5.3 lua5.4 luajit
log=$(mktemp "${TMPDIR:-/tmp}/agentsession-spec.XXXXXX") || exit 1
trap 'rm -f "$log"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
passed=0
failed=0
status=0
results=
for lua in "$@"; do
    echo "==== busted on $lua"
    sh tools/run-specs.sh "$lua" /usr/bin/busted -o spec/helpers/summary.lua >"$log" 2>&1
    run=$?
    cat "$log"
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
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
