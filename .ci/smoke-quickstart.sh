#!/usr/bin/env bash
# The README's first set-up command on a machine with nothing running: `npm start` provisions an embedded
# install in ./attendux-data and serves. Ports are moved off the defaults through ATTENDUX_* overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf attendux-data
export ATTENDUX_SERVER_PORT=18080 ATTENDUX_DATABASE_EMBEDDED_PORT=55439
log=$(mktemp)
# Its own process group, so that the TERM reaches npm, its shell and the node server alike.
setsid npm start >"$log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -rf attendux-data "$log"
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  if curl -fsS http://127.0.0.1:18080/healthz >/dev/null 2>&1; then
    echo "quickstart smoke: npm start provisioned and serves /healthz"
    node bin/attendux.js --config attendux-data/attendux.json tenant list >/dev/null
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 1
done
echo "quickstart smoke FAILED; output:" >&2
cat "$log" >&2
exit 1
