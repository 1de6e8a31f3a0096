"""keras-jax, keras-torch and keras-tensorflow: the conformance kit and what a worker of each holds.

Keras holds one backend per process (it reads KERAS_BACKEND once, at its first import), so every check here runs
in a subprocess of its own: the kit (tests/kits/keras_kit.py) in a pytest process per backend, and one worker
script per backend that builds, trains and infers tiny models the way a measured case does and reports its
settings and the frameworks it imported. All subprocesses start together, when the first test asks for them, and
each test waits for its own.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}  # backend -> the module it needs
INSTALLED = [b for b, module in BACKENDS.items()
             if importlib.util.find_spec(module) and importlib.util.find_spec("keras")]
OTHERS = {"jax": ("torch", "tensorflow"), "torch": ("jax", "tensorflow"), "tensorflow": ("jax", "torch")}
TIMEOUT_S = 600

# One worker per backend, as a case's worker runs it: import the adapter, build, load canonical weights, train and
# infer tiny lenet5 and lstm models; then the checks the kit does not make. Prints one JSON line.
WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from xfbench.adapters.keras_{backend} import KerasAdapter
    from keras import ops
    from xfbench.harness.adapter import Unsupported
    from xfbench.harness.models import TINY_SIZES, build_spec
    from xfbench.harness.optimizers import build_optimizer
    from xfbench.harness.weights import init_weights, make_inputs

    def adapter(model, optimizer="sgd", precision="fp32"):
        spec = build_spec(model, **TINY_SIZES[model])
        a = KerasAdapter(device="cpu", precision=precision, threads=1, seed=0)
        a.build(spec, build_optimizer(optimizer) if optimizer else None)
        return a, spec

    def steps(a, spec, weights, n=3):
        a.load_weights(weights)
        batch = a.put_batch(*make_inputs(spec, 3, seed=1))
        for _ in range(n):
            a.train_step(batch)
        a.sync()
        return a.dump_weights()

    out = {{"settings": {{}}}}
    for model in ("lenet5", "lstm"):
        a, spec = adapter(model)
        steps(a, spec, init_weights(spec))
        for _ in range(2):
            a.infer_step(a.put_batch(*make_inputs(spec, 3)))
        a.sync()
        out["settings"][model] = a.settings()
    out["bf16"] = adapter("lenet5", precision="bf16")[0].settings()["compute_dtype"]
    # float64 is float64 throughout: Keras demotes float64 results to float32 on JAX and torch unless told not to.
    from xfbench.adapters.numpy_adapter import NumpyAdapter
    out["fp64_logits_vs_numpy"] = {{}}
    for model in ("lenet5", "gru"):
        a, spec = adapter(model, None, "fp64")
        ref = NumpyAdapter(device="cpu", precision="fp64", threads=1, seed=0)
        ref.build(spec, None)
        for m in (a, ref):
            m.load_weights(init_weights(spec))
        x, y = make_inputs(spec, 3, seed=1)
        got, want = a.forward(a.put_batch(x, y))[0], ref.forward(ref.put_batch(x, y))[0]
        out["fp64_logits_vs_numpy"][model] = float(np.abs(got - want).max() / np.abs(want).max())
    # load_weights starts the optimizer afresh, and the GRU's recurrent r, z biases stay at zero.
    a, spec = adapter("gru", "adam")
    weights = init_weights(spec)
    first, again = steps(a, spec, weights), steps(a, spec, weights)
    out["reload_resets_optimizer"] = all(np.array_equal(first[k], again[k]) for k in weights)
    h = TINY_SIZES["gru"]["hidden"]
    biases = [ops.convert_to_numpy(a.model.get_layer(f"gru{{i}}").cell.bias.value) for i in range(2)]
    out["held_rz_bias"] = [float(np.abs(b[1, :2 * h]).max()) for b in biases]  # (2, 3H) = [input; recurrent]
    try:
        KerasAdapter(device="cpu", precision="tf32", threads=1, seed=0)
        out["tf32_on_cpu"] = "accepted"
    except Unsupported as e:
        out["tf32_on_cpu"] = str(e)
    out["frameworks"] = sorted(m for m in ("jax", "torch", "tensorflow") if m in sys.modules)
    print("RESULT " + json.dumps(out))
""")

# Keras already holds another backend: the adapter says so in one line instead of failing later.
OTHER_BACKEND = textwrap.dedent("""
    import xfbench.adapters.keras_jax  # Keras now holds the jax backend
    from xfbench.adapters.keras_torch import KerasAdapter
    from xfbench.harness.adapter import Unsupported
    try:
        KerasAdapter(device="cpu", precision="fp32", threads=1, seed=0)
    except Unsupported as e:
        print("UNSUPPORTED " + str(e))
    import sys
    print("TORCH " + str("torch" in sys.modules))
""")


