"""The machines that measured a run: a host label per record, and the "By host" section.

A record names the machine that measured it (`Record.host`: host_info(), and on a Ray cluster the node);
a record written before records did counts as the run's own machine (run.json's `host`). When every
record of a run has one label nothing changes: no host in any title, no section. When they differ, the
report compares frameworks only on the same host (xfbench.harness.report.build keys configurations and
comparisons by host), and the "By host" section puts one framework's numbers on each host side by side:
the hardware comparison, never a framework against another.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ..analysis.significance import geomean_speedup
from ..records import Record
from .model import Config, Group, Section


def host_label(rec: Record, run_host: Mapping[str, Any] | None = None) -> str:
    """The hostname of the machine that measured `rec`: its own `host`, else the run's; "?" if neither says."""
    host = rec.host or run_host or {}
    return str(host.get("hostname") or "?")


def hardware(host: Mapping[str, Any]) -> tuple[str, Any, tuple[str, ...]]:
    """What makes two machines the same host for a comparison: CPU model, CPUs available, GPUs."""
    return (str(host.get("cpu_model") or "?"), host.get("cpus_available") or host.get("cpu_count"),
            tuple(map(str, host.get("gpus") or ())))


def _merged(records: Sequence[Record], run_host: Mapping[str, Any] | None) -> dict[tuple, str]:
    """(hostname, hardware) -> the label of that hardware: machines of one kind (a cluster's identical nodes) are one host.

    Their processes pool into one configuration (node-to-node differences then enter the process-to-process
    spread, as they should for a claim about that hardware), labelled by the first hostname "+N alike".
    """
    names: dict[tuple, set[str]] = {}
    for r in records:
        names.setdefault(hardware(r.host or run_host or {}), set()).add(host_label(r, run_host))
    out = {}
    for hw, same in names.items():
        first = sorted(same)[0]
        for name in same:
            out[name, hw] = first + (f" +{len(same) - 1} alike" if len(same) > 1 else "")
    return out


def _label(r: Record, merged: dict[tuple, str], run_host: Mapping[str, Any] | None) -> str:
    return merged[host_label(r, run_host), hardware(r.host or run_host or {})]


def host_labels(records: Sequence[Record], run_host: Mapping[str, Any] | None = None) -> list[str]:
    """Each record's host (machines of the same hardware share one label), or "" for every record when they
    all share one (then nothing names a host)."""
    merged = _merged(records, run_host)
    labels = [_label(r, merged, run_host) for r in records]
    return labels if len(set(labels)) > 1 else [""] * len(labels)


