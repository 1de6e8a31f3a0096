"""The "Keras backends" section: Keras 3 on each backend against the others, and against that backend's own adapter.

It answers the two questions a Keras user asks (docs/spec.md section 5.9): is Keras on JAX (PyTorch, TensorFlow) as
fast as native JAX (PyTorch, TensorFlow), and which backend should a Keras user pick. A Keras adapter is one
named `keras-<backend>`; the native adapters of a backend are the one named `<backend>` and its variants named
`<backend>-...` (torch-compile, tensorflow-xla), and the fastest of them that measured the same job is the
one an expert on that backend would use, so it is the one compared with.
"""
from __future__ import annotations

import pandas as pd

from ..analysis.significance import compare_times, geomean_speedup
from .model import Config, Group, Section

KERAS_PREFIX = "keras-"


def backend_of(adapter: str) -> str | None:
    """"jax" for "keras-jax"; None for an adapter that is not Keras on a backend."""
    if not adapter.startswith(KERAS_PREFIX):
        return None
    return adapter[len(KERAS_PREFIX):] or None


def _is_native(adapter: str, backend: str) -> bool:
    return adapter == backend or adapter.startswith(backend + "-")


def _ci(c: Config) -> tuple[float, float]:
    return c.summary.ci_low, c.summary.ci_high


def _against(fast: Config, other: Config) -> tuple[float, bool]:
    """(other's throughput / fast's, whether the difference is significant): the verdict's rule."""
    comp = compare_times(fast.times_s, other.times_s, ci_a=_ci(fast), ci_b=_ci(other))
    return other.samples_per_s / fast.samples_per_s, comp.significant


def _ratio_text(ratio: float, significant: bool) -> str:
    if not significant:
        return f"{ratio:.2f}x (tied)"
    return f"{ratio:.2f}x ({'faster' if ratio > 1 else 'slower'})"


def _observations(c: Config):
    return c.process_times_s or c.times_s


def keras_backends_section(groups: list[Group]) -> Section | None:
    """The section, or None where the run measured no Keras adapter."""
    rows, per_adapter, wins = [], {}, {}
    for g in groups:
        for b in g.batches():
            peers = g.at(b)
            keras = [c for c in peers if backend_of(c.framework)]
            if not keras:
                continue
            fastest_keras = max(keras, key=lambda c: (c.samples_per_s, c.framework))
            for c in keras:
                backend = backend_of(c.framework)
                if len(keras) < 2:
                    among = "only one"
                elif c is fastest_keras:
                    rivals = [_against(c, o)[1] for o in keras if o is not c]
                    among = "fastest" if all(rivals) else "fastest (tied)"
                else:
                    ratio, significant = _against(fastest_keras, c)
                    among = _ratio_text(ratio, significant)
                if len(keras) >= 2:
                    wins.setdefault(c.framework, [0, 0, 0])[0 if among == "fastest" else
                                                            1 if among.startswith("fastest") or "tied" in among else 2] += 1
                natives = [o for o in peers if _is_native(o.framework, backend)]
                native = max(natives, key=lambda o: (o.samples_per_s, o.framework)) if natives else None
                if native is not None:
                    per_adapter.setdefault(c.framework, []).append((native, c))
                rows.append({
                    "job": f"{g.model} {g.mode} b={b}" + ("" if g.device == "cpu" else f" {g.device}")
                           + ("" if g.precision == "fp32" else f" {g.precision}") + (f" on {g.host}" if g.host else ""),
                    "keras adapter": c.framework,
                    "samples/s": f"{c.samples_per_s:,.1f}",
                    "among Keras": among,
                    "native": native.framework if native else "-",
                    "native samples/s": f"{native.samples_per_s:,.1f}" if native else "-",
                    "Keras / native": _ratio_text(*_against(native, c)) if native else "not measured",
                })
    if not rows:
        return None
    notes = ["Each Keras adapter against the other Keras adapters on the same job (among Keras: its throughput "
             "over the fastest Keras adapter's), and against the fastest native adapter of its backend on the "
             "same job (Keras / native: its throughput over the native one's; above 1, Keras is faster). "
             "\"tied\" unless a Mann-Whitney U test gives p < 0.05 and the 95% CIs of the medians do not "
             "overlap, as everywhere in this report."]
    for name, pairs in sorted(per_adapter.items()):
        point, low, high = geomean_speedup([(_observations(n), _observations(k)) for n, k in pairs],
                                           floors=[(n.median_floor, k.median_floor) for n, k in pairs])
        natives = sorted({n.framework for n, _ in pairs})
        notes.append(f"{name}: {point:.2f}x the speed of native {', '.join(natives)} "
                     f"(geometric mean over {len(pairs)} job{'s' if len(pairs) != 1 else ''}, 95% CI "
                     f"{low:.2f}–{high:.2f}).")
    if wins:
        notes.append("Which backend for a Keras user, over the jobs that measured two or more: " + "; ".join(
            f"{name} fastest in {w}, tied for fastest in {t}, slower in {s}" for name, (w, t, s) in sorted(wins.items()))
            + ".")
    return Section("Keras backends", pd.DataFrame(rows), notes, [])
