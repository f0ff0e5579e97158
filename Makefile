# tg-llava-eval: `make setup` builds .venv once; `make test` and `make demo` use it.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV_INDEX := --extra-index-url file:///opt/pypi/simple --extra-index-url file:///opt/pypi-more/simple --find-links /opt/wheels
CONSTRAINTS := requirements/constraints.txt
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/tg_llava_eval/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Tiny models are per-op-overhead bound: one thread per process beats two competing ones.
export OMP_NUM_THREADS ?= 1
# Cache bytecode: the suite starts many Python processes (toolkits, torchrun ranks).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup test test-quick demo bench clean-venv lint

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml requirements/*.txt
	bash tools/setup_venv.sh $(VENV)
	touch $@

test: setup
	$(PY) -m pytest -q -ra --timeout=1800 tests

# The edit-test loop (under a minute): unit tests not marked slow (setup.cfg says what that means).
test-quick: setup
	$(PY) -m pytest -q -x -m "not slow and not e2e" tests/unit --deselect tests/unit/results/test_fuzz_parsers.py

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	$(VENV)/bin/tg-llava-eval demo --out demo_out $(DEMO_ARGS)

bench: setup
	$(PY) bench/inference.py

clean-venv:
	rm -rf $(VENV)
