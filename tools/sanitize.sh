#!/bin/sh
# make sanitize: builds the C code with AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer in a copy of the tree (build/sanitize/tree), then
# runs there the C tests, the fuzz replays, every spec (on Lua 5.4) and the C hosts of
# examples/host (built against the sanitized library, installed). The sanitizer
# runtimes are preloaded into each Lua process only: a wrapper for each Lua first
# on PATH sets LD_PRELOAD, and a small preloaded library removes it from the
# environment again, so the shells, redis-servers and other programs the specs
# start run as usual. Every report goes to a file under build/sanitize/logs;
# any report, or any failed test, fails the run.
set -u
root=$(pwd)
out="$root/build/sanitize"
tree="$out/tree"
flags="${SANITIZE_FLAGS:--fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer}"

# The wrappers and the reports live in a folder of /tmp every user can enter: the specs run
# some children as another user (nobody), and the checkout may lie in a folder only its
# owner can enter. The reports are copied to build/sanitize/logs at the end.
rm -rf "$tree" "$out/logs" "$out/bin"
mkdir -p "$tree" "$out/logs" || exit 1
shared=$(mktemp -d "${TMPDIR:-/tmp}/agentsession-sanitize.XXXXXX") || exit 1
trap 'rm -rf "$shared"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
logs="$shared/logs"
bin="$shared/bin"
mkdir -p "$logs" "$bin" && chmod 755 "$shared" "$bin" && chmod 1777 "$logs" || exit 1
tar --exclude=./build --exclude=./.git -cf - . | tar -C "$tree" -xf - || exit 1

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
    [ -f "$lib" ] || { echo "sanitize: $lib not found (gcc's sanitizer runtimes)" >&2; exit 1; }
done
cat > "$bin/unpreload.c" <<'C'
#include <stdlib.h>
/* Loaded with the sanitizer runtimes; keeps them out of the programs this one starts. */
__attribute__((constructor)) static void unpreload(void) { unsetenv("LD_PRELOAD"); }
C
gcc -shared -fPIC -o "$bin/unpreload.so" "$bin/unpreload.c" || exit 1
# Every Lua gets a wrapper: the specs run on Lua 5.4, and start the others as children
# with the (sanitized) module built for each.
for lua in lua5.1 lua5.2 lua5.3 lua5.4 luajit; do
    real_lua=$(command -v "$lua") || { echo "sanitize: $lua not found" >&2; exit 1; }
    cat > "$bin/$lua" <<SH
#!/bin/sh
LD_PRELOAD="$libasan $libubsan $bin/unpreload.so" exec $real_lua "\$@"
SH
    chmod +x "$bin/$lua"
done
# The hosts that embed LuaJIT load its sanitized build too; their own leaks are not ours.
for host in nvim love; do
    real_host=$(command -v "$host") || { echo "sanitize: $host not found" >&2; exit 1; }
    cat > "$bin/$host" <<SH
#!/bin/sh
ASAN_OPTIONS="\$ASAN_OPTIONS:detect_leaks=0" \\
    LD_PRELOAD="$libasan $libubsan $bin/unpreload.so" exec $real_host "\$@"
SH
    chmod +x "$bin/$host"
done

export PATH="$bin:$PATH"
export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="log_path=$logs/ubsan:halt_on_error=1:print_stacktrace=1"
cp tools/lsan.supp "$shared/lsan.supp" && chmod 644 "$shared/lsan.supp" || exit 1
export LSAN_OPTIONS="suppressions=$shared/lsan.supp:print_suppressions=0"

cd "$tree" || exit 1
# The suite runs on Lua 5.4 only (on every Lua it would take five times as long).
# SANITIZE_SPECS=FILES: those spec files only, after the targets.
{
    make --no-print-directory ${SANITIZE_TARGETS:-all ctest fuzz-replay spec host-examples} \
        LUAS=lua5.4 CFLAGS="-O1 -g $flags" LDFLAGS="$flags" 2>&1 \
    && if [ -n "${SANITIZE_SPECS:-}" ]; then
        make --no-print-directory modules CFLAGS="-O1 -g $flags" LDFLAGS="$flags" >/dev/null 2>&1 \
        && sh tools/run-specs.sh lua5.4 /usr/bin/busted -o spec/helpers/summary.lua $SANITIZE_SPECS 2>&1
    fi
    echo "$?" > "$out/status"
} | tee "$out/output.log"
status=$(cat "$out/status")

# A report a child process printed to a pipe the specs read still counts.
if grep -E -q "runtime error:|ERROR: (Address|Leak)Sanitizer" "$out/output.log"; then
    grep -E -A3 "runtime error:|ERROR: (Address|Leak)Sanitizer" "$out/output.log" > "$logs/from-output"
fi
cp -R "$logs"/. "$out/logs"/ || exit 1
reports=$(find "$out/logs" -type f | wc -l)
if [ "$reports" -gt 0 ]; then
    for f in "$out/logs"/*; do
        echo "---- $f"
        head -n 60 "$f"
    done
    echo "sanitize: $reports sanitizer report(s)"
    status=1
elif [ "$status" -eq 0 ]; then
    echo "sanitize: no sanitizer reports"
fi
exit "$status"
