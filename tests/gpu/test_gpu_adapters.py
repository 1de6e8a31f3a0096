"""The torch and jax adapters on an NVIDIA GPU (device="cuda"), at tiny sizes, with the real frameworks.

Skipped with the reason on a machine without a GPU (tests/gpu/conftest.py). Run: `pytest -m gpu tests/gpu`.
No test asserts on a timing. Adapters are loaded by name through the entry-point registry
(`xfbench.harness.adapter.discover()`), never by module path, so these tests do not care where they live.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xfbench.harness.adapter import discover
from xfbench.harness.models import build_spec
from xfbench.harness.optimizers import build_optimizer
from xfbench.harness.weights import init_weights, make_inputs

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]
FORWARD_TOL = 1e-5  # float32 logits and loss, max-abs-relative: bench validate's tolerance (README)


def _tiny_sizes() -> dict[str, dict]:
    """The tiny hyper-parameters the adapter tests and `bench validate --tiny` use, wherever they live now."""
    for module in ("xfbench.harness.models", "xfbench.harness.validate"):
        try:
            return dict(__import__(module, fromlist=["TINY_SIZES"]).TINY_SIZES)
        except (ImportError, AttributeError):
            continue
    from tiny import TINY_MODELS  # tests/tiny.py, on sys.path through tests/conftest.py

    return dict(TINY_MODELS)


TINY = _tiny_sizes()
MODELS = list(TINY)
ADAPTERS = ["torch", "jax"]
FIXTURE = {"torch": "torch_cuda", "torch-compile": "torch_cuda", "jax": "jax_gpu"}
# How each adapter's settings() says whether float32 matmuls/convolutions may use TF32.
TF32_SETTING = {
    "torch": lambda s: set(s["fp32_precision"].values()),  # {"tf32"} or {"ieee"}
    "jax": lambda s: {s["matmul_precision"]},  # {"tensorfloat32"} or {"highest"}
}
TF32_ON = {"torch": {"tf32"}, "jax": {"tensorfloat32"}}
TF32_OFF = {"torch": {"ieee"}, "jax": {"highest"}}

# A `bench` command that works whether or not the console script is on PATH: the installed entry point.
BENCH = [sys.executable, "-c",
         "import sys, importlib.metadata as md; "
         "eps = list(md.entry_points(group='console_scripts', name='bench')); "
         "sys.exit('bench is not installed: pip install -e .') if not eps else None; "
         "sys.argv[0] = 'bench'; sys.exit(eps[0].load()())"]


def need(request, name: str) -> None:
    """Skip unless the framework behind adapter `name` sees the GPU."""
    request.getfixturevalue(FIXTURE[name])


def make(name: str, model: str, *, precision: str = "fp32", optimizer: str | None = None, seed: int = 1,
         **params):
    """Adapter `name` on cuda for a tiny `model` (params override its sizes), canonical weights loaded."""
    info = discover()[name]
    spec = build_spec(model, **{**TINY[model], **params})
    adapter = info.load()(device="cuda", precision=precision, threads=1, seed=0, **info.options)
    adapter.build(spec, build_optimizer(optimizer) if optimizer else None)
    adapter.load_weights(init_weights(spec, seed=seed))
    return adapter, spec


def reference_forward(spec, weights, x, y):
    ref = discover()["numpy"].load()(device="cpu", precision="fp32", threads=1, seed=0)
    ref.build(spec, None)
    ref.load_weights(weights)
    return ref.forward(ref.put_batch(x, y))


def max_abs_rel(a, b) -> float:
    """The larger of both directions of max|a - b| / max|b| (bench validate's pair error)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(np.max(np.abs(a - b)))
    if diff == 0:
        return 0.0
    return max(diff / max(float(np.max(np.abs(b))), 1e-300), diff / max(float(np.max(np.abs(a))), 1e-300))


def gpu_forward(name, model, precision, x, y, weights, **params):
    a, spec = make(name, model, precision=precision, **params)
    a.load_weights(weights)
    logits, loss = a.forward(a.put_batch(x, y))
    return a, np.asarray(logits), float(loss)


# ---- (a) float32 on the GPU is IEEE float32: it agrees with the NumPy reference ----

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", ADAPTERS)
def test_fp32_forward_on_cuda_agrees_with_numpy_reference(request, name, model):
    need(request, name)
    spec = build_spec(model, **TINY[model])
    weights, (x, y) = init_weights(spec), make_inputs(spec, 3, seed=1)
    _, logits, loss = gpu_forward(name, model, "fp32", x, y, weights)
    ref_logits, ref_loss = reference_forward(spec, weights, x, y)
    assert logits.shape == np.shape(ref_logits) and logits.dtype == np.float32
    for what, err in (("logits", max_abs_rel(logits, ref_logits)), ("loss", max_abs_rel(loss, ref_loss))):
        assert err <= FORWARD_TOL, (f"{name} {model} on cuda, fp32: {what} max-abs-relative {err:.2e} > "
                                    f"{FORWARD_TOL:.0e} against the NumPy reference (TF32 or reduced precision on?)")


# ---- (b) the manifest says what the GPU was told: TF32 on for tf32, off for fp32 ----

@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("name", ADAPTERS)
def test_settings_report_tf32_on_only_for_tf32(request, name, precision):
    need(request, name)
    a, _ = make(name, "lenet5", precision=precision)
    s = a.settings()
    json.dumps(s)  # the manifest goes into the record as JSON
    assert s["precision"] == precision and "gpu" in s, s
    want = TF32_ON[name] if precision == "tf32" else TF32_OFF[name]
    assert TF32_SETTING[name](s) == want, f"{name} {precision}: settings() say {TF32_SETTING[name](s)}, want {want}"
    assert s["fp32_math"] == ("tf32" if precision == "tf32" else "ieee")  # the key every adapter shares


@pytest.mark.parametrize("name", ADAPTERS)
def test_tf32_really_changes_the_numbers(request, name):
    """The fp32 agreement above is not vacuous: with tf32, a conv net big enough for tensor cores does not agree.

    Each adapter is built and run before the next: both frameworks' precision flags are process-wide.
    """
    need(request, name)
    sizes = {"image_size": 96, "width": 0.5, "classes": 100, "dropout": 0.0}
    spec = build_spec("alexnet", **sizes)
    weights, (x, y) = init_weights(spec), make_inputs(spec, 16, seed=1)
    _, tf32, _ = gpu_forward(name, "alexnet", "tf32", x, y, weights, **sizes)
    _, fp32, _ = gpu_forward(name, "alexnet", "fp32", x, y, weights, **sizes)
    ref, _ = reference_forward(spec, weights, x, y)
    assert max_abs_rel(fp32, ref) <= FORWARD_TOL
    err = max_abs_rel(tf32, ref)
    assert err > FORWARD_TOL, (f"{name}: tf32 logits agree with the NumPy reference to {err:.1e}; TF32 seems "
                               "not to be in effect (or this model is too small for tensor cores)")


# ---- (c) steps run on the GPU: a train step moves the weights, sync returns, peak memory is reported ----

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", ADAPTERS)
def test_train_and_infer_steps_on_cuda(request, name, model):
    need(request, name)
    a, spec = make(name, model, optimizer="sgd")
    before = a.dump_weights()
    batch = a.put_batch(*make_inputs(spec, 4, seed=3))
    for _ in range(2):
        a.train_step(batch)
        a.infer_step(batch)
    assert a.sync() is None
    after = a.dump_weights()
    assert after.keys() == before.keys()
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in after.values())
    moved = [k for k in before if not np.array_equal(before[k], after[k])]
    assert moved, f"{name} {model}: two SGD steps on cuda left every weight unchanged"
    peak = a.peak_device_memory_bytes()
    assert isinstance(peak, int) and not isinstance(peak, bool) and peak > 0, \
        f"{name}: peak_device_memory_bytes() on cuda is {peak!r}, want a positive int"


