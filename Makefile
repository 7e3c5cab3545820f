# Two commands a newcomer needs:  `make serve`  (run the service, embedded default)  and  `make test`.
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: install lock serve test lint bench-speed bench-quality bench-decisions bench-api checkpoint clean

LOCK := requirements.lock
PIP_VERSION ?= 26.3
UV_VERSION ?= 0.13.9

# requirements.lock pins every package (direct and transitive) that CI tested; it is applied as pip
# constraints, so only what the project needs is installed, at exactly the locked version.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q "pip==$(PIP_VERSION)"
	# CPU torch first, or sentence-transformers pulls a multi-GB CUDA build (the lock's nvidia-* pins
	# belong to PyPI's CUDA build and are never installed beside the CPU wheel).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Re-resolve requirements.lock after changing pyproject.toml (keeps existing pins where they still fit;
# `make lock UPGRADE=--upgrade` moves everything to the newest allowed versions).
lock:
	test -x $(VENV)/bin/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra litellm --python-version 3.11 \
	  --custom-compile-command "make lock" $(UPGRADE) -o $(LOCK)

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
