"""The ONNX Runtime adapter (inference only) at tiny sizes: the conformance kit, the ONNX graphs it builds, the
recurrent gate mappings, IO binding, the precisions it refuses, the roofline kernels and `bench validate`."""
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from xfbench.adapters import onnxruntime_adapter as ora  # noqa: E402
from xfbench.adapters.onnxruntime_adapter import INFERENCE_ONLY, OnnxRuntimeAdapter  # noqa: E402
from xfbench.harness.adapter import AdapterInfo, Unsupported, discover  # noqa: E402
from xfbench.harness.conformance import *  # noqa: F401,F403,E402  (the kit's checks and its pytest hook)
from xfbench.harness.conformance import (COMPILE_SCOPES, test_conformance_forward_agrees_with_reference,  # noqa: E402
                                         test_conformance_optimizer_steps, test_conformance_sync_leaves_no_work,
                                         test_conformance_weight_round_trip)
from xfbench.harness.models import TINY_SIZES, build_spec  # noqa: E402
from xfbench.harness.optimizers import build_optimizer  # noqa: E402
from xfbench.harness.validate import validate  # noqa: E402
from xfbench.harness.weights import init_weights, make_inputs  # noqa: E402

ADAPTER = "onnxruntime"  # the registered name: the kit runs the adapter as `bench` finds it


def adapter(model, precision="fp32", **params):
    spec = build_spec(model, **{**TINY_SIZES[model], **params})
    a = OnnxRuntimeAdapter(device="cpu", precision=precision, threads=1, seed=0)
    a.build(spec, None)
    a.load_weights(init_weights(spec, seed=1))
    return a, spec


def test_registered_under_its_name():
    info = discover()["onnxruntime"]
    assert info.load() is OnnxRuntimeAdapter and info.framework == "onnx" and not info.missing()


@pytest.mark.parametrize("model", TINY_SIZES)
def test_every_graph_passes_the_onnx_checker(model):
    spec = build_spec(model, **TINY_SIZES[model])
    proto = ora.onnx_model(spec, init_weights(spec))
    onnx.checker.check_model(proto, full_check=True)  # with strict shape inference
    out = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph.output[0]
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert dims == (["batch", spec.classes] if spec.kind == "image" else ["batch", spec.seq_len, spec.classes])
    assert not any(n.op_type == "Dropout" for n in proto.graph.node)  # inference: dropout is left out
    assert {n.op_type for n in proto.graph.node} == ora.ops_of(spec)


def test_training_is_skipped_with_the_reason():
    spec = build_spec("lenet5")
    a = OnnxRuntimeAdapter(device="cpu", precision="fp32", threads=1, seed=0)
    with pytest.raises(Unsupported, match="^onnxruntime is inference-only here: "):
        a.build(spec, build_optimizer("sgd"))  # a train case is skipped before anything is built
    a, spec = adapter("lenet5")
    batch = a.put_batch(*make_inputs(spec, 2))
    for step in (a.train_step, a.gradients):
        with pytest.raises(Unsupported, match="^onnxruntime is inference-only here: "):
            step(batch)
    # The kit skips its training checks with the same reason.
    for check, args in ((test_conformance_optimizer_steps, ("lenet5", "sgd")), (test_conformance_sync_leaves_no_work,
                                                                                ("train",))):
        with pytest.raises(pytest.skip.Exception, match=INFERENCE_ONLY):
            check(OnnxRuntimeAdapter, *args)


@pytest.mark.parametrize("model,mapping", [("gru", "_swap_first_two"), ("lstm", "_lstm_to_onnx")])
def test_the_kit_catches_recurrent_gates_in_the_wrong_order(monkeypatch, model, mapping):
    """Canonical GRU r, z, n loaded as ONNX's z, r, h (or LSTM i, f, g, o as i, o, f, c) without reordering:
    the round trip cannot tell (the same mistake both ways), the forward agreement does."""
    monkeypatch.setattr(ora, mapping, lambda w: w)
    if model == "lstm":
        monkeypatch.setattr(ora, "_lstm_from_onnx", lambda w: w)
    test_conformance_weight_round_trip(OnnxRuntimeAdapter, model)
    with pytest.raises(pytest.fail.Exception, match=rf"conformance check 'forward agreement' failed: {model}: logits"):
        test_conformance_forward_agrees_with_reference(OnnxRuntimeAdapter, model)


