# The two commands of the README: `make run` and `make test`.
GO ?= go
# Caddy writes its autosave and data files under these; keep them in the tree.
export XDG_CONFIG_HOME ?= $(CURDIR)/.cache/xdg-config
export XDG_DATA_HOME ?= $(CURDIR)/.cache/xdg-data

.PHONY: build run test test-deps unit integration smoke bench bench-load bench-cluster flood fuzz clean

build:
	$(GO) build -o bin/caddy ./cmd/caddy
	$(GO) build -o bin/demo-backend ./cmd/demo-backend

# Serve Caddyfile.example in front of the demo backend until interrupted.
run: build
	@./bin/demo-backend & demo=$$!; trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	./bin/caddy run --config Caddyfile.example

# Every test, under the race detector, in one run; a skipped test fails it.
test: test-deps smoke
	./.ci/gotest -race -count=1 -timeout 40m ./...

test-deps:
	bash integration_test/install-deps.sh

unit:
	./.ci/gotest -race -count=1 ./queue/ ./idgen/ ./caddymodule/ ./cluster/

integration:
	./.ci/gotest -race -count=1 -timeout 30m ./integration_test/

# The binary lists the modules and adapts the example.
smoke: build
	./bin/caddy list-modules | grep -qx 'http.handlers.session_queue'
	./bin/caddy list-modules | grep -qx 'http.handlers.session_queue.decrypt.laravel'
	./bin/caddy adapt --config Caddyfile.example >/dev/null
	@echo "smoke: bin/caddy lists http.handlers.session_queue and its decrypt.laravel, and adapts Caddyfile.example"

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./queue/ ./idgen/ ./caddymodule/ ./cluster/

# Plain reverse_proxy vs session_queue under wrk (BENCHMARKS.md); needs wrk.
bench-load:
	command -v wrk >/dev/null || apt-get install -y wrk
	bash bench/load.sh

# Cluster mode vs local mode, two instances and one redis-server (BENCHMARKS.md).
bench-cluster:
	command -v wrk >/dev/null || apt-get install -y wrk
	bash bench/cluster.sh

# Hostile floods through a real Caddy, with Caddy's RSS (BENCHMARKS.md).
flood:
	bash bench/flood.sh

# Each fuzz target for FUZZTIME; their seeds (testdata/fuzz) run in `make test`.
# FUZZFLAGS=-parallel=1 spares a shared machine's CPUs.
FUZZTIME ?= 1m
FUZZFLAGS ?=
FUZZ_TARGETS = \
	./idgen/:FuzzCookie ./idgen/:FuzzQuery ./idgen/:FuzzResponseCookie ./idgen/:FuzzParseSetCookie \
	./idgen/:FuzzKeyPattern ./idgen/:FuzzMint \
	./caddymodule/:FuzzUnmarshalCaddyfile ./caddymodule/:FuzzBindingCookies ./queue/:FuzzQueueSchedule

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		log=$$(mktemp); \
		if ! $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg >$$log 2>&1; then \
			cat $$log; rm -f $$log; exit 1; fi; \
		grep 'execs:' $$log | tail -n 1; rm -f $$log; \
	done

clean:
	rm -rf bin .cache
