# agentd: `make run` starts the daemon with the offline provider, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AGENTD_HOME ?= ./var
LLM_PROVIDER ?= offline
PREFIX ?= /opt/agentd
CONF_DIR ?= /etc/agentd
UNIT_DIR ?= /etc/systemd/system

.PHONY: run test lint bench install-service uninstall-service clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	AGENTD_HOME=$(AGENTD_HOME) LLM_PROVIDER=$(LLM_PROVIDER) $(BIN)/agentd run

test: $(STAMP)
	./scripts/test-deps
	@if [ -d examples/evals/triage ]; then \
		AGENTD_HOME=$$(mktemp -d) LLM_PROVIDER=offline $(BIN)/agentd eval examples/evals/triage --replay --min-accuracy 0.9; \
	else echo "skipped: agentd eval examples/evals/triage --replay (no golden set in examples/evals/triage/ yet)"; fi
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m compileall -q agentd tests bench
	@if $(BIN)/python -m ruff --version >/dev/null 2>&1; then $(BIN)/python -m ruff check agentd tests bench; \
	else echo "ruff not installed: pip install ruff for the full lint"; fi

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

install-service:
	./deploy/install.sh install

uninstall-service:
	./deploy/install.sh uninstall

clean:
	rm -rf $(VENV) build *.egg-info
