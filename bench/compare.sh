#!/usr/bin/env bash
# tollgate vs the LiteLLM proxy vs direct-to-mock, same mock upstream, same
# load generator, plus tollgate's feature ablation. One command on a fresh
# machine; writes bench/RESULTS.md and bench/results.json.
#
#   bench/compare.sh              full run: 3 repetitions, 10 s per load point
#   bench/compare.sh --quick      smoke run: 1 repetition, 2 s per point
#   options: --reps N  --duration S  --no-litellm  --no-ablation  --out DIR
#            --no-build (use the release binary already built; or TOLLGATE_BIN=path)
#
# Multi-replica stages of the ablation run when their services are given:
#   TOLLGATE_BENCH_REDIS_URL=redis://127.0.0.1:6379        + "redis": counters in Redis
#   TOLLGATE_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
#                                                          + "shared": also keys, budgets, ledger in PostgreSQL
#   (the PostgreSQL stage creates and drops a database `tollgate_bench`; needs psql).
#
# Needs: Rust (cargo), python3 (venv + pip reach PyPI), taskset, curl.
# Installs into $TOLLGATE_BENCH_WORK (default ~/.cache/tollgate-bench):
# oha (cargo install --locked) and litellm[proxy] (pip, in a venv).
# LiteLLM failing to install or start is recorded and skips its part only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${TOLLGATE_BENCH_WORK:-$HOME/.cache/tollgate-bench}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/bench
QUICK=0 REPS="" DUR="" LITELLM=1 ABLATION=1 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --no-litellm) LITELLM=0 ;;
    --no-ablation) ABLATION=0 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then REPS=${REPS:-1}; DUR=${DUR:-2}; STREAM_N=60; else REPS=${REPS:-3}; DUR=${DUR:-10}; STREAM_N=300; fi
RATES=(50 500 2000 5000)
CONC=64
PORT_MOCK=18901 PORT_TG=18902 PORT_LL=18903
RUN=$WORK/run-$(date -u +%Y%m%dT%H%M%SZ)
RAW=$RUN/raw
mkdir -p "$RAW" "$OUT"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Gateway on core 1; load generator, stream client and mock on core 0.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_GW=(taskset -c 1) PIN_LOAD=(taskset -c 0) PINNED=true
else
  PIN_GW=() PIN_LOAD=() PINNED=false
  log "fewer than 2 cores or no taskset: running unpinned (numbers not comparable to pinned runs)"
fi

# ---------------------------------------------------------------- tools
if [ -n "${TOLLGATE_BIN:-}" ]; then
  BUILD=0
elif [ "$BUILD" = 1 ]; then
  log "building tollgate (release)"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p tollgate -q)
fi
# A private copy: a rebuild in the shared target dir during the run must not swap the binary.
cp "${TOLLGATE_BIN:-$TARGET_DIR/release/tollgate}" "$RUN/tollgate"
if [ -n "${TOLLGATE_BIN:-}" ]; then
  export BENCH_BINARY_NOTE="TOLLGATE_BIN=$TOLLGATE_BIN, built $(date -u -r "$TOLLGATE_BIN" '+%Y-%m-%d %H:%M UTC')"
fi
TG=$RUN/tollgate

OHA=$(command -v oha || true)
if [ -z "$OHA" ]; then
  OHA=$WORK/tools/bin/oha
  if [ ! -x "$OHA" ]; then
    log "installing oha (cargo install --locked) into $WORK/tools"
    CARGO_TARGET_DIR=$WORK/oha-target cargo install oha --locked --root "$WORK/tools" -q
  fi
fi

LL_STATUS=skipped
LL=""
if [ "$LITELLM" = 1 ]; then
  LL=$WORK/litellm-venv/bin/litellm
  if [ ! -x "$LL" ]; then
    log "installing litellm[proxy] into $WORK/litellm-venv"
    if python3 -m venv "$WORK/litellm-venv" >"$RUN/litellm-install.log" 2>&1 &&
      "$WORK/litellm-venv/bin/pip" install -q 'litellm[proxy]' >>"$RUN/litellm-install.log" 2>&1; then
      LL_STATUS=installed
    else
      LL_STATUS="install failed (see $RUN/litellm-install.log)"; LL=""
    fi
  else
    LL_STATUS=installed
  fi
  [ -n "$LL" ] && LL_VERSION=$("$WORK/litellm-venv/bin/pip" show litellm 2>/dev/null | awk '/^Version/{print $2}')
