"""Suites: TOML data expanded into cases. Every key is checked; an unknown one is an error.

    description = "..."
    seed = 0
    roofline = true       # measure each framework's GEMM and copy peak after the cases (peak.json)
    [defaults]            # any entry key below, applied to every [[cases]] entry
    [[cases]]
    models = ["lenet5"]   # required, in defaults or the entry
    modes = ["train", "infer"]
    batch_sizes = [64]
    frameworks = "all"    # or a list of adapter names; "all" = every registered base framework
    device = "cpu"        precision = "fp32"      threads = 0 (0 = every CPU this process may use)
    processes = 1         optimizer = "sgd"       case_timeout_s = 600
    memory_limit_gib = 8  # the worker's processes together; default: 90% of the memory available, less 1 GiB
    process_start = "exec"  # or "fork": CPU workers forked from one warm server per framework and round
    params = {}           optimizer_params = {}   measure = {min_samples = 10, ...}
    when = "always"       # or "gpu": the entry applies only where the machine that plans the run has an NVIDIA
                          # GPU (nvidia-smi lists one; XFBENCH_ASSUME_GPU=1/0 says so instead); elsewhere it is
                          # left out silently: no case, no skipped record, no line of output
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapter import why_broken
from ..case import DEVICES, MODES, PRECISIONS, PROCESS_STARTS, Case, Convergence, MeasureConfig
from ..errors import XfbenchError
from ..measure.host import has_nvidia_gpu
from ..models import SpecError, build_spec
from ..optimizers import build_optimizer
from .memory import too_big

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"


class SuiteError(XfbenchError, ValueError):
    """A suite that cannot be run as written; the message names the file and the key."""


_MEASURE_KEYS = {f.name: f.type for f in dataclasses.fields(MeasureConfig)}
_ENTRY_KEYS: dict[str, Any] = {
    "models": [str], "modes": [str], "batch_sizes": [int], "frameworks": (str, [str]),
    "device": str, "precision": str, "threads": int, "processes": int, "optimizer": str,
    "case_timeout_s": (int, float), "params": dict, "optimizer_params": dict, "measure": dict,
    "memory_limit_gib": (int, float), "process_start": str, "convergence": dict, "when": str,
}
WHENS = ("always", "gpu")  # an entry's `when`: on every host, or only on one with an NVIDIA GPU
MAX_PROCESSES = 100  # repetitions of one case
MAX_CASES = 100_000  # a suite that expands to more is a typo, not a plan
MAX_SUITE_CHARS = 1_000_000  # the largest suite here is ~2 kB; a 50 MB list would take a minute to refuse
_TOP_KEYS = {"description": str, "seed": int, "defaults": dict, "cases": list, "roofline": bool}
_ENTRY_DEFAULTS: dict[str, Any] = {
    "modes": ["train", "infer"], "batch_sizes": [32], "frameworks": "all", "device": "cpu",
    "precision": "fp32", "threads": 0, "processes": 1, "optimizer": "sgd", "case_timeout_s": 600.0,
    "params": {}, "optimizer_params": {}, "measure": {}, "memory_limit_gib": None, "process_start": "exec",
    "convergence": None, "when": "always",
}


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    seed: int
    entries: list[dict[str, Any]] = field(default_factory=list)  # defaults merged in, validated
    roofline: bool = True  # measure the frameworks' peaks after the cases (xfbench.harness.measure.runner.run_peaks)


def find_suite(name_or_path: str) -> Path:
    """A suite by path, or by name in ./suites or the installed suites directory."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or os.sep in name_or_path:
        if p.is_dir():
            raise SuiteError(f"{p} is a directory; give a suite file (.toml) or a suite name: "
                             f"{', '.join(available_suites()) or 'none'}")
        if not p.is_file():
            raise SuiteError(f"suite file {p} does not exist")
        return p
    for d in (Path.cwd() / "suites", SUITES_DIR):
        if (d / f"{name_or_path}.toml").is_file():
            return d / f"{name_or_path}.toml"
    if name_or_path and p.is_dir():
        raise SuiteError(f"{p} is a directory; give a suite file (.toml) or a suite name: "
                         f"{', '.join(available_suites()) or 'none'}")
    raise SuiteError(f"unknown suite {name_or_path!r}; choose one of {', '.join(available_suites()) or 'none'}"
                     " or give a path to a .toml file")


