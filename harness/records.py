"""Case records and run metadata (docs/spec.md section 7): typed, validated on the way in, versioned.

Every record and run.json is built here and read through attributes everywhere else. `from_json`
migrates an older schema first (one function per version step, `MIGRATIONS`) and then checks every
field's type, so a reader never meets a half-valid record.

Schema history (docs/spec.md 7.4):
  1. the first format: no `config_id`; ids hashed every field of the case, defaults included.
  2. `config_id` in every record; run.json plan entries are {"case_id", "case"}; ids leave out fields
     that hold their default, so a new optional field of `Case` re-keys nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from .case import Case
from .errors import XfbenchError

SCHEMA_VERSION = 2
STATUSES = ("ok", "skipped", "failed", "timeout")


class ResultsError(XfbenchError, ValueError):
    """A results directory or record that cannot be read as this version's schema."""


class NewerSchemaError(ResultsError):
    """Written by a newer xfbench: not damage, so a reader stops instead of skipping it."""


# ---- field checks: (predicate, what it should be) ----

def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(x) for x in v)


def _numdict(v: Any) -> bool:
    return isinstance(v, dict) and all(_num(x) for x in v.values())


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num": (_num, "a finite number"), "int": (_int, "an integer"), "str": (lambda v: isinstance(v, str), "a string"),
    "pair": (_pair, "a pair of finite numbers"), "numdict": (_numdict, "an object of finite numbers"),
}


def _check(where: str, value: Any, kind: str, optional: bool = True) -> None:
    ok, what = _CHECKS[kind]
    if (value is None and optional) or ok(value):
        return
    raise ResultsError(f"{where} must be {what}, got {value!r:.60}")


@dataclass(frozen=True)
class Metrics:
    """What the worker measured (docs/spec.md 5.7); every field optional, ok records have the core ones."""

    samples_per_s: float | None = None
    samples_per_s_ci: tuple[float, float] | None = None  # 95% CI of the median, samples/s
    tokens_per_s: float | None = None
    tokens_per_s_ci: tuple[float, float] | None = None
    step_s: dict[str, float] | None = None  # n, median, mean, std, min, max, iqr, ci_low, ci_high, cv
    first_step_s: float | None = None
    setup_s: float | None = None
    import_s: float | None = None
    warmup_steps: int | None = None
    steps_per_sample: int | None = None
    stop_reason: str | None = None
    measure_s: float | None = None
    flops_per_sample: int | None = None
    achieved_flops_per_s: float | None = None
    cpu_utilisation: float | None = None  # CPU time / wall time of the timed samples
    parameters: int | None = None
    peak_host_rss_bytes: int | None = None  # over the whole worker
    peak_device_memory_bytes: int | None = None
    # Set-up (import to the end of warm-up) and steady-state step (the timed samples) peaks, apart.
    setup_peak_host_rss_bytes: int | None = None
    step_peak_host_rss_bytes: int | None = None
    setup_peak_device_memory_bytes: int | None = None
    step_peak_device_memory_bytes: int | None = None
    contended_samples: int | None = None  # samples left out because other processes used the pinned CPUs
    contended_share_max: float | None = None
    contended_share_kept: float | None = None  # others' share over the kept samples together (CPU)
    # GPU, from NVML over the timed samples: the share of time a kernel ran (0..1; mean, least and most of the
    # driver's utilisation samples, and how many), and the worker's GPU memory as the driver counts it.
    gpu_utilisation: float | None = None
    gpu_utilisation_min: float | None = None
    gpu_utilisation_max: float | None = None
    gpu_utilisation_samples: int | None = None
    nvml_used_memory_bytes: int | None = None  # context, allocator cache and libraries included
    extra: dict[str, Any] = field(default_factory=dict)  # metrics this version does not know, kept as written

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items() if v is not None}
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: Any) -> "Metrics":
        if not isinstance(d, dict):
            raise ResultsError(f"record field 'metrics' must be an object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        for name, kind in _METRIC_KINDS.items():
            _check(f"metric {name!r}", d.get(name), kind)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**values, extra={k: v for k, v in d.items() if k not in known})


