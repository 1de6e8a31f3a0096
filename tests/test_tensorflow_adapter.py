"""The TensorFlow adapter against the spec and the PyTorch adapter, at tiny sizes (docs/spec.md sections 2, 3 and 6)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from xfbench.adapters.tensorflow_adapter import TensorFlowAdapter  # noqa: E402
from xfbench.harness.adapter import Unsupported  # noqa: E402
from xfbench.harness.models import ModelSpec, build_spec  # noqa: E402
from xfbench.harness.optimizers import OPTIMIZERS, OptimizerSpec, build_optimizer  # noqa: E402
from xfbench.harness.weights import init_weights, make_inputs  # noqa: E402

_TOKENS = {"vocab": 50, "embed": 8, "hidden": 4, "seq_len": 5}
# AlexNet at 96 px keeps a 2x2 map at the flatten, so the (C, H, W) order of fc6 is exercised.
_ALEXNET = {"image_size": 96, "width": 0.125, "classes": 10}
SPECS = {
    "lenet5": build_spec("lenet5"),
    "lenet5-classic": build_spec("lenet5-classic"),
    "alexnet": build_spec("alexnet", **_ALEXNET),
    "lstm": build_spec("lstm", **_TOKENS),
    "gru": build_spec("gru", **_TOKENS),
}
# Dropout draws differ between frameworks; comparisons of training steps run without it.
NO_DROPOUT = {**SPECS, "alexnet": build_spec("alexnet", dropout=0.0, **_ALEXNET)}


@pytest.fixture(autouse=True)
def keras_globals_unchanged():
    """The adapter sets Keras's global dtype policy only while building and tracing: nothing leaks."""
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    yield
    leaked = (keras.config.dtype_policy().name, keras.config.floatx()) != (policy.name, floatx)
    keras.config.set_dtype_policy(policy)
    keras.config.set_floatx(floatx)
    assert not leaked, "the adapter left Keras's global dtype policy or floatx changed"


def _tf(spec: ModelSpec, optimizer: OptimizerSpec | None = None, precision: str = "fp32",
        jit_compile: bool = False) -> TensorFlowAdapter:
    adapter = TensorFlowAdapter(device="cpu", precision=precision, threads=2, seed=0, jit_compile=jit_compile)
    adapter.build(spec, optimizer)
    return adapter


def _torch(spec: ModelSpec, optimizer: OptimizerSpec | None = None, precision: str = "fp32"):
    pytest.importorskip("torch")
    from xfbench.adapters.torch_adapter import TorchAdapter
    adapter = TorchAdapter(device="cpu", precision=precision, threads=2, seed=0)
    adapter.build(spec, optimizer)
    return adapter


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Max-abs-relative difference: max |a - b| / max |b|."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _steps(adapter, weights, x, y, n: int = 3) -> dict[str, np.ndarray]:
    adapter.load_weights(weights)
    batch = adapter.put_batch(x, y)
    for _ in range(n):
        adapter.train_step(batch)
    adapter.sync()
    return adapter.dump_weights()


@pytest.mark.parametrize("model", SPECS)
def test_parameter_count_and_weight_round_trip(model):
    spec = SPECS[model]
    adapter = _tf(spec)
    assert adapter.parameter_count() == spec.parameter_count()
    weights = init_weights(spec, seed=3)
    adapter.load_weights(weights)
    dumped = adapter.dump_weights()
    assert set(dumped) == set(weights)
    for name, value in weights.items():
        assert dumped[name].shape == value.shape, name
        np.testing.assert_array_equal(dumped[name], value, err_msg=name)


def test_load_weights_rejects_wrong_names_and_shapes():
    spec = SPECS["lenet5"]
    adapter, weights = _tf(spec), init_weights(spec)
    with pytest.raises(ValueError, match="missing"):
        adapter.load_weights({k: v for k, v in weights.items() if k != "c1.bias"})
    with pytest.raises(ValueError, match="c1.weight"):
        adapter.load_weights({**weights, "c1.weight": weights["c1.weight"][:, :, :4]})


@pytest.mark.parametrize("model", SPECS)
def test_forward_matches_torch_in_float32(model):
    spec = SPECS[model]
    weights, (x, y) = init_weights(spec), make_inputs(spec, 3, seed=1)
    tfa, ref = _tf(spec), _torch(spec)
    tfa.load_weights(weights)
    ref.load_weights(weights)
    logits, loss = tfa.forward(tfa.put_batch(x, y))
    ref_logits, ref_loss = ref.forward(ref.put_batch(x, y))
    shape = (3, spec.classes) if spec.kind == "image" else (3, _TOKENS["seq_len"], spec.classes)
    assert logits.shape == ref_logits.shape == shape
    assert _rel(logits, ref_logits) <= 1e-5
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)


@pytest.mark.parametrize("model", SPECS)
def test_gradients_match_torch_in_float64(model):
    spec = NO_DROPOUT[model]
    weights, (x, y) = init_weights(spec), make_inputs(spec, 3, seed=1)
    tfa, ref = _tf(spec, precision="fp64"), _torch(spec, precision="fp64")
    tfa.load_weights(weights)
    ref.load_weights(weights)
    grads, ref_grads = tfa.gradients(tfa.put_batch(x, y)), ref.gradients(ref.put_batch(x, y))
    assert set(grads) == set(weights)
    for name in weights:
        assert grads[name].dtype == np.float64
        assert _rel(grads[name], ref_grads[name]) <= 1e-9, name


# Every optimizer on a conv and a recurrent model; the other models with the stateful ones.
_OPTIMIZER_CASES = ([(m, o) for m in ("lenet5", "gru") for o in OPTIMIZERS]
                    + [("lenet5-classic", "adam"), ("alexnet", "momentum"), ("lstm", "adam")])


