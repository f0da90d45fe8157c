#!/usr/bin/env bash
# Added latency, and where the mock upstream sits. The gateway is pinned to
# core 1 and the load generator to core 0, as in compare.sh; the mock upstream
# runs either on core 0 ("split", compare.sh's layout) or on core 1 beside
# the gateway ("beside"). For each layout: oha at 2,000 req/s straight to the
# mock and through tollgate (production shape: virtual key with 3 tags, key
# budget, rpm limit, SQLite ledger), and sequential streamed requests (time to
# the first `data:` byte). "Added" is the gateway's percentile minus the
# direct one measured in the same layout.
#
# Why both: through the gateway a request crosses four socket hand-offs
# (client -> gateway -> mock -> gateway -> client) where the direct run
# crosses two, and in the split layout the extra ones cross cores (on a
# virtual machine, waking an idle vCPU goes through the hypervisor;
# `lib/wake.py` measures what a hand-off costs here). Beside gives both runs
# the same number of core crossings, so the difference between the layouts
# shows how much of the added latency is the layout and how much the
# gateway's own time on the core.
#
#   bench/latency.sh              3 repetitions, 10 s per point, 300 streams
#   bench/latency.sh --quick      1 repetition, 3 s, 100 streams
#   options: --reps N --duration S --rate R (default 2000) --streams N
#            --no-build (use the release binary already built; or TOLLGATE_BIN=path)
# Writes bench/latency.json and prints a table. Needs oha (see compare.sh),
# python3, taskset (2 cores), curl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${TOLLGATE_BENCH_WORK:-$HOME/.cache/tollgate-bench}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REPS=3 DUR=10 RATE=2000 STREAMS=300 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) REPS=1 DUR=3 STREAMS=100 ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null || { echo "needs 2 cores and taskset" >&2; exit 1; }
CONC=64 PORT_MOCK=18921 PORT_TG=18922
RUN=$WORK/latency-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

. "$ROOT/bench/lib/common.sh"
tollgate_binary "$RUN"
find_oha
wait_http() { until curl -fsS -o /dev/null "$1" 2>/dev/null; do sleep 0.1; done; }
# On-CPU microseconds of a process (all its threads), from schedstat: exact,
# where /proc/PID/stat's ticks are sampled (and biased at low rates).
cpu_us() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print int(s / 1000)}'; }
BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}'
STREAM_BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"stream":true}'
TAGS='x-tollgate-tags: feature=summarize,env=prod,customer=acme-corp'
export BENCH_UPSTREAM_KEY=sk-bench-upstream

# point OUT PORT GW_PID header... : oha at RATE (with the CPU the mock and
# the gateway, if any, spent on it), then the sequential stream probe
point() {
  local out=$1 port=$2 gw=$3; shift 3
  local hargs=() sargs=()
  for h in "$@"; do hargs+=(-H "$h"); sargs+=(--header "$h"); done
  local url=http://127.0.0.1:$port/v1/chat/completions
  local base=(--no-tui --output-format json -c "$CONC" -m POST -T application/json -d "$BODY" "${hargs[@]}")
  taskset -c 0 "$OHA" "${base[@]}" -z 1s "$url" >/dev/null 2>&1
  local g0 m0 g1 m1
  g0=$([ "$gw" = - ] && echo 0 || cpu_us "$gw"); m0=$(cpu_us "$MOCK_SID")
  taskset -c 0 "$OHA" "${base[@]}" -z "${DUR}s" -q "$RATE" --latency-correction "$url" >"$out.oha.json" 2>"$out.oha.err"
  g1=$([ "$gw" = - ] && echo 0 || cpu_us "$gw"); m1=$(cpu_us "$MOCK_SID")
  echo "{\"gateway_cpu_us\": $((g1 - g0)), \"mock_cpu_us\": $((m1 - m0))}" >"$out.cpu.json"
  taskset -c 0 python3 "$ROOT/bench/lib/stream_client.py" --port "$port" --body "$STREAM_BODY" -n "$STREAMS" --warmup 5 \
    "${sargs[@]}" >"$out.stream.json" 2>"$out.stream.err"
}

