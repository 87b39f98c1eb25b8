#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 30 s each) from its seed corpus.
# Uses the stable toolchain (cargo-fuzz needs unstable flags: RUSTC_BOOTSTRAP allows them),
# so no nightly is needed. Installs cargo-fuzz from crates.io when it is missing.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in connect_reply config_yaml config_set proxy_env ntlm_challenge auth_challenges; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus"
    cp -n fuzz/seeds/$target/* "$corpus/" 2>/dev/null || true
    echo "==> fuzzing $target for ${seconds}s"
    log=$(mktemp)
    if ! cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed (crash inputs, if any, are in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || tail -n 3 "$log"
    rm -f "$log"
done
echo "fuzzing finished: no crash"
