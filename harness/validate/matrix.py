"""`bench validate`: every framework against every other and the NumPy reference (docs/spec.md section 6).

The parent writes a seeded canonical weight set and inputs per model, runs one worker process per
adapter (`xfbench.harness.validate.worker`; this module never imports a framework) and compares the `.npz` files
the workers leave behind, with the metrics and tolerances of `xfbench.harness.equivalence`.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ..adapter import AdapterInfo
from ..equivalence import CURVE_TOL, FORWARD_TOL, FP64_TOL, TF32_FORWARD_TOL, metric, pair_error, pair_norm_error
from ..errors import XfbenchError
from ..measure.process import module_command, run_isolated, tail
from ..models import MODELS, TINY_SIZES, build_spec
from ..optimizers import OPTIMIZERS
from ..weights import init_weights, load_npz, make_inputs, save_npz

CURVE_STEPS = 20
CURVE_BATCHES = 4  # the curve's steps cycle through this many fixed batches
FORWARD_CHECKS = ("logits", "loss")  # float32, every adapter against every other
# `--device cuda` only: the float32 forward under TF32, of each adapter that offers it, against the reference's
# float32 forward (the reference runs on the CPU); docs/spec.md section 6.2
TF32_CHECKS = ("tf32.logits", "tf32.loss")


class ValidateError(XfbenchError, ValueError):
    """An input to `bench validate` that cannot be honoured (unknown model, framework or optimizer)."""


@dataclass(frozen=True)
class Check:
    model: str
    framework: str
    check: str  # "logits", "loss", "tf32.logits", "tf32.loss", "grad", "step.<optimizer>", "curve.<optimizer>", "run"
    error: float | None  # largest error against any other framework; None: the worker failed
    tolerance: float
    against: tuple[str, ...] = ()
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.error is not None and self.error <= self.tolerance


FORWARD_ONLY = "forward only"  # a validated entry's `scope` when no training check had a partner


@dataclass
class Validation:
    checks: list[Check] = field(default_factory=list)
    curves: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)  # (model, opt, fw) -> losses
    frameworks: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # adapter -> why it did not run
    references: list[str] = field(default_factory=list)  # the reference adapters that ran (`numpy`)
    # adapter -> why it does not train (its worker's Unsupported): only its forward was compared, by its nature
    inference_only: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def outcome(self, framework: str, model: str) -> dict[str, Any]:
        """The `validated` entry of (framework, model): status, against, and the first failing check.

        `passed` needs the forward to agree with a reference adapter in this run: two adapters that only
        agree with each other may share a mistake, so they are `unverified`. The reference does not train, so
        an adapter's gradients, optimizer steps and curves are compared only with another training adapter:
        without one, the entry's `scope` is "forward only", and the report says so.
        """
        mine = [c for c in self.checks if c.framework == framework and c.model == model]
        bad = [c for c in mine if not c.passed]
        against = sorted({g for c in mine for g in c.against})
        refs = [g for g in against if g in self.references]
        forward = [c for c in mine if c.check in ("logits", "loss")]
        verified = bool(forward) and all(set(c.against) & set(self.references) for c in forward)
        out: dict[str, Any] = {"status": "failed" if bad else "passed" if verified else "unverified",
                               "against": ", ".join(refs or against)}
        if bad:
            out["failed_check"] = describe_failure(bad[0])
        if mine and all(c.check in FORWARD_CHECKS + TF32_CHECKS for c in mine):
            out["scope"] = FORWARD_ONLY
        return out


    def forward_only(self) -> list[str]:
        """The non-reference adapters of which only the forward was compared, for want of a training partner."""
        return [fw for fw in self.frameworks if fw not in self.references and fw not in self.inference_only
                and any(self.outcome(fw, m).get("scope") == FORWARD_ONLY for m in {c.model for c in self.checks})]


def describe_failure(c: Check) -> str:
    if c.error is None:
        return f"{c.check}: {c.reason}"
    return f"{c.check}: {metric(c.check)} {c.error:.2e} > {c.tolerance:.0e} (vs {', '.join(c.against)})"


def default_frameworks(registry: dict[str, AdapterInfo]) -> list[str]:
    """Installed base frameworks (no variants), plus the reference adapter(s)."""
    return [n for n, i in registry.items() if n == i.framework and not i.missing()]


def with_reference(frameworks: list[str], registry: dict[str, AdapterInfo]) -> list[str]:
    """`frameworks` plus the reference adapter(s) not named: only agreement with a reference certifies."""
    return [*frameworks, *(n for n, i in registry.items() if i.reference and n not in frameworks)]


def prepare(folder: Path, model: str, params: dict[str, Any], *, batch_size: int, seed: int,
            curve_steps: int) -> dict[str, Any]:
    """Write the canonical `weights.npz` and `inputs.npz` of one model.

    inputs.npz: `x`, `y` (the batch of every check) and `curve.x`, `curve.y` (CURVE_BATCHES fixed batches,
    stacked on a leading axis; curve step i trains on batch i % CURVE_BATCHES).
    """
    spec = build_spec(model, **params)
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / "weights.npz", init_weights(spec, seed))
    x, y = make_inputs(spec, batch_size, seed + 1)
    inputs = {"x": x, "y": y}
    if curve_steps:
        fixed = [make_inputs(spec, batch_size, seed + 100 + i) for i in range(CURVE_BATCHES)]
        inputs["curve.x"], inputs["curve.y"] = np.stack([b[0] for b in fixed]), np.stack([b[1] for b in fixed])
    save_npz(folder / "inputs.npz", inputs)
    return {"dir": str(folder.absolute()), "params": params}  # the worker runs in another directory


def run_worker(info: AdapterInfo, job: dict[str, Any], workdir: Path, timeout_s: float) -> str | None:
    """Run the validation worker of one adapter; None, or why it produced nothing."""
    from dataclasses import asdict

    adapter = info.name
    path = workdir.absolute() / f"job-{adapter}.json"  # the worker runs in another directory
    path.write_text(json.dumps({**job, "adapter": adapter, "info": asdict(info)}))
    log = workdir / f"{adapter}.log"
    code = run_isolated(module_command("xfbench.harness.validate.worker", path, python=info.python), log, timeout_s)
    if code is None:
        return f"worker passed {timeout_s:g} s"
    if code:
        last = (tail(log).strip().splitlines() or [""])[-1]
        return f"worker exited with code {code}: {last[:200]}"
    return None


def _inference_only(folder: Path, fw: str) -> bool:
    """Whether the adapter's worker said it does not train (validate.worker.compute)."""
    status = folder / f"{fw}.json"
    return status.exists() and bool(json.loads(status.read_text()).get("inference_only"))


