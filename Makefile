# The two set-up commands: `make run` (embedded mode with demo data) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run up test bench bench-jobs bench-migrate bench-metrics lint format install clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo --rotate-demo-keys
	$(PY) manage.py ensure_staff_user
	@echo "Serving on http://127.0.0.1:$(PORT)/  (admin: /admin/, API docs: /api/docs/, ready: /health/ready)"
	$(PY) manage.py runserver 127.0.0.1:$(PORT) --noreload

# Full mode on one machine: the Procfile's web, workers and beat (honcho) against the services
# named in .env (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL: see .env.example and docs/JOBS.md).
up: install
	@test -f .env || { echo "make up reads .env (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL); copy .env.example"; exit 2; }
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -e .env web worker worker-email worker-cleanup beat

test: install
	$(PY) -m scripts.services run -- $(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m scripts.services run -- $(PY) bench/ceiling.py

bench-jobs: install
	$(PY) -m scripts.services run -- $(PY) bench/jobs.py

bench-migrate: install
	$(PY) -m scripts.services run -- $(PY) bench/migrate_storage.py

bench-metrics: install
	$(PY) -m scripts.services run -- $(PY) bench/metrics.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
