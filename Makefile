# Every target creates .venv when it is missing. The tested torch pair is pinned here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint format bench coverage fuzz docs clean install

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_PIN)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m modelsurgeon.demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check modelsurgeon tests benchmarks
	$(VENV)/bin/ruff format --check modelsurgeon tests benchmarks
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix modelsurgeon tests benchmarks
	$(VENV)/bin/ruff format modelsurgeon tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/sampler.py --threads 1 --out docs/sampler.md
	$(PY) benchmarks/sampler_facts.py --out docs/sampler-facts.md
	$(PY) benchmarks/rehead.py --out docs/performance.md

coverage: $(VENV)/.installed
	$(PY) benchmarks/coverage.py --out docs/coverage.md

fuzz: $(VENV)/.installed
	MODELSURGEON_FUZZ_EXAMPLES=2000 $(PY) -m pytest -q -m slow -p no:cacheprovider tests/test_fuzz.py --hypothesis-show-statistics

docs: $(VENV)/.installed
	$(PY) -m modelsurgeon.cli._docs README.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info demo-out bench-out
