"""Cases on a Ray cluster (`bench run --executor ray`): each case process a Ray task running the same worker.

Ray schedules; xfbench only says what each case needs. A task runs `runner.run_worker` on the node Ray
picked: the case's worker is a fresh interpreter there, bounded by the case's timeout and memory limit as
on this machine, and the task returns the record, the node's host metadata and the worker's log. The
parent appends each record to the run directory as its task ends, so a cluster run is read, reported,
compared and resumed exactly as a local one.

What a task asks Ray for (docs/cluster.md):
- `xfbench: 1`, a custom resource each node offers once (`ray start --resources '{"xfbench": 1}'`): at
  most one timed case per node at a time, so no two cases share a node's cores or memory bandwidth. A
  node started with `xfbench: 2` runs two at once (faster, and the contention checks will say so).
- a CPU case: the CPUs it pins (`threads`; none more when 0, as the xfbench unit already holds the node);
  a CUDA case: one GPU, of `accelerator_type` where the run names one (Ray's GPU type label).
Tasks are submitted in plan order, no more at once than the cluster's xfbench units, so a node that
runs several cases runs them in the planned interleaved order.

The parent imports Ray only here, and only for `--executor ray`; the extra is `xfbench[ray]`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from ..adapter import AdapterInfo
from ..case import Case
from ..errors import XfbenchError
from ..records import Record
from ..results import RunDir, write_text_atomic
from .host import host_info
from .process import signals_interrupt

NODE_RESOURCE = "xfbench"
# Beyond a case's own case_timeout_s (enforced on the node), how long the parent waits for its task: a
# fresh worker's start on a loaded node, Ray's scheduling, the record's way back.
TASK_GRACE_S = 120.0
LOG_TAIL_BYTES = 1 << 20  # the worker's log comes back to the run's logs/ folder, its last MiB at most
POLL_S = 1.0


class ClusterError(XfbenchError):
    """Ray is missing, the cluster cannot be reached, or its nodes cannot run this plan; nothing was measured."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError("--executor ray needs Ray, which is not installed; install it with: "
                           "pip install 'xfbench[ray]'") from None
    return ray


# ---- on a node ----