_METRIC_KINDS = {
    "samples_per_s": "num", "samples_per_s_ci": "pair", "tokens_per_s": "num", "tokens_per_s_ci": "pair",
    "step_s": "numdict", "first_step_s": "num", "setup_s": "num", "import_s": "num", "warmup_steps": "int",
    "steps_per_sample": "int", "stop_reason": "str", "measure_s": "num", "flops_per_sample": "int",
    "achieved_flops_per_s": "num", "cpu_utilisation": "num", "parameters": "int",
    "peak_host_rss_bytes": "int", "peak_device_memory_bytes": "int", "setup_peak_host_rss_bytes": "int",
    "step_peak_host_rss_bytes": "int", "setup_peak_device_memory_bytes": "int", "step_peak_device_memory_bytes": "int",
    "contended_samples": "int", "contended_share_max": "num", "contended_share_kept": "num",
    "gpu_utilisation": "num", "gpu_utilisation_min": "num", "gpu_utilisation_max": "num",
    "gpu_utilisation_samples": "int", "nvml_used_memory_bytes": "int",
}
_OK_METRICS = ("samples_per_s", "samples_per_s_ci", "step_s", "first_step_s", "setup_s", "parameters")


@dataclass(frozen=True)
class Record:
    """One case's outcome: its config, status, metrics, raw per-step sample times and fairness manifest."""

    case: Case
    status: str
    reason: str | None
    started: float
    finished: float
    metrics: Metrics = field(default_factory=Metrics)
    samples_s: tuple[float, ...] = ()  # seconds per step, one per sample
    warnings: tuple[str, ...] = ()
    manifest: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str | None = None  # failed and timeout records: the worker's last output
    validated: dict[str, Any] | None = None  # the `bench validate` outcome: status, against, failed_check
    # The machine that measured it (host_info() plus, on a Ray cluster, the node): None in records written
    # before records carried it, and then run.json's `host` is the machine.
    host: dict[str, Any] | None = None
    # A run to accuracy (mode "converge"): xfbench.harness.measure.convergence.Convergence.to_json()
    convergence: dict[str, Any] | None = None
    case_id: str = ""  # "<config_id>-p<process>"; filled from `case` when empty
    config_id: str = ""
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.case_id:
            object.__setattr__(self, "case_id", self.case.case_id)
            object.__setattr__(self, "config_id", self.case.config_id)

    @classmethod
    def of(cls, case: Case, status: str, reason: str | None, started: float, finished: float,
           **extra: Any) -> "Record":
        """A record of `case` (the worker's, or the parent's for a case that produced none)."""
        return cls(case=case, status=status, reason=reason, started=started, finished=finished, **extra)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def replace(self, **changes: Any) -> "Record":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = {"schema": self.schema, "case_id": self.case_id, "config_id": self.config_id,
               "case": self.case.to_dict(), "status": self.status, "reason": self.reason,
               "metrics": self.metrics.to_json(), "samples_s": list(self.samples_s),
               "warnings": list(self.warnings), "manifest": self.manifest,
               "started": self.started, "finished": self.finished}
        if self.stderr_tail is not None:
            out["stderr_tail"] = self.stderr_tail
        if self.validated is not None:
            out["validated"] = self.validated
        if self.host is not None:
            out["host"] = self.host
        if self.convergence is not None:
            out["convergence"] = self.convergence
        return out

    @classmethod
    def from_json(cls, d: Any) -> "Record":
        """A record from its JSON object, migrated to this schema and fully checked; ResultsError if bad."""
        d = migrate_record(d)
        for key in ("case_id", "config_id", "status"):
            _check(f"record field {key!r}", d.get(key), "str", optional=False)
        for key in ("started", "finished"):
            _check(f"record field {key!r}", d.get(key), "num", optional=False)
        if d["status"] not in STATUSES:
            raise ResultsError(f"record status {d['status']!r} is not one of {', '.join(STATUSES)}")
        _check("record field 'reason'", d.get("reason"), "str")
        for key, typ in (("samples_s", list), ("warnings", list), ("manifest", dict)):
            if not isinstance(d.get(key), typ):
                raise ResultsError(f"record field {key!r} must be a {typ.__name__}, got {type(d.get(key)).__name__}")
        if not all(isinstance(w, str) for w in d["warnings"]):
            raise ResultsError("record field 'warnings' must hold strings")
        if "versions" in d["manifest"] and not isinstance(d["manifest"]["versions"], dict):
            raise ResultsError("record field 'manifest': 'versions' must be an object of library versions")
        if "adapter_package" in d["manifest"] and not isinstance(d["manifest"]["adapter_package"], dict):
            raise ResultsError("record field 'manifest': 'adapter_package' must be an object (package, version)")
        if not all(_num(v) and v > 0 for v in d["samples_s"]):
            raise ResultsError("sample times must be positive finite numbers")
        case = parse_case(d.get("case"))
        if d["case_id"] != f"{d['config_id']}-p{case.process}":
            raise ResultsError(f"record case_id {d['case_id']!r} does not match its config_id and process")
        metrics = Metrics.from_json(d.get("metrics"))
        if d["status"] == "ok":
            missing = [k for k in _OK_METRICS if getattr(metrics, k) is None]
            if missing or not d["samples_s"]:
                raise ResultsError(f"an ok record lacks {', '.join(missing) or 'samples'}")
        elif not d.get("reason"):
            raise ResultsError(f"a {d['status']} record must say why")
        _check("record field 'stderr_tail'", d.get("stderr_tail"), "str")
        if d.get("validated") is not None and not isinstance(d["validated"], dict):
            raise ResultsError("record field 'validated' must be an object")
        if d.get("host") is not None and not isinstance(d["host"], dict):
            raise ResultsError("record field 'host' must be an object")
        conv = d.get("convergence")
        if conv is not None and not (isinstance(conv, dict) and isinstance(conv.get("curve"), list)
                                     and all(isinstance(p, dict) for p in conv["curve"])):
            raise ResultsError("record field 'convergence' must be an object with a 'curve' list of points")
        return cls(case=case, status=d["status"], reason=d.get("reason"), started=d["started"],
                   finished=d["finished"], metrics=metrics, samples_s=tuple(float(v) for v in d["samples_s"]),
                   warnings=tuple(d["warnings"]), manifest=d["manifest"], stderr_tail=d.get("stderr_tail"),
                   validated=d.get("validated"), host=d.get("host"), convergence=conv, case_id=d["case_id"],
                   config_id=d["config_id"])


