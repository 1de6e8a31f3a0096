# `make run`: set everything up, then run the default suite. `make test`: set everything up, then test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xfbench-installed
SUITE ?= quick

# Every framework this machine can run. torch is pinned: a CPU build of 2.13.0 is cached on the
# development machines, while an unpinned torch pulls a multi-gigabyte CUDA build.
TORCH_VERSION ?= 2.13.0
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
TF_PACKAGE := $(if $(HAS_NVIDIA),tensorflow[and-cuda],tensorflow-cpu)
JAX_PACKAGE := $(if $(HAS_NVIDIA),jax[cuda12],jax)
ORT_PACKAGE := $(if $(HAS_NVIDIA),onnxruntime-gpu,onnxruntime)
# keras: Keras 3 for keras-jax, keras-torch and keras-tensorflow (TensorFlow also depends on it).
FRAMEWORKS := torch==$(TORCH_VERSION) $(TF_PACKAGE) $(JAX_PACKAGE) flax optax keras onnx $(ORT_PACKAGE)
# With a GPU, also NVML's Python bindings: bench run then warns of other processes on the GPU.
COMMA := ,
# ray: bench run --executor ray, and its tests against a real local Ray cluster.
EXTRAS := dev,ray$(if $(HAS_NVIDIA),$(COMMA)gpu)

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(FRAMEWORKS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

run: setup
	$(BIN)/bench run $(SUITE)

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The GPU check (tests/gpu/check.sh): run it on a machine with an NVIDIA GPU; elsewhere it exits 3.
.PHONY: gpu-check
gpu-check:
	bash tests/gpu/check.sh $${OUT:-gpu-check-out}
