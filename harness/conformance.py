"""The conformance kit: pytest checks that any adapter package runs on itself, at tiny sizes.

In the adapter package's tests, one module is enough::

    from xfbench.harness.conformance import *  # noqa: F401,F403  (the checks and their pytest hook)
    ADAPTER = "mxnet"   # a registered adapter name, or the Adapter class itself

`ADAPTERS = [...]` runs the kit over several. Every check runs in this process, at tiny sizes, against
the NumPy reference (adapters/numpy_adapter.py) and against NumPy's own optimizer math; a failure
names the check. Checks that need what an adapter does not offer (training for an inference-only
adapter, float64) are skipped when the adapter raises `Unsupported`.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable

import numpy as np
import pytest

from .adapter import Adapter, Unsupported, discover
from .equivalence import FORWARD_TOL, max_abs_rel
from .models import TINY_SIZES, build_spec
from .optimizers import OPTIMIZERS, build_optimizer
from .weights import init_weights, make_inputs

__all__ = ["pytest_generate_tests", "test_conformance_parameter_count", "test_conformance_output_shapes",
           "test_conformance_weight_round_trip", "test_conformance_forward_agrees_with_reference",
           "test_conformance_gradients_agree_with_finite_differences", "test_conformance_optimizer_steps",
           "test_conformance_inference_disables_dropout", "test_conformance_sync_leaves_no_work",
           "test_conformance_settings_manifest"]

MODELS = list(TINY_SIZES)
# The shared manifest key `compile_scope` (docs/spec.md section 5.8): how much of a step one compiled or graph
# function covers.
COMPILE_SCOPES = ("none (eager)", "whole step, graph", "whole step, compiled", "whole step, compiled around an eager RNN",
                  "forward only, compiled")
STEP_TOL = 1e-9  # float64: the adapter's update against NumPy's optimizer math on its own gradients
FD_TOL = 1e-5  # float64: directional derivatives against central differences of the NumPy reference
BATCH = 3


def pytest_generate_tests(metafunc: Any) -> None:
    """Parametrise every kit check over the module's ADAPTER (or ADAPTERS)."""
    if "conformance_adapter" in metafunc.fixturenames:
        targets = getattr(metafunc.module, "ADAPTERS", None) or [getattr(metafunc.module, "ADAPTER")]
        metafunc.parametrize("conformance_adapter", targets,
                             ids=[t if isinstance(t, str) else t.__name__ for t in targets])


def fail(check: str, message: str) -> None:
    pytest.fail(f"conformance check '{check}' failed: {message}", pytrace=False)


