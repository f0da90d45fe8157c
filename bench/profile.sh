#!/usr/bin/env bash
# Profiles tollgate's request path under load with callgrind (instruction
# counts; works in VMs without hardware counters) in the production-like
# configuration of bench/compare.sh. Counters are zeroed after start-up and a
# warm-up and dumped after the load, so the profile is the steady-state request path.
#
#   bench/profile.sh [REQUESTS]      default 4000 non-streaming requests
#
# Output (in $TOLLGATE_BENCH_WORK/profile-<time>/): callgrind.out, and
# top-exclusive.txt / top-inclusive.txt (callgrind_annotate); the instruction
# total divided by REQUESTS is printed as instructions per request.
# Needs valgrind (Debian: apt-get install valgrind) and oha (see compare.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${TOLLGATE_BENCH_WORK:-$HOME/.cache/tollgate-bench}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
N=${1:-4000}
OUT=$WORK/profile-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install -y valgrind" >&2; exit 1; }
OHA=$(command -v oha || echo "$WORK/tools/bin/oha")
[ -x "$OHA" ] || CARGO_TARGET_DIR=$WORK/oha-target cargo install oha --locked --root "$WORK/tools" -q
if [ -z "${TOLLGATE_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p tollgate -q)
fi
cp "${TOLLGATE_BIN:-$TARGET_DIR/release/tollgate}" "$OUT/tollgate"
TG=$OUT/tollgate
PORT_MOCK=18931 PORT_TG=18932
export BENCH_UPSTREAM_KEY=sk-bench-upstream

cat >"$OUT/tollgate.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT_TG"

[storage]
url = "sqlite://$OUT/tollgate.db"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:$PORT_MOCK/v1"
api_key_env = "BENCH_UPSTREAM_KEY"

[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "openai", model = "gpt-4o-mini" }]
EOF
KEY=$("$TG" --config "$OUT/tollgate.toml" keys create --name bench --team t --budget 1000000/month --rpm 100000000 --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done' EXIT
setsid taskset -c 0 "$TG" mock-provider --listen "127.0.0.1:$PORT_MOCK" >"$OUT/mock.log" 2>&1 &
PIDS+=("$!")
setsid taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$TG" --config "$OUT/tollgate.toml" serve >"$OUT/tollgate.log" 2>&1 &
VG=$!
PIDS+=("$VG")
for _ in $(seq 300); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT_TG/healthz" 2>/dev/null && break; sleep 0.2; done
# Start-up work (the tokenizers load on a background thread) must be over
# before the counters are zeroed: wait until the process is idle.
for _ in $(seq 240); do
  c0=$(python3 "$ROOT/bench/lib/procstat.py" cpu "$VG"); sleep 1; c1=$(python3 "$ROOT/bench/lib/procstat.py" cpu "$VG")
  [ $((c1 - c0)) -lt 50 ] && break
done

BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}'
load() {
  taskset -c 0 "$OHA" --no-tui --output-format json -n "$1" -c 16 -m POST -T application/json -d "$BODY" \
    -H "authorization: Bearer $KEY" -H 'x-tollgate-tags: feature=summarize,env=prod,customer=acme-corp' \
    "http://127.0.0.1:$PORT_TG/v1/chat/completions"
}
load 300 >"$OUT/warmup.json"
# Counters zeroed after start-up and warm-up, dumped right after the measured load.
callgrind_control -z "$VG" >/dev/null
load "$N" >"$OUT/load.json"
callgrind_control -d "$VG" >/dev/null
kill -TERM "$VG"
for _ in $(seq 300); do kill -0 "$VG" 2>/dev/null || break; sleep 0.2; done
PROFILE=$(ls -S "$OUT"/callgrind.out.* 2>/dev/null | head -1 || true)
PROFILE=${PROFILE:-$OUT/callgrind.out}

# Shorter paths: registry and toolchain prefixes stripped.
strip() { sed -E 's#/root/.cargo/registry/src/index.crates.io-[0-9a-f]+/##; s#/rustc/[0-9a-f]+/library/##; s# \[/[^]]*\]##'; }
callgrind_annotate --inclusive=no --threshold=100 "$PROFILE" 2>/dev/null | strip | head -90 >"$OUT/top-exclusive.txt" || true
callgrind_annotate --inclusive=yes --threshold=100 "$PROFILE" 2>/dev/null | strip | head -200 >"$OUT/top-inclusive.txt" || true
ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statusCodeDistribution"].get("200", 0))' "$OUT/load.json")
total=$(awk '/^summary:|^totals:/{print $2; exit}' "$PROFILE")
echo "requests ok: $ok / $N; instructions: $total; per request: $((total / (ok > 0 ? ok : 1)))"
echo "profile: $PROFILE (top-exclusive.txt, top-inclusive.txt; open callgrind.out in kcachegrind for the call graph)"