fi
log "litellm: $LL_STATUS"

# ---------------------------------------------------------------- processes
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# start VAR LOGFILE cmd... : runs cmd in a new session (so its whole tree can be
# measured and stopped) and stores its pid, which is also the session id, in VAR
start() {
  local var=$1 logf=$2; shift 2
  setsid "$@" >"$logf" 2>&1 &
  PIDS+=("$!")
  printf -v "$var" '%s' "$!"
}
stop() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
wait_http() { # URL SECONDS
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}
cpu_ms() { python3 "$ROOT/bench/lib/procstat.py" cpu "$1"; }
rss_kib() { python3 "$ROOT/bench/lib/procstat.py" rss "$1"; }

BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}'
STREAM_BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"stream":true}'
TAGS='x-tollgate-tags: feature=summarize,env=prod,customer=acme-corp'

# oha OUT URL RATE(0 = as fast as possible) DURATION header...
oha_run() {
  local out=$1 url=$2 rate=$3 dur=$4; shift 4
  local args=(--no-tui --output-format json -z "${dur}s" -c "$CONC" -m POST -T application/json -d "$BODY")
  [ "$rate" != 0 ] && args+=(-q "$rate" --latency-correction)
  for h in "$@"; do args+=(-H "$h"); done
  "${PIN_LOAD[@]}" "$OHA" "${args[@]}" "$url" >"$out" 2>"$out.err" || log "oha failed: $(tail -1 "$out.err")"
}
# Requests per second answered 200 (refusals are not throughput); warns when any was not.
max_rps() { python3 -c 'import json,sys
try:
    j = json.load(open(sys.argv[1])); codes = j.get("statusCodeDistribution") or {}
    answered = sum(int(v) for v in codes.values()); ok = int(codes.get("200", 0))
    if answered != ok: print("WARNING: not every answer was 200: %s" % codes, file=sys.stderr)
    print(int(j["summary"]["requestsPerSec"] * ok / answered) if answered else 0)
except Exception: print(0)' "$1"; }

# measure DIR SID PORT header... : warm-up, max throughput (+ CPU, RSS), fixed rates, streaming
measure() {
  local dir=$1 sid=$2 port=$3; shift 3
  local url=http://127.0.0.1:$port/v1/chat/completions
  mkdir -p "$dir"
  oha_run "$dir/warmup.json" "$url" 0 1 "$@"
  local c0 c1
  c0=$([ "$sid" = - ] && echo 0 || cpu_ms "$sid")
  oha_run "$dir/max.json" "$url" 0 "$DUR" "$@"
  c1=$([ "$sid" = - ] && echo 0 || cpu_ms "$sid")
  local max; max=$(max_rps "$dir/max.json")
  echo "{\"cpu_ms\": $((c1 - c0)), \"rss_kib\": $([ "$sid" = - ] && echo 0 || rss_kib "$sid")}" >"$dir/max.proc.json"
  log "  $(basename "$dir"): max $max req/s at c=$CONC, cpu $((c1 - c0)) ms"
  for r in "${RATES[@]}"; do
    if [ "$r" -le $((max * 9 / 10)) ]; then
      oha_run "$dir/rate_$r.json" "$url" "$r" "$DUR" "$@"
    else
      echo "{\"skipped\": \"max throughput $max req/s < rate / 0.9\"}" >"$dir/rate_$r.json"
    fi
  done
  local sargs=()
  for h in "$@"; do sargs+=(--header "$h"); done
  local n=$STREAM_N
  [ "$max" -lt 500 ] && n=$((STREAM_N / 3))
  "${PIN_LOAD[@]}" python3 "$ROOT/bench/lib/stream_client.py" --port "$port" --body "$STREAM_BODY" -n "$n" "${sargs[@]}" \
    >"$dir/stream.json" 2>"$dir/stream.err" || log "stream client failed: $(tail -1 "$dir/stream.err")"
  [ "$sid" != - ] && echo "{\"cpu_ms\": $((c1 - c0)), \"rss_kib\": $(rss_kib "$sid")}" >"$dir/max.proc.json"
  return 0
}

# tollgate_config DIR STAGE -> writes DIR/tollgate.toml
tollgate_config() {
  local dir=$1 stage=$2
  mkdir -p "$dir"
  {
    echo '[server]'
    echo "listen = \"127.0.0.1:$PORT_TG\""
    [ "$stage" = bare ] && echo 'auth = "passthrough"'
    echo
    echo '[storage]'
    if [ "$stage" = shared ]; then
      echo "url = \"${BENCH_PG_DB}\""
    else
      echo "url = \"sqlite://$dir/tollgate.db\""
    fi
    case "$stage" in
      redis|shared)
        echo "counters_url = \"$TOLLGATE_BENCH_REDIS_URL\""
        echo "counters_prefix = \"tgbench:$$:$stage:\"" ;;
    esac
    echo
    echo '[[providers]]'
    echo 'name = "openai"'
    echo 'kind = "openai"'
    echo "base_url = \"http://127.0.0.1:$PORT_MOCK/v1\""
    # Passthrough (the bare stage) forwards the caller's own key: no configured key then.
    [ "$stage" = bare ] || echo 'api_key_env = "BENCH_UPSTREAM_KEY"'
    echo
    echo '[[models]]'
    echo 'name = "gpt-4o-mini"'
    echo 'targets = [{ provider = "openai", model = "gpt-4o-mini" }]'
    case "$stage" in
      # The ledger is measured as a stage of its own: off before it.
      bare|auth|tags|budget) printf '\n[ledger]\nenabled = false\n' ;;
      fsync) printf '\n[ledger]\nfsync = true\n' ;;
      shared) printf '\n[ledger]\nspool_dir = "%s/spool"\n' "$dir" ;;
    esac
  } >"$dir/tollgate.toml"
}
export BENCH_UPSTREAM_KEY=sk-bench-upstream
# LiteLLM: use the bundled price map (no fetch at start-up), log errors only.
export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR

# start_tollgate DIR STAGE -> sets TG_SID and TG_HEADERS
start_tollgate() {
  local dir=$1 stage=$2
  rm -rf "$dir"
  tollgate_config "$dir" "$stage"
  TG_HEADERS=()
  case "$stage" in
    bare) TG_HEADERS=("authorization: Bearer sk-client-own-provider-key") ;;
    *)
      local extra=()
      case "$stage" in budget|ledger|fsync|redis|shared) extra=(--budget 1000000/month --rpm 100000000) ;; esac
      local key
      key=$("$TG" --config "$dir/tollgate.toml" keys create --name bench --team t "${extra[@]}" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
      TG_HEADERS=("authorization: Bearer $key")
      ;;
  esac
  case "$stage" in bare|auth) ;; *) TG_HEADERS+=("$TAGS") ;; esac
  start TG_SID "$dir/tollgate.log" "${PIN_GW[@]}" "$TG" --config "$dir/tollgate.toml" serve
  wait_http "http://127.0.0.1:$PORT_TG/healthz" 30 || { log "tollgate did not start: $(tail -3 "$dir/tollgate.log")"; return 1; }
}

# ---------------------------------------------------------------- run
log "run directory: $RUN"
start MOCK_SID "$RUN/mock.log" "${PIN_LOAD[@]}" "$TG" mock-provider --listen "127.0.0.1:$PORT_MOCK"
wait_http "http://127.0.0.1:$PORT_MOCK/v1/models" 30 || { log "mock did not start"; exit 1; }

LL_CFG=$RUN/litellm.yaml
cat >"$LL_CFG" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$PORT_MOCK/v1
      api_key: sk-bench-upstream
general_settings:
  master_key: sk-bench-master
litellm_settings:
  telemetry: false
EOF

