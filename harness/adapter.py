"""The adapter protocol every framework implements, and the entry-point registry that finds them.

An adapter package exposes, in the entry-point group `xfbench.adapters`, an `AdapterInfo`: a small,
import-cheap description (name, the distributions it needs, where its class lives). The parent process
reads only these; the `Adapter` class itself, which imports its framework, is loaded in a worker.
"""
from __future__ import annotations

import abc
import functools
import hashlib
import importlib
import importlib.metadata as md
import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import __version__
from .cuda_builds import cpu_only
from .errors import XfbenchError
from .models import ModelSpec
from .optimizers import OptimizerSpec

ENTRY_POINT_GROUP = "xfbench.adapters"
# The version of the adapter API (xfbench.harness.api): raised when a change would break existing plugins.
ADAPTER_API = 1


class Unsupported(Exception):
    """The adapter cannot run this case here (no GPU, precision not offered); the case is skipped."""


@dataclass(frozen=True)
class AdapterInfo:
    """What the parent knows about an adapter without importing its framework."""

    name: str  # as used in suites and reports: "torch", "torch-compile"
    framework: str  # the toolbox being measured: "torch"
    target: str  # "module:Class" of the Adapter subclass
    requires: tuple[str, ...]  # import names that must be importable, e.g. ("torch",)
    distributions: tuple[str, ...] = ()  # distributions whose versions the manifest reports
    summary: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # passed to the Adapter constructor
    # A reference implementation (the NumPy oracle): validated against, never timed in "all" suites.
    reference: bool = False
    # The ADAPTER_API this adapter was written for; the harness refuses one written for another.
    api: int = 1
    # The distribution that registers it and its version: filled in by `discover_all` from the entry point.
    package: str | None = None
    package_version: str | None = None
    # An adapter of a framework environment (xfbench.harness.envs): its interpreter, the environment's name,
    # and what that interpreter said of it (missing imports, versions, provenance), which this one cannot see.
    python: str | None = None
    environment: str | None = None
    probed: dict[str, Any] | None = field(default=None, compare=False)

    def missing(self) -> list[str]:
        """Import names that are not installed (checked without importing them)."""
        if self.probed is not None:
            return list(self.probed["missing"])
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def versions(self) -> dict[str, str]:
        if self.probed is not None:
            return dict(self.probed["versions"])
        out = {}
        for dist in self.distributions or self.requires:
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                continue
        return out

    def cpu_only(self) -> str | None:
        """Why this adapter's framework cannot run on CUDA here (a CPU build), from package metadata; None if
        nothing says so (xfbench.harness.cuda_builds)."""
        if self.probed is not None:
            return self.probed.get("cpu_only")
        return cpu_only(self.requires, self.reference)

    def load(self) -> type["Adapter"]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)

    def source_hash(self) -> str | None:
        """SHA-256 of the adapter's source (docs/spec.md section 6.5): an edit invalidates its validation.

        None when the target module cannot be found; the framework is never imported.
        """
        if self.probed is not None:
            return self.probed["provenance"]["source_sha256"]
        return _source_hash(self.target.partition(":")[0])

    def provenance(self) -> dict[str, str | None]:
        """The adapter package: name, version, and the SHA-256 of its source, for records and the cache."""
        if self.probed is not None:
            return dict(self.probed["provenance"])
        return {"package": self.package, "version": self.package_version, "source_sha256": self.source_hash()}


@dataclass(frozen=True)
class PeakKernel:
    """One kernel of the roofline (xfbench.harness.measure.peak): `run` issues it once and may return before the
    device is done (the adapter's `sync` waits for it); `result` copies the latest output to the host, so a
    test can check that the work was done; `what` names the call, for the record."""

    run: Callable[[], None]
    result: Callable[[], np.ndarray]
    what: str


class AdapterClash(XfbenchError):
    """Two installed packages register an adapter under the same name; neither may silently win."""


def discover() -> dict[str, AdapterInfo]:
    """Every working adapter registered under the entry-point group, built-in ones included, by name."""
    return discover_all()[0]


def discover_all() -> tuple[dict[str, AdapterInfo], dict[str, str]]:
    """The working adapters by name, and the broken ones: name -> why (a one-line reason naming the package).

    One broken third-party adapter (its module raises on import, it is not an AdapterInfo, or it was written
    for another ADAPTER_API) is set aside so that every other command still works; a name registered twice
    is an AdapterClash.
    """
    found: dict[str, AdapterInfo] = {}
    broken: dict[str, str] = {}
    owners: dict[str, str] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        package = getattr(ep.dist, "name", None) or "an unknown package"
        if ep.name in owners:
            raise AdapterClash(f"two packages register the adapter {ep.name!r}: {owners[ep.name]} and {package}; "
                               "uninstall one of them")
        owners[ep.name] = package
        try:
            info = _load(ep)
        except Exception as e:  # anything a third-party module does on import
            broken[ep.name] = f"{_one_line(e)} (entry point {ep.value} of {package})"
            continue
        if info.api != ADAPTER_API:
            broken[ep.name] = api_mismatch(info.api, package)
        else:  # who registers it, for the validation cache and the records (AdapterInfo.provenance)
            found[ep.name] = replace(info, package=getattr(ep.dist, "name", None),
                                     package_version=getattr(ep.dist, "version", None))
    _add_environments(found, broken)
    return dict(sorted(found.items())), dict(sorted(broken.items()))


