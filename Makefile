# Two commands a newcomer needs:  `make serve`  (run the service, embedded default)  and  `make test`.
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: install serve test lint bench-speed bench-quality bench-decisions bench-api checkpoint clean

$(STAMP): pyproject.toml
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first, or sentence-transformers pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/locus-registry serve

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Reproduces encoder/checkpoints/default (see its training_report.json).
checkpoint: install
	$(PY) -m encoder.cli train --data $(DATA)/lart $(DATA)/mmlu_pro $(DATA)/zeroeval $(DATA)/alpaca_eval_v2 \
	  --out encoder/checkpoints/default --seed 0

bench-speed: install
	$(PY) -m benchmarks.speed

bench-quality: install
	$(PY) -m benchmarks.quality --data $(DATA)/lart $(DATA)/mmlu_pro $(DATA)/zeroeval $(DATA)/alpaca_eval_v2

bench-decisions: install
	$(PY) -m benchmarks.decisions --data $(DATA)/lart $(DATA)/mmlu_pro $(DATA)/zeroeval $(DATA)/alpaca_eval_v2

bench-api: install
	$(PY) -m benchmarks.api

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
