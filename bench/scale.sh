#!/usr/bin/env bash
# Flat as the configuration grows: the production shape (virtual key with 3
# tags, key budget, rpm limit, SQLite ledger, a priced model) measured alone,
# then with many budgets and many keys in the database. For each scenario:
# start-up time, max throughput, the gateway's CPU per request and the mock
# upstream's CPU per request in the same run (their ratio), and peak RSS.
# With the small configuration, also long streams: 10 000-chunk streams
# through the gateway, its CPU per chunk and its RSS before and after.
#
#   bench/scale.sh                     3 repetitions, 10 s per point
#   bench/scale.sh --quick             1 repetition, 3 s per point
#   options: --reps N --duration S --budgets N (default 100000) --keys N (default 1000000)
#            --routes N (default 1000) --spread N (default 100000)
#            --only NAME (one scenario: small, budgets, keys or full)
#            --no-build (use the release binary already built; or TOLLGATE_BIN=path)
#
# The `full` scenario has all of it at once: the budgets and keys above, the
# routes in the configuration, and before its measurement two spreading
# passes (`lib/spread_client.py`) of --spread requests each: the first from
# one key with a distinct `user` tag value per request (tag values in use),
# the second from as many distinct keys (keys cached by the gateway), in two
# halves. The RSS the second half adds, divided by its keys, is what one
# more cached key costs (the first half has already filled what is bounded
# whatever the number of keys, such as the anomaly detector's 5,000 series
# per dimension); the RSS the whole pass adds, divided by all its keys, is
# reported too.
#
# Budgets are spread over scopes as SaaS teams set them: per team, per user
# and per customer tag (none covers the measured requests, whose team, user
# and customer are others: the question is what a request pays for budgets
# it does not hit). Keys are written straight into the database (hashes of
# random secrets) before start; the measured key is one of them.
# Writes bench/scale.json and prints a table. Needs oha (see compare.sh),
# python3, taskset, curl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${TOLLGATE_BENCH_WORK:-$HOME/.cache/tollgate-bench}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REPS=3 DUR=10 BUDGETS=100000 KEYS=1000000 ROUTES=1000 SPREAD=100000 ONLY="" BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) REPS=1 DUR=3 ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --budgets) BUDGETS=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --routes) ROUTES=$2; shift ;;
    --spread) SPREAD=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
CONC=64 PORT_MOCK=18911 PORT_TG=18912
RUN=$WORK/scale-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_GW=(taskset -c 1) PIN_LOAD=(taskset -c 0)
else
  PIN_GW=() PIN_LOAD=()
fi
. "$ROOT/bench/lib/common.sh"
tollgate_binary "$RUN"
find_oha
cpu_ms() { python3 "$ROOT/bench/lib/procstat.py" cpu "$1"; }
rss_kib() { python3 "$ROOT/bench/lib/procstat.py" rss "$1"; }
BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}'
TAGS='x-tollgate-tags: feature=summarize,env=prod,customer=acme-corp'
export BENCH_UPSTREAM_KEY=sk-bench-upstream
# Keys are hashed under this secret, so the keys written straight into the
# database below can be used by the spreading pass.
export TOLLGATE_KEY_SECRET=bench-key-secret

start MOCK_SID "$RUN/mock.log" "${PIN_LOAD[@]}" "$TG" mock-provider --listen "127.0.0.1:$PORT_MOCK"
until curl -fsS -o /dev/null "http://127.0.0.1:$PORT_MOCK/v1/models" 2>/dev/null; do sleep 0.2; done

