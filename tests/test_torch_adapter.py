"""The PyTorch adapter at tiny sizes, with the real framework."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xfbench.adapters.torch_adapter import TorchAdapter  # noqa: E402
from xfbench.harness.models import build_spec  # noqa: E402
from xfbench.harness.optimizers import OPTIMIZERS, build_optimizer  # noqa: E402
from xfbench.harness.weights import init_weights, make_inputs  # noqa: E402
from xfbench.harness.models import TINY_SIZES as TINY_MODELS  # noqa: E402


def adapter(model, optimizer="sgd", precision="fp32", **params):
    spec = build_spec(model, **{**TINY_MODELS[model], **params})
    a = TorchAdapter(device="cpu", precision=precision, threads=1, seed=0)
    a.build(spec, build_optimizer(optimizer))
    a.load_weights(init_weights(spec, seed=1))
    return a, spec


@pytest.mark.parametrize("model", TINY_MODELS)
def test_parameter_count_equals_spec(model):
    a, spec = adapter(model)
    assert a.parameter_count() == spec.parameter_count()


@pytest.mark.parametrize("model", TINY_MODELS)
def test_weight_round_trip(model):
    a, spec = adapter(model)
    w = init_weights(spec, seed=5)
    a.load_weights(w)
    dumped = a.dump_weights()
    assert dumped.keys() == w.keys()
    for k in w:
        np.testing.assert_array_equal(dumped[k], w[k])
    b, _ = adapter(model)
    b.load_weights(dumped)
    batch = make_inputs(spec, 3, seed=2)
    np.testing.assert_array_equal(a.forward(a.put_batch(*batch))[0], b.forward(b.put_batch(*batch))[0])


@pytest.mark.parametrize("model", TINY_MODELS)
def test_train_step_lowers_the_loss_on_a_fixed_batch(model):
    a, spec = adapter(model, optimizer="adam", dropout=0.0) if model == "alexnet" else adapter(model, "adam")
    batch = a.put_batch(*make_inputs(spec, 4, seed=3))
    before = a.forward(batch)[1]
    for _ in range(10):
        a.train_step(batch)
    a.sync()
    assert a.forward(batch)[1] < before


@pytest.mark.parametrize("model", TINY_MODELS)
def test_output_shapes_and_infer_step(model):
    a, spec = adapter(model)
    batch = a.put_batch(*make_inputs(spec, 3, seed=0))
    logits, loss = a.forward(batch)
    expected = (3, spec.classes) if spec.kind == "image" else (3, spec.seq_len, spec.classes)
    assert logits.shape == expected and np.isfinite(loss)
    a.infer_step(batch)
    a.sync()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_runs_and_sgd_family_matches_its_formula(name):
    a, spec = adapter("lenet5", optimizer=name, precision="fp64")
    batch = a.put_batch(*make_inputs(spec, 4, seed=1))
    w0 = a.dump_weights()
    g = a.gradients(batch)
    a.train_step(batch)
    w1 = a.dump_weights()
    p = OPTIMIZERS[name]
    for k in w0:
        if name in ("sgd", "momentum"):  # first step: buffer = g, so both move by lr * g
            expected = w0[k] - p["lr"] * g[k]
        elif name == "adam":  # first step: m-hat = g, v-hat = g^2
            expected = w0[k] - p["lr"] * g[k] / (np.abs(g[k]) + p["eps"])
        elif name == "rmsprop":
            expected = w0[k] - p["lr"] * g[k] / (np.sqrt((1 - p["rho"]) * g[k] ** 2) + p["eps"])
        elif name == "adagrad":
            expected = w0[k] - p["lr"] * g[k] / np.sqrt(p["initial_accumulator"] + g[k] ** 2)
        else:  # adadelta
            v = (1 - p["rho"]) * g[k] ** 2
            expected = w0[k] - p["lr"] * np.sqrt(p["eps"]) / np.sqrt(v + p["eps"]) * g[k]
        np.testing.assert_allclose(w1[k], expected, rtol=1e-9, atol=1e-12, err_msg=f"{name} {k}")


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_duplicated_recurrent_biases_never_move(model):
    a, spec = adapter(model, optimizer="momentum")
    batch = a.put_batch(*make_inputs(spec, 2, seed=0))
    for _ in range(3):
        a.train_step(batch)
    h = spec.hparams["hidden"]
    for i in range(spec.hparams["layers"]):
        b_hh = getattr(a.model.rnn, f"bias_hh_l{i}").detach().numpy()
        assert not b_hh[: 2 * h].any() if model == "gru" else not b_hh.any()


def test_dropout_is_on_in_training_only():
    a, spec = adapter("alexnet", dropout=0.5)
    batch = a.put_batch(*make_inputs(spec, 2, seed=0))
    a.model.train()
    with torch.no_grad():
        train_out = [a.model(batch[0]) for _ in range(2)]
    assert not torch.equal(*train_out)
    assert np.array_equal(a.forward(batch)[0], a.forward(batch)[0])


def test_cuda_and_tf32_on_cpu_are_unsupported():
    from xfbench.harness.adapter import Unsupported

    if not torch.cuda.is_available():
        with pytest.raises(Unsupported, match="CUDA"):
            TorchAdapter(device="cuda", precision="fp32", threads=1, seed=0)
    with pytest.raises(Unsupported, match="tf32"):
        TorchAdapter(device="cpu", precision="tf32", threads=1, seed=0)


def test_cuda_graph_mode_is_unsupported_on_cpu_and_max_autotune_is_not():
    from xfbench.harness.adapter import Unsupported, discover

    info = discover()["torch-cudagraphs"]
    assert info.options == {"compile": True, "compile_mode": "reduce-overhead"}
    with pytest.raises(Unsupported, match="reduce-overhead.*CUDA graphs, which need CUDA"):
        TorchAdapter(device="cpu", precision="fp32", threads=1, seed=0, **info.options)
    tuned = TorchAdapter(device="cpu", precision="fp32", threads=1, seed=0, compile=True, compile_mode="max-autotune")
    assert not tuned.cuda_graphs  # CUDA graphs only on a GPU; on a CPU max-autotune is autotuning alone


def test_settings_describe_the_case():
    a, _ = adapter("lenet5")
    s = a.settings()
    assert s["threads"] == 1 and s["dtype"] == "float32" and s["compile"] == "eager"
    assert s["data_layout"] == "NCHW" and s["versions"]["torch"] == torch.__version__


@pytest.mark.slow
def test_torch_compile_variant_matches_eager():
    spec = build_spec("lenet5")
    outs = []
    for compile_ in (False, True):
        a = TorchAdapter(device="cpu", precision="fp32", threads=1, seed=0, compile=compile_)
        a.build(spec, build_optimizer("sgd"))
        a.load_weights(init_weights(spec, seed=1))
        batch = a.put_batch(*make_inputs(spec, 2, seed=0))
        a.train_step(batch)
        a.infer_step(batch)
        outs.append(a.dump_weights())
    for k in outs[0]:
        np.testing.assert_allclose(outs[0][k], outs[1][k], rtol=1e-5, atol=1e-6)
    # The whole step was compiled (forward with its backward, and the optimizer update), and the record says so.
    s = a.settings()
    assert s["compile_scope"] == "whole step, compiled" and "fullgraph=False" in s["compile"]
    assert s["compiled"]["graphs"] >= 2 and "Unsupported Tensor.backward() call" in s["compiled"]["break_reasons"]


def test_channels_last_keeps_images_and_conv_weights_nhwc_in_memory_and_the_same_numbers():
    spec = build_spec("lenet5", **TINY_MODELS["lenet5"])
    x, y = make_inputs(spec, 2, seed=0)
    runs = {}
    for cl in (False, True):
        a = TorchAdapter(device="cpu", precision="fp32", threads=1, seed=0, channels_last=cl)
        a.build(spec, build_optimizer("sgd"))
        a.load_weights(init_weights(spec, seed=1))
        batch = a.put_batch(x, y)
        conv = a.model.c3.weight  # (16, 6, 5, 5): with one input channel (c1, the images) both layouts coincide
        assert batch[0].is_contiguous(memory_format=torch.channels_last)
        assert conv.is_contiguous(memory_format=torch.channels_last) is cl and conv.shape == (16, 6, 5, 5)
        logits = a.forward(batch)[0]
        a.train_step(batch)
        a.sync()
        runs[cl] = logits, a.dump_weights(), a.settings()["data_layout"]
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5, atol=1e-6)
    for k, w in runs[False][1].items():
        assert runs[True][1][k].flags.c_contiguous  # canonical layout on the way out, whatever the strides
        np.testing.assert_allclose(runs[True][1][k], w, rtol=1e-5, atol=1e-6)
    assert (runs[False][2], runs[True][2]) == ("NCHW", "NCHW, channels_last strides (NHWC in memory)")


@pytest.mark.slow
def test_torch_compile_of_a_recurrent_model_says_the_rnn_runs_eagerly():
    a = TorchAdapter(device="cpu", precision="fp32", threads=1, seed=0, compile=True)
    spec = build_spec("gru", **TINY_MODELS["gru"])
    a.build(spec, build_optimizer("sgd"))
    a.load_weights(init_weights(spec, seed=1))
    a.train_step(a.put_batch(*make_inputs(spec, 2, seed=0)))
    s = a.settings()
    assert s["compile_scope"] == "whole step, compiled around an eager RNN"
    assert "eager between compiled graphs" in s["recurrent_impl"]
    assert any(r.startswith("Attempted to wrap RNN") for r in s["compiled"]["break_reasons"])


def test_a_compiled_case_that_compiled_nothing_is_skipped_with_the_reason(monkeypatch):
    from xfbench.adapters import torch_adapter
    from xfbench.harness.adapter import Unsupported

    a, spec = adapter("lenet5")
    a.compile = True  # as if compiled, with Dynamo's counters saying that nothing was
    monkeypatch.setattr(torch_adapter, "_compile_counters", lambda: (0, {"Dynamo does not support X\nmore": 1}))
    with pytest.raises(Unsupported, match="torch.compile compiled nothing for lenet5: Dynamo does not support X"):
        a.train_step(a.put_batch(*make_inputs(spec, 2, seed=0)))


def test_gradients_run_in_training_mode_with_dropout_off():
    """cuDNN's RNN backward refuses eval mode, so gradients keep the model training and switch dropout off."""
    grads = []
    for dropout in (0.5, 0.0):
        a, spec = adapter("alexnet", dropout=dropout)
        a.load_weights(init_weights(build_spec("alexnet", **{**TINY_MODELS["alexnet"], "dropout": 0.0}), seed=1))
        grads.append(a.gradients(a.put_batch(*make_inputs(spec, 2, seed=0))))
        assert a.model.training and not any(m.training for m in a.model.modules()
                                            if isinstance(m, torch.nn.Dropout))
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k])


def test_preload_leaves_the_optimizer_nothing_to_import():
    """torch.optim imports torch._dynamo at the first optimizer; `preload` does it, as import time, so that a
    fork server pays for it once and no train case's set-up time holds a 2 s import."""
    import subprocess
    import sys
    code = ("import sys; from xfbench.adapters.torch_adapter import TorchAdapter; from xfbench.harness.models import build_spec;"
            "from xfbench.harness.optimizers import build_optimizer; TorchAdapter.preload(); before = set(sys.modules);"
            "a = TorchAdapter(device='cpu', precision='fp32', threads=1, seed=0);"
            "a.build(build_spec('lenet5'), build_optimizer('sgd')); print(len(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 20, out.stdout  # without preload: ~800 modules