def _start(args: list[str], **env: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    env.pop("KERAS_BACKEND", None)  # the target module chooses
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """Every subprocess of this module, started at once (the kit's three are the long ones); name -> Popen."""
    # The kit builds a new model for every check, and JAX compiles each one's functions afresh: a compilation
    # cache of this session's own (never a user's) reuses identical executables, a fifth of the JAX kit's time.
    jax_cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    procs = {}
    for b in INSTALLED:
        procs[f"kit-{b}"] = _start(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=5",
                                    "tests/kits/keras_kit.py"], XFBENCH_KERAS_KIT=b,
                                   **(jax_cache if b == "jax" else {}))
        procs[f"worker-{b}"] = _start(["-c", WORKER.format(backend=b)])
    if {"jax", "torch"} <= set(INSTALLED):
        procs["other-backend"] = _start(["-c", OTHER_BACKEND])
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


def _finish(procs: dict[str, subprocess.Popen], name: str) -> str:
    """The output of the subprocess `name`; a test failure that shows it unless it exited 0."""
    try:
        out, _ = procs[name].communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        procs[name].kill()
        out, _ = procs[name].communicate()
        pytest.fail(f"{name} ran past {TIMEOUT_S} s:\n{out[-6000:]}")
    if procs[name].returncode != 0:
        pytest.fail(f"{name} exited {procs[name].returncode}:\n{out[-8000:]}", pytrace=False)
    return out


def _result(out: str) -> dict:
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_kit(processes, backend):
    """The whole conformance kit, in a process of its own per backend."""
    if backend not in INSTALLED:
        pytest.skip(f"keras or {BACKENDS[backend]} not installed")
    out = _finish(processes, f"kit-{backend}")
    print(out[-3000:])  # shown with -rP / -s: the kit's own summary and durations


# What each backend's manifest must say: Keras's "auto" resolves to XLA on JAX, to no XLA on TensorFlow on a
# machine without a GPU (keras/src/trainers/trainer.py, _resolve_auto_jit_compile), to eager on torch.
EXPECTED = {
    "jax": {"jit_compile": True, "compile_scope": "whole step, compiled", "data_layout": "NHWC (channels_last)",
            "inference_api": "jax.jit(model.stateless_call(trainable, non_trainable, x, training=False))"},
    "torch": {"jit_compile": False, "compile_scope": "none (eager)", "data_layout": "NCHW (channels_first)",
              "inference_api": "model(x, training=False) under torch.no_grad(), eager"},
    "tensorflow": {"data_layout": "NHWC (channels_last)",
                   "inference_api": "tf.function(model(x, training=False), jit_compile=model.jit_compile)"},
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_holds_one_framework_and_says_what_ran(processes, backend):
    if backend not in INSTALLED:
        pytest.skip(f"keras or {BACKENDS[backend]} not installed")
    result = _result(_finish(processes, f"worker-{backend}"))
    assert result["frameworks"] == [BACKENDS[backend]], f"keras-{backend} imported {result['frameworks']}"
    image, tokens = result["settings"]["lenet5"], result["settings"]["lstm"]
    for key, value in EXPECTED[backend].items():
        assert image[key] == value, key
    if backend == "tensorflow":  # XLA exactly where Keras's "auto" picks it
        assert image["compile_scope"] == ("whole step, compiled" if image["jit_compile"] else "whole step, graph")
    assert image["backend"] == backend and image["training_api"] == "model.train_on_batch"
    assert "host_sync_per_step" in image and image["fp32_math"] == "ieee"
    assert {"keras", BACKENDS[backend]} <= set(image["versions"])
    assert "recurrent_impl" not in image and tokens["recurrent_impl"]
    assert tokens["data_layout"] == "(B, T) int32"
    assert result["bf16"] == "bfloat16"
    assert max(result["fp64_logits_vs_numpy"].values()) <= 1e-12, result["fp64_logits_vs_numpy"]
    assert result["reload_resets_optimizer"]
    assert result["held_rz_bias"] == [0.0, 0.0]
    assert result["tf32_on_cpu"] == "tf32 is a GPU precision; use fp32 on CPU"


@pytest.mark.slow
def test_keras_already_holding_another_backend_is_unsupported(processes):
    if "other-backend" not in processes:
        pytest.skip("needs keras, jax and torch")
    out = _finish(processes, "other-backend")
    reason = next(line for line in out.splitlines() if line.startswith("UNSUPPORTED "))
    assert reason == ("UNSUPPORTED Keras was imported with the jax backend in this process; "
                      "keras-torch needs a process of its own")
    assert "TORCH False" in out  # refused before importing torch
