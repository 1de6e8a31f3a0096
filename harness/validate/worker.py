"""The validation worker: one framework, one process, its numbers for `bench validate` as canonical .npz.

Usage (by xfbench.harness.validate.matrix, not by people): python -m xfbench.harness.validate.worker JOB.json

JOB names the adapter, the check set ("forward" or "full"), the optimizers, the number of curve steps,
the threads, and per model a directory holding `weights.npz` and `inputs.npz` (written by the parent).
The worker writes `<adapter>.npz` into each model's directory (docs/spec.md section 6 names: `logits`, `loss`,
`grad.<name>`, `step.<optimizer>.<name>`, and `curve.<optimizer>`, the loss before each of the curve
steps; on cuda also `tf32.logits` and `tf32.loss`, the forward under TF32, where the adapter offers it) and
`<adapter>.json`: {"error": message or null, "parameters": count}.
"""
from __future__ import annotations

import gc
import json
import sys
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable

from ..results import write_json_atomic

CURVE_OPTIMIZERS = ("sgd", "adam")


def _adapter(cls: type, info: Any, spec: Any, optimizer: Any, precision: str, threads: int, seed: int,
             device: str = "cpu"):
    adapter = cls(device=device, precision=precision, threads=threads, seed=seed, **info.options)
    adapter.build(spec, optimizer)
    return adapter


def compute(*, cls: type, info: Any, spec: Any, weights: dict, inputs: dict, checks: str, optimizers: list[str],
            curve_steps: int, emit: Callable[[str, Any], None], threads: int = 1, seed: int = 0,
            device: str = "cpu") -> str | None:
    """Every number one adapter contributes to validation of one model, in canonical names, one `emit` each.

    Emitted as soon as computed: AlexNet's float64 weights after each optimizer are ~0.5 GB apiece. Returns
    None, or why the adapter does not train (an inference-only adapter such as ONNX Runtime's raises
    `Unsupported` when built with an optimizer): then only its forward is compared.
    """
    from ..adapter import Unsupported
    from ..optimizers import build_optimizer

    # float32 forward first: jax's x64 switch is process-wide and each adapter sets it in __init__.
    if info.reference:
        device = "cpu"  # the NumPy reference is the CPU truth the device's numbers are held against
    fp32 = _adapter(cls, info, spec, None, "fp32", threads, seed, device)
    if fp32.parameter_count() != spec.parameter_count():
        raise RuntimeError(f"parameters: the adapter builds {fp32.parameter_count():,}, "
                           f"the spec says {spec.parameter_count():,}")
    _forward(fp32, weights, inputs, emit)
    del fp32
    gc.collect()
    if device == "cuda":
        _tf32_forward(cls, info, spec, weights, inputs, threads, seed, emit)
    if checks == "forward" or info.reference:
        return None
    for i, name in enumerate(optimizers):
        try:
            a = _adapter(cls, info, spec, build_optimizer(name), "fp64", threads, seed, device)
        except Unsupported as e:
            if i == 0:
                return str(e).splitlines()[0][:300] if str(e) else "the adapter does not train"
            raise
        a.load_weights(weights)
        batch = a.put_batch(inputs["x"], inputs["y"])
        if i == 0:
            for k, v in a.gradients(batch).items():
                emit(f"grad.{k}", v)
        for _ in range(3):
            a.train_step(batch)
        a.sync()
        for k, v in a.dump_weights().items():
            emit(f"step.{name}.{k}", v)
        del a, batch
        gc.collect()  # jit closures keep an adapter in reference cycles: free its weights before the next
    for name in CURVE_OPTIMIZERS if curve_steps else ():
        a = _adapter(cls, info, spec, build_optimizer(name), "fp64", threads, seed, device)
        a.load_weights(weights)
        batches = [a.put_batch(x, y) for x, y in zip(inputs["curve.x"], inputs["curve.y"])]
        curve = []
        for i in range(curve_steps):
            batch = batches[i % len(batches)]
            curve.append(a.forward(batch)[1])  # the loss on this batch just before its update
            a.train_step(batch)
        a.sync()
        emit(f"curve.{name}", curve)
        del a, batches, batch
        gc.collect()
    return None


def _tf32_forward(cls: type, info: Any, spec: Any, weights: dict, inputs: dict, threads: int, seed: int,
                  emit: Callable[[str, Any], None]) -> None:
    """The float32 forward again with TF32 allowed (precision "tf32"), where the adapter offers it on cuda."""
    from ..adapter import Unsupported

    try:
        a = _adapter(cls, info, spec, None, "tf32", threads, seed, "cuda")
    except Unsupported:
        return  # no TF32 mode: its column stays empty
    _forward(a, weights, inputs, emit, "tf32.")
    del a
    gc.collect()


def _forward(adapter: Any, weights: dict, inputs: dict, emit: Callable[[str, Any], None], prefix: str = "") -> None:
    """Emit `<prefix>logits` and `<prefix>loss` of the canonical weights on the check batch."""
    adapter.load_weights(weights)
    logits, loss = adapter.forward(adapter.put_batch(inputs["x"], inputs["y"]))
    emit(f"{prefix}logits", logits)
    emit(f"{prefix}loss", loss)


class NpzWriter:
    """An .npz written one array at a time (np.load reads it like any np.savez file)."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)

    def __call__(self, name: str, value: Any) -> None:
        import numpy as np
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)

    def close(self) -> None:
        self.zip.close()


def main(argv: list[str]) -> int:
    from ..measure.process import die_with_parent, pin_threads

    die_with_parent()
    if len(argv) != 1:
        print("usage: python -m xfbench.harness.validate.worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    pin_threads(job["threads"])  # before numpy or the framework loads its thread pools
    from ..adapter import AdapterInfo
    from ..models import build_spec
    from ..weights import load_npz

    # The parent's AdapterInfo, not a fresh discover(): a test may validate an adapter it registered itself.
    info = AdapterInfo(**{**job["info"], "requires": tuple(job["info"]["requires"]),
                          "distributions": tuple(job["info"]["distributions"])})
    cls = info.load()
    for model, entry in job["models"].items():
        folder = Path(entry["dir"])
        status: dict[str, Any] = {"error": None}
        try:
            spec = build_spec(model, **entry["params"])
            status["parameters"] = spec.parameter_count()
            writer = NpzWriter(folder / f"{job['adapter']}.npz")
            try:
                status["inference_only"] = compute(cls=cls, info=info, spec=spec, weights=load_npz(folder / "weights.npz"),
                        inputs=load_npz(folder / "inputs.npz"), checks=job["checks"], optimizers=job["optimizers"],
                        curve_steps=job["curve_steps"], emit=writer, threads=job["threads"],
                        device=job.get("device", "cpu"))
            finally:
                writer.close()
        except Exception as e:  # one model's failure is a result; the other models still run
            traceback.print_exc()
            status["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        write_json_atomic(folder / f"{job['adapter']}.json", status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
