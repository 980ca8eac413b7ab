# recordgpu developer entry points. `make demo` and `make test` work on a fresh machine with python3 >= 3.10.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip

.PHONY: demo test test-gpu venv venv-test bench wheel clean

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp-base
venv-test: $(VENV)/.stamp-test

## demo: generate a small sample, pack it with im2rec, read it back, iterate it
demo: venv
	$(PY) -m recordgpu.demo --out demo

## test: run the test suite (no GPU needed)
test: venv-test
	$(PY) -m pytest -q

## test-gpu: GPU-vs-CPU suite, in the current environment, on a CUDA machine
test-gpu:
	python -m pytest -q -m gpu tests

## bench: RecordIO read throughput (generates ~1 GB under bench/data)
bench: venv
	$(PY) -m bench.read_throughput

## wheel: build sdist and wheel into dist/
wheel: venv
	$(PIP) install -q build
	$(PY) -m build

clean:
	rm -rf $(VENV) dist build demo *.egg-info
