"""`.validation.json`: the remembered outcomes of `bench validate`, and what `bench run` records from them.

Format version 1: {"version": 1, "entries": {"<adapter>/<model>": {"status", "against", "failed_check"?,
"versions", "sizes", "when"}}}. The older unversioned file (version 0, the entries object itself) is
read and migrated; a newer version is ignored with nothing certified (docs/spec.md section 7).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ..adapter import AdapterInfo
from ..case import Case
from ..results import write_json_atomic
from .matrix import FORWARD_CHECK, Validation, gate_key_of

CACHE_FILE = ".validation.json"
CACHE_VERSION = 1


def cache_key(framework: str, model: str) -> str:
    return f"{framework}/{model}"


def read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries, migrated to this version; {} when missing, unreadable or newer."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "version" not in data:  # version 0: the entries themselves
        return {k: v for k, v in data.items() if isinstance(v, dict)}
    if data["version"] != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return {k: v for k, v in data["entries"].items() if isinstance(v, dict)}


def write_cache(path: Path, result: Validation, registry: dict[str, AdapterInfo], sizes: str) -> None:
    """Remember each (framework, model) outcome with the versions it held for; `bench run` reads it."""
    entries = read_cache(path)
    for fw in result.frameworks:
        for model in sorted({c.model for c in result.checks if c.framework == fw}):
            entry = result.outcome(fw, model)
            if registry[fw].reference:
                entry = {"status": "reference"}
            entries[cache_key(fw, model)] = {**entry, "versions": registry[fw].versions(), "sizes": sizes,
                                             "when": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"version": CACHE_VERSION, "entries": entries})


def certified(cache_path: Path, registry: dict[str, AdapterInfo]) -> dict[str, dict[str, Any]]:
    """Cached outcomes that still hold here: same adapter distributions at the same versions."""
    out = {}
    for key, entry in read_cache(cache_path).items():
        fw = key.partition("/")[0]
        if fw in registry and entry.get("versions") == registry[fw].versions():
            out[key] = {k: entry[k] for k in ("status", "against", "failed_check", "sizes") if k in entry}
    return out


def validation_lookup(out: Path, registry: dict[str, AdapterInfo], gate: dict[str, dict] | None = None
                      ) -> Callable[[Case], tuple[dict[str, Any] | None, str | None]]:
    """case -> (its `validated` entry, why it must not be timed or None), as `run_cases` takes it.

    The entry is the --forward-check result where there is one, else `bench validate`'s cache in OUT;
    a failed --forward-check refuses the case.
    """
    cache = certified(out / CACHE_FILE, registry)

    def lookup(case: Case) -> tuple[dict[str, Any] | None, str | None]:
        info = registry.get(case.framework)
        key = gate_key_of(case.framework, case.model, case.model_params)
        if gate and key in gate:
            entry = gate[key]
            refused = entry["status"] == "failed" and entry.get("check") == FORWARD_CHECK
            return entry, f"not timed: validation failed, {entry.get('failed_check')}" if refused else None
        if info is not None and info.reference:
            return {"status": "reference"}, None
        return cache.get(cache_key(case.framework, case.model)), None
    return lookup