def available_suites() -> list[str]:
    names = {p.stem for d in (Path.cwd() / "suites", SUITES_DIR) if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def _type_ok(value: Any, typ: Any) -> bool:
    if isinstance(typ, tuple):
        return any(_type_ok(value, t) for t in typ)
    if isinstance(typ, list):
        return isinstance(value, list) and bool(value) and all(_type_ok(v, typ[0]) for v in value)
    if typ is int or typ is float or typ == (int, float):
        return type(value) is int or (typ is not int and type(value) is float)
    return isinstance(value, typ) and not isinstance(value, bool)


def _type_name(typ: Any) -> str:
    if isinstance(typ, tuple):
        return " or ".join(_type_name(t) for t in typ)
    if isinstance(typ, list):
        return f"a non-empty list of {_type_name(typ[0])}"
    return {int: "an integer", float: "a number", str: "a string", dict: "a table", list: "an array",
            bool: "true or false"}.get(
        typ, getattr(typ, "__name__", str(typ)))


def _check_entry(where: str, entry: dict[str, Any], frameworks: dict[str, Any]) -> None:
    for key, value in entry.items():
        if key not in _ENTRY_KEYS:
            raise SuiteError(f"{where}: unknown key {key!r}; allowed: {', '.join(_ENTRY_KEYS)}")
        if not _type_ok(value, _ENTRY_KEYS[key]):
            raise SuiteError(f"{where}: {key} must be {_type_name(_ENTRY_KEYS[key])}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SuiteError(f"{where}: {key} must be a finite number, got {value!r}")
    measure = entry.get("measure", {})
    for key, value in measure.items():
        if key not in _MEASURE_KEYS:
            raise SuiteError(f"{where}: unknown key measure.{key}; allowed: {', '.join(_MEASURE_KEYS)}")
        want = int if _MEASURE_KEYS[key] in (int, "int") else (int, float)
        if not _type_ok(value, want) or not 0 < value < math.inf:
            raise SuiteError(f"{where}: measure.{key} must be a positive {_type_name(want)}, got {value!r}")
    _check_measure_bounds(where, measure)
    if entry.get("convergence") is not None:
        _convergence(where, entry["convergence"])
    for key, allowed in (("modes", MODES), ("device", DEVICES), ("precision", PRECISIONS),
                         ("process_start", PROCESS_STARTS), ("when", WHENS)):
        for v in entry.get(key, []) if key == "modes" else [entry.get(key)] if key in entry else []:
            if v not in allowed:
                raise SuiteError(f"{where}: {key} value {v!r} is not one of {', '.join(allowed)}")
    for b in entry.get("batch_sizes", []):
        if b <= 0:
            raise SuiteError(f"{where}: batch size {b} must be a positive integer")
    for key in ("threads", "processes", "case_timeout_s", "memory_limit_gib"):
        if key in entry and (entry[key] < 0 or (key != "threads" and entry[key] == 0)):
            raise SuiteError(f"{where}: {key}={entry[key]} is out of range")
    if entry.get("processes", 1) > MAX_PROCESSES:
        raise SuiteError(f"{where}: processes={entry['processes']} is out of range; use at most {MAX_PROCESSES}")
    fws = entry.get("frameworks")
    if isinstance(fws, str) and fws != "all":
        raise SuiteError(f"{where}: frameworks must be \"all\" or a list of adapter names, got {fws!r}")
    for fw in fws if isinstance(fws, list) else []:
        if fw not in frameworks:
            raise SuiteError(f"{where}: " + (why_broken(fw) or f"unknown framework {fw!r}; registered: "
                                             f"{', '.join(frameworks)}"))


_CONVERGENCE_KEYS = {f.name for f in dataclasses.fields(Convergence)}


def _convergence(where: str, table: dict[str, Any]) -> Convergence:
    """A suite's `convergence` table (mode "converge") as a Convergence; SuiteError naming what is wrong."""
    unknown = sorted(set(table) - _CONVERGENCE_KEYS)
    if unknown:
        raise SuiteError(f"{where}: unknown key convergence.{unknown[0]}; allowed: {', '.join(sorted(_CONVERGENCE_KEYS))}")
    if "dataset" not in table or "target" not in table:
        raise SuiteError(f"{where}: convergence needs a dataset and a target, e.g. "
                         "convergence = { dataset = \"digits\", target = 0.95 }")
    try:
        return Convergence(**table)
    except (TypeError, ValueError) as e:
        raise SuiteError(f"{where}: convergence: {e}") from None


def _check_measure_bounds(where: str, measure: dict[str, Any]) -> None:
    """Knobs that are each valid but contradict each other (with the defaults filling the gaps)."""
    m = {**dataclasses.asdict(MeasureConfig()), **measure}
    if m["contention_share"] > 1:
        raise SuiteError(f"{where}: measure.contention_share={m['contention_share']} is a share of the pinned CPUs: "
                         "use a number in (0, 1]")
    if m["max_samples"] < m["min_samples"]:
        raise SuiteError(f"{where}: measure.max_samples={m['max_samples']} is below min_samples={m['min_samples']}; "
                         "raise max_samples or lower min_samples")


def parse_suite(text: str, name: str, path: Path, frameworks: dict[str, Any]) -> Suite:
    """Parse and validate a suite document; `frameworks` is the adapter registry (name -> info)."""
    where = str(path)
    if len(text) > MAX_SUITE_CHARS:
        raise SuiteError(f"{where}: {len(text):,} characters; a suite is at most {MAX_SUITE_CHARS:,} (is this "
                         "the right file?)")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{where}: malformed TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise SuiteError(f"{where}: nested too deeply to be a suite (arrays or tables inside each other)") from None
    for key, value in doc.items():
        if key not in _TOP_KEYS:
            raise SuiteError(f"{where}: unknown key {key!r}; allowed at the top: {', '.join(_TOP_KEYS)}")
        if not isinstance(value, _TOP_KEYS[key]) or (isinstance(value, bool) and _TOP_KEYS[key] is not bool):
            raise SuiteError(f"{where}: {key} must be {_type_name(_TOP_KEYS[key])}")
    if not 0 <= doc.get("seed", 0) < 2**32:
        raise SuiteError(f"{where}: seed={doc['seed']} is out of range; use 0 <= seed < 2**32")
    defaults = doc.get("defaults", {})
    _check_entry(f"{where} [defaults]", defaults, frameworks)
    cases = doc.get("cases", [])
    if not cases:
        raise SuiteError(f"{where}: no [[cases]] entries; add at least one")
    entries = []
    for i, raw in enumerate(cases, 1):
        entry_where = f"{where} [[cases]] #{i}"
        if not isinstance(raw, dict):
            raise SuiteError(f"{entry_where}: must be a table")
        _check_entry(entry_where, raw, frameworks)
        entry = {**_ENTRY_DEFAULTS, **defaults, **raw}
        entry["measure"] = {**defaults.get("measure", {}), **raw.get("measure", {})}
        _check_measure_bounds(entry_where, entry["measure"])
        if "models" not in entry:
            raise SuiteError(f"{entry_where}: missing key 'models'")
        try:  # model and optimizer names and their parameters, checked before anything runs
            for model in entry["models"]:
                build_spec(model, **entry["params"])
            build_optimizer(entry["optimizer"], **entry["optimizer_params"])
        except SpecError as e:
            raise SuiteError(f"{entry_where}: {e}") from None
        entries.append(entry)
    return Suite(name=name, path=path, description=doc.get("description", ""), seed=doc.get("seed", 0),
                 entries=entries, roofline=doc.get("roofline", True))


def load_suite(name_or_path: str, frameworks: dict[str, Any]) -> Suite:
    path = find_suite(name_or_path)
    try:
        if path.stat().st_size > MAX_SUITE_CHARS * 4:  # refuse a huge file before reading it (UTF-8: <= 4 B/char)
            raise SuiteError(f"{path}: {path.stat().st_size:,} bytes; a suite is at most {MAX_SUITE_CHARS:,} "
                             "characters (is this the right file?)")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: cannot read: {e}") from None
    return parse_suite(text, path.stem, path, frameworks)


@dataclass(frozen=True)
class Overrides:
    """Command-line narrowing of a suite: filters (models, modes) and replacements (the rest)."""

    frameworks: list[str] | None = None
    models: list[str] | None = None
    modes: list[str] | None = None
    batch_sizes: list[int] | None = None
    device: str | None = None
    threads: int | None = None


def expand(suite: Suite, frameworks: dict[str, Any], over: Overrides = Overrides(),
           cpus: int | None = None) -> list[Case]:
    """Every case of the suite, in a seeded, shuffled order that interleaves frameworks.

    Each repetition (`processes`) is one round; every round is shuffled on its own, so drift of a
    shared machine spreads over all frameworks alike.
    """
    cpus = cpus or len(os.sched_getaffinity(0))
    base = [n for n, info in frameworks.items() if n == info.framework and not getattr(info, "reference", False)]
    rounds: dict[int, list[Case]] = {}
    seen_models: set[str] = set()
    for entry in suite.entries:
        if entry["when"] == "gpu" and not has_nvidia_gpu():
            continue  # a GPU-only entry on a host without one: left out, silently
        models = [m for m in entry["models"] if over.models is None or m in over.models]
        seen_models.update(models)
        modes = [m for m in entry["modes"] if over.modes is None or m in over.modes]
        fws = over.frameworks or (base if entry["frameworks"] == "all" else entry["frameworks"])
        threads = over.threads if over.threads is not None else entry["threads"]
        if threads == 0:
            threads = cpus
        if threads > cpus:
            raise SuiteError(f"{suite.path}: threads={threads} but this machine lets xfbench use {cpus} CPUs; "
                             f"use threads <= {cpus} (0 means all)")
        measure = MeasureConfig(**entry["measure"])
        batch_sizes = over.batch_sizes or entry["batch_sizes"]
        planned = sum(len(r) for r in rounds.values())
        if planned + entry["processes"] * len(fws) * len(models) * len(modes) * len(batch_sizes) > MAX_CASES:
            raise SuiteError(f"{suite.path}: the suite expands to more than {MAX_CASES:,} cases; "
                             "lower processes or the lists of models, frameworks and batch sizes")
        for model in models:
            spec = build_spec(model, **entry["params"])
            for mode in modes:
                for b in batch_sizes:
                    why = too_big(spec, b, mode, entry["precision"])
                    if why:
                        raise SuiteError(f"{suite.path}: {why}")
        device = over.device or entry["device"]
        if "converge" in modes and entry["convergence"] is None:
            raise SuiteError(f"{suite.path}: mode converge needs a convergence table, e.g. "
                             "convergence = { dataset = \"digits\", target = 0.95 }")
        convergence = _convergence(str(suite.path), entry["convergence"]) if entry["convergence"] else None
        for p in range(entry["processes"]):
            for fw in fws:
                for model in models:
                    for mode in modes:
                        for b in batch_sizes:
                            rounds.setdefault(p, []).append(Case(
                                framework=fw, model=model, mode=mode, batch_size=b,
                                device=device, precision=entry["precision"],
                                threads=threads, model_params=dict(entry["params"]),
                                optimizer=entry["optimizer"], optimizer_params=dict(entry["optimizer_params"]),
                                measure=measure, seed=suite.seed, process=p,
                                case_timeout_s=float(entry["case_timeout_s"]),
                                memory_limit_gib=None if entry["memory_limit_gib"] is None
                                else float(entry["memory_limit_gib"]),
                                # CUDA must not be used in a forked process: a GPU case always starts fresh
                                process_start=entry["process_start"] if device == "cpu" else "exec",
                                convergence=convergence if mode == "converge" else None))
    for m in over.models or []:
        if m not in seen_models:
            raise SuiteError(f"suite {suite.name!r} has no case for model {m!r}")
    cases = []
    for p in sorted(rounds):
        round_ = list({c.case_id: c for c in rounds[p]}.values())  # drop exact duplicates
        random.Random(f"{suite.seed}:{p}").shuffle(round_)
        cases.extend(round_)
    return cases