python3 - "$RAW/meta.json" <<EOF
import json, platform, subprocess, sys, datetime, os
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
rev = subprocess.run(["git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = bool(subprocess.run(["git", "-C", "$ROOT", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip())
oha = subprocess.run(["$OHA", "--version"], capture_output=True, text=True).stdout.strip()
json.dump({"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
           "git": rev + ("+dirty" if dirty else ""), "quick": $QUICK == 1, "reps": $REPS, "duration_s": $DUR,
           "concurrency": $CONC, "rates": [$(IFS=,; echo "${RATES[*]}")], "stream_n": $STREAM_N, "pinned": "$PINNED" == "true",
           "load_generator": oha, "litellm": "$LL_STATUS", "litellm_version": "${LL_VERSION:-}",
           "binary": os.environ.get("BENCH_BINARY_NOTE", ""),
           "loadavg_start": open("/proc/loadavg").read().split()[:3]}, open(sys.argv[1], "w"), indent=1)
EOF

for rep in $(seq "$REPS"); do
  R=$RAW/rep$rep
  log "repetition $rep/$REPS"

  log " direct to mock"
  measure "$R/direct" - "$PORT_MOCK" "authorization: Bearer sk-bench-upstream" "$TAGS"

  log " tollgate (virtual key, 3 tags, key budget + rpm limit, SQLite ledger)"
  if start_tollgate "$RUN/tg" ledger; then
    measure "$R/tollgate" "$TG_SID" "$PORT_TG" "${TG_HEADERS[@]}"
    stop "$TG_SID"
  fi

  if [ -n "$LL" ]; then
    log " litellm proxy (1 worker)"
    start LL_SID "$RUN/litellm-$rep.log" "${PIN_GW[@]}" "$LL" --config "$LL_CFG" --host 127.0.0.1 --port "$PORT_LL" --num_workers 1
    if wait_http "http://127.0.0.1:$PORT_LL/health/liveliness" 120; then
      measure "$R/litellm" "$LL_SID" "$PORT_LL" "authorization: Bearer sk-bench-master" "$TAGS"
    else
      LL_STATUS="did not start (see $RUN/litellm-$rep.log)"
      log " litellm $LL_STATUS"
      echo "{\"status\": \"$LL_STATUS\"}" >"$R/litellm.status.json"
    fi
    stop "$LL_SID"
  fi

  if [ "$ABLATION" = 1 ]; then
    STAGES=(bare auth tags budget ledger fsync)
    [ -n "${TOLLGATE_BENCH_REDIS_URL:-}" ] && STAGES+=(redis)
    if [ -n "${TOLLGATE_BENCH_REDIS_URL:-}" ] && [ -n "${TOLLGATE_BENCH_POSTGRES_URL:-}" ]; then
      STAGES+=(shared)
      BENCH_PG_DB="${TOLLGATE_BENCH_POSTGRES_URL%/*}/tollgate_bench"
      psql -q "$TOLLGATE_BENCH_POSTGRES_URL" -c "DROP DATABASE IF EXISTS tollgate_bench WITH (FORCE)" -c "CREATE DATABASE tollgate_bench"
    fi
    for stage in "${STAGES[@]}"; do
      d=$R/ablation/$stage
      mkdir -p "$d"
      if start_tollgate "$RUN/ab-$stage" "$stage"; then
        url=http://127.0.0.1:$PORT_TG/v1/chat/completions
        oha_run "$d/warmup.json" "$url" 0 1 "${TG_HEADERS[@]}"
        c0=$(cpu_ms "$TG_SID")
        oha_run "$d/max.json" "$url" 0 "$DUR" "${TG_HEADERS[@]}"
        c1=$(cpu_ms "$TG_SID")
        oha_run "$d/rate_2000.json" "$url" 2000 "$DUR" "${TG_HEADERS[@]}"
        echo "{\"cpu_ms\": $((c1 - c0)), \"rss_kib\": $(rss_kib "$TG_SID")}" >"$d/max.proc.json"
        log "  ablation $stage: max $(max_rps "$d/max.json") req/s, cpu $((c1 - c0)) ms"
        stop "$TG_SID"
      fi
    done
  fi
done

python3 "$ROOT/bench/lib/summarize.py" "$RUN" "$OUT"
log "wrote $OUT/RESULTS.md and $OUT/results.json (raw data: $RUN)"
