"""The JAX adapter at tiny sizes, with the real framework, checked against the PyTorch adapter."""
import os

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

from xfbench.adapters.jax_adapter import JaxAdapter  # noqa: E402
from xfbench.harness.adapter import Unsupported  # noqa: E402
from xfbench.harness.models import build_spec  # noqa: E402
from xfbench.harness.optimizers import OPTIMIZERS, build_optimizer  # noqa: E402
from xfbench.harness.weights import init_weights, make_inputs  # noqa: E402
from xfbench.harness.models import TINY_SIZES as TINY_MODELS  # noqa: E402

# AlexNet at 96 pixels flattens a 2x2 map (at 64, 1x1), so the (C, H, W) fc6 mapping is exercised.
EQUIVALENCE_SIZES = {**TINY_MODELS, "alexnet": {**TINY_MODELS["alexnet"], "image_size": 96}}


@pytest.fixture(autouse=True)
def _x64_off_after_each_test():
    """x64 is process-wide in jax: a float64 test must not leave it on for the next test."""
    yield
    jax.config.update("jax_enable_x64", False)


def adapter(model, optimizer="sgd", precision="fp32", cls=JaxAdapter, sizes=TINY_MODELS, **params):
    spec = build_spec(model, **{**sizes[model], **params})
    a = cls(device="cpu", precision=precision, threads=1, seed=0)
    a.build(spec, build_optimizer(optimizer))
    a.load_weights(init_weights(spec, seed=1))
    return a, spec


def torch_adapter(model, optimizer="sgd", precision="fp32", **params):
    pytest.importorskip("torch")
    from xfbench.adapters.torch_adapter import TorchAdapter

    return adapter(model, optimizer, precision, cls=TorchAdapter, **params)


def max_abs_rel(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300))


@pytest.mark.parametrize("model", TINY_MODELS)
def test_parameter_count_equals_spec(model):
    a, spec = adapter(model)
    assert a.parameter_count() == spec.parameter_count()


@pytest.mark.parametrize("model", TINY_MODELS)
def test_weight_round_trip(model):
    a, spec = adapter(model, sizes=EQUIVALENCE_SIZES)
    w = init_weights(spec, seed=5)
    a.load_weights(w)
    dumped = a.dump_weights()
    assert dumped.keys() == w.keys()
    for k in w:
        assert dumped[k].dtype == np.float32
        np.testing.assert_array_equal(dumped[k], w[k])


def test_load_weights_rejects_wrong_names_and_shapes():
    a, spec = adapter("gru")
    w = init_weights(spec)
    with pytest.raises(ValueError, match="missing"):
        a.load_weights({k: v for k, v in w.items() if k != "gru1.bias_hn"})
    with pytest.raises(ValueError, match="shape"):
        a.load_weights({**w, "out.bias": w["out.bias"][:-1]})


@pytest.mark.parametrize("model", TINY_MODELS)
def test_forward_equals_torch_float32(model):
    j, spec = adapter(model, sizes=EQUIVALENCE_SIZES)
    t, _ = torch_adapter(model, sizes=EQUIVALENCE_SIZES)
    x, y = make_inputs(spec, 3, seed=2)
    (jl, jloss), (tl, tloss) = j.forward(j.put_batch(x, y)), t.forward(t.put_batch(x, y))
    expected = (3, spec.classes) if spec.kind == "image" else (3, spec.seq_len, spec.classes)
    assert jl.shape == tl.shape == expected and jl.dtype == np.float32
    assert max_abs_rel(jl, tl) <= 1e-5
    assert abs(jloss - tloss) <= 1e-5 * abs(tloss)


@pytest.mark.parametrize("model", TINY_MODELS)
def test_gradients_equal_torch_float64(model):
    j, spec = adapter(model, precision="fp64", sizes=EQUIVALENCE_SIZES)
    t, _ = torch_adapter(model, precision="fp64", sizes=EQUIVALENCE_SIZES)
    x, y = make_inputs(spec, 3, seed=2)
    jg, tg = j.gradients(j.put_batch(x, y)), t.gradients(t.put_batch(x, y))
    assert jg.keys() == tg.keys() == spec.weight_shapes().keys()
    for k in tg:
        assert jg[k].dtype == np.float64 and jg[k].shape == tg[k].shape
        assert max_abs_rel(jg[k], tg[k]) <= 1e-9, k


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("model", ["lenet5", "lstm", "gru"])
def test_three_optimizer_steps_equal_torch_float64(model, name):
    j, spec = adapter(model, optimizer=name, precision="fp64")
    t, _ = torch_adapter(model, optimizer=name, precision="fp64")
    x, y = make_inputs(spec, 4, seed=3)
    for a in (j, t):
        batch = a.put_batch(x, y)
        for _ in range(3):
            a.train_step(batch)
        a.sync()
    jw, tw = j.dump_weights(), t.dump_weights()
    for k in tw:
        assert jw[k].dtype == np.float64
        assert max_abs_rel(jw[k], tw[k]) <= 1e-9, k


