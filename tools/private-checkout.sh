#!/bin/sh
# A checkout in a folder only its owner can enter: copies this tree into a new
# mktemp -d folder (mode 0700) and runs there, under the sanitizers and under
# valgrind, the spec file whose children run as another user (nobody) and so
# must reach the module, the interpreter wrappers and the specs' helpers from
# outside the checkout. Prints "N passed, M failed" over both runs.
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/agentsession-private.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 700 "$dir" || exit 1
mkdir "$dir/checkout" || exit 1
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -z "$(git rev-parse --show-prefix)" ]; then
    git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$dir/checkout"
else
    tar --exclude=./build -cf - . | tar -xf - -C "$dir/checkout"
fi || exit 1
cd "$dir/checkout" || exit 1
spec=spec/08-sqlite_files_spec.lua
passed=0
failed=0
for run in sanitize valgrind; do
    echo "==== $run of $spec in $dir (mode $(stat -c %a "$dir"))"
    if [ "$run" = sanitize ]; then
        SANITIZE_TARGETS=all SANITIZE_SPECS=$spec sh tools/sanitize.sh >"$dir/$run.log" 2>&1
    else
        VALGRIND_SPECS=$spec sh tools/valgrind.sh >"$dir/$run.log" 2>&1
    fi
    status=$?
    tail -n 15 "$dir/$run.log"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$dir/$run.log" | tail -n 1)
    p=${line%% passed*}
    m=${line#*, }
    m=${m%% failed}
    [ -n "$line" ] || { p=0; m=1; }
    [ "$status" -ne 0 ] && [ "$m" -eq 0 ] && m=1
    passed=$((passed + p))
    failed=$((failed + m))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