# scenario DIR NAME BUDGETS KEYS ROUTES SPREAD -> one JSON line on stdout
scenario() {
  local dir=$1 name=$2 nbudgets=$3 nkeys=$4 nroutes=$5 nspread=$6
  rm -rf "$dir"; mkdir -p "$dir"
  production_config "$dir" "$PORT_TG" "$PORT_MOCK"
  # Routes the measured requests do not take.
  for i in $(seq 0 $((nroutes - 1))); do
    printf '\n[[models]]\nname = "route-%d"\ntargets = [{ provider = "openai", model = "gpt-4o-mini" }]\n' "$i"
  done >>"$dir/tollgate.toml"
  local key
  key=$(bench_key "$dir")
  # Budgets and keys the measured requests do not hit, straight into the database.
  python3 - "$dir/tollgate.db" "$nbudgets" "$nkeys" <<'PY'
import hashlib, hmac, json, os, sqlite3, sys, time
db, nb, nk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
secret = os.environ["TOLLGATE_KEY_SECRET"].encode()
c = sqlite3.connect(db)
now = int(time.time() * 1000)
alerts = json.dumps([500, 800, 1000])
rows = []
for i in range(nb):
    dim = ("team", "user", "customer")[i % 3]
    rows.append((f"{dim}-{i}", f"{dim}={dim}-{i}", 100 * 10**9, "month", "block", alerts, 0, now))
c.executemany("INSERT INTO budgets VALUES (?,?,?,?,?,?,?,?)", rows)
batch = []
for i in range(nk):
    # The secret of key i is tg_scale and i in 35 digits (what spread_client sends).
    h = hmac.new(secret, f"tg_scale{i:035d}".encode(), hashlib.sha256).digest()
    batch.append((f"key_scale{i:08d}", f"k{i}", h, "tg_sca", json.dumps({"env": "prod"}),
                  json.dumps({"team": f"team-{i % 1000}"}), "[]", now))
    if len(batch) == 50000:
        c.executemany("INSERT INTO keys (id, name, hash, prefix, default_tags, enforced_tags, models, created_ms) VALUES (?,?,?,?,?,?,?,?)", batch)
        batch = []
if batch:
    c.executemany("INSERT INTO keys (id, name, hash, prefix, default_tags, enforced_tags, models, created_ms) VALUES (?,?,?,?,?,?,?,?)", batch)
c.commit()
PY
  local t0 t1
  t0=$(date +%s%N)
  start TG_SID "$dir/tollgate.log" "${PIN_GW[@]}" "$TG" --config "$dir/tollgate.toml" serve
  until curl -fsS -o /dev/null "http://127.0.0.1:$PORT_TG/healthz" 2>/dev/null; do
    kill -0 "$TG_SID" 2>/dev/null || { log "tollgate exited: $(tail -3 "$dir/tollgate.log")"; return 1; }
    sleep 0.05
  done
  t1=$(date +%s%N)
  local rss_idle; rss_idle=$(rss_kib "$TG_SID")
  local spread_json=null
  if [ "$nspread" -gt 0 ]; then
    [ "$nspread" -le "$nkeys" ] || { log "--spread $nspread needs as many keys (have $nkeys)"; return 1; }
    local ra rh rb half=$((nspread / 2))
    log "  spreading: $nspread tag values from one key, then $nspread keys in two halves"
    "${PIN_LOAD[@]}" python3 "$ROOT/bench/lib/spread_client.py" --port "$PORT_TG" --body "$BODY" -n "$nspread" \
      --key "$key" --tags 'user=u-{i},feature=summarize,env=prod,customer=acme-corp' >"$dir/spread_tags.json"
    ra=$(python3 "$ROOT/bench/lib/procstat.py" vmrss "$TG_SID")
    "${PIN_LOAD[@]}" python3 "$ROOT/bench/lib/spread_client.py" --port "$PORT_TG" --body "$BODY" -n "$half" \
      --key 'tg_scale{i:035d}' --tags 'user=u-{i},feature=summarize,customer=acme-corp' >"$dir/spread_keys1.json"
    rh=$(python3 "$ROOT/bench/lib/procstat.py" vmrss "$TG_SID")
    "${PIN_LOAD[@]}" python3 "$ROOT/bench/lib/spread_client.py" --port "$PORT_TG" --body "$BODY" -n "$((nspread - half))" \
      --start "$half" --key 'tg_scale{i:035d}' --tags 'user=u-{i},feature=summarize,customer=acme-corp' >"$dir/spread_keys2.json"
    rb=$(python3 "$ROOT/bench/lib/procstat.py" vmrss "$TG_SID")
    spread_json="{\"requests\": $nspread, \"rss_after_tags_kib\": $ra, \"rss_after_half_keys_kib\": $rh, \"rss_after_keys_kib\": $rb, \"bytes_per_cached_key\": $(( (rb - rh) * 1024 / (nspread - half) )), \"bytes_per_cached_key_average\": $(( (rb - ra) * 1024 / nspread ))}"
  fi
  local url=http://127.0.0.1:$PORT_TG/v1/chat/completions
  local args=(--no-tui --output-format json -c "$CONC" -m POST -T application/json -d "$BODY" -H "authorization: Bearer $key" -H "$TAGS")
  "${PIN_LOAD[@]}" "$OHA" "${args[@]}" -z 1s "$url" >"$dir/warmup.json" 2>/dev/null
  local g0 m0 g1 m1
  g0=$(cpu_ms "$TG_SID"); m0=$(cpu_ms "$MOCK_SID")
  "${PIN_LOAD[@]}" "$OHA" "${args[@]}" -z "${DUR}s" "$url" >"$dir/max.json" 2>/dev/null
  g1=$(cpu_ms "$TG_SID"); m1=$(cpu_ms "$MOCK_SID")
  python3 - "$dir/max.json" "$name" "$nbudgets" "$nkeys" "$((g1 - g0))" "$((m1 - m0))" "$(( (t1 - t0) / 1000000 ))" "$rss_idle" "$(rss_kib "$TG_SID")" "$nroutes" "$spread_json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
nroutes, spread = int(sys.argv[10]), json.loads(sys.argv[11])
sys.argv = sys.argv[:10]
codes = j.get("statusCodeDistribution") or {}
ok = int(codes.get("200", 0))
if sum(int(v) for v in codes.values()) != ok:
    print(f"WARNING: not every answer was 200: {codes}", file=sys.stderr)
name, nb, nk, g, m, start_ms, rss0, rss1 = sys.argv[2], *map(int, sys.argv[3:])
print(json.dumps({"scenario": name, "budgets": nb, "keys": nk, "ok": ok,
                  "rps": round(j["summary"]["requestsPerSec"]),
                  "gateway_cpu_us_per_req": round(g * 1000 / ok, 1) if ok else None,
                  "mock_cpu_us_per_req": round(m * 1000 / ok, 1) if ok else None,
                  "ratio": round(g / m, 2) if m else None,
                  "startup_ms": start_ms, "rss_idle_kib": rss0, "rss_peak_kib": rss1,
                  "routes": nroutes, "spread": spread}))
PY
  if [ "$name" = small ]; then long_stream "$dir" "$key"; fi
  stop "$TG_SID"
}

