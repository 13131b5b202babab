#!/bin/sh
# make fuzz: builds the libFuzzer targets of fuzz/ with clang, AddressSanitizer
# (leaks included) and UndefinedBehaviorSanitizer, then runs each one for
# FUZZ_SECONDS seconds (default 60) and prints a line per target:
#   fuzz json_decode: 1234567 executions in 60 s, 0 crashes
#
# Everything it makes is under build/fuzz: its own objects of csrc/ (never
# those of build/obj), the fuzzers, a working corpus per target seeded from
# fuzz/corpus/<target> and fuzz/regressions/<target> (libFuzzer adds the
# inputs it finds there; the checked-in corpus is never written), the logs,
# and what a failed run leaves: the reproducer in build/fuzz/artifacts/<target>/.
# A crash, a leak, a timeout (10 s per input) or an out-of-memory (2 GiB) fails
# the run; copy the reproducer into fuzz/regressions/<target>/ once it is fixed.
#
# Environment: FUZZ_SECONDS, FUZZ_TARGETS (a subset of the targets),
# FUZZ_CC (default clang), LUA_INC (default /usr/include/lua5.4).
set -u
cd "$(dirname "$0")/.." || exit 2

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-json_decode json_encode sqlite_load session_json}
cc=${FUZZ_CC:-clang}
lua_inc=${LUA_INC:-/usr/include/lua5.4}
out=build/fuzz
sanitize="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-g -O1 $sanitize -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I$lua_inc"
libs="-luuid -lsqlite3 -lhiredis -lm"

case $seconds in
    '' | *[!0-9]* | 0 | 0*) echo "fuzz: FUZZ_SECONDS must be a whole number of seconds, 1 or more (got '$seconds')" >&2; exit 2 ;;
esac
command -v "$cc" >/dev/null 2>&1 || {
    echo "fuzz: $cc not found (make fuzz installs clang and libclang-rt-14-dev)" >&2
    exit 2
}

# ---------------------------------------------------------------- build

# Compiles $1 into $2 unless $2 is newer than it and than every header.
compile() {
    if [ -f "$2" ] && [ -z "$(find "$1" -newer "$2")" ] \
        && [ -z "$(find csrc fuzz -name '*.h' -newer "$2" | head -n 1)" ]; then
        return 0
    fi
    mkdir -p "$(dirname "$2")" || return 1
    echo "$cc -c $1"
    # shellcheck disable=SC2086
    $cc $cflags -c -o "$2" "$1"
}

core_obj=""
lua_obj=""
for src in csrc/core/*.c; do
    obj="$out/obj/core/$(basename "$src" .c).o"
    compile "$src" "$obj" || { echo "fuzz: cannot compile $src" >&2; exit 1; }
    core_obj="$core_obj $obj"
done
for src in csrc/lua/*.c; do
    obj="$out/obj/lua/$(basename "$src" .c).o"
    compile "$src" "$obj" || { echo "fuzz: cannot compile $src" >&2; exit 1; }
    lua_obj="$lua_obj $obj"
done

lib_obj=""
for src in csrc/lib/agentsession.c csrc/lib/agentsession_read.c; do
    obj="$out/obj/lib/$(basename "$src" .c).o"
    compile "$src" "$obj" || { echo "fuzz: cannot compile $src" >&2; exit 1; }
    lib_obj="$lib_obj $obj"
done

for t in $targets; do
    [ -f "fuzz/$t.c" ] || { echo "fuzz: no target fuzz/$t.c" >&2; exit 2; }
    compile "fuzz/$t.c" "$out/obj/fuzz/$t.o" || { echo "fuzz: cannot compile fuzz/$t.c" >&2; exit 1; }
    case $t in
        sqlite_load) objs="$core_obj"; extra="" ;;
        session_json) objs="$core_obj $lib_obj"; extra="" ;;
        *) objs="$core_obj $lua_obj"; extra="-llua5.4" ;;
    esac
    # shellcheck disable=SC2086
    $cc -g $sanitize -o "$out/$t" "$out/obj/fuzz/$t.o" $objs $extra $libs \
        || { echo "fuzz: cannot link $out/$t" >&2; exit 1; }
done

# ---------------------------------------------------------------- runs

export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1"
failed=""
total=0
for t in $targets; do
    work="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    log="$out/logs/$t.log"
    rm -rf "$artifacts"
    mkdir -p "$work" "$artifacts" "$out/logs" || exit 1
    # the seeds and the regressions join the working corpus (dot files are notes)
    for f in "fuzz/corpus/$t"/* "fuzz/regressions/$t"/*; do
        [ -f "$f" ] && cp "$f" "$work/"
    done
    case $t in
        sqlite_load) options="-max_len=65536" ;;
        *) options="-max_len=4096 -dict=fuzz/json.dict" ;;
    esac
    start=$(date +%s)
    # libFuzzer stops itself after max_total_time; timeout(1) only guards a hang
    # shellcheck disable=SC2086
    timeout -k 10 $((seconds + 120)) "$out/$t" -max_total_time="$seconds" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" $options "$work" >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    total=$((total + elapsed))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    crashes=$(find "$artifacts" -type f | wc -l)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    echo "fuzz $t: ${execs:-0} executions in $elapsed s, $crashes crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed="$failed $t"
        echo "---- the end of $log (exit status $rc):"
        tail -n 60 "$log"
        find "$artifacts" -type f | while IFS= read -r f; do
            echo "fuzz $t: reproducer: $f (run: $out/$t $f)"
        done
        [ "$rc" -eq 124 ] && echo "fuzz $t: killed after $((seconds + 120)) s: it hung"
    fi
done

# shellcheck disable=SC2086
set -- $targets
all=$#
# shellcheck disable=SC2086
set -- $failed
if [ -n "$failed" ]; then
    echo "fuzz: FAILED:$failed (reproducers under $out/artifacts; fix, then add each to fuzz/regressions/<target>/)"
    echo "$((all - $#)) passed, $# failed"
    exit 1
fi
echo "fuzz: $all targets, $seconds s each ($total s in all), no crashes"
echo "$all passed, 0 failed"
