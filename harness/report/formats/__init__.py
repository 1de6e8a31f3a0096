"""Report formats: each module here renders a `Report` into one file of the run directory.

A format is one new module in this package with `FILENAME` (the file it writes, e.g. "report.md") and
`render(report, run_path) -> str`; `xfbench.harness.report.write` finds every such module, nothing else changes.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available() -> list[ModuleType]:
    """Every format module of this package, by name."""
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted((m for m in mods if hasattr(m, "FILENAME") and hasattr(m, "render")), key=lambda m: m.__name__)