# long_stream DIR KEY: 20 streams of 10 000 chunks each, one after another,
# through the running gateway: its CPU per chunk and its RSS before and after.
long_stream() {
  local dir=$1 key=$2 n=20 chunks=10000
  local body='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"long [mock chunks='$chunks']"}]}'
  local r0 g0 m0 g1 m1 r1
  r0=$(python3 "$ROOT/bench/lib/procstat.py" vmrss "$TG_SID" 2>/dev/null || rss_kib "$TG_SID")
  g0=$(cpu_ms "$TG_SID"); m0=$(cpu_ms "$MOCK_SID")
  "${PIN_LOAD[@]}" python3 "$ROOT/bench/lib/stream_client.py" --port "$PORT_TG" --body "$body" -n "$n" --warmup 2 \
    --header "authorization: Bearer $key" >"$dir/stream10k.json" 2>"$dir/stream10k.err" || log "stream client failed: $(tail -1 "$dir/stream10k.err")"
  g1=$(cpu_ms "$TG_SID"); m1=$(cpu_ms "$MOCK_SID")
  r1=$(python3 "$ROOT/bench/lib/procstat.py" vmrss "$TG_SID" 2>/dev/null || rss_kib "$TG_SID")
  python3 -c 'import json,sys
n, chunks, g, m, r0, r1 = map(int, sys.argv[1:7])
total = (n + 2) * chunks  # the probe warms up with 2 streams first
print(json.dumps({"scenario": "stream10k", "streams": n + 2, "chunks_per_stream": chunks,
                  "gateway_cpu_us_per_chunk": round(g * 1000 / total, 3), "mock_cpu_us_per_chunk": round(m * 1000 / total, 3),
                  "rss_before_kib": r0, "rss_after_kib": r1}))' "$n" "$chunks" "$((g1 - g0))" "$((m1 - m0))" "$r0" "$r1" | tee -a "$RUN/stream.jsonl" >&2
}

