"""Fairness (docs/spec.md 5.7-5.8, docs/fairness.md): what a framework expert would fault, tested with the real
frameworks at tiny sizes. Memory is set-up and step apart, each case holds one copy of its weights, bf16 is the
same work everywhere, TensorFlow runs oneDNN, and the shared manifest keys are there to compare."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.measure.host import peak_rss_bytes, reset_peak_rss
from xfbench.harness.measure.runner import run_worker
from xfbench.harness.models import TINY_SIZES, build_spec
from xfbench.harness.optimizers import build_optimizer
from xfbench.harness.weights import init_weights, make_inputs

TINY = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.001, min_samples=3, max_time_s=0.2)


def needs(*modules: str) -> None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} not installed")


# ---- memory: set-up and step apart (item 2) ----

def test_the_peak_resident_memory_resets_to_what_is_in_use_now():
    if peak_rss_bytes() is None:
        pytest.skip("no /proc/self/status here")
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    high = peak_rss_bytes()
    del block
    assert reset_peak_rss()
    assert peak_rss_bytes() < high - 150 * 2**20  # the freed block no longer counts


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_worker_reports_set_up_and_step_peaks_apart(tmp_path, framework):
    needs(framework)
    case = Case(framework=framework, model="lenet5", mode="train", batch_size=2, threads=1, measure=TINY,
                case_timeout_s=300.0)
    rec = run_worker(case, tmp_path / "w", tmp_path / "l")
    assert rec.status == "ok", rec.stderr_tail
    m = rec.metrics
    assert 0 < m.step_peak_host_rss_bytes <= m.peak_host_rss_bytes
    assert 0 < m.setup_peak_host_rss_bytes <= m.peak_host_rss_bytes
    assert m.step_peak_device_memory_bytes is None  # a CPU case


def test_jax_holds_one_copy_of_the_weights():
    needs("jax", "flax", "optax")
    import gc

    import jax
    from xfbench.adapters.jax_adapter import JaxAdapter

    def live_bytes() -> int:
        gc.collect()
        return sum(x.nbytes for x in jax.live_arrays())

    spec = build_spec("alexnet", **TINY_SIZES["alexnet"])
    weight_bytes = 4 * spec.parameter_count()
    before = live_bytes()
    a = JaxAdapter(device="cpu", precision="fp32", threads=1, seed=0)
    a.build(spec, build_optimizer("sgd"))  # stateless optimizer: the state holds no arrays
    assert a.params is None and live_bytes() - before < 1024  # building allocates no weights
    assert a.parameter_count() == spec.parameter_count()
    with pytest.raises(RuntimeError, match="load_weights"):
        a.train_step(a.put_batch(*make_inputs(spec, 2, seed=0)))
    a.load_weights(init_weights(spec, 0))
    once = live_bytes() - before
    a.load_weights(init_weights(spec, 1))  # the old copy is gone, not kept beside the new one
    assert weight_bytes <= once < weight_bytes + 1024 and live_bytes() - before == once


# ---- bf16: the same work in every framework (item 8) ----

def test_torch_bf16_keeps_embedding_and_rnn_in_float32_and_runs_dense_in_bfloat16():
    needs("torch")
    import torch
    from xfbench.adapters.torch_adapter import TorchAdapter

    spec = build_spec("lstm", **TINY_SIZES["lstm"])
    a = TorchAdapter(device="cpu", precision="bf16", threads=1, seed=0)
    a.build(spec, None)
    a.load_weights(init_weights(spec, 0))
    seen = {}

    def hook(name):
        def record(module, inputs, out):  # returns None: the output is left as it is
            seen[name] = (out[0] if isinstance(out, tuple) else out).dtype
        return record
    for name in ("embed", "rnn", "out"):
        getattr(a.model, name).register_forward_hook(hook(name))
    a.infer_step(a.put_batch(*make_inputs(spec, 2, seed=0)))
    assert seen == {"embed": torch.float32, "rnn": torch.float32, "out": torch.bfloat16}


def test_keras_bf16_keeps_embedding_and_rnn_in_float32_and_runs_dense_in_bfloat16():
    needs("tensorflow", "keras")
    from xfbench.adapters.tensorflow_adapter import TensorFlowAdapter

    spec = build_spec("gru", **TINY_SIZES["gru"])
    a = TensorFlowAdapter(device="cpu", precision="bf16", threads=1, seed=0)
    a.build(spec, None)
    dtypes = {layer.name: layer.compute_dtype for layer in a.model.layers if layer.weights}
    assert dtypes == {"embed": "float32", "gru0": "float32", "gru1": "float32", "out": "bfloat16"}


def test_jax_bf16_keeps_embedding_and_rnn_in_float32_and_runs_dense_in_bfloat16():
    needs("jax", "flax", "optax")
    from xfbench.adapters.jax_adapter import JaxAdapter

    spec = build_spec("lstm", **TINY_SIZES["lstm"])
    a = JaxAdapter(device="cpu", precision="bf16", threads=1, seed=0)
    a.build(spec, None)
    a.load_weights(init_weights(spec, 0))
    x, _ = a.put_batch(*make_inputs(spec, 2, seed=0))
    _, state = a.net.apply({"params": a.params}, x, train=False, capture_intermediates=True)
    outputs = {k: v["__call__"][0].dtype.name for k, v in state["intermediates"].items() if k != "__call__"}
    assert outputs == {"embed": "float32", "lstm0": "float32", "lstm1": "float32", "out": "bfloat16"}


@pytest.mark.parametrize("model", ["lenet5", "lstm"])
def test_bf16_logits_agree_between_frameworks(model):
    """The same bf16 work gives the same logits to bfloat16's precision (8 bits: ~4e-3 per rounding)."""
    needs("torch", "tensorflow", "jax", "flax")
    from xfbench.adapters.jax_adapter import JaxAdapter
    from xfbench.adapters.tensorflow_adapter import TensorFlowAdapter
    from xfbench.adapters.torch_adapter import TorchAdapter

    spec = build_spec(model, **TINY_SIZES[model])
    weights, (x, y) = init_weights(spec, 0), make_inputs(spec, 3, seed=1)
    logits = {}
    for cls in (TorchAdapter, TensorFlowAdapter, JaxAdapter):
        a = cls(device="cpu", precision="bf16", threads=1, seed=0)
        a.build(spec, None)
        a.load_weights(weights)
        logits[cls.__name__], _ = a.forward(a.put_batch(x, y))
    ref = logits.pop("TorchAdapter")
    scale = np.abs(ref).max()
    for name, got in logits.items():
        assert got.dtype == np.float32 and np.abs(got - ref).max() / scale < 3e-2, name