def _add_environments(found: dict[str, AdapterInfo], broken: dict[str, str]) -> None:
    """Every framework environment's adapters as `name@env`, and each environment's defaults under their own
    names (xfbench.harness.envs), from what the environment's interpreter said when it was probed."""
    from . import envs

    environments = envs.environments()
    for env in environments.values():
        for name, d in env.adapters().items():
            fields_ = {k: d[k] for k in AdapterInfo.__dataclass_fields__ if k in d and k not in _ENV_FIELDS}
            found[f"{name}@{env.name}"] = AdapterInfo(
                **{**fields_, "requires": tuple(fields_["requires"]), "distributions": tuple(fields_["distributions"])},
                name=f"{name}@{env.name}", python=str(env.python), environment=env.name,
                probed={k: d.get(k) for k in ("missing", "versions", "provenance", "cpu_only")})
    for name, env in envs.defaults(environments).items():
        found[name] = replace(found[f"{name}@{env.name}"], name=name)
        broken.pop(name, None)


_ENV_FIELDS = ("name", "python", "environment", "probed")


def api_mismatch(api: object, package: str) -> str:
    """Why an adapter written for another ADAPTER_API is refused, and the two ways out; one line."""
    return (f"written for xfbench adapter API {api}; this xfbench ({__version__}) speaks API {ADAPTER_API}: "
            f"install a version of {package} made for API {ADAPTER_API}, or an xfbench that speaks API {api}")


def _load(ep: md.EntryPoint) -> AdapterInfo:
    """The AdapterInfo an entry point names; TypeError if it is something else."""
    info = ep.load()
    if not isinstance(info, AdapterInfo):
        raise TypeError(f"{type(info).__name__} is not an AdapterInfo")
    if info.name != ep.name:
        raise TypeError(f"the entry point names an adapter called {info.name!r}")
    return info