@pytest.mark.parametrize("model", ["lenet5", "lstm", "gru"])
@pytest.mark.parametrize("name", ADAPTERS)
def test_bf16_train_step_on_cuda(request, name, model):
    """bf16: autocast (torch) / bfloat16 compute (jax), float32 weights; the recurrent cells included."""
    need(request, name)
    a, spec = make(name, model, precision="bf16", optimizer="sgd")
    batch = a.put_batch(*make_inputs(spec, 4, seed=3))
    a.train_step(batch)
    a.infer_step(batch)
    a.sync()
    logits, loss = a.forward(batch)
    assert np.isfinite(loss) and np.isfinite(logits).all()
    assert all(v.dtype == np.float32 for v in a.dump_weights().values())


# ---- the torch GRU: its bias_hh gradient mask is a CPU tensor that a hook moves to the gradient's device ----

@pytest.mark.parametrize("name", ["torch", "torch-compile"])
def test_torch_gru_train_step_on_cuda_keeps_duplicated_biases_at_zero(request, name):
    need(request, name)
    a, spec = make(name, "gru", optimizer="momentum")
    batch = a.put_batch(*make_inputs(spec, 4, seed=0))
    before = a.dump_weights()
    for _ in range(3):
        a.train_step(batch)
    a.sync()
    after = a.dump_weights()
    assert not np.array_equal(before["gru0.bias_hn"], after["gru0.bias_hn"])
    h = spec.hparams["hidden"]
    for i in range(spec.hparams["layers"]):
        b_hh = getattr(a.model.rnn, f"bias_hh_l{i}")
        assert b_hh.device.type == "cuda"
        assert not b_hh.detach().cpu().numpy()[: 2 * h].any(), f"bias_hh_l{i}: the r, z parts moved on cuda"


