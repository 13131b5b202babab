#!/bin/sh
# make sanitize: builds the C code with AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer in a copy of the tree (build/sanitize/tree), then
# runs there the C tests, the fuzz replays, every spec and the C hosts of
# examples/host (built against the sanitized library, installed). The sanitizer
# runtimes are preloaded into each lua5.4 process only: a lua5.4 wrapper first
# on PATH sets LD_PRELOAD, and a small preloaded library removes it from the
# environment again, so the shells, redis-servers and other programs the specs
# start run as usual. Every report goes to a file under build/sanitize/logs;
# any report, or any failed test, fails the run.
set -u
root=$(pwd)
out="$root/build/sanitize"
tree="$out/tree"
logs="$out/logs"
bin="$out/bin"
flags="${SANITIZE_FLAGS:--fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer}"

rm -rf "$tree" "$logs" "$bin"
mkdir -p "$tree" "$logs" "$bin" || exit 1
# child processes the specs run as another user (nobody) write their reports here too
chmod 1777 "$logs" || exit 1
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
real_lua=$(command -v lua5.4) || { echo "sanitize: lua5.4 not found" >&2; exit 1; }
cat > "$bin/lua5.4" <<SH
#!/bin/sh
LD_PRELOAD="$libasan $libubsan $bin/unpreload.so" exec $real_lua "\$@"
SH
chmod +x "$bin/lua5.4"

export PATH="$bin:$PATH"
export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="log_path=$logs/ubsan:halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$root/tools/lsan.supp:print_suppressions=0"

cd "$tree" || exit 1
{ make --no-print-directory ${SANITIZE_TARGETS:-all ctest fuzz-replay spec host-examples} \
    CFLAGS="-O1 -g $flags" LDFLAGS="$flags" 2>&1; echo "$?" > "$out/status"; } | tee "$out/output.log"
status=$(cat "$out/status")

# A report a child process printed to a pipe the specs read still counts.
if grep -E -q "runtime error:|ERROR: (Address|Leak)Sanitizer" "$out/output.log"; then
    grep -E -A3 "runtime error:|ERROR: (Address|Leak)Sanitizer" "$out/output.log" > "$logs/from-output"
fi
reports=$(find "$logs" -type f | wc -l)
if [ "$reports" -gt 0 ]; then
    for f in "$logs"/*; do
        echo "---- $f"
        head -n 60 "$f"
    done
    echo "sanitize: $reports sanitizer report(s)"
    status=1
elif [ "$status" -eq 0 ]; then
    echo "sanitize: no sanitizer reports"
fi
exit "$status"
