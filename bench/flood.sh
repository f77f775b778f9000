#!/usr/bin/env bash
# make flood: hostile traffic through a real Caddy (bench/Caddyfile.bench):
# FLOOD_N unique session IDs, then the same with mint on, then header
# probes; finally a backend that floods Set-Cookie.
set -euo pipefail
N=${FLOOD_N:-1000000}
cd "$(dirname "$0")/.."
go build -o bin/caddy ./cmd/caddy
go build -o bin/nullbackend ./bench/nullbackend
go build -o bin/flood ./bench/flood
start() { # setcookies
	./bin/nullbackend -setcookie "$1" & backend=$!
	./bin/caddy run --config bench/Caddyfile.bench --adapter caddyfile >/dev/null 2>&1 & caddy=$!
	for _ in $(seq 50); do curl -fs localhost:9182/ >/dev/null 2>&1 && break; sleep 0.1; done
}
stop() { kill "$backend" "$caddy"; wait "$backend" "$caddy" 2>/dev/null || true; }
trap 'kill $backend $caddy 2>/dev/null || true' EXIT
echo "## $N requests, each with a new random session ID"; start 0
./bin/flood -pid "$caddy" -n "$N"; stop
echo "## $N requests without a cookie to a site with mint php"; start 0
./bin/flood -pid "$caddy" -n "$N" -nocookie -target http://127.0.0.1:9183/; stop
# Every response regenerates the request's ID: a link and two tracked IDs
# per request, past the tables' capacity (100,000 linked, 200,000 tracked).
echo "## $((N * 3 / 10)) requests with unique IDs, backend sets 50 cookies (new session ID) on each"; start 50
./bin/flood -pid "$caddy" -n "$((N * 3 / 10))" -every "$((N / 20))" -probes=false; stop
echo "## $((N * 3 / 20)) requests with unique IDs and 16 KB of other cookies, backend regenerates every ID"; start 1
./bin/flood -pid "$caddy" -n "$((N * 3 / 20))" -every "$((N / 40))" -pad 16000 -probes=false; stop