: >"$RUN/scale.jsonl"
: >"$RUN/stream.jsonl"
for rep in $(seq "$REPS"); do
  log "repetition $rep/$REPS"
  for s in "small 0 0 0 0" "budgets $BUDGETS 0 0 0" "keys 0 $KEYS 0 0" "full $BUDGETS $KEYS $ROUTES $SPREAD"; do
    set -- $s
    if [ -n "$ONLY" ] && [ "$ONLY" != "$1" ]; then continue; fi
    log " $1: $2 budgets, $3 keys, $4 routes, $5 spread"
    scenario "$RUN/$1" "$1" "$2" "$3" "$4" "$5" | tee -a "$RUN/scale.jsonl" >&2
  done
done

python3 - "$RUN/scale.jsonl" "$ROOT/bench/scale.json" "$(git -C "$ROOT" rev-parse --short HEAD)" "$RUN/stream.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
streams = [json.loads(l) for l in open(sys.argv[4]) if l.strip()]
out = {"git": sys.argv[3], "scenarios": {}}
if streams:
    out["stream10k"] = {k: statistics.median(s[k] for s in streams)
                        for k in ("gateway_cpu_us_per_chunk", "mock_cpu_us_per_chunk", "rss_before_kib", "rss_after_kib")}
for name in dict.fromkeys(r["scenario"] for r in rows):
    rs = [r for r in rows if r["scenario"] == name]
    med = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)
    out["scenarios"][name] = {k: med(k) for k in ("rps", "gateway_cpu_us_per_req", "mock_cpu_us_per_req", "ratio",
                                                  "startup_ms", "rss_idle_kib", "rss_peak_kib")}
    out["scenarios"][name].update(budgets=rs[0]["budgets"], keys=rs[0]["keys"], routes=rs[0].get("routes", 0), reps=len(rs))
    spreads = [r["spread"] for r in rs if r.get("spread")]
    if spreads:
        out["scenarios"][name]["spread"] = {k: statistics.median(s[k] for s in spreads) for k in spreads[0]}
json.dump(out, open(sys.argv[2], "w"), indent=1)
small = out["scenarios"].get("small")
print(f"{'scenario':10} {'budgets':>8} {'keys':>9} {'req/s':>7} {'gw µs/req':>10} {'mock µs/req':>11} {'ratio':>6} {'vs small':>9} {'start ms':>9} {'RSS MiB':>8}")
for name, s in out["scenarios"].items():
    vs = f"{(s['gateway_cpu_us_per_req'] / small['gateway_cpu_us_per_req'] - 1) * 100:+.1f}%" if small else ""
    print(f"{name:10} {s['budgets']:>8} {s['keys']:>9} {s['rps']:>7.0f} {s['gateway_cpu_us_per_req']:>10.1f} "
          f"{s['mock_cpu_us_per_req']:>11.1f} {s['ratio']:>6.2f} {vs:>9} {s['startup_ms']:>9.0f} {s['rss_peak_kib'] / 1024:>8.1f}")
for name, s in out["scenarios"].items():
    if "spread" in s:
        sp = s["spread"]
        print(f"{name}: {s['routes']} routes; {sp['requests']:.0f} distinct tag values, then {sp['requests']:.0f} distinct keys in use: "
              f"RSS {sp['rss_after_tags_kib'] / 1024:.1f} -> {sp.get('rss_after_half_keys_kib', 0) / 1024:.1f} -> {sp['rss_after_keys_kib'] / 1024:.1f} MiB, "
              f"{sp['bytes_per_cached_key']:.0f} bytes per more cached key ({sp.get('bytes_per_cached_key_average', 0):.0f} on average)")
if streams:
    st = out["stream10k"]
    print(f"long streams (10 000 chunks): gateway {st['gateway_cpu_us_per_chunk']:.3f} µs CPU per chunk, "
          f"mock {st['mock_cpu_us_per_chunk']:.3f}; RSS {st['rss_before_kib'] / 1024:.1f} -> {st['rss_after_kib'] / 1024:.1f} MiB")
PY
log "raw data: $RUN"