def node_host() -> dict[str, Any]:
    """This node's host metadata: `host_info()` and, inside a Ray worker, the Ray node's id and address."""
    host = host_info()
    try:
        import ray
        ctx = ray.get_runtime_context()
        host["ray_node"] = {"id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address()}
    except Exception:  # not in a Ray worker: plain host metadata
        pass
    return host


def _where(host: dict[str, Any]) -> str:
    ip = (host.get("ray_node") or {}).get("ip")
    return f"node {host.get('hostname', '?')}" + (f" ({ip})" if ip else "")


def probe_node(names: list[str]) -> dict[str, Any]:
    """What this node has of the adapters `names`: {name: {"missing": [...], "versions": {...}}}; None if
    no adapter of that name is registered here. Also the node's host metadata."""
    from ..adapter import discover
    registry = discover()
    have = {}
    for name in names:
        info = registry.get(name)
        have[name] = None if info is None else {"missing": info.missing(), "versions": info.versions()}
    return {"host": node_host(), "adapters": have}


def measure_on_node(case_json: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: the case in a fresh worker on this node; its record (with this node's host) and log."""
    from ..adapter import discover
    from .runner import run_worker
    case = Case.from_dict(case_json)
    host = node_host()
    info = discover().get(case.framework)
    now, log = time.time(), None
    if info is None:
        rec = Record.of(case, "skipped", f"no adapter named {case.framework!r} is registered on {_where(host)}; "
                        "install xfbench and the adapter's package there (docs/cluster.md)", now, now)
    elif info.missing():
        rec = Record.of(case, "skipped", f"{', '.join(info.missing())} not installed on {_where(host)}; install "
                        f"it there (e.g. pip install 'xfbench[{info.framework}]') to measure {case.framework} "
                        "on that node", now, now)
    else:
        with tempfile.TemporaryDirectory(prefix="xfbench-ray-") as tmp:
            rec = run_worker(case, Path(tmp) / "work", Path(tmp) / "logs")
            log_file = Path(tmp) / "logs" / f"{case.case_id}.log"
            if log_file.exists():
                with open(log_file, "rb") as f:
                    f.seek(max(0, log_file.stat().st_size - LOG_TAIL_BYTES))
                    log = f.read().decode(errors="replace")
    return {"record": rec.replace(host=host).to_json(), "log": log}


# ---- in the parent ----

@dataclasses.dataclass
class Cluster:
    """A connected Ray cluster: its alive nodes that take xfbench cases, and what each has installed."""

    ray: Any
    address: str | None  # None: a Ray instance this process started on this machine
    nodes: list[dict[str, Any]]  # ray.nodes() entries, alive and offering NODE_RESOURCE
    probes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # node id -> probe_node()
    started_here: bool = False

    @property
    def slots(self) -> int:
        return max(1, int(sum(n["Resources"].get(NODE_RESOURCE, 0) for n in self.nodes)))

    def has(self, resource: str, amount: float = 1.0) -> bool:
        return any(n["Resources"].get(resource, 0) >= amount for n in self.nodes)

    def close(self) -> None:
        self.ray.shutdown()


CONNECT_TIMEOUT_S = 10.0


def _unreachable(address: str) -> str | None:
    """Why a "host:port" address does not answer a TCP connection, or None (also for "auto" and ray://).

    ray.init waits for a cluster at an address that never answers for many minutes; this says it at once.
    """
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def connect(address: str | None) -> Cluster:
    """Connect to the Ray cluster at `address`, or start one on this machine (one xfbench unit, every CPU)."""
    ray = import_ray()
    # Ray's own INFO lines ("Connecting to ...") would bury the run's display: warnings and errors only.
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "logging_level": logging.WARNING}
    why = _unreachable(address) if address else None
    if why:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {why}; start it with `ray start --head "
                           f"--resources '{{\"{NODE_RESOURCE}\": 1}}'` or check --address")
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            gpus = int(bool(host_info()["gpus"]))  # Ray finds the GPUs itself; this only says one is there
            ray.init(num_cpus=len(os.sched_getaffinity(0)), resources={NODE_RESOURCE: 1}, **kwargs,
                     **({} if gpus else {"num_gpus": 0}))
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {first}; start it with `ray start --head "
                           f"--resources '{{\"{NODE_RESOURCE}\": 1}}'` or check --address") from None
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [n for n in alive if n["Resources"].get(NODE_RESOURCE, 0) >= 1]
    if not nodes:
        ray.shutdown()
        raise ClusterError(f"no node of the Ray cluster at {address} offers the {NODE_RESOURCE!r} resource, so none "
                           f"would take a case; start each node with: ray start ... --resources "
                           f"'{{\"{NODE_RESOURCE}\": 1}}' (docs/cluster.md)")
    return Cluster(ray, address, nodes, started_here=not address)


def resources_of(case: Case, accelerator_type: str | None = None) -> dict[str, Any]:
    """What a case's task asks Ray for (the module's docstring says why)."""
    opts: dict[str, Any] = {"resources": {NODE_RESOURCE: 1}, "num_cpus": case.threads if case.device == "cpu" else 0}
    if case.device == "cuda":
        opts["num_gpus"] = 1
        if accelerator_type:
            opts["accelerator_type"] = accelerator_type
    return opts


def check_nodes(cluster: Cluster, cases: list[Case], frameworks: dict[str, AdapterInfo]) -> list[str]:
    """Probe every node for the planned adapters; ClusterError on a version that differs from the plan.

    The plan's versions are this machine's where it has the framework, else the first node's that has it.
    Returns one warning line per node that lacks a planned adapter (its cases there are skipped records).
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    names = sorted({c.framework for c in cases if c.framework in frameworks})
    probe = cluster.ray.remote(probe_node)
    refs = {n["NodeID"]: probe.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(names) for n in cluster.nodes}
    try:
        cluster.probes = dict(zip(refs, cluster.ray.get(list(refs.values()), timeout=300)))
    except Exception as e:  # a node that cannot even run a probe cannot run a case
        raise ClusterError(f"a node of the Ray cluster could not report its frameworks: {type(e).__name__}: "
                           f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    plan = {name: frameworks[name].versions() for name in names}
    warnings, mismatches = [], []
    for node_id, p in cluster.probes.items():
        where = _where(p["host"])
        for name in names:
            have = p["adapters"].get(name)
            if have is None or have["missing"]:
                what = "its adapter is not registered" if have is None else f"{', '.join(have['missing'])} missing"
                warnings.append(f"{where} cannot run {name} ({what}); its {name} cases there are skipped records")
                continue
            for dist, version in have["versions"].items():
                want = plan[name].setdefault(dist, version)
                if version != want:
                    mismatches.append(f"{where} has {dist} {version} where the plan has {want}")
    if mismatches:
        raise ClusterError(f"framework versions differ across the cluster: {'; '.join(sorted(set(mismatches)))}; "
                           "install the same versions on every node (docs/cluster.md) before measuring")
    return warnings


def unschedulable(case: Case, cluster: Cluster, accelerator_type: str | None) -> str | None:
    """Why no node of the cluster could ever run `case`, or None."""
    if case.device == "cuda":
        if not cluster.has("GPU"):
            return "no node of the Ray cluster has a GPU"
        if accelerator_type and not cluster.has(f"accelerator_type:{accelerator_type}", 0.001):
            return f"no node of the Ray cluster has a GPU of type {accelerator_type}"
    elif case.threads and not cluster.has("CPU", case.threads):
        return f"no node of the Ray cluster offers {case.threads} CPUs"
    return None


def _task_failure(e: BaseException) -> str:
    first = next((line for line in str(e).strip().splitlines() if line.strip()), "")
    return f"the Ray task ended without a record: {type(e).__name__}" + (f": {first[:300]}" if first else "")


def run_cases_ray(cases: list[Case], run: RunDir, frameworks: dict[str, AdapterInfo], cluster: Cluster,
                  progress: Any, validation: Any = None, accelerator_type: str | None = None) -> Any:
    """Run every case as a Ray task; append each record (and write its log) as its task ends.

    The same contract as `runner.run_cases`: a task that dies (its worker, its node) is a failed record and
    the run goes on; one past its timeout is cancelled and a timeout record; Ctrl-C, SIGTERM or SIGHUP
    keep what was recorded (tasks finished by then included), and the caller's `Cluster.close` ends the
    driver's job, which ends every outstanding task.
    """
    from .runner import RunSummary, _Guarded, _Quiet
    ray = cluster.ray
    progress = _Guarded(progress or _Quiet())
    summary = RunSummary(records=[])
    task = ray.remote(measure_on_node)
    total, queue = len(cases), list(enumerate(cases, 1))
    in_flight: dict[Any, tuple[int, Case, float]] = {}  # ref -> (index, case, deadline)
    logs = run.path / "logs"
    logs.mkdir(exist_ok=True)

    def record(i: int, case: Case, rec: Record, validated: dict | None) -> None:
        if validated:
            rec = rec.replace(validated=validated)
        run.append(rec)
        summary.records.append(rec)
        progress.finished(i, total, case, rec)

    validated_of: dict[str, dict | None] = {}
    owns_lock = run.lock()
    try:
        with signals_interrupt():
            while queue or in_flight:
                while queue and len(in_flight) < cluster.slots:
                    i, case = queue.pop(0)
                    case = dataclasses.replace(case, process_start="exec")  # a fresh worker on the node
                    progress.started(i, total, case)
                    validated, refused = validation(case) if validation else (None, None)
                    validated_of[case.case_id] = validated
                    now = time.time()
                    why = unschedulable(case, cluster, accelerator_type)
                    if case.framework not in frameworks:
                        record(i, case, Record.of(case, "skipped", f"no adapter named {case.framework!r} is "
                                                  "registered", now, now), validated)
                    elif why:
                        record(i, case, Record.of(case, "skipped", f"{why}; add one, or leave the case out",
                                                  now, now), validated)
                    elif refused:
                        record(i, case, Record.of(case, "failed", refused, now, now), validated)
                    else:
                        ref = task.options(max_retries=0, **resources_of(case, accelerator_type)).remote(case.to_dict())
                        in_flight[ref] = (i, case, time.monotonic() + case.case_timeout_s + TASK_GRACE_S)
                if not in_flight:
                    continue
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
                for ref in done:
                    i, case, _ = in_flight.pop(ref)
                    try:
                        out = ray.get(ref)
                        rec = Record.from_json(out["record"])
                        if out.get("log") is not None:  # as a local run keeps it, empty or not
                            write_text_atomic(logs / f"{case.case_id}.log", out["log"])
                    except Exception as e:  # the worker or its node died, or the record came back broken
                        now = time.time()
                        rec = Record.of(case, "failed", _task_failure(e), now, now)
                    record(i, case, rec, validated_of.pop(case.case_id, None))
                for ref, (i, case, deadline) in list(in_flight.items()):
                    if time.monotonic() > deadline:
                        ray.cancel(ref, force=True)
                        del in_flight[ref]
                        now = time.time()
                        record(i, case, Record.of(case, "timeout", f"its Ray task passed case_timeout_s="
                                                  f"{case.case_timeout_s:g} s plus {TASK_GRACE_S:g} s for the "
                                                  "cluster; cancelled", now, now), validated_of.pop(case.case_id, None))
    except KeyboardInterrupt:
        summary.interrupted = True
        # Tasks that ended while Ctrl-C came keep their records. The others end with this driver: closing the
        # cluster connection (Cluster.close, by the caller) ends the job, and Ray kills its running workers,
        # whose case workers die with them. Not ray.cancel(force=True) on each: a task that completes at that
        # moment crashed the driver in Ray 2.60 ("Tried to complete task that was not pending").
        try:
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0) if in_flight else ([], [])
            for ref in ready:
                i, case, _ = in_flight.pop(ref)
                rec = Record.from_json(ray.get(ref)["record"])
                record(i, case, rec, validated_of.pop(case.case_id, None))
        except Exception:  # a finished task that cannot be read is simply run again by --resume
            pass
    finally:
        summary.display_error = progress.error
        if owns_lock:
            run.unlock()
    return summary


__all__ = ["ClusterError", "Cluster", "NODE_RESOURCE", "check_nodes", "connect", "import_ray", "measure_on_node",
           "probe_node", "resources_of", "run_cases_ray", "unschedulable"]
