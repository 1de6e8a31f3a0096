"""`bench list frameworks --check`: resolve every adapter's `target` in a worker of its own, and say why one fails.

An `AdapterInfo` is read without importing its framework, so a misspelt target looks installed until a run
imports it. Here each target is imported in its own process (one framework per process, as in a run) and must
name a subclass of `Adapter` that implements every abstract method. The worker writes one JSON object:
`{"ok": true}` or `{"ok": false, "why": "<one line>"}`.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import json
import platform
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import __version__
from .adapter import Adapter, AdapterInfo, discover_all
from .measure.process import die_with_parent, exit_reason, module_command, run_isolated, tail

CHECK_TIMEOUT_S = 300.0  # importing TensorFlow on a cold disk takes tens of seconds
PARALLEL = 4  # workers at once: each mostly waits on imports


def check_targets(infos: dict[str, AdapterInfo]) -> dict[str, str | None]:
    """name -> None when its target resolves to a complete Adapter subclass, else why not (one line).

    Variants that share a target (torch, torch-compile) share its worker: the same import gives the same answer.
    An environment's adapters (xfbench.harness.envs) are checked with its interpreter.
    """
    targets = sorted({(info.python or "", info.target) for info in infos.values()})
    with tempfile.TemporaryDirectory(prefix="xfbench-check-") as tmp, ThreadPoolExecutor(PARALLEL) as pool:
        futures = {t: pool.submit(_check_one, t[1], Path(tmp) / str(i), t[0] or None) for i, t in enumerate(targets)}
        return {name: futures[(info.python or "", info.target)].result() for name, info in infos.items()}


def _check_one(target: str, folder: Path, python: str | None = None, *flags: str) -> str | None:
    folder.mkdir()
    out, log = folder / "result.json", folder / "worker.log"
    try:
        code = run_isolated(module_command(__name__, *flags, target, out.absolute(), python=python), log,
                            CHECK_TIMEOUT_S)
    except OSError as e:
        return f"the check's worker could not start: {e}"
    if code is None:
        return f"importing {target} took over {CHECK_TIMEOUT_S:.0f} s"
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError):
        last = tail(log, 1)
        return exit_reason(code) + (f": {last}" if last else "")
    return None if result.get("ok") else str(result.get("why"))


def check_cuda(infos: dict[str, AdapterInfo]) -> dict[str, str | None]:
    """name -> None when the adapter trains a tiny LeNet-5 on CUDA in a worker of its own, else why not.

    `bench list frameworks --check` on a host with an NVIDIA GPU: the proof that an install sees the GPU
    (docs/gpu.md). An adapter that refuses CUDA (`Unsupported`: a CPU build) answers "cpu only: <why>".
    """
    with tempfile.TemporaryDirectory(prefix="xfbench-cuda-") as tmp, ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(_check_one, name, Path(tmp) / str(i), info.python, "--cuda")
                   for i, (name, info) in enumerate(infos.items())}
        return {name: f.result() for name, f in futures.items()}


def cuda_case(name: str) -> str | None:
    """In the worker: one training step and one inference step of a tiny LeNet-5 on CUDA, synced; None if it ran."""
    import numpy as np

    from .adapter import Unsupported, discover
    from .envs import split
    from .models import build_spec
    from .optimizers import build_optimizer
    from .weights import init_weights, make_inputs

    info = discover()[split(name)[0]]
    cls = info.load()
    spec = build_spec("lenet5")
    try:
        adapter = cls(device="cuda", precision="fp32", threads=1, seed=0, **info.options)
        adapter.build(spec, build_optimizer("sgd"))
    except Unsupported as e:
        return f"cpu only: {_first_line(e).partition(': ')[2] or e}"
    adapter.load_weights(init_weights(spec, 0))
    batch = adapter.put_batch(*make_inputs(spec, 8, 0))
    adapter.train_step(batch)
    adapter.infer_step(batch)
    adapter.sync()
    logits, loss = adapter.forward(batch)
    if not (np.isfinite(loss) and np.all(np.isfinite(logits))):
        return f"cuda: the forward is not finite (loss {loss})"
    return None


def resolve(target: str) -> str | None:
    """None if `target` ("module:Class") imports to a complete Adapter subclass, else why not, in one line."""
    module_name, colon, cls_name = target.partition(":")
    if not colon or not module_name or not cls_name:
        return f"target {target!r} is not 'module:Class'"
    try:
        module = importlib.import_module(module_name)
    except BaseException as e:  # noqa: BLE001  (anything a third-party module does on import, SystemExit too)
        return f"importing {module_name} failed: {_first_line(e)}"
    if not hasattr(module, cls_name):
        near = difflib.get_close_matches(cls_name, [n for n, v in vars(module).items() if inspect.isclass(v)], 1)
        return f"module {module_name} has no {cls_name!r}" + (f"; did you mean {near[0]!r}?" if near else "")
    cls = getattr(module, cls_name)
    if not (inspect.isclass(cls) and issubclass(cls, Adapter)):
        return f"{target} is not a subclass of xfbench.harness.api.Adapter"
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        return f"{target} does not implement {', '.join(missing)}"
    return None


def _first_line(e: BaseException) -> str:
    lines = f"{type(e).__name__}: {e}".strip().splitlines()
    return lines[0] if lines else type(e).__name__


def probe() -> dict[str, Any]:
    """What this interpreter offers as a framework environment (xfbench.harness.envs): its Python and every
    adapter it registers, with the imports it lacks, its versions and provenance; broken ones with why."""
    working, broken = discover_all()
    adapters = {}
    for name, info in working.items():
        d = {k: v for k, v in asdict(info).items() if k not in ("python", "environment", "probed")}
        adapters[name] = {**d, "missing": info.missing(), "versions": info.versions(), "provenance": info.provenance(),
                          "cpu_only": info.cpu_only()}
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable, "xfbench": __version__, "adapters": adapters, "broken": broken}


def main(argv: list[str]) -> int:
    """Worker: `python -m xfbench.harness.resolve TARGET OUT_JSON`, `--cuda ADAPTER OUT_JSON` (check_cuda) or
    `--probe OUT_JSON` (an environment's)."""
    if argv[:1] == ["--probe"]:
        Path(argv[1]).write_text(json.dumps(probe()))
        return 0
    die_with_parent()
    if argv[:1] == ["--cuda"]:
        name, out = argv[1:]
        try:
            why = cuda_case(name)
        except BaseException as e:  # noqa: BLE001  (the framework's own error is the answer)
            why = f"cuda: {_first_line(e)}"
        Path(out).write_text(json.dumps({"ok": why is None, "why": why}))
        return 0
    target, out = argv
    why = resolve(target)
    Path(out).write_text(json.dumps({"ok": True} if why is None else {"ok": False, "why": why}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