def compare(model: str, folder: Path, frameworks: list[str], optimizers: list[str],
            registry: dict[str, AdapterInfo], worker_errors: dict[str, str],
            reference_only: bool = False) -> tuple[list[Check], dict]:
    """Every check of every framework of one model from the files in `folder`.

    `reference_only`: compare each framework with the reference adapter(s) only, not with each other.
    """
    with contextlib.ExitStack() as files:
        return _compare(model, folder, frameworks, optimizers, registry, worker_errors, reference_only, files)


def _compare(model: str, folder: Path, frameworks: list[str], optimizers: list[str],
             registry: dict[str, AdapterInfo], worker_errors: dict[str, str], reference_only: bool,
             files: contextlib.ExitStack) -> tuple[list[Check], dict]:
    weights = load_npz(folder / "weights.npz")
    data: dict[str, Any] = {}  # adapter -> its open .npz, read one array at a time (AlexNet's are GBs)
    errors: dict[str, str] = {}
    for fw in frameworks:
        status_file = folder / f"{fw}.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else {"error": worker_errors.get(fw)}
        if status.get("error") or not (folder / f"{fw}.npz").exists():
            errors[fw] = status.get("error") or worker_errors.get(fw) or "the worker wrote no results"
        else:
            data[fw] = files.enter_context(np.load(folder / f"{fw}.npz", allow_pickle=False))
    names: list[tuple[str, float]] = [(c, FORWARD_TOL) for c in FORWARD_CHECKS]
    if any(TF32_CHECKS[0] in d for d in data.values()):
        names += [(c, TF32_FORWARD_TOL) for c in TF32_CHECKS]
    trainable = [fw for fw in frameworks if not registry[fw].reference and fw in data and not _inference_only(folder, fw)]
    if any(f"grad.{next(iter(weights))}" in d for d in data.values()):
        names += [("grad", FP64_TOL)] + [(f"step.{o}", FP64_TOL) for o in optimizers]
        names += [(k, CURVE_TOL) for k in sorted({k for d in data.values() for k in d if k.startswith("curve.")})]
    worst: dict[tuple[str, str], tuple[float, set[str]]] = {}
    for a, b in combinations(sorted(data), 2):
        if reference_only and not (registry[a].reference or registry[b].reference):
            continue
        for check, _ in names:
            if check in TF32_CHECKS:
                continue  # below: against the reference only
            err = _pair_check(check, data[a], data[b], weights)
            if err is None:
                continue
            for me, other in ((a, b), (b, a)):
                e, against = worst.get((me, check), (0.0, set()))
                worst[(me, check)] = (max(e, err), against | {other})
    _tf32_against_reference(data, [fw for fw in data if registry[fw].reference], worst)
    out: list[Check] = []
    for fw in frameworks:
        applies = [(c, t) for c, t in names if c in FORWARD_CHECKS + TF32_CHECKS or fw in trainable]
        if fw in errors:
            out.append(Check(model, fw, "run", None, 0.0, reason=errors[fw]))
            continue
        for check, tol in applies:
            if (fw, check) in worst:
                e, against = worst[(fw, check)]
                out.append(Check(model, fw, check, e, tol, tuple(sorted(against))))
    curves = {(model, k.removeprefix("curve."), fw): d[k] for fw, d in data.items() for k in d.files
              if k.startswith("curve.")}
    return out, curves


