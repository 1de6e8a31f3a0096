"""`bench validate --device cuda`'s TF32 forward check, without a GPU: fabricated arrays, and the NumPy adapter
standing in for a GPU adapter whose tf32 mode rounds matmul inputs to TF32's 10 mantissa bits."""
import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from xfbench.adapters.numpy_adapter import NumpyAdapter
from xfbench.harness.adapter import AdapterInfo, Unsupported
from xfbench.harness.equivalence import FORWARD_TOL, TF32_FORWARD_TOL
from xfbench.harness.models import TINY_SIZES, build_spec
from xfbench.harness.validate import Check, Validation
from xfbench.harness.validate.matrix import compare
from xfbench.harness.validate.tables import matrix_table
from xfbench.harness.validate.worker import compute
from xfbench.harness.weights import init_weights, make_inputs, save_npz

REGISTRY = {
    "numpy": AdapterInfo("numpy", "numpy", "x:Y", ("numpy",), reference=True),
    "gpu-a": AdapterInfo("gpu-a", "a", "x:Y", ("numpy",)),
    "gpu-b": AdapterInfo("gpu-b", "b", "x:Y", ("numpy",)),
}
LOGITS = np.linspace(-2.0, 4.0, 20, dtype=np.float32).reshape(2, 10)  # largest |logit| 4


def _write(folder: Path, arrays: dict[str, dict[str, np.ndarray]]) -> Path:
    """weights.npz and one <adapter>.npz per entry, as the validation workers leave them."""
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / "weights.npz", {"out.weight": np.zeros((10, 4), np.float32)})
    for fw, a in arrays.items():
        np.savez(folder / f"{fw}.npz", **a)
    return folder


def _shifted(by: float) -> np.ndarray:
    """LOGITS with one element moved by `by` times the largest |logit|: a max-abs-relative error of ~`by`."""
    out = LOGITS.copy()
    out[0, 0] += by * 4.0
    return out


def test_tf32_forward_is_checked_against_the_reference_with_its_own_tolerance(tmp_path):
    folder = _write(tmp_path / "lenet5", {
        "numpy": {"logits": LOGITS, "loss": np.float64(2.3)},
        "gpu-a": {"logits": LOGITS, "loss": np.float64(2.3), "tf32.logits": _shifted(3e-3),
                  "tf32.loss": np.float64(2.3 * (1 + 1e-4))},
        "gpu-b": {"logits": LOGITS, "loss": np.float64(2.3), "tf32.logits": _shifted(3e-2),
                  "tf32.loss": np.float64(2.3)},
    })
    checks, _ = compare("lenet5", folder, ["numpy", "gpu-a", "gpu-b"], [], REGISTRY, {})
    by = {(c.framework, c.check): c for c in checks}
    # float32 stays IEEE and keeps its tolerance; TF32 rows are each adapter's own, against the reference only
    assert {k for k in by if k[1].startswith("tf32.")} == {(f, c) for f in ("gpu-a", "gpu-b")
                                                           for c in ("tf32.logits", "tf32.loss")}
    assert by[("gpu-a", "logits")].tolerance == FORWARD_TOL and by[("gpu-a", "logits")].passed
    a, b = by[("gpu-a", "tf32.logits")], by[("gpu-b", "tf32.logits")]
    assert (a.tolerance, a.against) == (TF32_FORWARD_TOL, ("numpy",))
    assert a.error == pytest.approx(3e-3, rel=1e-3) and a.passed
    assert b.error == pytest.approx(3e-2, rel=1e-3) and not b.passed
    assert by[("gpu-a", "tf32.loss")].error == pytest.approx(1e-4, rel=1e-3)
    result = Validation(checks=checks, frameworks=["numpy", "gpu-a", "gpu-b"], references=["numpy"])
    assert result.outcome("gpu-a", "lenet5") == {"status": "passed", "against": "numpy", "scope": "forward only"}
    failed = result.outcome("gpu-b", "lenet5")
    assert failed["status"] == "failed"
    assert failed["failed_check"] == "tf32.logits: max-abs-relative 3.00e-02 > 1e-02 (vs numpy)"


