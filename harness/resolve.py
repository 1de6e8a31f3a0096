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
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .adapter import Adapter, AdapterInfo
from .measure.process import die_with_parent, exit_reason, module_command, run_isolated, tail

CHECK_TIMEOUT_S = 300.0  # importing TensorFlow on a cold disk takes tens of seconds
PARALLEL = 4  # workers at once: each mostly waits on imports


def check_targets(infos: dict[str, AdapterInfo]) -> dict[str, str | None]:
    """name -> None when its target resolves to a complete Adapter subclass, else why not (one line).

    Variants that share a target (torch, torch-compile) share its worker: the same import gives the same answer.
    """
    targets = sorted({info.target for info in infos.values()})
    with tempfile.TemporaryDirectory(prefix="xfbench-check-") as tmp, ThreadPoolExecutor(PARALLEL) as pool:
        futures = {t: pool.submit(_check_one, t, Path(tmp) / str(i)) for i, t in enumerate(targets)}
        return {name: futures[info.target].result() for name, info in infos.items()}


def _check_one(target: str, folder: Path) -> str | None:
    folder.mkdir()
    out, log = folder / "result.json", folder / "worker.log"
    try:
        code = run_isolated(module_command(__name__, target, out.absolute()), log, CHECK_TIMEOUT_S)
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


def main(argv: list[str]) -> int:
    """Worker: `python -m xfbench.harness.resolve TARGET OUT_JSON`."""
    die_with_parent()
    target, out = argv
    why = resolve(target)
    Path(out).write_text(json.dumps({"ok": True} if why is None else {"ok": False, "why": why}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
