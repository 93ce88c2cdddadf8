# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs glassformer, trains and shows a small transformer
#   make test   installs the test extras too and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# Without a GPU, pin PyTorch's CPU build (a plain `torch` pulls a multi-GB CUDA build).
TORCH  := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.1' || echo 'torch==2.13.0')

.PHONY: demo test bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e ".[test]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/glassformer demo

test: $(VENV)/.test
	$(PY) -m pytest -q -n auto  # pytest-xdist: one worker per core

bench: $(VENV)/.test
	$(PIP) -e ".[bench]"
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