@functools.lru_cache(maxsize=None)  # per process: a run or a validation hashes each package once
def _source_hash(module: str) -> str | None:
    """SHA-256 over the `.py` files (relative path, then bytes, paths sorted) of the package holding `module`.

    A top-level module is hashed alone: its folder may hold anything. `find_spec` of the parent package imports
    the packages above it at most, never the adapter module and its framework.
    """
    parent, _, _ = module.rpartition(".")
    try:
        spec = importlib.util.find_spec(parent or module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: every module in its folder
        files = [(f.relative_to(root).as_posix(), f) for root in map(Path, spec.submodule_search_locations)
                 for f in root.rglob("*.py")]
    elif spec.origin and spec.origin.endswith(".py"):
        files = [(Path(spec.origin).name, Path(spec.origin))]
    else:
        return None
    digest = hashlib.sha256()
    try:
        for rel, path in sorted(files):
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:  # unreadable source certifies nothing
        return None
    return digest.hexdigest()


def _one_line(e: BaseException) -> str:
    """`Type: message`, the message's first line only, at most 200 characters."""
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    return text if len(text) <= 200 else text[:199] + "…"


def why_broken(name: str) -> str | None:
    """Why the adapter `name` cannot be used, as a sentence; None if it is not broken.

    For `adapter@env`: the environment is missing, or does not offer that adapter (xfbench.harness.envs).
    """
    from . import envs

    base, env_name = envs.split(name)
    if env_name is not None:
        env = envs.environments().get(env_name)
        if env is None:
            return (f"no framework environment {env_name!r} for {name!r}; make it with `bench env create {env_name} "
                    f"PACKAGE...` (see `bench env list`)")
        if base not in env.adapters():
            return (f"environment {env_name!r} does not offer {base!r} (it offers "
                    f"{', '.join(sorted(env.adapters())) or 'no adapter'}); install it there, then "
                    f"`bench env check {env_name}`")
    why = discover_all()[1].get(name)
    return f"the adapter {name!r} is broken: {why}; fix or uninstall that package" if why else None


class Adapter(abc.ABC):
    """One framework's implementation of the spec models, created inside a worker process.

    Life cycle: `__init__` (framework knobs: threads, device, precision; before any model exists),
    `build`, then any of the steps. Batches are opaque framework objects made by `put_batch` from
    canonical NCHW / token arrays, already on the device (their transfer is not timed).
    """

    def __init__(self, *, device: str, precision: str, threads: int, seed: int, **options: Any):
        self.device, self.precision, self.threads, self.seed = device, precision, threads, seed

    @classmethod
    def preload(cls) -> None:
        """Import what the framework would otherwise import lazily during `build` or the first step.

        Called once per worker right after the adapter's module is imported, and counted as import
        time (`import_s`), not set-up: a fork server (process_start "fork") pays for it once per round.
        It must not start thread pools or touch a device: processes are forked after it.
        """

    @abc.abstractmethod
    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        """Create the model (and optimizer state, when training) in training-ready form."""

    @abc.abstractmethod
    def parameter_count(self) -> int:
        """Trainable parameters as the framework counts them, less documented frozen duplicates."""

    @abc.abstractmethod
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load a canonical weight set (docs/spec.md section 2) and reset the optimizer state."""

    @abc.abstractmethod
    def dump_weights(self) -> dict[str, np.ndarray]:
        """The current weights in canonical names, layout and float dtype."""

    @abc.abstractmethod
    def put_batch(self, x: np.ndarray, y: np.ndarray) -> Any:
        """Move one canonical batch to the device, in the framework's fastest layout."""

    @abc.abstractmethod
    def train_step(self, batch: Any) -> None:
        """Forward, loss, backward and optimizer update; may return before the device is done."""

    @abc.abstractmethod
    def infer_step(self, batch: Any) -> None:
        """Forward in inference mode (dropout off, no gradient); may return before the device is done."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Wait for all device work issued so far, the last parameter update included."""

    @abc.abstractmethod
    def forward(self, batch: Any) -> tuple[np.ndarray, float]:
        """Logits in canonical layout and the mean loss, in inference mode, for equivalence checks."""

    @abc.abstractmethod
    def gradients(self, batch: Any) -> dict[str, np.ndarray]:
        """Gradients of the loss at the current weights (dropout off), in canonical names and layout."""

    def input_pipeline(self, x: np.ndarray, y: np.ndarray, order: Iterable[np.ndarray],
                       workers: int = 0) -> Iterator[Any]:
        """The training batches of a run on real data: for each index array of `order`, in that order, exactly
        what `put_batch(x[idx], y[idx])` returns (values, layout, dtype, device), ready for the steps.

        `x`, `y` are a data set's canonical arrays (read-only); `order` comes from
        `xfbench.harness.data.batch_order`, the same for every framework. Override it with the framework's
        own input pipeline (torch DataLoader, tf.data, a prefetching loop), preparing batches on up to
        `workers` workers of its kind (0: in the training thread); the time to the next batch counts as
        training time. Build the pipeline here and start it at the first `next`; the returned iterator's
        `close()`, where it has one, stops its workers. Optional: the default is a plain loop over
        `put_batch`, without workers or prefetching.
        """
        return (self.put_batch(x[idx], y[idx]) for idx in order)

    def pipeline_description(self, workers: int) -> str:
        """One line for the fairness manifest: the mechanism of `input_pipeline` and its worker count."""
        return "NumPy loop, put_batch per step"

    def peak_device_memory_bytes(self) -> int | None:
        """Peak device memory of this process, where the device reports it (GPU); else None."""
        return None

    def reset_peak_device_memory(self) -> bool:
        """Reset the peak that `peak_device_memory_bytes` reports to the memory in use now; False if the
        framework cannot (then only the whole-process peak is reported)."""
        return False

    def peak_gemm(self, a: np.ndarray, b: np.ndarray) -> PeakKernel:
        """The float32 product `a @ b` (n x n each) on this adapter's device, for the roofline (`bench peak`).

        `a` and `b` go to the device here, once; each `run` computes the whole product with the call a
        framework expert would use for the fastest GEMM, in IEEE float32 (no TF32), and keeps the output
        alive (a buffer written in place, or the newest result held) so that nothing is optimised away.
        Optional: the default raises Unsupported, and the roofline leaves the adapter out.
        """
        raise Unsupported(f"{type(self).__name__} does not implement peak_gemm")

    def peak_copy(self, x: np.ndarray) -> PeakKernel:
        """A copy of the float32 array `x` into a second buffer on this adapter's device, for the roofline.

        Each `run` must read all of `x` and write all of the copy (2 x `x.nbytes` moved): an op that only
        aliases the input (`tf.identity`, a jitted identity without a distinct output) does not count.
        Optional, like `peak_gemm`.
        """
        raise Unsupported(f"{type(self).__name__} does not implement peak_copy")

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """The fairness manifest: precision flags, compile mode, threads, layout, library versions."""
