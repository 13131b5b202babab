#!/bin/sh
# make valgrind: runs the C tests, the fuzz replays, the C hosts of
# examples/host and every spec under valgrind memcheck. The spec files run one
# busted process each, two at a time (this
# machine has two cores), each under valgrind; the programs they start (shells,
# redis-server, child lua5.4 processes) run natively — make sanitize checks the
# children. Any error, or any definite, indirect or possible leak, fails the run; the
# suppressions in tools/valgrind.supp say why each is there.
# Prints one summary line "N passed, M failed" over all the spec files.
set -u
root=$(pwd)
out="$root/build/valgrind"
rm -rf "$out"
mkdir -p "$out" || exit 1
export LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;'
export LUA_CPATH='build/?.so;;'
vg="valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible"
vg="$vg --show-leak-kinds=definite,indirect,possible --suppressions=$root/tools/valgrind.supp --num-callers=30"

failed=0
make --no-print-directory all build/core_test build/fault_test build/float_test build/capi_test \
    fuzz-replay-build || exit 1

# VALGRIND_SPECS=FILES: those spec files only, without the C tests.
if [ -z "${VALGRIND_SPECS:-}" ]; then
    echo "valgrind: C tests"
    $vg --log-file="$out/core_test.%p.log" build/core_test || failed=$((failed + 1))
    # SQLite's allocator is swept natively (make test) and under the sanitizers: here its
    # 6,000 points would take longer than the rest of the run. So is the cluster store, whose
    # code valgrind meets in spec/24's files below.
    FAULT_MODES="core lua" FAULT_STORES="memory,sqlite,redis,custom,custom (optional functions)" \
        $vg --log-file="$out/fault_test.%p.log" build/fault_test || failed=$((failed + 1))
    $vg --log-file="$out/capi_test.%p.log" build/capi_test || failed=$((failed + 1))
    # a small sample: make test runs the full one natively
    $vg --log-file="$out/float_test.%p.log" build/float_test 2000 || failed=$((failed + 1))
    FUZZ_RUNNER="$vg --log-file=$out/replay.%p.log" make --no-print-directory fuzz-replay || failed=$((failed + 1))
    echo "valgrind: the C hosts of examples/host"
    HOST_RUNNER="$vg --log-file=$out/host.%p.log" make --no-print-directory host-examples || failed=$((failed + 1))
fi

echo "valgrind: specs, two files at a time"
# The longest files first, so that the two queues end together.
files=$(ls ${VALGRIND_SPECS:-spec/*_spec.lua} | while read -r f; do
    printf '%s %s\n' "$(wc -c < "$f")" "$f"
done | sort -rn | cut -d' ' -f2)
printf '%s\n' $files | xargs -P 2 -I{} sh -c '
    name=$(basename "$1" .lua)
    SPEC_RUNNER="'"$vg"' --log-file=$2/$name.%p.log" sh tools/run-specs.sh lua5.4 /usr/bin/busted \
        -o spec/helpers/summary.lua "$1" > "$2/$name.out" 2>&1
    echo "$?" > "$2/$name.status"
    printf "  %-28s %s\n" "$name" "$(tail -n 1 "$2/$name.out")"
' sh {} "$out"

passed=0
for f in $files; do
    name=$(basename "$f" .lua)
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/$name.out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "---- $f ended before its summary:"
        tail -n 30 "$out/$name.out"
        failed=$((failed + 1))
        continue
    fi
    p=${line%% passed*}
    m=${line#*, }
    m=${m%% failed}
    passed=$((passed + p))
    failed=$((failed + m))
    if [ "$(cat "$out/$name.status")" != 0 ] && [ "$m" = 0 ]; then
        echo "---- $f: busted passed but valgrind reported (exit $(cat "$out/$name.status"))"
        failed=$((failed + 1))
    fi
done

# Every report valgrind wrote, whichever process wrote it.
for log in "$out"/*.log; do
    [ -s "$log" ] || continue
    echo "---- $log"
    head -n 80 "$log"
    failed=$((failed + 1))
done
[ "$failed" -eq 0 ] && echo "valgrind: no errors, no leaks"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
