# One entry point for a newcomer and for CI: `make up` runs the system, `make test` checks it.
# Everything is installed into the project (.tools for uv, .venv for the rest) from PyPI wheels.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen --no-sync

.PHONY: install up test lint typecheck pytest bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced

up: install
	$(RUN) musrenbang up

lint: install
	$(RUN) ruff format --check musrenbang tests bench migrations
	$(RUN) ruff check musrenbang tests bench migrations
	$(RUN) lint-imports

typecheck: install
	$(RUN) mypy

pytest: install
	$(RUN) pytest

test: lint typecheck pytest

bench: install
	$(RUN) python -m bench.event_log
	$(RUN) python -m bench.cycle_scale
	$(RUN) python -m bench.api_latency

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
