"""The report's roofline: the host's measured peaks (a run's peak.json, xfbench.harness.measure.peak) and each job's
achieved GFLOP/s as a share of them.

The headline share divides by the *host* peak, the fastest framework's GEMM on the device (at the job's
threads on a CPU), not by the job's own framework's: the question is how close each framework gets to
what this machine can do, and a framework with a slow GEMM would otherwise look closer to the limit than
it is. Each framework's own peak, and how it compares with the host's, is the Roofline section's table.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .model import Group, Section

SHARE_COLUMN = "share of peak"


def _matches(peak: dict[str, Any], device: str, threads: int) -> bool:
    """Whether a peak was measured where a job ran: the same device, and on a CPU the same threads."""
    return peak["device"] == device and (device != "cpu" or peak["threads"] == threads)


def host_peak(peaks: dict[str, dict[str, Any]], device: str, threads: int) -> tuple[str, float] | None:
    """(adapter, GEMM FLOP/s) of the fastest GEMM measured on `device` (on a CPU at `threads`); None if none."""
    found = [(p["gemm_gflops"] * 1e9, name) for name, p in peaks.items() if _matches(p, device, threads)]
    if not found:
        return None
    flops, name = max(found)
    return name, flops


def share_text(share: float) -> str:
    return f"{share:.0%}" if share >= 0.095 else f"{share:.1%}" if share >= 0.001 else "<0.1%"


def with_share_of_peak(table: pd.DataFrame, group: Group, peaks: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """A job's table (one row per config, in `group.configs` order) with "share of peak" after GFLOP/s."""
    peak = host_peak(peaks, group.device, group.threads)
    shares = [share_text(c.flops_per_s / peak[1]) if peak and c.flops_per_s else "-" for c in group.configs]
    out = table.copy()
    out.insert(list(out.columns).index("GFLOP/s") + 1, SHARE_COLUMN, shares)
    return out


def _best_case(name: str, peak: dict[str, Any], groups: list[Group], host: float | None) -> str:
    """The framework's job closest to the host peak, where the peak was measured: "alexnet train b=64: 56%"."""
    if host is None:
        return "-"
    best: tuple[float, str] | None = None
    for g in groups:
        if not _matches(peak, g.device, g.threads):
            continue
        for c in g.configs:
            if c.framework == name and c.flops_per_s and (best is None or c.flops_per_s > best[0]):
                best = (c.flops_per_s, f"{g.model} {g.mode} b={c.batch_size}")
    return f"{best[1]}: {share_text(best[0] / host)}" if best else "-"


def _ci(values: list[float]) -> str:
    return "–".join(f"{v:,.1f}" for v in values)


def roofline_section(peaks: dict[str, dict[str, Any]], groups: list[Group]) -> Section:
    """The Roofline section: every framework's GEMM and copy peaks, and how close its best job came."""
    rows = []
    for name, p in sorted(peaks.items(), key=lambda kv: (kv[1]["device"], -kv[1]["gemm_gflops"], kv[0])):
        host = host_peak(peaks, p["device"], p["threads"])
        rows.append({"framework": name, "device": p["device"], "threads": str(p["threads"]),
                     "GEMM GFLOP/s": f"{p['gemm_gflops']:,.1f}", "GEMM 95% CI": _ci(p["gemm_gflops_ci"]),
                     "of host peak": share_text(p["gemm_gflops"] * 1e9 / host[1]) if host else "-",
                     "copy GB/s": f"{p['copy_gbs']:,.1f}", "copy 95% CI": _ci(p["copy_gbs_ci"]),
                     "best job": _best_case(name, p, groups, host[1] if host else None)})
    first = next(iter(peaks.values()))
    notes = [f"This host's practical peak with each framework, measured with the cases' threads and pinning "
             f"(`bench peak`): GEMM GFLOP/s is a {first['gemm_n']} x {first['gemm_n']} float32 matmul (2n³ "
             f"FLOPs per call), copy GB/s a copy of a {first['copy_bytes'] / 2**20:g} MiB float32 array (bytes "
             "read plus bytes written), each with the framework's fastest call for it, timed as a case is (median "
             "and 95% CI). The host peak is the fastest GEMM on the device (on a CPU at the job's threads); "
             "\"of host peak\" is each framework's GEMM over it, and the column \"share of peak\" of every job is "
             "its achieved GFLOP/s (analytic FLOPs) over the host peak, not over its own framework's, so that a "
             "framework with a slow GEMM does not look closer to the machine's limit than it is. \"best job\" is "
             "the framework's job closest to it. Convolutions, recurrent layers and small layers are not one "
             "large GEMM: their shares are lower by nature (memory, dispatch and elementwise work)."]
    notes.append("Kernels: " + "; ".join(f"{name}: {p.get('gemm_kernel', '?')}, {p.get('copy_kernel', '?')}"
                                          for name, p in sorted(peaks.items())) + ".")
    notes += [f"⚠ {name}: {w}" for name, p in sorted(peaks.items()) for w in p.get("warnings", [])]
    return Section("Roofline: this host's measured peak", pd.DataFrame(rows), notes, [])

