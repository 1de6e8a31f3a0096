"""Registers the test-only `faulty` adapter for subprocesses, through the entry-point mechanism.

`install(root)` writes a fake distribution (dist-info with METADATA and entry_points.txt) under `root`
and returns a PYTHONPATH on which `importlib.metadata` finds it, as it would find a pip-installed
third-party adapter. Nothing is installed into the project or the virtual environment.
"""
from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install(root: Path) -> str:
    info = root / "xfbench_faults-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xfbench-faults\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[xfbench.adapters]\nfaulty = xfbench_faults:FAULTY\n")
    return os.pathsep.join([str(root), str(HERE)])
