"""The validation cache: the remembered outcomes of `bench validate`, and what `bench run` records from them.

One file per user (`cache_path`), whatever the current directory or `--out`: a validation done anywhere is
seen by every run. Format version 2: {"version": 2, "entries": {"<adapter>/<model>": {"status", "against",
"failed_check"?, "scope"?, "versions", "adapter_package", "sizes", "when"}}}. An entry certifies only while the
adapter's distributions, its package version and its source hash are those it was validated with, so the
file is safe to share between checkouts. Versions 0 (the entries object itself) and 1 are read, their
entries stale for want of a package; a newer version is ignored with nothing certified (docs/spec.md 7.6).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from ..adapter import AdapterInfo
from ..case import Case
from ..results import write_json_atomic
from .matrix import FORWARD_CHECK, Validation, gate_key_of

CACHE_FILE = "validation.json"
CACHE_VERSION = 2
NEVER = "never validated here"


def cache_path() -> Path:
    """`validation.json` in $XFBENCH_CACHE_DIR, else $XDG_CACHE_HOME/xfbench, else ~/.cache/xfbench."""
    if os.environ.get("XFBENCH_CACHE_DIR"):
        return Path(os.environ["XFBENCH_CACHE_DIR"]) / CACHE_FILE
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: a relative path is ignored
    return base / "xfbench" / CACHE_FILE


def cache_key(framework: str, model: str) -> str:
    return f"{framework}/{model}"


def read_cache(path: Path | None = None) -> dict[str, Any]:
    """The cache's entries, migrated to this version; {} when missing, unreadable or newer."""
    try:
        data = json.loads((path or cache_path()).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "version" not in data:  # version 0: the entries themselves
        return {k: v for k, v in data.items() if isinstance(v, dict)}
    if data["version"] not in (1, CACHE_VERSION) or not isinstance(data.get("entries"), dict):
        return {}
    return {k: v for k, v in data["entries"].items() if isinstance(v, dict)}


def provenance(info: AdapterInfo) -> dict[str, Any]:
    """What an outcome holds for: the distributions' versions and the adapter package with its source hash."""
    return {"versions": info.versions(), "adapter_package": info.provenance()}


def write_cache(result: Validation, registry: dict[str, AdapterInfo], sizes: str, path: Path | None = None) -> Path:
    """Remember each (framework, model) outcome with what it held for; `bench run` reads it. Returns the file."""
    path = path or cache_path()
    entries = read_cache(path)
    for fw in result.frameworks:
        for model in sorted({c.model for c in result.checks if c.framework == fw}):
            entry = result.outcome(fw, model)
            if registry[fw].reference:
                entry = {"status": "reference"}
            entries[cache_key(fw, model)] = {**entry, **provenance(registry[fw]), "sizes": sizes, "when": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"version": CACHE_VERSION, "entries": entries})
    return path


def staleness(entry: dict[str, Any], info: AdapterInfo) -> str | None:
    """Why a cached outcome no longer holds for `info` ("stale: source changed"); None while it holds."""
    changed = []
    then, now = entry.get("versions") or {}, info.versions()
    for dist in sorted(set(then) | set(now)):
        if then.get(dist) != now.get(dist):
            changed.append(f"{dist} {then.get(dist, 'absent')} -> {now.get(dist, 'absent')}")
    was, mine = entry.get("adapter_package"), info.provenance()
    if not isinstance(was, dict):
        return "stale: validated by an older xfbench, without the adapter's source hash"
    if was.get("package") != mine["package"]:
        changed.append(f"package {was.get('package')} -> {mine['package']}")
    elif was.get("version") != mine["version"]:
        changed.append(f"{mine['package']} {was.get('version')} -> {mine['version']}")
    if mine["source_sha256"] is None:
        changed.append("source not found")
    elif was.get("source_sha256") != mine["source_sha256"]:
        changed.append("source changed")
    return "stale: " + ", ".join(changed) if changed else None


def certified(registry: dict[str, AdapterInfo], path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Cached outcomes that still hold here: same distributions, package version and source."""
    out = {}
    for key, entry in read_cache(path).items():
        fw = key.partition("/")[0]
        if fw in registry and staleness(entry, registry[fw]) is None:
            out[key] = {k: entry[k] for k in ("status", "against", "failed_check", "scope", "sizes") if k in entry}
    return out


def uncertified(cases: list[Case], registry: dict[str, AdapterInfo], path: Path | None = None) -> list[str]:
    """One line per timed adapter with models that no cached `passed` or `failed` covers, and why.

    "never validated here", "stale: ..." (staleness), or "unverified: ..." (agreed only with other
    adapters, never with the NumPy reference), with the command that validates it.
    """
    entries = read_cache(path)
    why: dict[str, dict[str, list[str]]] = {}  # adapter -> reason -> models
    for fw, model in dict.fromkeys((c.framework, c.model) for c in cases):
        info = registry.get(fw)
        if info is None or info.reference:
            continue
        entry = entries.get(cache_key(fw, model))
        reason = NEVER if entry is None else staleness(entry, info)
        if reason is None and entry.get("status") == "unverified":
            reason = "unverified: not checked against the NumPy reference"
        if reason:
            why.setdefault(fw, {}).setdefault(reason, []).append(model)
    return [f"not validated: {fw} ({', '.join(m for ms in reasons.values() for m in ms)}): "
            + ("; ".join(reasons) if len(reasons) == 1 else
               "; ".join(f"{r} ({', '.join(ms)})" for r, ms in reasons.items()))
            + f"; run: bench validate --frameworks {fw}" for fw, reasons in why.items()]


def validation_lookup(registry: dict[str, AdapterInfo], gate: dict[str, dict] | None = None,
                      path: Path | None = None) -> Callable[[Case], tuple[dict[str, Any] | None, str | None]]:
    """case -> (its `validated` entry, why it must not be timed or None), as `run_cases` takes it.

    The entry is the --forward-check result where there is one, else the cache's entry that still holds;
    a failed --forward-check refuses the case.
    """
    cache = certified(registry, path)

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