def hosts_seen(records: Sequence[Record], run_host: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Label (as `host_labels` gives it) -> the host metadata of its first record (the run's for records
    without one), sorted by label."""
    merged = _merged(records, run_host)
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        seen.setdefault(_label(r, merged, run_host), dict(r.host or run_host or {}))
    return dict(sorted(seen.items()))


def describe(label: str, host: Mapping[str, Any]) -> str:
    """"node-a (Xeon ..., 16 CPUs, GPUs: H100; Ray node 10.0.0.2)": what the hardware comparison compares."""
    cpus = host.get("cpus_available") or host.get("cpu_count")
    gpus = host.get("gpus")
    ip = (host.get("ray_node") or {}).get("ip") if isinstance(host.get("ray_node"), dict) else None
    parts = [str(host.get("cpu_model") or "CPU ?") + (f", {cpus} CPUs" if cpus else ""),
             f"GPUs: {'; '.join(map(str, gpus))}" if gpus else "no GPU"]
    return f"{label} ({', '.join(parts)}" + (f"; Ray node {ip}" if ip else "") + ")"


def gpu_line(records: Sequence[Record], run_host: Mapping[str, Any] | None = None) -> str | None:
    """"GPU: NVIDIA H200 (driver 580.65.06, CUDA driver 13.0); torch: CUDA 12.8, cuDNN 91002; ...": the device,
    driver and each framework's CUDA and cuDNN of the run's GPU records; None where none ran on a GPU.

    The device comes from the records' manifest (`gpu_device`, NVML), else from the host's nvidia-smi line; the
    versions from the manifest's `versions`, as each framework reports them."""
    gpus: dict[str, None] = {}
    builds: dict[str, dict[str, None]] = {}
    for r in records:
        if not r.ok or r.case.device == "cpu":
            continue
        host = r.host or run_host or {}
        d = r.manifest.get("gpu_device") if isinstance(r.manifest.get("gpu_device"), dict) else {}
        driver = d.get("driver") or host.get("gpu_driver")
        cuda = d.get("cuda_driver") or host.get("cuda_driver")
        drivers = ", ".join(x for x in (driver and f"driver {driver}", cuda and f"CUDA driver {cuda}") if x)
        name = d.get("name") or "; ".join(map(str, host.get("gpus") or ())) or "?"
        gpus[name + (f" ({drivers})" if drivers else "")] = None
        v = r.manifest.get("versions") if isinstance(r.manifest.get("versions"), dict) else {}
        built = ", ".join(f"{label} {v[k]}" for k, label in (("cuda", "CUDA"), ("cudnn", "cuDNN")) if v.get(k))
        if built:
            builds.setdefault(str(r.manifest.get("framework") or r.case.framework), {})[built] = None
    if not gpus:
        return None
    return "; ".join([f"GPU: {' / '.join(gpus)}"] + [f"{fw}: {' / '.join(b)}" for fw, b in sorted(builds.items())]) + "."


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def _observations(c: Config):
    return c.process_times_s or c.times_s


def _ratio(first: Config, other: Config) -> tuple[float, float, float]:
    """other's throughput over first's (the same batch: first's median step time over other's), with a 95% CI."""
    return geomean_speedup([(_observations(first), _observations(other))],
                           floors=[(first.median_floor, other.median_floor)])


def by_host_section(groups: Sequence[Group], hosts: Mapping[str, Mapping[str, Any]] | None = None) -> Section | None:
    """The section, or None where no framework measured the same job on two hosts (or the run had one host).

    One row per (job, batch, framework) measured on 2+ hosts; per host its samples/s and 95% CI, and per
    host after the first (by name) the throughput ratio to the first host with a bootstrap 95% CI.
    `hosts`: label -> host metadata, for the notes' description of each machine.
    """
    cells: dict[tuple[str, tuple, int, str], dict[str, Config]] = {}
    for g in groups:
        if not g.host:
            continue
        for c in g.configs:  # sorted fastest first: a framework's fastest config at a batch size
            row = cells.setdefault((g.job, g.key[:-1], c.batch_size, c.framework), {})
            row.setdefault(g.host, c)
    rows_in = {k: v for k, v in cells.items() if len(v) >= 2}
    if not rows_in:
        return None
    labels = sorted({h for per_host in rows_in.values() for h in per_host})
    first, rest = labels[0], labels[1:]
    columns = ["job", "batch", "framework"] + [f"{kind} on {h}" for h in labels for kind in ("samples/s", "95% CI")]
    columns += [f"ratio {h} / {first}" for h in rest]
    rows, pairs = [], {h: [] for h in rest}
    for (job, _, batch, fw), per_host in sorted(rows_in.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3])):
        row = {"job": job, "batch": str(batch), "framework": fw}
        for h in labels:
            c = per_host.get(h)
            row[f"samples/s on {h}"] = _num(c.samples_per_s) if c else "-"
            row[f"95% CI on {h}"] = f"{_num(c.ci[0])}–{_num(c.ci[1])}" if c else "-"
        for h in rest:
            base, c = per_host.get(first), per_host.get(h)
            if base is None or c is None:
                row[f"ratio {h} / {first}"] = "-"
                continue
            point, low, high = _ratio(base, c)
            row[f"ratio {h} / {first}"] = f"{point:.2f}x ({low:.2f}–{high:.2f})"
            pairs[h].append((base, c))
        rows.append(row)
    notes = ["The hardware comparison: each framework's throughput on the same job on each host that measured "
             "it (the median over that host's worker processes, with its 95% CI), and its throughput on each "
             f"host over its throughput on {first}, the first host by name (above 1: faster than on {first}), "
             "with a seeded bootstrap 95% CI. Different hosts are never compared framework against framework: "
             "the verdict, the heat map and every comparison table compare frameworks on the same host only."]
    for h, ps in pairs.items():
        if ps:
            point, low, high = geomean_speedup([(_observations(a), _observations(b)) for a, b in ps],
                                               floors=[(a.median_floor, b.median_floor) for a, b in ps])
            notes.append(f"On {h}: {point:.2f}x the throughput on {first} (geometric mean over {len(ps)} "
                         f"measurement{'s' if len(ps) != 1 else ''} of a framework on a job, "
                         f"95% CI {low:.2f}–{high:.2f}).")
    if hosts:
        notes.append("Hosts: " + "; ".join(describe(h, hosts[h]) for h in labels if h in hosts) + ".")
    return Section("By host", pd.DataFrame(rows, columns=columns), notes, [])
