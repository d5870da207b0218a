#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs every fuzz target for SECONDS each (default 20) and reports, per
# target, the executions, the time and whether it crashed. Exits non-zero
# if any target crashed, naming the input that did it.
#
# Usage: fuzz/run.sh [SECONDS]
#
# cargo-fuzz needs unstable compiler flags (-Z sanitizer, coverage passes);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
export RUSTC_BOOTSTRAP=1
# FUZZ_SANITIZER=none skips AddressSanitizer (faster, still catches panics,
# overflows in debug assertions and out-of-bounds indexing, which is all safe
# Rust can do wrong).
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

targets=$(cargo fuzz list)
echo "== building $(echo "$targets" | wc -w) targets (sanitizer: $sanitizer)"
build_start=$SECONDS
mkdir -p logs
if ! cargo fuzz build --sanitizer "$sanitizer" >logs/build.log 2>&1; then
    tail -n 40 logs/build.log
    echo "== build failed (fuzz/logs/build.log)"
    exit 1
fi
echo "   built in $((SECONDS - build_start)) s"

failed=0
printf '%-18s %12s %10s %8s  %s\n' target executions exec/s seconds result
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    log="logs/$t.log"
    start=$SECONDS
    rc=0
    cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || rc=$?
    took=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="CRASH: fuzz/${artifact:-$log (no artifact; see log)}"
    fi
    printf '%-18s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$took" "$result"
done

if [ "$failed" -ne 0 ]; then
    echo "== a target crashed; reproduce with:"
    echo "   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>"
    echo "   logs in fuzz/logs/"
    exit 1
fi