@pytest.mark.parametrize("model", ["lenet5", "gru"])  # the others train in the equivalence tests
def test_train_step_lowers_the_loss_and_each_step_compiles_once(model):
    a, spec = adapter(model, optimizer="adam")
    batch = a.put_batch(*make_inputs(spec, 4, seed=3))
    before = a.forward(batch)[1]
    for _ in range(10):
        a.train_step(batch)
        a.infer_step(batch)
    a.sync()
    assert a.forward(batch)[1] < before
    assert (a._train._cache_size(), a._infer._cache_size()) == (1, 1)  # no retracing per step


def test_sync_leaves_every_array_of_the_new_state_ready_and_dropout_is_on_in_training_only():
    a, spec = adapter("alexnet", optimizer="adam", dropout=0.5)
    batch = a.put_batch(*make_inputs(spec, 4, seed=0))
    logits, loss = a.forward(batch)
    np.testing.assert_array_equal(logits, a.forward(batch)[0])  # inference: dropout off
    key = np.asarray(jax.random.key_data(a.key))
    a.train_step(batch)
    a.sync()
    assert not np.array_equal(key, jax.random.key_data(a.key))  # advanced inside the step
    assert float(a.last_loss) != loss  # same weights, but dropped units in training
    a.train_step(batch)
    a.sync()
    state = jax.tree.leaves((a.params, a.opt_state, jax.random.key_data(a.key), a.last_loss))
    assert len(state) > 3 * len(spec.weight_shapes()) and all(x.is_ready() for x in state)
    a.infer_step(batch)
    first = a._inflight
    a.infer_step(batch)  # waits for the previous step's output while this one runs: one output in flight
    assert first.is_ready()
    last = a._inflight
    assert last is not first
    a.sync()
    assert last.is_ready() and a._inflight is None


def test_bf16_computes_in_bfloat16_with_float32_weights():
    a, spec = adapter("lenet5", precision="bf16")
    batch = a.put_batch(*make_inputs(spec, 2, seed=0))
    logits, loss = a.forward(batch)
    assert logits.dtype == np.float32 and np.isfinite(loss)
    a.train_step(batch)
    a.sync()
    assert a.dump_weights()["out.weight"].dtype == np.float32
    assert a.settings()["compute_dtype"] == "bfloat16"


def test_cuda_without_gpu_and_tf32_on_cpu_are_unsupported():
    if not any(d.platform == "gpu" for d in jax.devices()):
        with pytest.raises(Unsupported, match="gpu"):
            JaxAdapter(device="cuda", precision="fp32", threads=1, seed=0)
    with pytest.raises(Unsupported, match="tf32"):
        JaxAdapter(device="cpu", precision="tf32", threads=1, seed=0)


def test_settings_describe_the_case():
    a, _ = adapter("lenet5")
    s = a.settings()
    assert s["compile"] == "jax.jit" and s["data_layout"] == "NHWC" and s["dtype"] == "float32"
    assert s["x64"] is False and s["versions"]["jax"] == jax.__version__
    # XLA:CPU sizes its pool from the CPU affinity (the worker pins it to `threads` CPUs; this test process is
    # not pinned): the manifest says what is in use, and what was asked for.
    assert s["threads"] == len(os.sched_getaffinity(0)) and s["threads_requested"] == 1
    assert s["compile_scope"] == "whole step, compiled"
    assert s["allocator_preallocation"] == "false" and "xla_flags" in s
    assert a.peak_device_memory_bytes() is None


def test_command_buffers_are_read_from_xla_flags():
    from xfbench.adapters.jax_adapter import command_buffers

    assert command_buffers("") == "XLA default (on)"
    assert command_buffers("--xla_dump_to=/tmp/x") == "XLA default (on)"
    assert command_buffers("--xla_gpu_enable_command_buffer=") == "off (XLA_FLAGS: --xla_gpu_enable_command_buffer=)"
    assert command_buffers("--xla_gpu_enable_command_buffer=FUSION --xla_gpu_enable_command_buffer=FUSION,CUBLAS") \
        == "XLA_FLAGS: --xla_gpu_enable_command_buffer=FUSION,CUBLAS"  # the last one wins, as in XLA