# ---- TensorFlow runs oneDNN, as torch does (item 5) ----

@pytest.mark.parametrize("user", [None, "0"])
def test_tensorflow_turns_onednn_on_unless_the_user_chose(user):
    """In a fresh process, as a worker imports it: on by default, the user's value kept, the manifest says which."""
    needs("tensorflow", "keras")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if user is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user
    code = ("from xfbench.adapters.tensorflow_adapter import TensorFlowAdapter; from xfbench.harness.models import build_spec\n"
            "a = TensorFlowAdapter(device='cpu', precision='fp32', threads=1, seed=0)\n"
            "a.build(build_spec('lenet5'), None); print(a.settings()['onednn'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == ("on" if user is None else "off")


# ---- the shared manifest keys (item 9) ----

@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax", "numpy"])
def test_every_adapter_reports_the_shared_keys(framework):
    needs({"jax": "flax", "tensorflow": "keras"}.get(framework, framework))
    from xfbench.harness.adapter import discover

    cls = discover()[framework].load()
    for model in ("lenet5", "gru"):
        a = cls(device="cpu", precision="fp32", threads=1, seed=0)
        a.build(build_spec(model, **TINY_SIZES[model]), None)
        s = a.settings()
        assert s["fp32_math"] == "ieee" and isinstance(s["threads"], int) and s["compile_scope"]
        assert ("recurrent_impl" in s) == (model == "gru")


def test_tensorflow_xla_builds_recurrent_layers_without_cudnn_and_says_so():
    """XLA cannot compile cuDNN's RNN op, which Keras would pick on a GPU: under jit_compile it is off."""
    needs("tensorflow", "keras")
    from xfbench.adapters.tensorflow_adapter import TensorFlowAdapter

    spec = build_spec("lstm", **TINY_SIZES["lstm"])
    for jit, expected in ((True, False), (False, "auto")):
        a = TensorFlowAdapter(device="cpu", precision="fp32", threads=1, seed=0, jit_compile=jit)
        a.build(spec, None)
        assert {layer.use_cudnn for layer in a.model.layers if hasattr(layer, "use_cudnn")} == {expected}
        s = a.settings()
        assert s["use_cudnn"] == expected and "RNN loop" in s["recurrent_impl"]
        assert s["compile_scope"] == ("whole step, compiled" if jit else "whole step, graph")