def test_gru_hidden_bias_sits_in_the_recurrent_half_of_b():
    """b_hn is Rb's h part (inside the reset gate's product, linear_before_reset=1); the duplicated r and z parts of
    Rb are zero, and the LSTM's whole Rb is (docs/spec.md section 2.4)."""
    for model in ("gru", "lstm"):
        spec = build_spec(model, **TINY_SIZES[model])
        w = init_weights(spec)
        init = ora.onnx_initializers(spec, w, np.float32)
        h, gates = spec.hparams["hidden"], 3 if model == "gru" else 4
        for i in range(spec.hparams["layers"]):
            b = init[f"{model}{i}.B"][0]
            assert init[f"{model}{i}.W"].shape == (1, gates * h, w[f"{model}{i}.weight_ih"].shape[1])
            if model == "gru":
                np.testing.assert_array_equal(b[3 * h:], np.concatenate([np.zeros(2 * h), w[f"gru{i}.bias_hn"]]))
            else:
                assert not b[4 * h:].any()
    proto = ora.onnx_model(spec := build_spec("gru", **TINY_SIZES["gru"]), init_weights(spec))
    grus = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(grus) == spec.hparams["layers"]  # one op per stacked layer
    assert all(onnx.helper.get_attribute_value(a) == 1 for n in grus for a in n.attribute
               if a.name == "linear_before_reset")


def test_infer_step_writes_the_bound_buffer_in_place_and_follows_new_weights():
    a, spec = adapter("gru")
    x, y = make_inputs(spec, 3, seed=2)
    batch = a.put_batch(x, y)
    assert batch.x.device_name() == "cpu" and batch.out.shape() == [3, spec.seq_len, spec.classes]
    where = batch.out.data_ptr()
    a.infer_step(batch)
    a.sync()
    first = batch.out.numpy().copy()
    assert batch.out.data_ptr() == where and np.isfinite(first).all()
    logits, loss = a.forward(batch)
    np.testing.assert_array_equal(logits, first)
    assert isinstance(loss, float)
    a.load_weights(init_weights(spec, seed=3))  # a new session: the batch is bound again
    assert not np.array_equal(a.forward(batch)[0], first)
    b, _ = adapter("gru")
    b.load_weights(init_weights(spec, seed=3))
    np.testing.assert_array_equal(b.forward(b.put_batch(x, y))[0], a.forward(batch)[0])


def test_weights_are_not_kept_resident_for_dump():
    a, spec = adapter("lenet5")
    assert not any(isinstance(v, np.ndarray) and v.size > 1000 for v in vars(a).values())
    w = init_weights(spec, seed=4)
    a.load_weights(w)
    dumped = a.dump_weights()
    assert all(np.array_equal(dumped[k], w[k]) and dumped[k].dtype == np.float32 for k in w)


def test_precisions_and_devices_it_does_not_offer_are_unsupported_with_the_reason():
    with pytest.raises(Unsupported, match="tf32 is a GPU precision"):
        OnnxRuntimeAdapter(device="cpu", precision="tf32", threads=1, seed=0)
    with pytest.raises(Unsupported, match="bf16 is not offered"):
        OnnxRuntimeAdapter(device="cpu", precision="bf16", threads=1, seed=0)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(Unsupported, match="no CUDAExecutionProvider"):
            OnnxRuntimeAdapter(device="cuda", precision="fp32", threads=1, seed=0)
    with pytest.raises(Unsupported, match="exceed the 2 GiB a protobuf ModelProto can hold"):
        OnnxRuntimeAdapter(device="cpu", precision="fp32", threads=1, seed=0).build(
            build_spec("alexnet", width=3.5), None)  # 712 million parameters: refused before any weight exists
    for model in TINY_SIZES:  # every model uses an op without a float64 CPU kernel
        a = OnnxRuntimeAdapter(device="cpu", precision="fp64", threads=1, seed=0)
        with pytest.raises(Unsupported, match=r"fp64: ONNX Runtime's CPU execution provider has no float64 kernel"):
            a.build(build_spec(model, **TINY_SIZES[model]), None)