def _tf32_against_reference(data: dict[str, Any], references: list[str],
                            worst: dict[tuple[str, str], tuple[float, set[str]]]) -> None:
    """Each adapter's TF32 forward against each reference's float32 one, into `worst` (the TF32 checks' errors).

    Not adapter against adapter: two TF32 forwards each carry their own rounding, and the question is how far
    TF32 moves a framework from the exact float32 answer.
    """
    for fw, d in data.items():
        for check in TF32_CHECKS:
            for ref in references:
                if check in d and ref != fw and check.removeprefix("tf32.") in data[ref]:
                    err = pair_error(d[check], data[ref][check.removeprefix("tf32.")])
                    e, against = worst.get((fw, check), (0.0, set()))
                    worst[(fw, check)] = (max(e, err), against | {ref})


def _pair_check(check: str, a: dict, b: dict, w0: dict) -> float | None:
    if check in ("logits", "loss") or check.startswith("curve."):
        return pair_error(a[check], b[check]) if check in a and check in b else None
    prefix = "grad." if check == "grad" else f"{check}."
    keys = [k for k in a if k.startswith(prefix)]
    if not keys or not all(k in b for k in keys):
        return None
    if check == "grad":
        return max(pair_error(a[k], b[k]) for k in keys)
    return max(pair_norm_error(a[k] - w0[k.removeprefix(prefix)], b[k] - w0[k.removeprefix(prefix)]) for k in keys)


