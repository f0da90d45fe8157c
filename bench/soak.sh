#!/usr/bin/env bash
# 10-minute soak: tollgate (release) at max throughput, VmRSS sampled every 30 s.
# Writes /tmp/soak-rss.log, /tmp/soak-oha.json, /tmp/soak-final.txt. Run bench/compare.sh once first (builds, installs oha).
set -u
B=${TOLLGATE_BIN:-$HOME/.cache/tollgate-target/release/tollgate}
OHA=${OHA:-$HOME/.cache/tollgate-bench/tools/bin/oha}  # installed by bench/compare.sh
D=$(mktemp -d)
taskset -c 0 $B mock-provider --listen 127.0.0.1:19981 >/dev/null 2>&1 & MP=$!
printf '[[providers]]\nname="openai"\nkind="openai"\nbase_url="http://127.0.0.1:19981/v1"\n[storage]\nurl="sqlite://%s/t.db"\n' $D > $D/c.toml
KEY=$($B --config $D/c.toml keys create --name soak --team t --budget 1000000/month --rpm 100000000 --json | python3 -c 'import sys,json;print(json.load(sys.stdin)["key"])')
TOLLGATE_LOG=warn taskset -c 1 $B --config $D/c.toml serve --listen 127.0.0.1:19982 >/dev/null 2>&1 & GP=$!
sleep 1
( for i in $(seq 0 20); do echo "t=$((i*30))s $(grep -E 'VmRSS|VmHWM' /proc/$GP/status | tr -s ' ' | tr '\n' ' ')"; sleep 30; done ) > /tmp/soak-rss.log &
SP=$!
taskset -c 0 $OHA -z 600s -c 64 --no-tui -m POST -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
  -H 'x-tollgate-tags: feature=summarize,env=prod,customer=acme' \
  -d '{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise: tolls are fees."}]}' \
  http://127.0.0.1:19982/v1/chat/completions --output-format json > /tmp/soak-oha.json 2>/tmp/soak-oha.err
sleep 2
grep -E 'VmRSS|VmHWM' /proc/$GP/status > /tmp/soak-final.txt
# Refusals are not throughput, and every answered request has its ledger row.
python3 - "$D/t.db" /tmp/soak-oha.json >> /tmp/soak-final.txt <<'PY'
import json, sqlite3, sys, time
codes = json.load(open(sys.argv[2])).get("statusCodeDistribution") or {}
answered = sum(int(v) for v in codes.values())
for _ in range(50):  # the loader commits a few ms after each acknowledgement
    rows = sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    if rows >= answered:
        break
    time.sleep(0.1)
print(f"status codes {codes}; ledger rows {rows} for {answered} answered requests")
# Requests still in flight at the deadline (at most the 64 connections) have rows and no answer.
ok = set(codes) == {"200"} and answered <= rows <= answered + 64
print("CHECK " + ("ok" if ok else "FAILED: refusals or missing rows"))
PY
du -sh $D >> /tmp/soak-final.txt; rm -rf "$D"
kill $SP $GP $MP 2>/dev/null
echo done >> /tmp/soak-final.txt
