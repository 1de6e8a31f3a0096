"""Run directories (docs/spec.md section 7): cases.jsonl appended one finished case at a time, run.json, loaders."""
from __future__ import annotations

import json
import os
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .case import Case
from .records import SCHEMA_VERSION, NewerSchemaError, Record, ResultsError, RunMeta

__all__ = ["CASES_FILE", "RUN_FILE", "SCHEMA_VERSION", "Record", "ResultsError", "RunDir", "RunMeta",
           "flatten_record", "load_frame", "write_json_atomic"]

CASES_FILE, RUN_FILE, LOCK_FILE = "cases.jsonl", "run.json", ".lock"
TORN_FILE = "cases.jsonl.torn"  # torn tails cut off by `RunDir.repair`, kept for inspection


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """`write(tmp)` a temporary file beside `path`, then rename it over `path`.

    Readers never see half a file; a full disk leaves the old file whole; and a `path` that is a
    symbolic link is replaced, never written through (the file it pointed to is left alone).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, allow_nan=True)))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


@dataclass
class RunDir:
    """A run directory: `append` one record at a time, `records` to read them back."""

    path: Path
    torn_lines: list[int] = field(default_factory=list)  # not JSON: a write cut short
    invalid_lines: dict[int, str] = field(default_factory=dict)  # JSON, but no valid record: why
    duplicates: list[int] = field(default_factory=list)  # a second record of a case: ignored
    superseded: list[int] = field(default_factory=list)  # a failed record that a later retry replaced
    _lock_fd: int | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        """An existing run directory, its run.json readable by this schema; ResultsError otherwise."""
        run = cls(Path(path))
        if not run.path.is_dir():
            raise ResultsError(f"{run.path} is not a directory; give a run directory such as results/<run-id>")
        run.meta()
        return run

    @classmethod
    def create(cls, root: Path, suite: str) -> "RunDir":
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = root / (f"{stamp}-{suite}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise ResultsError(f"cannot create a run directory under {root}")

    def append(self, rec: Record) -> None:
        """Append one record as one line with a single write (O_APPEND), then fsync."""
        line = (json.dumps(rec.to_json(), allow_nan=False) + "\n").encode()
        fd = os.open(self.path / CASES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[Record]:
        """One record per case, in file order; what is skipped is noted (`reading_notes` says it).

        A torn line (not JSON) or an invalid record is skipped. A case recorded twice keeps its first
        record, unless that one failed or timed out and a later one (a `--retry-failed`) replaces it.
        """
        path = self.path / CASES_FILE
        self.torn_lines, self.invalid_lines, self.duplicates, self.superseded = [], {}, [], []
        if not path.exists():
            return []
        kept: dict[str, tuple[int, Record]] = {}
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    data = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    self.torn_lines.append(n)
                    continue
                try:
                    rec = Record.from_json(data)
                except NewerSchemaError:
                    raise
                except ValueError as e:
                    self.invalid_lines[n] = str(e)
                    continue
                first = kept.get(rec.case_id)
                if first is None:
                    kept[rec.case_id] = (n, rec)
                elif first[1].status in ("failed", "timeout"):
                    self.superseded.append(first[0])
                    kept[rec.case_id] = (n, rec)
                else:
                    self.duplicates.append(n)
        return [rec for _, rec in sorted(kept.values(), key=lambda x: x[0])]

    def reading_notes(self) -> list[str]:
        """What the last `records()` skipped, one sentence each, for reports and commands."""
        notes = []
        if self.torn_lines:
            notes.append(f"Ignored unreadable line(s) {self.torn_lines} of {CASES_FILE} (a torn write).")
        for n, why in sorted(self.invalid_lines.items()):
            notes.append(f"Ignored line {n} of {CASES_FILE}: not a valid record ({why}).")
        if self.duplicates:
            notes.append(f"Ignored line(s) {self.duplicates} of {CASES_FILE}: a second record of a case "
                         "already recorded (the first is kept).")
        if self.superseded:
            notes.append(f"Line(s) {self.superseded} of {CASES_FILE}: failed records replaced by a later retry.")
        return notes

    def lock(self) -> bool:
        """Hold an exclusive lock on this run until the process ends (or `unlock`): one writer at a time.

        The kernel drops the lock when the holder dies, even by SIGKILL, so a stale lock cannot exist.
        Returns False if this object already held it.
        """
        if self._lock_fd is not None:
            return False
        import fcntl

        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ResultsError(f"{self.path} is being written by another bench process (pid {holder}); "
                               "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def repair(self) -> str | None:
        """Cut a torn last line off cases.jsonl so that appends start on a line of their own.

        The cut bytes are appended to cases.jsonl.torn, never thrown away. Returns what was done, or None.
        """
        path = self.path / CASES_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if not data or data.endswith(b"\n"):
            return None
        cut = data.rfind(b"\n") + 1
        tail, line = data[cut:], data.count(b"\n") + 1
        try:
            Record.from_json(json.loads(tail))
        except (ValueError, UnicodeDecodeError):
            with open(self.path / TORN_FILE, "ab") as f:
                f.write(tail + b"\n")
                f.flush()
                os.fsync(f.fileno())
            with open(path, "r+b") as f:
                f.truncate(cut)
                os.fsync(f.fileno())
            return (f"{CASES_FILE} ended in a torn line {line} ({len(tail)} bytes, a write cut short); "
                    f"cut it off and kept it in {TORN_FILE}; that case runs again")
        with open(path, "ab") as f:  # a whole record that only lacks its newline: keep it
            f.write(b"\n")
            os.fsync(f.fileno())
        return f"{CASES_FILE} line {line} lacked its final newline; added it"

    def write_meta(self, meta: RunMeta) -> None:
        write_json_atomic(self.path / RUN_FILE, meta.to_json())

    def meta(self) -> RunMeta:
        path = self.path / RUN_FILE
        if not path.exists():
            raise ResultsError(f"{self.path} has no {RUN_FILE}: not an xfbench run directory")
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            raise ResultsError(f"{path} cannot be read ({e}); it is not a run.json that xfbench wrote") from None
        return RunMeta.from_json(data, where=str(path))


def flatten_record(rec: Record) -> dict[str, Any]:
    """One row per record: the case's config, status, and the headline metrics."""
    case, m = rec.case, rec.metrics
    step = m.step_s or {}
    lo, hi = m.samples_per_s_ci or (None, None)
    return {
        "case_id": rec.case_id, "config": rec.config_id,
        "framework": case.framework, "model": case.model, "mode": case.mode,
        "batch_size": case.batch_size, "device": case.device, "precision": case.precision,
        "threads": case.threads, "optimizer": case.optimizer if case.mode == "train" else None,
        "model_params": json.dumps(case.model_params, sort_keys=True),
        "process": case.process, "status": rec.status, "reason": rec.reason,
        "samples_per_s": m.samples_per_s, "samples_per_s_ci_low": lo, "samples_per_s_ci_high": hi,
        "tokens_per_s": m.tokens_per_s,
        "step_s_median": step.get("median"), "step_s_mean": step.get("mean"), "step_s_std": step.get("std"),
        "step_s_min": step.get("min"), "step_s_max": step.get("max"), "step_s_iqr": step.get("iqr"),
        "step_s_cv": step.get("cv"), "samples": step.get("n"),
        "first_step_s": m.first_step_s, "setup_s": m.setup_s,
        "peak_host_rss_bytes": m.peak_host_rss_bytes,
        "peak_device_memory_bytes": m.peak_device_memory_bytes,
        "parameters": m.parameters, "achieved_flops_per_s": m.achieved_flops_per_s,
        "cpu_utilisation": m.cpu_utilisation,
        "gpu_utilisation": m.gpu_utilisation, "gpu_utilisation_min": m.gpu_utilisation_min,
        "gpu_utilisation_max": m.gpu_utilisation_max, "gpu_utilisation_samples": m.gpu_utilisation_samples,
        "nvml_used_memory_bytes": m.nvml_used_memory_bytes, "warnings": "; ".join(rec.warnings),
    }


def load_frame(run: str | os.PathLike):
    """The run's records as a pandas DataFrame, one row per case record."""
    import pandas as pd

    rows = [flatten_record(r) for r in RunDir(Path(run)).records()]
    return pd.DataFrame(rows, columns=list(flatten_record(_EMPTY).keys()))


_EMPTY = Record.of(Case(framework="", model="", mode="", batch_size=0), "skipped", "", 0.0, 0.0)