@pytest.mark.parametrize("op", sorted(ora.NO_FP64_KERNEL))
def test_ops_listed_without_a_float64_kernel_still_have_none(op):
    """If a new onnxruntime adds one, NO_FP64_KERNEL (and with it fp64 support) should be revisited."""
    rng = np.random.default_rng(0)
    if op in ("Conv", "AveragePool"):
        inputs = {"x": rng.random((1, 2, 4, 4))} | ({"w": rng.random((3, 2, 3, 3))} if op == "Conv" else {})
        attrs = {"kernel_shape": [2, 2]} if op == "AveragePool" else {}
    else:
        g = 4 if op == "LSTM" else 3
        inputs = {"x": rng.random((3, 1, 2)), "w": rng.random((1, 2 * g, 2)), "r": rng.random((1, 2 * g, 2))}
        attrs = {"hidden_size": 2}
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node(op, list(inputs), ["y"], **attrs)], "fp64",
        [onnx.helper.make_tensor_value_info(k, onnx.TensorProto.DOUBLE, list(v.shape)) for k, v in inputs.items()],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", ora.OPSET)],
                                   ir_version=ora.IR_VERSION)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the expected failure, not on stderr
    with pytest.raises(Exception, match="NOT_IMPLEMENTED|does not support double"):
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, inputs)


def test_settings_describe_the_session():
    a, _ = adapter("lstm")
    s = a.settings()
    assert s["threads"] == 1 and s["interop_threads"] == 1 and s["dtype"] == "float32"
    assert s["compile_scope"] == "forward only, compiled" and s["compile_scope"] in COMPILE_SCOPES
    assert s["execution_providers"] == ["CPUExecutionProvider"] and s["fp32_math"] == "ieee"
    assert s["graph_optimization_level"] == "ORT_ENABLE_ALL" and s["execution_mode"] == "ORT_SEQUENTIAL"
    assert s["versions"] == {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "opset": str(ora.OPSET)}
    assert s["data_layout"].startswith("(B, T) int64") and "LSTM" in s["recurrent_impl"]


def test_roofline_kernels_compute_the_gemm_and_copy_every_byte():
    a = OnnxRuntimeAdapter(device="cpu", precision="fp32", threads=1, seed=0)  # as `bench peak`: never built
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 64), dtype=np.float32), rng.standard_normal((64, 64), dtype=np.float32)
    gemm = a.peak_gemm(x, y)
    gemm.run()
    gemm.run()
    a.sync()
    np.testing.assert_allclose(gemm.result(), x @ y, rtol=1e-4, atol=1e-4)
    src = rng.standard_normal(2**18, dtype=np.float32)
    copy = a.peak_copy(src)
    for _ in range(3):
        copy.run()
    a.sync()
    assert np.array_equal(copy.result(), src) and copy.result().dtype == np.float32
    _, _, values, out, _ = a._peak_sessions[-1]
    assert out.data_ptr() != values["x"].data_ptr()  # written into a buffer of its own, not aliased


def test_validates_against_numpy_forward_only():
    registry = discover()
    result = validate(registry=registry, frameworks=["onnxruntime"], tiny=True, checks="forward")
    assert result.passed, [c for c in result.checks if not c.passed]
    assert result.frameworks == ["onnxruntime", "numpy"]
    for model in TINY_SIZES:
        assert result.outcome("onnxruntime", model) == {"status": "passed", "against": "numpy",
                                                        "scope": "forward only"}


def test_full_validation_compares_its_forward_and_says_it_is_inference_only():
    """The default checks: an inference-only adapter is not a failed run; the training adapter's checks go on."""
    pytest.importorskip("torch")
    registry = discover()
    result = validate(registry=registry, frameworks=["onnxruntime", "torch"], models=["lenet5", "gru"], tiny=True,
                      optimizers=["sgd"], curve_steps=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    assert set(result.inference_only) == {"onnxruntime"}
    assert result.inference_only["onnxruntime"].startswith("onnxruntime is inference-only here")
    for model in ("lenet5", "gru"):
        assert result.outcome("onnxruntime", model) == {"status": "passed", "against": "numpy",
                                                        "scope": "forward only"}
    # torch had no training partner (numpy and onnxruntime do not train): it is advised to add one; onnxruntime,
    # which cannot train, is not.
    assert result.forward_only() == ["torch"]
