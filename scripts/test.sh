#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, integration, property tests),
# then the official openai / anthropic / google-genai Python SDKs (and
# botocore's SigV4 signer) against a real gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}"
# Tests that skip (a service or file they need is missing) write a line here; listed at the end.
TOLLGATE_SKIP_LOG="$(mktemp)"
export TOLLGATE_SKIP_LOG
trap 'rm -f "$TOLLGATE_SKIP_LOG"' EXIT

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== benchmarks compile (smoke; timings live in cargo bench / bench/compare.sh, never in tests)"
cargo check --workspace --locked --benches --examples

echo "== SDK tests (official openai, anthropic and google-genai Python SDKs, botocore)"
cargo build --locked -p tollgate
VENV="${TOLLGATE_VENV:-$HOME/.cache/tollgate-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
TOLLGATE_BIN="$CARGO_TARGET_DIR/debug/tollgate" "$VENV/bin/python" -m pytest tests/sdk -q -p no:cacheprovider

echo "== dashboard browser test (headless Chromium against tollgate demo)"
TOLLGATE_BIN="$CARGO_TARGET_DIR/debug/tollgate" tests/ui/run.sh

if [ -s "$TOLLGATE_SKIP_LOG" ]; then
  echo "== SKIPPED tests ($(sort -u "$TOLLGATE_SKIP_LOG" | wc -l) kinds; they passed without running their check):"
  sort "$TOLLGATE_SKIP_LOG" | uniq -c | sed 's/^/   /'
else
  echo "== no test skipped"
fi
