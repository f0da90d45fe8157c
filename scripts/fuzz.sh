#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each) on the
# stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer
# flags). Corpora live in fuzz/corpus/<target> (seeds are committed; new
# inputs found are added there). A crash stops the run, leaves the input in
# fuzz/artifacts/<target>/ and fails: turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-30}"
# Its own target directory: sanitizer builds share nothing with the tests and
# would otherwise hold the test build's lock.
export CARGO_TARGET_DIR="${TOLLGATE_FUZZ_TARGET_DIR:-$HOME/.cache/tollgate-fuzz-target}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd fuzz
targets=$(cargo fuzz list)
cargo fuzz build --release
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in $targets; do
  echo "== fuzz $t (${SECONDS_EACH} s)"
  mkdir -p "corpus/$t"
  if ! cargo fuzz run --release "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)|^Done [0-9]+ runs" "$log" || true
done
echo "== fuzzing: every target ran ${SECONDS_EACH} s without a crash"
