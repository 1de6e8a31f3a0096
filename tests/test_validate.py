"""`bench validate`, `bench run --validate` and the certification cache, with real workers at tiny sizes."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xfbench.harness.adapter import AdapterInfo, _source_hash, discover
from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.results import RunDir
from xfbench.harness.measure.runner import run_cases
from xfbench.harness.plan.suites import expand, load_suite
from xfbench.harness.equivalence import max_abs_rel, pair_norm_error
from xfbench.harness.records import Record
from xfbench.harness.validate import Check, Validation, validate
from xfbench.harness.validate.cache import (CACHE_FILE, cache_path, certified, read_cache, uncertified,
                                            validation_lookup, write_cache)
from xfbench.harness.validate.matrix import forward_gate, gate_key_of


def gate_key(case: Case) -> str:
    return gate_key_of(case.framework, case.model, case.model_params)

TESTS = Path(__file__).parent


@pytest.fixture
def registry(monkeypatch):
    """The installed adapters plus two broken ones, importable by the validation workers."""
    pytest.importorskip("torch")
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    reg = dict(discover())
    reg["torch-damped"] = AdapterInfo("torch-damped", "torch", "broken_adapters:DampenedMomentum", ("torch",))
    reg["torch-gates"] = AdapterInfo("torch-gates", "torch", "broken_adapters:SwappedGruGates", ("torch",))
    return reg


def test_update_error_is_norm_relative_so_one_rounded_element_passes_and_one_wrong_element_fails():
    update = np.full(10_000, 1e-3)  # an Adam-like update: every element about lr in size
    rounded = update.copy()
    rounded[0] *= 1 + 1e-8  # one near-eps gradient element: float64 rounding amplified to 1e-8
    assert max_abs_rel(rounded, update) == pytest.approx(1e-8)
    assert pair_norm_error(rounded, update) == pytest.approx(1e-10)  # ||1e-11|| / ||1e-3 * 100||
    wrong = update.copy()
    wrong[0] = -1e-3  # one element stepping the wrong way
    assert pair_norm_error(wrong, update) == pytest.approx(0.02)
    assert pair_norm_error(update, update) == 0.0


def test_artifacts_recheck_with_plain_numpy(registry, tmp_path):
    result = validate(registry=registry, models=["gru"], frameworks=["torch", "numpy"], optimizers=["sgd"],
                      artifacts=tmp_path, tiny=True, curve_steps=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    folder = tmp_path / "gru"
    assert sorted(p.name for p in folder.iterdir()) == ["inputs.npz", "numpy.npz", "torch.npz", "weights.npz"]
    w, inp, t = np.load(folder / "weights.npz"), np.load(folder / "inputs.npz"), np.load(folder / "torch.npz")
    # A GRU language model in a few lines of NumPy (reset-after, gates r, z, n), from the artifacts alone.
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h_seq = w["embed.weight"][inp["x"]].astype(np.float64)
    for layer in range(2):
        W, U, b, bhn = (w[f"gru{layer}.{k}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hn"))
        h, out = np.zeros((len(h_seq), U.shape[1])), []
        for step in range(h_seq.shape[1]):
            (xr, xz, xn), (hr, hz, hn) = np.split(h_seq[:, step] @ W.T + b, 3, 1), np.split(h @ U.T, 3, 1)
            r, z = sig(xr + hr), sig(xz + hz)
            h = (1 - z) * np.tanh(xn + r * (hn + bhn)) + z * h
            out.append(h)
        h_seq = np.stack(out, 1)
    logits = h_seq @ w["out.weight"].T + w["out.bias"]
    assert max_abs_rel(t["logits"], logits) <= 1e-5
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    picked = np.take_along_axis(p, inp["y"][..., None], -1)
    assert abs(float(t["loss"]) + np.log(picked).mean()) <= 1e-5 * float(t["loss"])
    onehot = np.eye(logits.shape[-1])[inp["y"]]
    assert max_abs_rel(t["grad.out.bias"], (p - onehot).reshape(-1, p.shape[-1]).mean(0)) <= 1e-6
    step = t["step.sgd.out.weight"]
    assert step.dtype == np.float64 and step.shape == w["out.weight"].shape


def test_dampened_momentum_fails_the_momentum_check_only(registry, tmp_path):
    result = validate(registry=registry, models=["lenet5"], frameworks=["torch", "torch-damped", "numpy"],
                      optimizers=["sgd", "momentum"], tiny=True, curve_steps=0)
    failing = {(c.framework, c.check) for c in result.checks if not c.passed}
    assert failing == {("torch", "step.momentum"), ("torch-damped", "step.momentum")}
    assert not result.passed
    outcome = result.outcome("torch-damped", "lenet5")
    assert outcome["status"] == "failed" and outcome["failed_check"].startswith("step.momentum: norm-relative")


def test_curves_are_recorded_and_equal(registry):
    result = validate(registry=registry, models=["lenet5"], frameworks=["torch", "torch-damped"],
                      optimizers=["sgd"], tiny=True, curve_steps=4)
    assert result.passed
    assert set(result.curves) == {("lenet5", o, f) for o in ("sgd", "adam") for f in ("torch", "torch-damped")}
    assert len(result.curves[("lenet5", "adam", "torch")]) == 4


def test_run_validate_refuses_to_time_a_failing_adapter(registry, tmp_path):
    measure = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.001, min_samples=3, max_time_s=0.2)
    cases = [Case(framework=fw, model="gru", mode="infer", batch_size=2, measure=measure,
                  model_params={"vocab": 50, "embed": 8, "hidden": 4, "seq_len": 5})
             for fw in ("torch", "torch-gates")]
    gate = forward_gate(cases, registry)
    assert gate[gate_key(cases[0])]["status"] == "passed"
    bad = gate[gate_key(cases[1])]
    assert bad["status"] == "failed" and bad["failed_check"].startswith("logits: max-abs-relative")
    timed = []

    def fake_worker(case, workdir, logdir):
        timed.append(case.framework)
        return Record.of(case, "skipped", "x", 0.0, 0.0)

    run = RunDir.create(tmp_path, "t")
    lookup = validation_lookup(registry, gate)
    summary = run_cases(cases, run, registry, worker=fake_worker, validation=lookup)
    assert timed == ["torch"]
    good, refused = summary.records
    assert good.validated["status"] == "passed" and good.validated["against"] == "numpy"
    assert refused.status == "failed" and refused.reason.startswith("not timed: validation failed, logits:")


def _validation(status_ok: bool, fw: str = "torch") -> Validation:
    err = 1e-7 if status_ok else 1e-2
    return Validation(checks=[Check("lenet5", fw, "logits", err, 1e-5, ("numpy",)),
                              Check("lenet5", "numpy", "logits", err, 1e-5, (fw,))],
                      frameworks=[fw, "numpy"], references=["numpy"])


# Real modules (import-cheap): the source hash needs a module that exists.
TORCH_INFO = AdapterInfo("torch", "torch", "xfbench.adapters.torch_adapter:TorchAdapter", ("numpy",))
NUMPY_INFO = AdapterInfo("numpy", "numpy", "xfbench.adapters.numpy_adapter:NumpyAdapter", ("numpy",), reference=True)


def test_cache_certifies_only_the_same_versions(validation_cache):
    reg = {"torch": TORCH_INFO, "numpy": NUMPY_INFO}  # numpy: installed, has a version
    assert write_cache(_validation(True), reg, "tiny") == validation_cache / CACHE_FILE == cache_path()
    found = certified(reg)
    assert found["torch/lenet5"] == {"status": "passed", "against": "numpy", "scope": "forward only", "sizes": "tiny"}
    assert found["numpy/lenet5"]["status"] == "reference"
    write_cache(_validation(False), reg, "default")
    entry = certified(reg)["torch/lenet5"]
    assert entry["status"] == "failed" and "1.00e-02 > 1e-05" in entry["failed_check"]
    other = {**reg, "torch": replace(TORCH_INFO, requires=("click",))}  # different distributions
    assert "torch/lenet5" not in certified(other)
    (line,) = uncertified([Case("torch", "lenet5", "infer", 1)], other)
    assert line.startswith("not validated: torch (lenet5): stale: click absent -> ") and ", numpy " in line
    lookup = validation_lookup(reg)
    assert lookup(Case("torch", "lenet5", "infer", 1)) == (certified(reg)["torch/lenet5"], None)
    assert lookup(Case("torch", "gru", "infer", 1)) == (None, None)
    assert uncertified([Case("torch", "gru", "infer", 1), Case("torch", "alexnet", "train", 2),
                        Case("numpy", "gru", "infer", 1)], reg) == [
        "not validated: torch (gru, alexnet): never validated here; run: bench validate --frameworks torch"]


def test_cache_is_versioned_and_older_formats_certify_nothing(validation_cache):
    reg = {"torch": TORCH_INFO, "numpy": NUMPY_INFO}
    path = write_cache(_validation(True), reg, "tiny")
    data = json.loads(path.read_text())
    assert data["version"] == 2 and set(data["entries"]) == {"torch/lenet5", "numpy/lenet5"}
    assert data["entries"]["torch/lenet5"]["adapter_package"]["source_sha256"] == TORCH_INFO.source_hash()
    old = {k: {f: v for f, v in e.items() if f != "adapter_package"} for k, e in data["entries"].items()}
    for written in (old, {"version": 1, "entries": old}):  # version 0 (the entries alone) and 1: no source hash
        path.write_text(json.dumps(written))
        assert read_cache() == old
        assert "torch/lenet5" not in certified(reg)
        (line,) = uncertified([Case("torch", "lenet5", "infer", 1)], reg)
        assert "stale: validated by an older xfbench" in line
    path.write_text(json.dumps({"version": 99, "entries": data["entries"]}))
    assert read_cache() == {}  # a newer format certifies nothing


def test_the_cache_lives_in_one_per_user_place(monkeypatch, tmp_path):
    monkeypatch.setenv("XFBENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_path() == tmp_path / "mine" / "validation.json"
    monkeypatch.delenv("XFBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path() == tmp_path / "xdg" / "xfbench" / "validation.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_path() == tmp_path / "home" / ".cache" / "xfbench" / "validation.json"


def test_reference_adapter_is_not_part_of_all():
    reg = {"torch": AdapterInfo("torch", "torch", "x:Y", ("torch",)),
           "numpy": AdapterInfo("numpy", "numpy", "x:Y", ("numpy",), reference=True)}
    cases = expand(load_suite("quick", reg), reg, cpus=2)
    assert {c.framework for c in cases} == {"torch"}
    assert discover()["numpy"].reference


def test_cli_validate_prints_the_matrix_and_exits_1_on_failure(monkeypatch, validation_cache):
    import xfbench.harness.validate as v
    from xfbench.harness.cli import main
    monkeypatch.setattr(v, "validate", lambda **kw: _validation(False))
    out = CliRunner().invoke(main, ["validate", "--tiny"])
    assert out.exit_code == 1
    assert "lenet5" in out.output and "FAIL" in out.output and "1.0e-02" in out.output
    assert (validation_cache / CACHE_FILE).exists() and str(validation_cache) in out.output
    monkeypatch.setattr(v, "validate", lambda **kw: _validation(True))
    out = CliRunner().invoke(main, ["validate", "--tiny"])
    assert out.exit_code == 0 and "passed" in out.output


def test_cli_validate_rejects_unknown_names_and_the_old_out_option(tmp_path):
    from xfbench.harness.cli import main
    out = CliRunner().invoke(main, ["validate", "--models", "resnet"])
    assert out.exit_code == 2 and "unknown model 'resnet'" in out.output
    out = CliRunner().invoke(main, ["validate", "--out", str(tmp_path)])  # one cache per user now
    assert out.exit_code == 2 and "No such option" in out.output and "--out" in out.output


def test_validation_runs_the_timed_functions_so_a_wrong_one_fails(registry):
    """`bench validate` must certify what `bench run` times: break only the timed path and validation fails."""
    reg = dict(registry)
    reg["torch-bad-infer"] = AdapterInfo("torch-bad-infer", "torch", "broken_adapters:WrongTimedInference", ("torch",))
    reg["torch-bad-step"] = AdapterInfo("torch-bad-step", "torch", "broken_adapters:WrongTimedUpdate", ("torch",))
    expected = {"torch-bad-infer": "logits", "torch-bad-step": "step.sgd"}
    if not reg["jax"].missing():
        reg["jax-bad-infer"] = AdapterInfo("jax-bad-infer", "jax", "broken_adapters:WrongTimedJaxInference",
                                           ("jax", "flax", "optax"))
        expected["jax-bad-infer"] = "logits"
    for broken, check in expected.items():  # one at a time: a pair's error counts against both of its members
        result = validate(registry=reg, models=["lenet5"], frameworks=["numpy", "torch", broken],
                          optimizers=["sgd"], tiny=True, curve_steps=0)
        outcome = result.outcome(broken, "lenet5")
        assert outcome["status"] == "failed" and outcome["failed_check"].startswith(check), (broken, outcome)


PLUGIN_INIT = """from xfbench.harness.api import AdapterInfo

