# Telemeter. `make help` lists the targets. Everything installs what it needs on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The console (console/): npm installs exactly its lock file, Vite builds it into console/dist,
# which the API serves at /console.
CONSOLE_MODULES := console/node_modules/.installed-stamp
CONSOLE_STAMP := console/dist/.built-stamp
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html console/vite.config.ts console/tsconfig.json
SERVICES := deploy/services.sh
TEST_WORKERS ?= 2
# schemathesis generates no test per operation under pytest-xdist: the fuzz runs beside it
FUZZ := tests/api/test_fuzz.py

.DEFAULT_GOAL := help
.PHONY: help install screenshots services-up services-down services-status demo up simulate chaos chaos-cluster test test-durations commands-offline equivalence lint bench bench-quick clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "installing Telemeter and its tools into $(VENV) (log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/pip install --upgrade "pip>=25.1" && $(BIN)/pip install -e . --group dev; } \
		> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

$(CONSOLE_MODULES): console/package-lock.json console/package.json
	@command -v npm >/dev/null || { echo "npm not found: the console needs Node 20+ (apt-get install -y nodejs npm)"; exit 1; }
	@echo "installing the console's packages from console/package-lock.json (log: console/build.log)"
	@cd console && npm ci --no-audit --no-fund > build.log 2>&1 || { tail -30 build.log; exit 1; }
	@touch $@

$(CONSOLE_STAMP): $(CONSOLE_MODULES) $(CONSOLE_SOURCES)
	@echo "building the console into console/dist (log: console/build.log)"
	@cd console && npm run build > build.log 2>&1 || { tail -30 build.log; exit 1; }
	@touch $@

install: $(STAMP) $(CONSOLE_STAMP) ## Create .venv, install Telemeter with its test/dev tools, build the console

services-up: install ## Install (when missing) and start Mosquitto and Kafka
	@$(SERVICES) up

services-down: ## Stop the Mosquitto and Kafka this project started
	@$(SERVICES) down

services-status: ## Show whether Mosquitto and Kafka are running
	@$(SERVICES) status

demo: install ## Start everything, simulate devices ~30 s, print usage and a reconciliation
	@if $(SERVICES) status >/dev/null 2>&1; then keep=1; else keep=0; fi; \
	$(SERVICES) up || exit 1; \
	$(BIN)/telemeter demo $(DEMO_ARGS); rc=$$?; \
	if [ $$keep = 0 ]; then $(SERVICES) down; fi; \
	exit $$rc

up: services-up ## Run bridge + aggregator + API in the foreground (API on 127.0.0.1:8000)
	$(BIN)/telemeter up

simulate: install ## Simulate devices against a running `make up` and reconcile
	$(BIN)/telemeter simulate $(SIM_ARGS)

chaos: install ## Kill/restart every component 24 times over 5.5 min under load; reconcile exactly
	@$(SERVICES) up
	$(BIN)/telemeter chaos $(CHAOS_ARGS)

chaos-cluster: install ## The chaos run over a 3-node Kafka: 6 of its 24 kills a Kafka node (controller, leaders); reconcile exactly
	@$(SERVICES) up
	$(BIN)/telemeter chaos --cluster --duration 300 $(CHAOS_ARGS)

test: install ## Install what is missing, start services, run the whole test suite
	@echo "--- the console's unit tests (vitest, console/test)"; cd console && npm test --silent
	@if $(SERVICES) status >/dev/null 2>&1; then keep=1; else keep=0; fi; \
	$(SERVICES) up || exit 1; mkdir -p .run; \
	$(BIN)/pytest -p no:xdist $(FUZZ) $(PYTEST_ARGS) > .run/test-fuzz.log 2>&1 & fuzz=$$!; \
	$(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 --ignore=$(FUZZ) $(PYTEST_ARGS); \
	rc=$$?; wait $$fuzz; frc=$$?; \
	echo "--- $(FUZZ), run beside the others in a process of its own (log .run/test-fuzz.log):"; \
	tail -n 15 .run/test-fuzz.log; \
	if [ $$keep = 0 ]; then $(SERVICES) down; fi; \
	[ $$rc = 0 ] && [ $$frc = 0 ]

screenshots: ## After `make test`: the console's screenshots from the browser tests into docs/console/ (README)
	mkdir -p docs/console && cp .run/screenshots/*.png docs/console/

test-durations: ## After a full `make test`: its seconds per module become the order of the next (tests/scheduling.py)
	cp .run/test-durations.json tests/durations.json

commands-offline: install ## A door offline for 10 minutes gets its command on reconnect, once (`make test` waits 3 s)
	TELEMETER_COMMAND_OFFLINE_S=600 $(BIN)/pytest -p no:xdist tests/e2e/test_commands.py -k offline_within -v

equivalence: install ## The rollup equivalence property test over 10,000 scenarios (~11 min; `make test` runs 1,000)
	TELEMETER_EQUIVALENCE_SCENARIOS=10000 $(BIN)/pytest tests/storage/test_rollup_equivalence.py -q

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas ingest aggregator api storage devices telemeter rating identity bench messaging resilience billing webhooks downlink insights
	cd console && npm run --silent check

bench: services-up ## All benchmark scenarios (~30 min, authentication on); writes bench/results/<date>.md and the README table
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: services-up ## A few-minute smoke run of every benchmark scenario (no README update)
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

clean: services-down ## Stop services and remove runtime state (.run)
	rm -rf .run
