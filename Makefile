# custinfo — make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO            ?= go
BIN           := bin
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
DATABASE_URL  ?= postgres://postgres@127.0.0.1:5432/custinfo?sslmode=disable
ADDR          ?= :8080
FUZZTIME      ?= 30s
ROWS          ?= 1000000
DURATION      ?= 5s
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/custinfo_bench?sslmode=disable
SOAK_DURATION ?= 60s
COMPOSE_PROFILES_CHECKED ?= default scale observability
export TEST_DATABASE_URL

.PHONY: help build generate check test fuzz fuzz-seeds bench bench-tracing soak run compose-config clean tools

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/custinfo
	$(GO) build -o $(BIN)/custinfo ./cmd/custinfo

$(BIN)/sqlc: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../$(BIN)/sqlc github.com/sqlc-dev/sqlc/cmd/sqlc

$(BIN)/staticcheck: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck

tools: $(BIN)/sqlc $(BIN)/staticcheck ## build the pinned tools (sqlc, staticcheck) from tools/go.mod

generate: $(BIN)/sqlc ## regenerate sqlc code from db/migrations and db/queries
	$(BIN)/sqlc generate

check: $(BIN)/sqlc $(BIN)/staticcheck ## gofmt, go vet, staticcheck, sqlc diff
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	$(BIN)/sqlc diff

test: check ## check, then every test (race detector, real PostgreSQL at TEST_DATABASE_URL, fuzz seeds)
	$(GO) test -race -count=1 ./...

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

bench: build ## load-test bin/custinfo beside pgx and pgbench on ROWS customers, DURATION per phase; writes docs/benchmarks.md
	$(GO) build -o $(BIN)/custinfo-bench ./cmd/custinfo-bench
	$(BIN)/custinfo-bench --database-url '$(BENCH_DATABASE_URL)' --binary $(BIN)/custinfo --rows $(ROWS) --duration $(DURATION) $(BENCH_FLAGS)

bench-tracing: build ## tracing off vs on (every span exported to a local OTLP sink) at 8 and 32 connections, medians of 3 runs; prints the table, writes nothing
	$(GO) build -o $(BIN)/custinfo-bench ./cmd/custinfo-bench
	$(BIN)/custinfo-bench --database-url '$(BENCH_DATABASE_URL)' --binary $(BIN)/custinfo --rows $(ROWS) --duration $(DURATION) \
	  --runs 3 --conns 8,32 --no-variants --tracing 8,32 --pgbench '' --out '' $(BENCH_FLAGS)

soak: build ## run bin/custinfo under mixed load for SOAK_DURATION while mappings change and keys rotate; fails on any unexpected answer
	$(GO) build -o $(BIN)/custinfo-soak ./cmd/custinfo-soak
	$(BIN)/custinfo-soak --binary $(BIN)/custinfo --duration $(SOAK_DURATION) $(SOAK_FLAGS)

run: build ## migrate, load demo data and serve on ADDR against DATABASE_URL (local PostgreSQL, no Docker)
	@url='$(DATABASE_URL)'; db=$${url##*/}; db=$${db%%\?*}; \
	  psql "$$url" -qc 'SELECT 1' >/dev/null 2>&1 || createdb --maintenance-db="$${url%/*}/postgres" "$$db"
	DATABASE_URL='$(DATABASE_URL)' $(BIN)/custinfo migrate up
	DATABASE_URL='$(DATABASE_URL)' $(BIN)/custinfo demo --key $${CUSTINFO_DEMO_KEY:-bf7769e5321448de88838cdb}
	DATABASE_URL='$(DATABASE_URL)' $(BIN)/custinfo serve --addr '$(ADDR)' --log-format text

compose-config: ## validate docker-compose.yml (needs a docker compose client, no engine)
	@if docker compose version >/dev/null 2>&1; then dc="docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then dc=docker-compose; else dc=; fi; \
	if [ -n "$$dc" ]; then for p in $(COMPOSE_PROFILES_CHECKED); do $$dc $$([ $$p = default ] || echo --profile $$p) config -q || exit 1; done; echo "$$dc config: ok ($(COMPOSE_PROFILES_CHECKED))"; \
	else echo "no docker compose client; skipped"; fi

clean: ## remove build output
	rm -rf $(BIN)