PLUG = AdapterInfo(name="plug", framework="torch", target="xfplug.adapter:Plug", requires=("torch",))
"""
PLUGIN_ADAPTER = """from xfbench.adapters.torch_adapter import TorchAdapter


class Plug(TorchAdapter):
    \"\"\"A third-party adapter: the built-in torch one under another name.\"\"\"
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed third-party adapter package `xfplug` 1.0 (a .dist-info on sys.path), registering `plug`."""
    site = tmp_path / "site"
    (site / "xfplug").mkdir(parents=True)
    (site / "xfplug" / "__init__.py").write_text(PLUGIN_INIT)
    (site / "xfplug" / "adapter.py").write_text(PLUGIN_ADAPTER)
    (site / "xfplug-1.0.dist-info").mkdir()
    (site / "xfplug-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: xfplug\nVersion: 1.0\n")
    (site / "xfplug-1.0.dist-info" / "entry_points.txt").write_text("[xfbench.adapters]\nplug = xfplug:PLUG\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the validation workers import it too
    _source_hash.cache_clear()
    yield site
    _source_hash.cache_clear()
    for name in [m for m in sys.modules if m == "xfplug" or m.startswith("xfplug.")]:
        del sys.modules[name]


def test_editing_an_adapter_makes_its_validation_stale(plugin):
    pytest.importorskip("torch")
    reg = discover()
    assert (reg["plug"].package, reg["plug"].package_version) == ("xfplug", "1.0")
    assert reg["torch"].package == "xfbench"
    result = validate(registry=reg, models=["lenet5"], frameworks=["plug"], optimizers=["sgd"], tiny=True,
                      curve_steps=0)
    assert result.frameworks == ["plug", "numpy"]  # the reference is always added
    assert result.outcome("plug", "lenet5") == {"status": "passed", "against": "numpy", "scope": "forward only"}
    write_cache(result, reg, "tiny")
    case = Case("plug", "lenet5", "infer", 2)
    assert uncertified([case], reg) == []
    assert validation_lookup(reg)(case)[0]["status"] == "passed"
    with open(plugin / "xfplug" / "adapter.py", "a") as f:
        f.write("# a fix, not yet validated\n")
    _source_hash.cache_clear()  # the next `bench run` is a new process
    assert uncertified([case], reg) == [
        "not validated: plug (lenet5): stale: source changed; run: bench validate --frameworks plug"]
    assert validation_lookup(reg)(case) == (None, None)


def test_a_new_package_version_makes_its_validation_stale(plugin):
    reg = discover()
    write_cache(_validation(True, "plug"), reg, "tiny")
    case = Case("plug", "lenet5", "infer", 2)
    assert certified(reg)["plug/lenet5"]["status"] == "passed" and uncertified([case], reg) == []
    (plugin / "xfplug-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: xfplug\nVersion: 1.1\n")
    reg = discover()
    assert "plug/lenet5" not in certified(reg)
    assert uncertified([case], reg) == [
        "not validated: plug (lenet5): stale: xfplug 1.0 -> 1.1; run: bench validate --frameworks plug"]


def test_without_the_reference_the_outcome_is_unverified_never_passed(registry):
    reg = {**registry, "numpy": replace(registry["numpy"], requires=("xfbench_no_such_module",)),
           "torch-twin": AdapterInfo("torch-twin", "torch", "xfbench.adapters.torch_adapter:TorchAdapter", ("torch",))}
    result = validate(registry=reg, models=["lenet5"], frameworks=["torch", "torch-twin"], optimizers=["sgd"],
                      tiny=True, curve_steps=0)
    assert "numpy" in result.skipped and result.references == []
    assert result.passed  # the two agree with each other ...
    assert result.outcome("torch", "lenet5") == {"status": "unverified", "against": "torch-twin"}  # ... only
    write_cache(result, reg, "tiny")
    assert certified(reg)["torch/lenet5"]["status"] == "unverified"
    assert uncertified([Case("torch", "lenet5", "infer", 2)], reg) == [
        "not validated: torch (lenet5): unverified: not checked against the NumPy reference; "
        "run: bench validate --frameworks torch"]


def test_an_adapter_validated_with_no_other_training_adapter_is_forward_only(registry):
    """NumPy does not train: alone with it, an adapter's gradients and updates were compared with nothing."""
    result = validate(registry=registry, models=["lenet5"], frameworks=["torch"], optimizers=["sgd"],
                      tiny=True, curve_steps=0)
    assert result.passed and result.references == ["numpy"]
    assert result.outcome("torch", "lenet5") == {"status": "passed", "against": "numpy", "scope": "forward only"}
    assert result.forward_only() == ["torch"]
    write_cache(result, registry, "tiny")
    assert certified(registry)["torch/lenet5"]["scope"] == "forward only"
    with_partner = validate(registry={**registry, "torch-twin": AdapterInfo(
        "torch-twin", "torch", "xfbench.adapters.torch_adapter:TorchAdapter", ("torch",))}, models=["lenet5"],
        frameworks=["torch", "torch-twin"], optimizers=["sgd"], tiny=True, curve_steps=0)
    assert "scope" not in with_partner.outcome("torch", "lenet5") and with_partner.forward_only() == []