def validate(*, registry: dict[str, AdapterInfo], models: list[str] | None = None,
             frameworks: list[str] | None = None, optimizers: list[str] | None = None,
             artifacts: Path | None = None, tiny: bool = False, checks: str = "full",
             model_params: dict[str, dict[str, Any]] | None = None, batch_size: int = 2, seed: int = 0,
             curve_steps: int = CURVE_STEPS, threads: int = 1, timeout_s: float = 3600.0,
             device: str = "cpu") -> Validation:
    """Run the validation matrix; `checks="forward"` runs only the float32 forward check.

    With `device="cuda"`, each adapter that offers `tf32` also gives its forward under TF32, checked against the
    reference's float32 forward with the looser TF32_FORWARD_TOL (the float32 checks stay IEEE: TF32 off).
    """
    models = models or [m for m in MODELS]
    frameworks = with_reference(frameworks or default_frameworks(registry), registry)
    optimizers = optimizers or list(OPTIMIZERS)
    for m in models:
        if m not in MODELS:
            raise ValidateError(f"unknown model {m!r}; choose one of {', '.join(MODELS)}")
    for fw in frameworks:
        if fw not in registry:
            raise ValidateError(f"unknown framework {fw!r}; registered: {', '.join(registry)}")
    for o in optimizers:
        if o not in OPTIMIZERS:
            raise ValidateError(f"unknown optimizer {o!r}; choose one of {', '.join(OPTIMIZERS)}")
    result = Validation()
    result.skipped = {fw: f"{', '.join(registry[fw].missing())} not installed"
                      for fw in frameworks if registry[fw].missing()}
    result.frameworks = [fw for fw in frameworks if fw not in result.skipped]
    result.references = [fw for fw in result.frameworks if registry[fw].reference]
    if checks == "forward":
        curve_steps = 0
    with tempfile.TemporaryDirectory(prefix="xfbench-validate-") as tmp:
        root = Path(artifacts) if artifacts else Path(tmp)
        entries = {}
        for m in models:
            params = dict(model_params[m]) if model_params and m in model_params else \
                dict(TINY_SIZES[m] if tiny else {})
            if "dropout" in MODELS[m].defaults:
                params["dropout"] = 0.0  # dropout draws differ between frameworks
            entries[m] = prepare(root / m, m, params, batch_size=batch_size, seed=seed, curve_steps=curve_steps)
        job = {"models": entries, "checks": checks, "optimizers": optimizers, "curve_steps": curve_steps,
               "threads": threads, "device": device}
        worker_errors = {}
        for fw in result.frameworks:
            err = run_worker(registry[fw], job, Path(tmp), timeout_s)
            if err:
                worker_errors[fw] = err
        for m in models:
            found, curves = compare(m, root / m, result.frameworks, optimizers, registry, worker_errors,
                                    reference_only=checks == "forward")
            result.checks += found
            result.curves.update(curves)
            for fw in result.frameworks:
                status = root / m / f"{fw}.json"
                reason = json.loads(status.read_text()).get("inference_only") if status.exists() else None
                if reason:
                    result.inference_only.setdefault(fw, reason)
        if artifacts:  # the per-adapter status files are for the parent, not for re-checkers
            for m in models:
                for fw in result.frameworks:
                    (root / m / f"{fw}.json").unlink(missing_ok=True)
    return result




def forward_gate(cases: list[Any], registry: dict[str, AdapterInfo], threads: int = 1) -> dict[str, dict]:
    """`bench run --forward-check`: the float32 forward of every (framework, model, params) against NumPy.

    Returns, per `gate_key(case)`, the `validated` entry to record (status passed or failed).
    """
    groups: dict[tuple[str, str], set[str]] = {}  # (model, params as JSON) -> adapters
    for c in cases:
        info = registry.get(c.framework)
        if info is not None and not info.reference and not info.missing():
            groups.setdefault((c.model, json.dumps(c.model_params, sort_keys=True)), set()).add(c.framework)
    out: dict[str, dict] = {}
    for (model, params), fws in groups.items():
        result = validate(registry=registry, models=[model], frameworks=["numpy", *sorted(fws)],
                          checks="forward", model_params={model: json.loads(params)}, threads=threads)
        for fw in fws:
            out[gate_key_of(fw, model, json.loads(params))] = {**result.outcome(fw, model), "check": FORWARD_CHECK}
    return out


FORWARD_CHECK = "fp32 forward"  # the `check` of a `bench run --forward-check` entry


def gate_key_of(framework: str, model: str, model_params: dict[str, Any]) -> str:
    return f"{framework}/{model}/{json.dumps(model_params, sort_keys=True)}"
