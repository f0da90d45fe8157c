#!/usr/bin/env bash
# Runs the dashboard money-formatting test (tests/ui/money.test.mjs, no
# browser), the dashboard browser test (tests/ui/dashboard.test.mjs) against
# `tollgate demo`, and the SSO and self-service browser test
# (tests/ui/sso.test.mjs: a mock OpenID Connect provider, `tollgate serve`
# with [oidc]), installing what is missing first: Debian's chromium (apt) and
# playwright-core and oidc-provider (npm ci, from package-lock.json). Never
# downloads a browser through playwright. Exits non-zero when a check fails.
#
#   TOLLGATE_BIN=path/to/tollgate tests/ui/run.sh
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "run.sh: installing chromium (apt)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

command -v node >/dev/null || { echo "run.sh: node (>= 18) is required" >&2; exit 1; }
locked_ok() {
  node -e 'const lock = require("./package-lock.json").packages;
    for (const p of ["playwright-core", "oidc-provider"]) {
      if (require(`./node_modules/${p}/package.json`).version !== lock[`node_modules/${p}`].version) process.exit(1);
    }' 2>/dev/null
}
if ! locked_ok; then
  npm ci --no-audit --no-fund --loglevel=error
fi

export TOLLGATE_BIN="${TOLLGATE_BIN:-$HOME/.cache/tollgate-target/debug/tollgate}"
if [ ! -x "$TOLLGATE_BIN" ]; then
  echo "run.sh: building tollgate (debug)" >&2
  (cd "$root" && CARGO_TARGET_DIR="$HOME/.cache/tollgate-target" cargo build -p tollgate)
fi

exec node --test --test-concurrency=1 --test-reporter=spec money.test.mjs dashboard.test.mjs sso.test.mjs
