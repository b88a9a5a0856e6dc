# Transcript audit app. The two everyday commands:
#   make run    set up, load demo data and users, serve on http://$(HOST):$(PORT)/
#   make test   set up, run the test suite (pass pytest options with ARGS="-k login -x")

HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help bootstrap venv run test lint format bench lock clean distclean

help:
	@echo "make run     set up, create demo data + users, serve on http://$(HOST):$(PORT)/"
	@echo "make test    set up, run pytest (ARGS=... passes options)"
	@echo "make lint    ruff check + ruff format --check + mypy"
	@echo "make format  ruff format + ruff check --fix"
	@echo "make bench   run the benchmark command"
	@echo "make lock    regenerate requirements.lock from pyproject.toml with uv"
	@echo "make clean   remove caches and test artifacts (distclean also removes .venv)"
	@echo
	@echo "Serve elsewhere:  make run HOST=0.0.0.0 PORT=8080   (defaults HOST=127.0.0.1 PORT=8000)"
	@echo "Import a file:    .venv/bin/python manage.py import_transcripts FILE.jsonl [--skip-invalid]"
	@echo "                  (or staff: Imports -> Upload in the app; README, Import)"

# Venv + locked dependencies + migrations; a no-op when everything is current.
bootstrap:
	@scripts/bootstrap

# Venv + dependencies without touching the database (tools that do not need it).
venv:
	@scripts/bootstrap --no-migrate

run: bootstrap
	$(PY) manage.py setup_demo --url http://$(HOST):$(PORT)/
	@echo
	@echo "Serving on http://$(HOST):$(PORT)/  (Ctrl-C to stop)"
	@echo
	$(PY) manage.py runserver $(HOST):$(PORT)

test: bootstrap
	$(PY) -m pytest $(ARGS)

# mypy reads its settings (files, the django-stubs plugin) from pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: bootstrap
	$(PY) manage.py bench $(ARGS)

# Same command as in the lock's header; uv lives in the venv only for this.
lock: venv
	@test -x $(VENV)/bin/uv || $(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile --quiet pyproject.toml --extra dev \
		--python-version 3.12 --generate-hashes -o requirements.lock

# Keeps var/ (the development database and uploads) and .venv.
clean:
	rm -rf test-artifacts test-results .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