@pytest.mark.parametrize("model,optimizer", _OPTIMIZER_CASES)
def test_three_steps_match_torch_in_float64(model, optimizer):
    spec, opt = NO_DROPOUT[model], build_optimizer(optimizer)
    weights, (x, y) = init_weights(spec), make_inputs(spec, 3, seed=1)
    after = _steps(_tf(spec, opt, precision="fp64"), weights, x, y)
    ref = _steps(_torch(spec, opt, precision="fp64"), weights, x, y)
    for name, w0 in weights.items():
        # Compare the updates, not the weights, which would hide an error in a small update.
        assert _rel(after[name] - w0, ref[name] - w0) <= 1e-9, name


@pytest.mark.parametrize("model", ["lenet5", "gru"])
def test_xla_variant_matches_torch(model):
    spec, opt = NO_DROPOUT[model], build_optimizer("adam")
    weights, (x, y) = init_weights(spec), make_inputs(spec, 3, seed=1)
    xla, ref = _tf(spec, opt, precision="fp64", jit_compile=True), _torch(spec, opt, precision="fp64")
    xla.load_weights(weights)
    ref.load_weights(weights)
    logits, loss = xla.forward(xla.put_batch(x, y))
    ref_logits, ref_loss = ref.forward(ref.put_batch(x, y))
    assert _rel(logits, ref_logits) <= 1e-12 and abs(loss - ref_loss) <= 1e-12 * ref_loss
    after, ref_after = _steps(xla, weights, x, y), _steps(ref, weights, x, y)
    for name, w0 in weights.items():
        assert _rel(after[name] - w0, ref_after[name] - w0) <= 1e-9, name
    assert xla.settings()["compile"] == "tf.function(jit_compile=True)"


@pytest.mark.parametrize("model", ["lenet5", "alexnet", "gru"])
def test_train_steps_lower_the_loss_without_retracing(model):
    spec = SPECS[model]  # alexnet trains with dropout on
    adapter = _tf(spec, build_optimizer("momentum"))
    adapter.load_weights(init_weights(spec))
    batch = adapter.put_batch(*make_inputs(spec, 8, seed=1))
    _, before = adapter.forward(batch)
    for _ in range(5):
        adapter.train_step(batch)
        adapter.infer_step(batch)
    adapter.sync()
    _, after = adapter.forward(batch)
    assert after < before
    assert adapter._train_fn.experimental_get_tracing_count() == 1
    assert adapter._infer_fn.experimental_get_tracing_count() == 1


def test_dropout_is_on_in_train_step_only():
    spec, plain = SPECS["alexnet"], NO_DROPOUT["alexnet"]
    weights, (x, y) = init_weights(spec), make_inputs(spec, 4, seed=1)
    with_dropout, without = _tf(spec, build_optimizer("sgd")), _tf(plain, build_optimizer("sgd"))
    with_dropout.load_weights(weights)
    without.load_weights(weights)
    b1, b2 = with_dropout.put_batch(x, y), without.put_batch(x, y)
    np.testing.assert_array_equal(with_dropout.forward(b1)[0], without.forward(b2)[0])
    g1, g2 = with_dropout.gradients(b1), without.gradients(b2)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)
    after, plain_after = _steps(with_dropout, weights, x, y, 1), _steps(without, weights, x, y, 1)
    assert not np.allclose(after["fc7.weight"], plain_after["fc7.weight"])


def test_gru_recurrent_rz_bias_stays_zero_and_load_resets_the_optimizer():
    spec, opt = SPECS["gru"], build_optimizer("adam")
    weights, (x, y) = init_weights(spec), make_inputs(spec, 3, seed=1)
    adapter = _tf(spec, opt)
    first = _steps(adapter, weights, x, y)
    for i in range(2):
        bias = adapter.model.get_layer(f"gru{i}").cell.bias.numpy()  # (2, 3H) = [input; recurrent]
        assert not bias[1, :2 * _TOKENS["hidden"]].any()
    again = _steps(adapter, weights, x, y)  # load_weights starts the optimizer afresh
    for name in weights:
        np.testing.assert_array_equal(again[name], first[name], err_msg=name)


def test_float64_builds_float64_and_bf16_computes_in_bfloat16():
    spec = SPECS["lenet5"]
    x, y = make_inputs(spec, 2)
    fp64 = _tf(spec, precision="fp64")
    assert {w.dtype for w in fp64.dump_weights().values()} == {np.dtype("float64")}
    assert fp64.forward(fp64.put_batch(x, y))[0].dtype == np.float64
    bf16 = _tf(spec, build_optimizer("sgd"), precision="bf16")
    bf16.train_step(bf16.put_batch(x, y))
    assert bf16.settings()["compute_dtype"] == "bfloat16"
    assert bf16.forward(bf16.put_batch(x, y))[0].dtype == np.float32


def test_unsupported_cases_raise():
    import tensorflow as tf
    with pytest.raises(Unsupported):
        TensorFlowAdapter(device="cpu", precision="tf32", threads=1, seed=0)
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(Unsupported):
            TensorFlowAdapter(device="cuda", precision="fp32", threads=1, seed=0)


def test_settings_manifest():
    adapter = _tf(SPECS["lenet5"], build_optimizer("sgd"))
    s = adapter.settings()
    assert s["compile"] == "tf.function" and s["data_layout"] == "NHWC"
    assert s["precision"] == "fp32" and s["dtype"] == "float32"
    assert s["threads"] >= 1 and s["interop_threads"] >= 1
    assert {"tensorflow", "keras"} <= set(s["versions"])
    assert _tf(SPECS["gru"]).settings()["data_layout"] == "(B, T) int32"
