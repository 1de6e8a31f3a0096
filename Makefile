# `make run`: set everything up, then run the default suite. `make test`: set everything up, then test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUITE ?= quick

# Every framework this machine can run, at the versions docs/spec.md was verified with (its section 1).
# Change one for a run: `make setup TORCH_VERSION=2.12.0` (or edit it here); the stamp then reinstalls.
# torch is pinned anyway: a CPU build of 2.13.0 is cached on the development machines, while an unpinned
# torch pulls a multi-gigabyte CUDA build.
TORCH_VERSION ?= 2.13.0
TF_VERSION ?= 2.21.0
KERAS_VERSION ?= 3.15.1
JAX_VERSION ?= 0.10.2
FLAX_VERSION ?= 0.12.8
OPTAX_VERSION ?= 0.2.8
ONNX_VERSION ?= 1.23.2
ORT_VERSION ?= 1.32.0
# GPU hosts only: the jax extra that brings its CUDA plugin, and an index for torch's CUDA build (empty:
# PyPI, whose Linux torch wheels are CUDA 13 builds; e.g. https://download.pytorch.org/whl/cu130 instead).
JAX_CUDA ?= cuda13
TORCH_INDEX_URL ?=

# A host with an NVIDIA GPU: `nvidia-smi -L` lists one. Its set-up has a stamp of its own, so a CPU set-up
# on a GPU host is redone the GPU way.
HAS_NVIDIA := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && echo yes)
STAMP := $(VENV)/.xfbench-installed-$(if $(HAS_NVIDIA),gpu,cpu)
# keras: Keras 3 for keras-jax, keras-torch and keras-tensorflow (TensorFlow also depends on it).
CPU_FRAMEWORKS := torch==$(TORCH_VERSION) tensorflow-cpu==$(TF_VERSION) jax==$(JAX_VERSION) flax==$(FLAX_VERSION) \
    optax==$(OPTAX_VERSION) keras==$(KERAS_VERSION) onnx==$(ONNX_VERSION) onnxruntime==$(ORT_VERSION)
# ray: bench run --executor ray, and its tests against a real local Ray cluster. gpu: NVML (nvidia-ml-py).
COMMA := ,
EXTRAS := dev,ray$(if $(HAS_NVIDIA),$(COMMA)gpu)
BENCH_ENV := $(BIN)/bench env create --force

.PHONY: setup run test clean

setup: $(STAMP)

# CPU: every framework in .venv, one interpreter for all (its workers still import one framework each).
$(VENV)/.xfbench-installed-cpu: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CPU_FRAMEWORKS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

# GPU: CUDA 12 and CUDA 13 libraries cannot share one environment, so each framework gets its own
# (docs/gpu.md): torch (CUDA 13) and keras-torch in .venv; TensorFlow (CUDA 12), JAX (CUDA 13) and ONNX
# Runtime (CUDA 12) in framework environments that run their adapters by default (`bench env list`).
# A CPU build left by a CPU set-up goes first; PIP_FIND_LINKS= keeps a locally cached CPU torch out.
# Last, `bench list frameworks --check` trains a tiny LeNet-5 on CUDA in every adapter's own worker.
$(VENV)/.xfbench-installed-gpu: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet --yes torch tensorflow-cpu tensorflow jax jaxlib onnxruntime 2>/dev/null || true
	PIP_FIND_LINKS= $(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) \
	    torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet keras==$(KERAS_VERSION) onnx==$(ONNX_VERSION) -e ".[$(EXTRAS)]"
	$(BENCH_ENV) tensorflow --default-for tensorflow,tensorflow-xla,keras-tensorflow \
	    "tensorflow[and-cuda]==$(TF_VERSION)" keras==$(KERAS_VERSION)
	$(BENCH_ENV) jax --default-for jax,keras-jax "jax[$(JAX_CUDA)]==$(JAX_VERSION)" flax==$(FLAX_VERSION) \
	    optax==$(OPTAX_VERSION) keras==$(KERAS_VERSION)
	$(BENCH_ENV) onnxruntime --default-for onnxruntime onnxruntime-gpu==$(ORT_VERSION) onnx==$(ONNX_VERSION)
	$(BIN)/bench list frameworks --check || echo "make setup: an adapter failed its check (above); its cases will fail"
	touch $@

run: setup
	$(BIN)/bench run $(SUITE)

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean:  # framework environments live in .venv/xfbench-envs: gone too
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The GPU check (tests/gpu/check.sh): run it on a machine with an NVIDIA GPU; elsewhere it exits 3.
.PHONY: gpu-check
gpu-check:
	bash tests/gpu/check.sh $${OUT:-gpu-check-out}
