# One entry point for a newcomer and for CI: `make up` runs the system, `make test` checks it.
# Everything is installed into the project (.tools for uv, .venv for the rest) from PyPI wheels.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen --no-sync

.PHONY: install up test lint typecheck pytest browser bench peers burst clean

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

# The browser tests drive Debian's Chromium (Playwright's own browser download is not
# possible offline); a fresh machine gets it from apt (make test runs as root there).
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium \
		|| { apt-get update -q && apt-get install -y -q chromium; }

pytest: install browser
	$(RUN) pytest

test: lint typecheck pytest

bench: install
	$(RUN) python -m bench.event_log
	$(RUN) python -m bench.cycle_scale
	$(RUN) python -m bench.api_latency

# Beside pyeventsourcing's recorder, and the national deadline burst: both need the `bench`
# dependency group (eventsourcing, psutil), which `uv run --group bench` adds to .venv.
peers: install
	$(UV) run --frozen --group bench python -m bench.peers
	$(UV) run --frozen --group bench python -m bench.peers_sql

burst: install
	$(UV) run --frozen --group bench python -m bench.burst

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