def check(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Name the check in every failure of the test it decorates, not only in those it detects itself.

    A method that still raises NotImplementedError (a `bench new-adapter` skeleton) fails with
    "conformance check 'X' failed: not implemented: Class.method: what it must do", without a traceback;
    any other exception fails with the check's name and keeps its traceback, which the author needs.
    Skips and failures (pytest's outcomes derive from BaseException) pass through.
    """
    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                test(*args, **kwargs)
            except NotImplementedError as e:
                fail(name, f"not implemented: {_raiser(e)}{e or 'NotImplementedError'}")
            except Exception as e:
                raise AssertionError(f"conformance check '{name}' failed: {type(e).__name__}: {e}") from e
        return run
    return decorate


def _raiser(e: BaseException) -> str:
    """'Class.method: ' of the innermost frame that raised `e`, where it is a method; else ''."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    owner = tb.tb_frame.f_locals.get("self") or tb.tb_frame.f_locals.get("cls")
    if owner is None:
        return ""
    cls = owner if isinstance(owner, type) else type(owner)
    return f"{cls.__name__}.{tb.tb_frame.f_code.co_name}: "


def make(target: str | type[Adapter], model: str, *, precision: str = "fp32", optimizer: str | None = None,
         **params: Any) -> tuple[Adapter, Any]:
    """Build `target` (adapter name or class) for a tiny `model`; skip what it does not offer."""
    options: dict[str, Any] = {}
    if isinstance(target, str):
        info = discover()[target]
        if info.missing():
            pytest.skip(f"{target}: {', '.join(info.missing())} not installed")
        cls, options = info.load(), dict(info.options)
    else:
        cls = target
    spec = build_spec(model, **{**TINY_SIZES[model], **params})
    try:
        adapter = cls(device="cpu", precision=precision, threads=1, seed=0, **options)
        adapter.build(spec, build_optimizer(optimizer) if optimizer else None)
    except Unsupported as e:
        pytest.skip(f"unsupported here: {e}")
    return adapter, spec


def reference(spec: Any, weights: dict[str, np.ndarray], precision: str = "fp32") -> Any:
    from xfbench.adapters.numpy_adapter import NumpyAdapter

    ref = NumpyAdapter(device="cpu", precision=precision, threads=1, seed=0)
    ref.build(spec, None)
    ref.load_weights(weights)
    return ref


@pytest.mark.parametrize("model", MODELS)
@check("parameter count")
def test_conformance_parameter_count(conformance_adapter, model):
    adapter, spec = make(conformance_adapter, model)
    if adapter.parameter_count() != spec.parameter_count():
        fail("parameter count", f"{model}: the adapter counts {adapter.parameter_count():,}, "
                                f"the spec {spec.parameter_count():,}")


@pytest.mark.parametrize("model", MODELS)
@check("output shapes")
def test_conformance_output_shapes(conformance_adapter, model):
    adapter, spec = make(conformance_adapter, model)
    adapter.load_weights(init_weights(spec))
    logits, loss = adapter.forward(adapter.put_batch(*make_inputs(spec, BATCH)))
    want = (BATCH, spec.classes) if spec.kind == "image" else (BATCH, spec.seq_len, spec.classes)
    if np.shape(logits) != want or np.asarray(logits).dtype != np.float32:
        fail("output shapes", f"{model}: logits {np.shape(logits)} {np.asarray(logits).dtype}, want {want} float32")
    if not isinstance(loss, float):
        fail("output shapes", f"{model}: the loss is a {type(loss).__name__}, want a Python float")


@pytest.mark.parametrize("model", MODELS)
@check("canonical weight round trip")
def test_conformance_weight_round_trip(conformance_adapter, model):
    adapter, spec = make(conformance_adapter, model)
    weights = init_weights(spec, seed=7)
    adapter.load_weights(weights)
    dumped = adapter.dump_weights()
    if set(dumped) != set(weights):
        fail("canonical weight round trip", f"{model}: names differ: {sorted(set(dumped) ^ set(weights))}")
    for name, value in weights.items():
        got = np.asarray(dumped[name])
        if got.shape != value.shape or got.dtype != np.float32 or not np.array_equal(got, value):
            diff = np.abs(got - value).max() if got.shape == value.shape else "-"
            fail("canonical weight round trip", f"{model}: {name} comes back {got.shape} {got.dtype}, max diff {diff}")


@pytest.mark.parametrize("model", MODELS)
@check("forward agreement")
def test_conformance_forward_agrees_with_reference(conformance_adapter, model):
    adapter, spec = make(conformance_adapter, model)
    weights, (x, y) = init_weights(spec), make_inputs(spec, BATCH, seed=1)
    adapter.load_weights(weights)
    logits, loss = adapter.forward(adapter.put_batch(x, y))
    ref = reference(spec, weights)
    ref_logits, ref_loss = ref.forward(ref.put_batch(x, y))
    for what, err in (("logits", max_abs_rel(logits, ref_logits)), ("loss", max_abs_rel(loss, ref_loss))):
        if err > FORWARD_TOL:
            fail("forward agreement", f"{model}: {what} max-abs-relative {err:.2e} > {FORWARD_TOL:.0e} "
                                      "against the NumPy reference (float32)")


@pytest.mark.parametrize("model", MODELS)
@check("gradients")
def test_conformance_gradients_agree_with_finite_differences(conformance_adapter, model):
    adapter, spec = make(conformance_adapter, model, precision="fp64", optimizer="sgd", dropout=0.0) \
        if model == "alexnet" else make(conformance_adapter, model, precision="fp64", optimizer="sgd")
    weights, (x, y) = init_weights(spec), make_inputs(spec, BATCH, seed=1)
    adapter.load_weights(weights)
    try:
        grads = adapter.gradients(adapter.put_batch(x, y))
    except Unsupported as e:
        pytest.skip(f"unsupported here: {e}")
    # A small step keeps ReLU kinks out of reach; directions scaled like each weight tensor.
    rng, eps = np.random.default_rng(0), 1e-7
    w64 = {k: v.astype(np.float64) for k, v in weights.items()}
    for trial in range(2):
        d = {k: rng.standard_normal(v.shape) * (np.std(v) or 1.0) for k, v in w64.items()}
        losses = []
        for sign in (1, -1):
            ref = reference(spec, {k: w64[k] + sign * eps * d[k] for k in w64}, "fp64")
            losses.append(ref.forward(ref.put_batch(x, y))[1])
        numeric = (losses[0] - losses[1]) / (2 * eps)
        analytic = sum(float(np.sum(np.asarray(grads[k], np.float64) * d[k])) for k in w64)
        if abs(analytic - numeric) > FD_TOL * max(abs(numeric), 1e-12):
            fail("gradients", f"{model}: directional derivative {analytic:.10g}, central differences of the "
                              f"NumPy reference {numeric:.10g} (float64)")


def _numpy_update(name: str, p: dict[str, Any], w: np.ndarray, g: np.ndarray, s: dict[str, Any]) -> np.ndarray:
    """One step of the canonical optimizer `name` (torch.optim math, docs/spec.md section 3); `s` holds its state."""
    s["t"] = s.get("t", 0) + 1
    if name == "sgd":
        return w - p["lr"] * g
    if name == "momentum":  # dampening 0: the buffer is mu * buf + g
        s["buf"] = g if "buf" not in s else p["momentum"] * s["buf"] + g
        return w - p["lr"] * (g + p["momentum"] * s["buf"] if p["nesterov"] else s["buf"])
    if name == "adagrad":
        s["sum"] = s.get("sum", np.full_like(w, p["initial_accumulator"])) + g * g
        return w - p["lr"] * g / (np.sqrt(s["sum"]) + p["eps"])
    if name == "adadelta":
        s["sq"] = p["rho"] * s.get("sq", 0.0) + (1 - p["rho"]) * g * g
        delta = np.sqrt(s.get("acc", 0.0) + p["eps"]) / np.sqrt(s["sq"] + p["eps"]) * g
        s["acc"] = p["rho"] * s.get("acc", 0.0) + (1 - p["rho"]) * delta * delta
        return w - p["lr"] * delta
    if name == "rmsprop":
        s["sq"] = p["rho"] * s.get("sq", 0.0) + (1 - p["rho"]) * g * g
        return w - p["lr"] * g / (np.sqrt(s["sq"]) + p["eps"])
    if name == "adam":
        s["m"] = p["beta1"] * s.get("m", 0.0) + (1 - p["beta1"]) * g
        s["v"] = p["beta2"] * s.get("v", 0.0) + (1 - p["beta2"]) * g * g
        m_hat, v_hat = s["m"] / (1 - p["beta1"] ** s["t"]), s["v"] / (1 - p["beta2"] ** s["t"])
        return w - p["lr"] * m_hat / (np.sqrt(v_hat) + p["eps"])
    raise ValueError(f"no NumPy math for optimizer {name!r}")


# Every optimizer on a conv model; a recurrent model (duplicated GRU biases move twice if mishandled) with two.
OPTIMIZER_CASES = [("lenet5", o) for o in OPTIMIZERS] + [("gru", "sgd"), ("gru", "adam")]


@pytest.mark.parametrize("model,optimizer", OPTIMIZER_CASES)
@check("optimizer steps")
def test_conformance_optimizer_steps(conformance_adapter, model, optimizer):
    """Two steps (one cannot tell momentum or dampening apart), each against NumPy on the adapter's gradients."""
    adapter, spec = make(conformance_adapter, model, precision="fp64", optimizer=optimizer)
    weights, (x, y) = init_weights(spec), make_inputs(spec, BATCH, seed=1)
    adapter.load_weights(weights)
    batch = adapter.put_batch(x, y)
    params = build_optimizer(optimizer).params
    expected = {k: v.astype(np.float64) for k, v in weights.items()}
    state: dict[str, dict[str, Any]] = {k: {} for k in weights}
    try:
        for step in (1, 2):
            grads = adapter.gradients(batch)
            expected = {k: _numpy_update(optimizer, params, expected[k], np.asarray(grads[k], np.float64), state[k])
                        for k in expected}
            adapter.train_step(batch)
            adapter.sync()
            got = adapter.dump_weights()
            for k, w0 in weights.items():
                err = max_abs_rel(np.asarray(got[k], np.float64) - w0, expected[k] - w0)
                if err > STEP_TOL:
                    fail(f"optimizer {optimizer}", f"{model}: after step {step}, the update of {k} is "
                                                   f"{err:.2e} max-abs-relative off NumPy's {optimizer} math")
    except Unsupported as e:
        pytest.skip(f"unsupported here: {e}")


@check("inference disables dropout")
def test_conformance_inference_disables_dropout(conformance_adapter):
    with_dropout, spec = make(conformance_adapter, "alexnet", dropout=0.5)
    without, plain = make(conformance_adapter, "alexnet", dropout=0.0)
    weights, (x, y) = init_weights(plain), make_inputs(plain, BATCH, seed=1)
    with_dropout.load_weights(weights)
    without.load_weights(weights)
    batch = with_dropout.put_batch(x, y)
    first, second = with_dropout.forward(batch)[0], with_dropout.forward(batch)[0]
    plain_logits = without.forward(without.put_batch(x, y))[0]
    if not (np.array_equal(first, second) and np.array_equal(first, plain_logits)):
        fail("inference disables dropout", "forward with dropout=0.5 differs from dropout=0 "
                                           f"(max diff {np.abs(first - plain_logits).max():.2e})")


@pytest.mark.parametrize("mode", ["infer", "train"])
@check("sync")
def test_conformance_sync_leaves_no_work(conformance_adapter, mode):
    """Steps then sync() run and return; after a train sync the update is visible in the weights.

    Whether sync waits for *all* device work cannot be read off framework-neutrally without timing
    (a CPU-time probe flaked on other frameworks' thread pools in the same process); each adapter
    proves it with its framework's own readiness query (e.g. JAX `is_ready()` in its tests).
    """
    adapter, spec = make(conformance_adapter, "lenet5", optimizer="sgd" if mode == "train" else None)
    adapter.load_weights(init_weights(spec))
    batch = adapter.put_batch(*make_inputs(spec, 8))
    step = adapter.train_step if mode == "train" else adapter.infer_step
    try:
        for _ in range(3):
            step(batch)
    except Unsupported as e:
        pytest.skip(f"unsupported here: {e}")
    adapter.sync()
    if mode == "train":
        before = init_weights(spec)["c1.weight"]
        if np.array_equal(np.asarray(adapter.dump_weights()["c1.weight"]), before):
            fail("sync", "train steps left the weights unchanged after sync()")


@check("settings manifest")
def test_conformance_settings_manifest(conformance_adapter):
    adapter, _ = make(conformance_adapter, "lenet5")
    s = adapter.settings()
    missing = [k for k in ("versions", "threads", "precision", "dtype", "compile", "compile_scope", "data_layout",
                           "fp32_math") if k not in s]
    if missing:
        fail("settings manifest", f"settings() lacks {', '.join(missing)}")
    if s["fp32_math"] not in ("ieee", "tf32"):
        fail("settings manifest", f"settings()['fp32_math'] must be 'ieee' or 'tf32', got {s['fp32_math']!r}")
    if s["compile_scope"] not in COMPILE_SCOPES:
        fail("settings manifest", f"settings()['compile_scope'] must be one of {', '.join(COMPILE_SCOPES)}, "
                                  f"got {s['compile_scope']!r}")
    if not isinstance(s["threads"], int):
        fail("settings manifest", f"settings()['threads'] must be the intra-op thread count, got {s['threads']!r}")
    try:
        recurrent, _ = make(conformance_adapter, "lstm")
    except pytest.skip.Exception:
        recurrent = None
    if recurrent is not None and not recurrent.settings().get("recurrent_impl"):
        fail("settings manifest", "settings() of an lstm model lacks 'recurrent_impl' (which kernel runs the cell)")
    if not isinstance(s["versions"], dict) or not s["versions"]:
        fail("settings manifest", "settings()['versions'] must name the framework's libraries and versions")
    if s["precision"] != "fp32":
        fail("settings manifest", f"settings()['precision'] is {s['precision']!r} for an fp32 adapter")
    try:
        json.dumps(s)
    except (TypeError, ValueError) as e:
        fail("settings manifest", f"settings() is not JSON-serialisable: {e}")