@pytest.mark.parametrize("model", ["lenet5", "lstm", "gru"])  # gru: its bias mask is a buffer on the device
def test_torch_train_step_issues_no_blocking_sync(torch_cuda, model):
    """A timed step must leave the host free to queue the next one; sync() is where the harness waits.

    torch's sync debug mode raises on any synchronizing CUDA call (e.g. a blocking copy from pageable
    host memory); the first step (cuDNN autotuning, lazy state) runs before it is switched on.
    """
    a, spec = make("torch", model, optimizer="sgd")
    batch = a.put_batch(*make_inputs(spec, 4, seed=0))
    a.train_step(batch)
    a.sync()
    torch_cuda.cuda.set_sync_debug_mode("error")
    try:
        a.train_step(batch)
    finally:
        torch_cuda.cuda.set_sync_debug_mode("default")
    a.sync()


# ---- (d) a real worker process measures a cuda case: `bench run` on a one-case suite ----

ONE_CASE = """\
description = "one cuda case, written by tests/gpu/test_gpu_adapters.py"
seed = 0

[[cases]]
models = ["lenet5"]
modes = ["train"]
frameworks = ["{name}"]
device = "cuda"
precision = "fp32"
batch_sizes = [64]
threads = 1
case_timeout_s = 180
measure = {{ warmup_steps = 1, warmup_s = 0.01, min_sample_s = 0.005, min_samples = 3, max_time_s = 0.2 }}
"""


@pytest.mark.parametrize("name", ADAPTERS)
def test_bench_run_measures_a_cuda_case(request, name, tmp_path):
    need(request, name)
    suite = tmp_path / "one-cuda-case.toml"
    suite.write_text(ONE_CASE.format(name=name))
    out = tmp_path / "runs"
    proc = subprocess.run([*BENCH, "run", str(suite), "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    log = f"bench run exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    records = [json.loads(line) for path in out.glob("*/cases.jsonl")
               for line in path.read_text().splitlines() if line.strip()]
    assert len(records) == 1, log
    rec = records[0]
    assert rec["status"] == "ok", f"{rec['status']}: {rec.get('reason')}\n{rec.get('stderr_tail', '')}\n{log}"
    assert proc.returncode == 0, log
    assert rec["case"]["device"] == "cuda" and rec["case"]["framework"] == name
    assert "gpu" in rec["manifest"], rec["manifest"]
    peak = rec["metrics"].get("peak_device_memory_bytes")
    assert isinstance(peak, int) and peak > 0, f"peak_device_memory_bytes in the record: {peak!r}"


# ---- (e) fairness on the GPU (docs/spec.md 5.7-5.8): what compiled, step memory, bf16 recurrent layers ----

def test_torch_compile_on_cuda_compiles_the_whole_step(request):
    need(request, "torch-compile")
    a, spec = make("torch-compile", "lenet5", optimizer="adam")
    batch = a.put_batch(*make_inputs(spec, 4, seed=0))
    a.train_step(batch)
    a.infer_step(batch)
    a.sync()
    s = a.settings()
    assert s["compile_scope"] == "whole step, compiled"
    assert s["compiled"]["graphs"] >= 2, s["compiled"]  # forward+backward, and the optimizer update


def test_torch_step_peak_on_cuda_resets_below_the_set_up_peak(torch_cuda):
    """The set-up peak (a temporary 64 MiB block) must not leak into the step figure after the reset."""
    a, spec = make("torch", "lenet5", optimizer="sgd")
    block = torch_cuda.empty(64 * 2**20, dtype=torch_cuda.uint8, device="cuda")
    del block
    setup = a.peak_device_memory_bytes()
    assert setup >= 64 * 2**20
    assert a.reset_peak_device_memory() is True
    batch = a.put_batch(*make_inputs(spec, 4, seed=0))
    a.train_step(batch)
    a.sync()
    assert 0 < a.peak_device_memory_bytes() < setup


def test_torch_bf16_keeps_the_cudnn_rnn_in_float32(torch_cuda):
    a, spec = make("torch", "lstm", precision="bf16", optimizer="sgd")
    seen = {}

    def record(module, inputs, out):
        seen["rnn"] = out[0].dtype
    a.model.rnn.register_forward_hook(record)
    a.train_step(a.put_batch(*make_inputs(spec, 4, seed=0)))
    a.sync()
    assert seen["rnn"] == torch_cuda.float32  # CUDA autocast would otherwise run cuDNN's LSTM in bfloat16
