# Shared by the bench scripts (sourced, not run). Expects ROOT, WORK,
# TARGET_DIR, BUILD and a `log` function from the script that sources it.

# tollgate_binary DIR: builds the release binary unless told not to (BUILD=0
# or TOLLGATE_BIN=path), copies it into DIR (a rebuild in the shared target
# directory during the run must not swap it) and sets TG to the copy.
tollgate_binary() {
  if [ -z "${TOLLGATE_BIN:-}" ] && [ "${BUILD:-1}" = 1 ]; then
    log "building tollgate (release)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p tollgate -q)
  fi
  cp "${TOLLGATE_BIN:-$TARGET_DIR/release/tollgate}" "$1/tollgate"
  TG=$1/tollgate
}

# find_oha: sets OHA, or stops the script when oha is not installed.
find_oha() {
  OHA=$(command -v oha || echo "$WORK/tools/bin/oha")
  [ -x "$OHA" ] || { log "oha is missing: run bench/compare.sh once, or cargo install oha --locked"; exit 1; }
}

# Processes started in their own session, so a whole tree is measured and
# stopped; every one left is killed when the script exits.
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# start VAR LOGFILE cmd...: runs cmd, stores its pid (= its session id) in VAR.
start() { local var=$1 logf=$2; shift 2; setsid "$@" >"$logf" 2>&1 & PIDS+=("$!"); printf -v "$var" '%s' "$!"; }
stop() {
  kill -TERM -- "-$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$1" 2>/dev/null || true
}

# production_config DIR GATEWAY_PORT MOCK_PORT: writes DIR/tollgate.toml, the
# production shape's configuration (SQLite ledger, the mock as OpenAI, one
# priced model). The key comes from bench_key; the tags from each request.
production_config() {
  local dir=$1 port=$2 mock=$3
  cat >"$dir/tollgate.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[storage]
url = "sqlite://$dir/tollgate.db"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:$mock/v1"
api_key_env = "BENCH_UPSTREAM_KEY"

[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "openai", model = "gpt-4o-mini" }]
EOF
}

# bench_key DIR: creates the measured key (team t, a $1,000,000 month
# budget, a 100,000,000 rpm limit) in DIR's configuration; prints its secret.
bench_key() {
  "$TG" --config "$1/tollgate.toml" keys create --name bench --team t --budget 1000000/month --rpm 100000000 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
