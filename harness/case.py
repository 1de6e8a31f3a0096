"""A case: one fully specified measurement (docs/spec.md section 5)."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any

# "converge": train on real data to a target test accuracy, timed end to end (docs/spec.md section 5.12).
MODES = ("train", "infer", "converge")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp64", "tf32", "bf16")
# How a case's worker process starts (docs/spec.md section 5.2): "exec", a fresh interpreter that imports the
# framework itself; "fork", forked from a server that imported the framework once for this round of processes.
PROCESS_STARTS = ("exec", "fork")


@dataclass(frozen=True)
class MeasureConfig:
    """Knobs of the measurement protocol; defaults are docs/spec.md section 5's."""

    warmup_steps: int = 3
    warmup_s: float = 1.0
    min_sample_s: float = 0.1
    min_samples: int = 10
    max_samples: int = 1000
    target_ci: float = 0.02  # stop when the 95% CI half-width of the median is <= this share of it
    max_time_s: float = 30.0
    # A CPU sample during which other processes used more than this share of the pinned CPUs is contended:
    # left out of the statistics and measured again (docs/spec.md section 5.4).
    contention_share: float = 0.10


@dataclass(frozen=True)
class Convergence:
    """A run to accuracy (mode "converge"): on what data, to what target, how often evaluated, how long at most."""

    dataset: str  # a name xfbench.harness.data.load_dataset takes: "digits", "mnist:DIR", "copy-memory"
    target: float  # test accuracy that ends the run (for copy-memory: on the answer positions)
    eval_every: int = 50  # training steps between evaluations of the test set (never timed)
    max_steps: int = 2000  # the step budget: a run that has not reached the target by then has no time to it
    workers: int = 0  # the input pipeline's worker count, the same for every framework
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. copy-memory's copy_len, symbols

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ValueError(f"convergence target must be a test accuracy in (0, 1], got {self.target!r}")
        if self.eval_every < 1 or self.max_steps < 1 or self.workers < 0:
            raise ValueError("convergence eval_every and max_steps must be >= 1 and workers >= 0")


@dataclass(frozen=True)
class Case:
    framework: str  # adapter name, e.g. "torch" or "torch-compile"
    model: str
    mode: str
    batch_size: int
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    model_params: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    seed: int = 0
    process: int = 0  # which repetition (worker process) of the same configuration
    case_timeout_s: float = 600.0
    # The worker's processes together may hold this much resident memory; None: a safe share of what is
    # available when the case starts (xfbench.harness.measure.runner.memory_limit_bytes).
    memory_limit_gib: float | None = None
    process_start: str = "exec"  # one of PROCESS_STARTS; a CUDA case always starts with "exec"
    convergence: Convergence | None = None  # mode "converge" only

    def __post_init__(self) -> None:
        if (self.mode == "converge") != (self.convergence is not None):
            raise ValueError('mode "converge" needs a convergence table (dataset, target), and only it takes one')
        if self.process_start not in PROCESS_STARTS:
            raise ValueError(f"process_start must be one of {', '.join(PROCESS_STARTS)}, got {self.process_start!r}")
        limit = self.memory_limit_gib
        if limit is not None and (type(limit) not in (int, float) or not 0 < limit < math.inf):
            raise ValueError(f"memory_limit_gib must be a positive number of GiB, got {limit!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Case":
        d = dict(d)
        d["measure"] = MeasureConfig(**d.get("measure", {}))
        if d.get("convergence") is not None:
            d["convergence"] = Convergence(**d["convergence"])
        return cls(**d)

    @property
    def config_id(self) -> str:
        """Identifies the configuration, the same for every repetition (process) of it.

        A hash of the fields that differ from their defaults (nested ones too), `process` and
        `process_start` left out (how the process starts is not what is measured: a forked and an exec'd
        run of a case compare as the same case): a new optional field re-keys no existing case, so
        `--resume` of an older run still matches.
        """
        d = _non_default(self)
        d.pop("process", None)
        d.pop("process_start", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def case_id(self) -> str:
        return f"{self.config_id}-p{self.process}"

    def label(self) -> str:
        opt = f" {self.optimizer}" if self.mode != "infer" else ""
        if self.convergence is not None:
            opt += f" {self.convergence.dataset} to {self.convergence.target:g}"
        extra = "".join(f" {k}={v}" for k, v in self.model_params.items())
        return (f"{self.framework} {self.model}{extra} {self.mode}{opt} b={self.batch_size} "
                f"{self.device} {self.precision} t={self.threads}")


def _non_default(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, leaving out every field (recursively) that holds its default."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if default is not MISSING and value == default:
            continue
        out[f.name] = _non_default(value) if is_dataclass(value) else value
    return out