def parse_case(d: Any, where: str = "record field 'case'") -> Case:
    """A `Case` from its JSON object; ResultsError naming what is wrong."""
    if not isinstance(d, dict):
        raise ResultsError(f"{where} must be an object, got {type(d).__name__}")
    try:
        case = Case.from_dict(d)
    except (TypeError, ValueError, AttributeError) as e:
        raise ResultsError(f"{where} is not a case ({e})") from None
    for key in ("framework", "model", "mode", "device", "precision", "optimizer"):
        _check(f"{where}: {key!r}", getattr(case, key), "str", optional=False)
    for key in ("batch_size", "threads", "seed", "process"):
        _check(f"{where}: {key!r}", getattr(case, key), "int", optional=False)
    if case.batch_size < 1 or case.threads < 0 or case.process < 0:
        raise ResultsError(f"{where}: batch_size must be >= 1, threads and process >= 0")
    if not isinstance(case.model_params, dict) or not isinstance(case.optimizer_params, dict):
        raise ResultsError(f"{where}: 'model_params' and 'optimizer_params' must be objects")
    return case


@dataclass(frozen=True)
class PlannedCase:
    """One entry of run.json's plan: the case and the id its record will carry."""

    case_id: str
    case: Case

    def to_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "case": self.case.to_dict()}