def test_without_tf32_arrays_there_are_no_tf32_checks(tmp_path):
    """A CPU validation (no tf32.* arrays) has exactly the float32 checks it always had."""
    folder = _write(tmp_path / "lenet5", {"numpy": {"logits": LOGITS, "loss": np.float64(2.3)},
                                          "gpu-a": {"logits": LOGITS, "loss": np.float64(2.3)}})
    checks, _ = compare("lenet5", folder, ["numpy", "gpu-a"], [], REGISTRY, {})
    assert sorted((c.framework, c.check) for c in checks) == [("gpu-a", "logits"), ("gpu-a", "loss"),
                                                             ("numpy", "logits"), ("numpy", "loss")]


def _render(result: Validation) -> str:
    console = Console(file=io.StringIO(), width=240, color_system=None)
    console.print(matrix_table(result))
    return console.file.getvalue()


def test_the_matrix_shows_tf32_columns_and_tolerance_only_when_measured():
    cpu = Validation(checks=[Check("lenet5", "torch", "logits", 1e-7, FORWARD_TOL, ("numpy",)),
                             Check("lenet5", "torch", "loss", 1e-8, FORWARD_TOL, ("numpy",))])
    plain = _render(cpu)
    assert "tf32" not in plain
    gpu = Validation(checks=cpu.checks + [Check("lenet5", "torch", "tf32.logits", 2e-3, TF32_FORWARD_TOL, ("numpy",)),
                                          Check("lenet5", "torch", "tf32.loss", 1e-5, TF32_FORWARD_TOL, ("numpy",))])
    text = _render(gpu)
    header = next(line for line in text.splitlines() if "model" in line)
    assert [w for w in header.split() if w != "┃"] == ["model", "framework", "logits", "loss", "logits", "tf32",
                                                       "loss", "tf32", "result"]
    assert "2.0e-03" in text and "logits, loss tf32 <= 1e-2 max-abs-relative" in " ".join(text.split())


def _tf32(a: np.ndarray) -> np.ndarray:
    """float32 rounded to TF32: 10 mantissa bits (round to nearest), as tensor cores read matmul inputs."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


class StandInGpu(NumpyAdapter):
    """The NumPy reference posing as a GPU adapter: "cuda" computes on the CPU, "tf32" rounds weights and inputs."""

    def __init__(self, *, device: str, precision: str, threads: int, seed: int):
        super().__init__(device="cpu", precision="fp32" if precision == "tf32" else precision, threads=threads,
                         seed=seed)
        self.device, self.precision = device, precision

    def load_weights(self, weights):
        super().load_weights({k: _tf32(v) if self.precision == "tf32" else v for k, v in weights.items()})

    def put_batch(self, x, y):
        x, y = super().put_batch(x, y)
        return (_tf32(x) if self.precision == "tf32" and x.dtype == np.float32 else x), y


class StandInGpuWithoutTf32(StandInGpu):
    def __init__(self, *, device: str, precision: str, threads: int, seed: int):
        if precision == "tf32":
            raise Unsupported("no tf32 here")
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)


@pytest.mark.parametrize("model", ["lenet5", "gru"])
def test_the_worker_adds_the_tf32_forward_on_cuda_only(model):
    spec = build_spec(model, **TINY_SIZES[model])
    weights, (x, y) = init_weights(spec, 0), make_inputs(spec, 2, 1)
    info = AdapterInfo("stand-in", "stand-in", "x:Y", ("numpy",))

    def emitted(cls, device):
        out = {}
        assert compute(cls=cls, info=info, spec=spec, weights=weights, inputs={"x": x, "y": y}, checks="forward",
                       optimizers=[], curve_steps=0, emit=out.__setitem__, device=device) is None
        return out

    assert set(emitted(StandInGpu, "cpu")) == {"logits", "loss"}  # a CPU validation is what it always was
    assert set(emitted(StandInGpuWithoutTf32, "cuda")) == {"logits", "loss"}  # no tf32 mode: no column
    gpu = emitted(StandInGpu, "cuda")
    assert set(gpu) == {"logits", "loss", "tf32.logits", "tf32.loss"}
    from xfbench.harness.equivalence import pair_error
    err = pair_error(gpu["tf32.logits"], gpu["logits"])
    # TF32 rounding moves the logits, by far more than float32's tolerance, far less than TF32's
    assert FORWARD_TOL < err < TF32_FORWARD_TOL / 10