: >"$RUN/latency.jsonl"
for rep in $(seq "$REPS"); do
  for layout in split beside; do
    mock_core=0
    [ "$layout" = beside ] && mock_core=1
    log "repetition $rep/$REPS, $layout: mock on core $mock_core, gateway on core 1, load on core 0"
    dir=$RUN/rep$rep-$layout
    mkdir -p "$dir"
    start MOCK_SID "$dir/mock.log" taskset -c "$mock_core" "$TG" mock-provider --listen "127.0.0.1:$PORT_MOCK"
    wait_http "http://127.0.0.1:$PORT_MOCK/v1/models"
    point "$dir/direct" "$PORT_MOCK" - "authorization: Bearer sk-bench-upstream" "$TAGS"
    production_config "$dir" "$PORT_TG" "$PORT_MOCK"
    key=$(bench_key "$dir")
    start TG_SID "$dir/tollgate.log" taskset -c 1 "$TG" --config "$dir/tollgate.toml" serve
    wait_http "http://127.0.0.1:$PORT_TG/healthz"
    point "$dir/tollgate" "$PORT_TG" "$TG_SID" "authorization: Bearer $key" "$TAGS"
    stop "$TG_SID"
    stop "$MOCK_SID"
    python3 - "$dir" "$layout" "$rep" <<'PY' | tee -a "$RUN/latency.jsonl" >&2
import json, sys
d, layout, rep = sys.argv[1], sys.argv[2], int(sys.argv[3])
def oha(p):
    j = json.load(open(p))
    codes = j.get("statusCodeDistribution") or {}
    if sum(int(v) for v in codes.values()) != int(codes.get("200", 0)):
        print(f"WARNING: not every answer was 200 in {p}: {codes}", file=sys.stderr)
    lp = j["latencyPercentiles"]
    n = sum(int(v) for v in codes.values())
    cpu = json.load(open(p.replace(".oha.json", ".cpu.json")))
    return {"p50_us": lp["p50"] * 1e6, "p99_us": lp["p99"] * 1e6, "rps": j["summary"]["requestsPerSec"],
            "mock_cpu_us_per_req": round(cpu["mock_cpu_us"] / n, 1),
            "gateway_cpu_us_per_req": round(cpu["gateway_cpu_us"] / n, 1)}
def stream(p):
    j = json.load(open(p))
    return {"ttfb_p50_us": j["ttfb_us"]["50"], "ttfb_p99_us": j["ttfb_us"]["99"]}
out = {"layout": layout, "rep": rep}
for who in ("direct", "tollgate"):
    out[who] = {**oha(f"{d}/{who}.oha.json"), **stream(f"{d}/{who}.stream.json")}
out["added"] = {k: round(out["tollgate"][k] - out["direct"][k], 1) for k in ("p50_us", "p99_us", "ttfb_p50_us")}
print(json.dumps(out))
PY
  done
done

python3 - "$RUN/latency.jsonl" "$ROOT/bench/latency.json" "$(git -C "$ROOT" rev-parse --short HEAD)" "$RATE" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = {"git": sys.argv[3], "rate": int(sys.argv[4]), "layouts": {}}
for layout in ("split", "beside"):
    rs = [r for r in rows if r["layout"] == layout]
    if not rs:
        continue
    med = lambda who, k: round(statistics.median(r[who][k] for r in rs), 1)
    out["layouts"][layout] = {who: {k: med(who, k) for k in rs[0][who]} for who in ("direct", "tollgate", "added")}
    out["layouts"][layout]["reps"] = len(rs)
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(f"{'layout':7} {'direct p50':>11} {'gateway p50':>12} {'added p50':>10} {'added p99':>10} {'direct TTFB':>12} {'gateway TTFB':>13} {'added TTFB':>11}  (µs, medians)")
for layout, s in out["layouts"].items():
    d, t, a = s["direct"], s["tollgate"], s["added"]
    print(f"{layout:7} {d['p50_us']:>11.0f} {t['p50_us']:>12.0f} {a['p50_us']:>10.0f} {a['p99_us']:>10.0f} "
          f"{d['ttfb_p50_us']:>12.0f} {t['ttfb_p50_us']:>13.0f} {a['ttfb_p50_us']:>11.0f}")
print("CPU per request at the rate (µs, through the gateway): gateway / mock")
for layout, s in out["layouts"].items():
    t = s["tollgate"]
    print(f"{layout:7} {t['gateway_cpu_us_per_req']:>8.1f} / {t['mock_cpu_us_per_req']:.1f}")
PY
log "raw data: $RUN"
