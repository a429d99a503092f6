#!/usr/bin/env bash
# Unit tests and a CLI smoke of the real binary under another Node major (22, 24), installed from the npm
# registry like any other package (node-<platform>-<arch> holds the official binary). Usage: smoke-node.sh 22
set -euo pipefail
cd "$(dirname "$0")/.."
major=$1
platform=$(node -p 'process.platform + "-" + process.arch')
prefix=.tmp/node$major
bin=$prefix/node_modules/node-$platform/bin
if [ ! -x "$bin/node" ] || [ "$("$bin/node" -p 'process.versions.node.split(".")[0]')" != "$major" ]; then
  npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$prefix" "node-$platform@$major" >/dev/null
fi
export PATH="$PWD/$bin:$PATH"
echo "node $(node --version): unit tests and CLI smoke"
node node_modules/vitest/vitest.mjs run --project unit --reporter=dot --silent=passed-only | tail -4

free_port() { node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
dir=$(mktemp -d)
chmod 711 "$dir"
cleanup() {
  [ -n "${serve_pid:-}" ] && kill -KILL "$serve_pid" 2>/dev/null || true
  if [ -f "$dir/data/pg/postmaster.pid" ]; then kill -QUIT "$(head -1 "$dir/data/pg/postmaster.pid")" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
atx() { node bin/attendux.js --config "$dir/attendux.json" "$@"; }
expect_exit() {
  local want=$1
  shift
  set +e
  "$@" >"$dir/out" 2>"$dir/err"
  local got=$?
  set -e
  if [ "$got" != "$want" ]; then
    echo "smoke FAILED under node $(node --version): '$*' exited $got, expected $want" >&2
    cat "$dir/out" "$dir/err" >&2
    exit 1
  fi
}
pg_port=$(free_port)
http_port=$(free_port)
expect_exit 0 node bin/attendux.js init --yes --config-out "$dir/attendux.json" --data-dir "$dir/data" \
  --embedded-port "$pg_port" --port "$http_port" --company acme --admin-email owner@acme.example
expect_exit 0 atx init --yes
expect_exit 0 atx --json tenant list
expect_exit 1 atx tenant create acme
expect_exit 1 atx --json user list -t nosuchco
grep -q '"code":"NOT_FOUND"' "$dir/out"
expect_exit 2 atx tenant list --colour
ATTENDUX_SERVER_LOG_LEVEL=warn node bin/attendux.js --config "$dir/attendux.json" serve >"$dir/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1; then break; fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null
kill -TERM "$serve_pid"
set +e
wait "$serve_pid"
code=$?
set -e
serve_pid=
if [ "$code" != 0 ] || [ -f "$dir/data/pg/postmaster.pid" ]; then
  echo "smoke FAILED under node $(node --version): serve exited $code on SIGTERM" >&2
  cat "$dir/serve.log" >&2
  exit 1
fi
echo "node $(node --version): CLI smoke passed (init, exit codes 0/1/2, --json error, serve + SIGTERM on the embedded default)"
