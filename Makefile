# recordgpu developer entry points. `make demo` and `make test` work on a fresh machine with python3 >= 3.10.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# extras installed by `make test`; CI adds DALI and torch: make test TEST_EXTRAS=test,dali TORCH=torch==2.13.0
TEST_EXTRAS ?= test
comma := ,
TEST_STAMP = $(VENV)/.stamp-test-$(subst $(comma),-,$(TEST_EXTRAS))$(if $(TORCH),-torch)
TORCH ?=

.PHONY: demo test test-gpu bench-gpu venv venv-test bench bench-setup wheel docker compat clean

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(TEST_STAMP): $(VENV)/.stamp-base pyproject.toml
	$(PIP) install -q -e '.[$(TEST_EXTRAS)]' $(TORCH)
	touch $@

venv: $(VENV)/.stamp-base
venv-test: $(TEST_STAMP)

## demo: generate a small sample, pack it with im2rec, read it back, iterate it
demo: venv
	$(PY) -m recordgpu.demo --out demo

## test: run the test suite (no GPU needed)
test: venv-test
	$(PY) -m pytest -q

## test-gpu: GPU-vs-CPU suite, in the current environment, on a CUDA machine
test-gpu:
	python -m pytest -q -m gpu tests

## bench-gpu: iterators on CUDA GPU 0 (recordgpu device='gpu' vs DALI's mixed pipeline vs nvImageCodec decode
## only), in the current environment; DALI runs in bench/.venv-dali (`python -m bench setup --device gpu`)
BENCH_GPU_ARGS ?= --threads 8 --epochs 3 --rounds 3
bench-gpu:
	python -m bench iter --device gpu $(BENCH_GPU_ARGS)

## bench: RecordIO read throughput (generates ~1 GB under bench/data), then iterators vs DALI-CPU and MXNet
bench: venv
	$(PY) -m bench all

## bench-setup: create the peers' virtualenvs (DALI, MXNet) and install scikit-image for the datasets
bench-setup: venv
	$(PY) -m bench setup

## wheel: build sdist and wheel into dist/
wheel: venv
	$(PIP) install -q build
	$(PY) -m build

## docker: build the CPU and GPU images (needs a running Docker engine)
docker:
	@docker info >/dev/null 2>&1 || { echo "make docker: no Docker engine reachable (docker info failed); nothing built" >&2; exit 1; }
	docker build -f docker/Dockerfile.cpu -t recordgpu:cpu .
	docker build -f docker/Dockerfile.gpu -t recordgpu:gpu .

## compat: quick tests in fresh venvs with the oldest/newest numpy and opencv-python-headless
compat:
	bash tests/compat/run_compat.sh

clean:
	rm -rf $(VENV) dist build demo *.egg-info
