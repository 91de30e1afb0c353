# The two set-up commands of the README, and the pieces they are made of.
#   make run   set up everything, seed demo data, serve on http://127.0.0.1:8000/
#   make test  set up everything and run the whole test suite
#   make lint  ruff (lint and format) and mypy on the domain modules

PYTHON ?= python3.12
UV_VERSION := 0.13.8
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

# uv must never fetch an interpreter: the machine's Python 3.12 is used.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test venv browser lint format check-migrations ci clean

# The environment is rebuilt whenever the lock file changes. uv itself is pinned in the lock
# (dev group) and bootstrapped into the same .venv with pip.
$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install --quiet uv==$(UV_VERSION); }
	$(VENV)/bin/uv sync --frozen
	@touch $@

venv: $(VENV)/.synced

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

# Debian's Chromium and CJK fonts for the browser tests, installed with apt-get only where
# missing (CI runs as root; elsewhere sudo asks). Playwright never downloads a browser.
browser:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium fonts-noto-cjk; }

test: venv browser
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check-migrations: venv
	$(PY) manage.py makemigrations --check --dry-run

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) var