@dataclass(frozen=True)
class RunMeta:
    """run.json: what was run, where, when, and the plan that `--resume` continues."""

    suite: str
    started: float | None
    finished: float | None = None
    interrupted: bool = False
    suite_path: str = ""
    description: str = ""
    command: tuple[str, ...] = ()
    planned_cases: int = 0
    plan: tuple[PlannedCase, ...] | None = None  # None: written without a plan (cannot be resumed)
    host: dict[str, Any] = field(default_factory=dict)  # xfbench.harness.measure.host.host_info()
    resumed: tuple[dict[str, Any], ...] = ()  # {"started", "command"} per `--resume`
    roofline: bool = True  # the suite's `roofline`: measure the frameworks' peaks after the cases (peak.json)
    # Where the cases ran: None on this machine; {"kind": "ray", "address": ...} on a Ray cluster (--executor).
    executor: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION

    def replace(self, **changes: Any) -> "RunMeta":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = {"schema": self.schema, "suite": self.suite, "suite_path": self.suite_path,
               "description": self.description, "command": list(self.command), "started": self.started,
               "finished": self.finished, "interrupted": self.interrupted, "planned_cases": self.planned_cases,
               "host": self.host}
        if self.plan is not None:
            out["plan"] = [p.to_json() for p in self.plan]
        if self.resumed:
            out["resumed"] = list(self.resumed)
        if not self.roofline:
            out["roofline"] = False
        if self.executor is not None:
            out["executor"] = self.executor
        return out

    @classmethod
    def from_json(cls, d: Any, where: str = "run.json") -> "RunMeta":
        """run.json's object, migrated and checked; ResultsError (naming `where`) if it is not one."""
        if not isinstance(d, dict) or not _int(d.get("schema", 0)):
            raise ResultsError(f"{where} is not a run.json that xfbench wrote (no integer schema)")
        d = _migrate(d, where, RUN_MIGRATIONS)
        for key in ("started", "finished"):
            _check(f"{where}: {key!r}", d.get(key), "num")
        if not isinstance(d.get("host", {}), dict):
            raise ResultsError(f"{where}: 'host' must be an object")
        command = d.get("command", [])
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise ResultsError(f"{where}: 'command' must be a list of strings")
        plan = None
        if d.get("plan") is not None:
            if not isinstance(d["plan"], list):
                raise ResultsError(f"{where}: 'plan' must be a list")
            plan = tuple(_planned(p, i, where) for i, p in enumerate(d["plan"], 1))
        resumed = d.get("resumed", [])
        executor = d.get("executor")
        if executor is not None and not (isinstance(executor, dict) and isinstance(executor.get("kind"), str)):
            raise ResultsError(f"{where}: 'executor' must be an object with a 'kind'")
        return cls(suite=str(d.get("suite", "?")), started=d.get("started"), finished=d.get("finished"),
                   interrupted=bool(d.get("interrupted", False)), suite_path=str(d.get("suite_path", "")),
                   description=str(d.get("description", "")), command=tuple(command),
                   planned_cases=d.get("planned_cases", 0) if _int(d.get("planned_cases", 0)) else 0,
                   plan=plan, host=d.get("host", {}),
                   resumed=tuple(r for r in resumed if isinstance(r, dict)) if isinstance(resumed, list) else (),
                   roofline=d.get("roofline", True) is not False, executor=executor)


def _planned(p: Any, i: int, where: str) -> PlannedCase:
    if not isinstance(p, dict) or not isinstance(p.get("case_id"), str):
        raise ResultsError(f"{where}: planned case #{i} is not a case")
    return PlannedCase(p["case_id"], parse_case(p.get("case"), f"{where}: planned case #{i}"))


# ---- migrations: one function per schema step, oldest first ----

def v1_config_id(case: dict[str, Any]) -> str:
    """The schema-1 configuration id: SHA-1 over every field of the case but `process`, defaults included."""
    d = {k: v for k, v in case.items() if k != "process"}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _record_1_to_2(d: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 ids (defaults left out of the hash), and `config_id` stored."""
    case = parse_case(d.get("case"))
    return {**d, "schema": 2, "case_id": case.case_id, "config_id": case.config_id}


def _run_1_to_2(d: dict[str, Any]) -> dict[str, Any]:
    plan = d.get("plan")
    if isinstance(plan, list):
        plan = [{"case_id": parse_case(p, f"planned case #{i}").case_id, "case": p} for i, p in enumerate(plan, 1)]
    return {**d, "schema": 2, **({"plan": plan} if plan is not None else {})}


RECORD_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _record_1_to_2}
RUN_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _run_1_to_2}


def _migrate(d: dict[str, Any], what: str, steps: dict[int, Callable]) -> dict[str, Any]:
    version = d.get("schema")
    if not _int(version) or version < 1:
        raise ResultsError(f"{what} has no schema version")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(f"{what} was written by a newer xfbench (schema {version}, this one reads up to "
                           f"{SCHEMA_VERSION}); upgrade xfbench to read it")
    while d["schema"] < SCHEMA_VERSION:
        d = steps[d["schema"]](d)
    return d


def migrate_record(d: Any) -> dict[str, Any]:
    """A record's JSON object brought up to SCHEMA_VERSION (not yet type-checked)."""
    if not isinstance(d, dict):
        raise ResultsError(f"a record must be a JSON object, got {type(d).__name__}")
    return _migrate(d, "record", RECORD_MIGRATIONS)
