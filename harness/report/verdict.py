"""The verdict: which framework is best, per scenario, with its uncertainty. Pure over report Groups."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from ..analysis.significance import Score, clear_winner, compare_times, relative_to_best
from .model import Config, Group

METHOD = (
    "A comparable case is one model, mode, device, precision, thread count and batch size that at least two "
    "frameworks measured. speed vs best is the geometric mean over a framework's comparable cases of "
    "(fastest median step time / its own), so 1.00 means fastest everywhere; its 95% CI is a seeded "
    "percentile bootstrap over the worker processes of each case, the samples within each process, and the set "
    "of cases. In a case a framework "
    "wins when it is the fastest and significantly faster than every other, loses when significantly slower "
    "than the fastest, and ties otherwise (significant: Mann-Whitney U p < 0.05 and non-overlapping 95% CIs "
    "of the medians). Each answer below names a winner only when its interval overlaps no other framework's; "
    "otherwise it says no clear winner. Small batch: the smallest batch size measured for that model. "
    "Start-up: first-step time (tracing, compilation). Memory: the steady-state step peak (device memory on GPU, "
    "host RSS on CPU, reset after the warm-up), not the set-up peak."
)
HOSTS_METHOD = (  # appended where the run's records come from several hosts (xfbench.harness.report.hosts)
    " The records come from several hosts: a comparable case is also one host, so frameworks are compared "
    "only on the same machine, and a framework's score is over its cases on every host."
)


@dataclass(frozen=True)
class Verdict:
    method: str
    table: pd.DataFrame
    answers: list[tuple[str, str]]


Comparable = tuple[Group, list[Config]]  # one job at one batch size, the configs that measured it
CONTENDED_PREFIX = "contended"  # the record warning of samples that other processes slowed (CPU or GPU)


def vs_fastest(group: Group, cfg: Config) -> tuple[float, str]:
    """(throughput / fastest throughput at the same batch size, 'fastest' | 'tied' | 'N.NNx slower')."""
    peers = group.at(cfg.batch_size)
    if len(peers) < 2:
        return 1.0, "only one measured"
    fastest = max(peers, key=lambda c: (c.samples_per_s, c.framework))
    if cfg is fastest:
        return 1.0, "fastest"
    comp = compare_times(fastest.times_s, cfg.times_s, ci_a=(fastest.summary.ci_low, fastest.summary.ci_high),
                         ci_b=(cfg.summary.ci_low, cfg.summary.ci_high))
    return cfg.samples_per_s / fastest.samples_per_s, comp.label() if comp.significant else "tied"


def comparable_cases(groups: Sequence[Group]) -> list[Comparable]:
    """(group, configs at one batch size) wherever at least two frameworks measured the same job."""
    out = []
    for g in groups:
        for b in g.batches():
            peers = g.at(b)
            if len({c.framework for c in peers}) >= 2:
                out.append((g, peers))
    return out


def win_tie_loss(cases: Sequence[Comparable]) -> dict[str, list[int]]:
    """Framework -> [wins, ties, losses] against the fastest of each case (see METHOD)."""
    out: dict[str, list[int]] = {}
    for _, peers in cases:
        fastest = max(peers, key=lambda c: (c.samples_per_s, c.framework))
        slower = {c.framework: compare_times(fastest.times_s, c.times_s,
                                             ci_a=(fastest.summary.ci_low, fastest.summary.ci_high),
                                             ci_b=(c.summary.ci_low, c.summary.ci_high)).significant
                  for c in peers if c is not fastest}
        for c in peers:
            tally = out.setdefault(c.framework, [0, 0, 0])
            if c is fastest:
                tally[0 if all(slower.values()) else 1] += 1
            else:
                tally[2 if slower[c.framework] else 1] += 1
    return out


def _scores(cases: Sequence[Comparable], observe: Callable[[Config], Sequence[float]],
            floored: bool = False) -> dict[str, Score]:
    """`floored`: the observations are step times, whose medians' draws get the run's process-spread floor."""
    data, floors = [], []
    for _, peers in cases:
        obs = {c.framework: observe(c) for c in peers if observe(c)}
        if len(obs) >= 2:
            data.append(obs)
            floors.append({c.framework: c.median_floor for c in peers} if floored else {})
    return relative_to_best(data, floors=floors)


def _fmt(fw: str, s: Score) -> str:
    return f"{fw} at {s.geomean:.2f} of the best (95% CI {s.ci_low:.2f}–{s.ci_high:.2f}, {s.cases} case{'s' if s.cases != 1 else ''})"


def answer(scores: dict[str, Score]) -> str:
    """One line: the winner with its score and the runner-up, or 'no clear winner' and who is tied."""
    if not scores:
        return "no comparable cases (needs two frameworks measured on the same job)"
    winner, tied = clear_winner(scores)
    if winner is None:
        return "no clear winner: " + "; ".join(_fmt(fw, scores[fw]) for fw in tied) + " overlap"
    rest = sorted((fw for fw in scores if fw != winner), key=lambda fw: (-scores[fw].geomean, fw))
    return _fmt(winner, scores[winner]) + (f"; next {_fmt(rest[0], scores[rest[0]])}" if rest else "")


def _small_batch(cases: Sequence[Comparable]) -> list[Comparable]:
    smallest: dict[tuple, int] = {}
    for g, peers in cases:  # per host too: a host's smallest batch is small there
        k = (g.model, g.device, g.precision, g.threads, g.params, g.host)
        smallest[k] = min(smallest.get(k, peers[0].batch_size), peers[0].batch_size)
    return [(g, p) for g, p in cases if g.mode == "infer"
            and p[0].batch_size == smallest[(g.model, g.device, g.precision, g.threads, g.params, g.host)]]


def _times(c: Config) -> Sequence[Sequence[float]] | Sequence[float]:
    """Per-step times by worker process (the bootstrap resamples processes first), or pooled."""
    return c.process_times_s if len(c.process_times_s) > 1 else c.times_s


def verdict(groups: Sequence[Group]) -> Verdict:
    cases = comparable_cases(groups)
    overall = _scores(cases, _times, floored=True)
    wtl = win_tie_loss(cases)
    rows = [{"framework": fw, "speed vs best": f"{s.geomean:.2f}", "95% CI": f"{s.ci_low:.2f}–{s.ci_high:.2f}",
             "cases": str(s.cases), "wins": str(wtl[fw][0]), "ties": str(wtl[fw][1]), "losses": str(wtl[fw][2])}
            for fw, s in sorted(overall.items(), key=lambda kv: (-kv[1].geomean, kv[0]))]
    table = pd.DataFrame(rows, columns=["framework", "speed vs best", "95% CI", "cases", "wins", "ties", "losses"])
    infer = [(g, p) for g, p in cases if g.mode == "infer"]
    answers = [
        ("Fastest overall", answer(overall)),
        ("Fastest training", answer(_scores([(g, p) for g, p in cases if g.mode == "train"], _times, floored=True))),
        ("Fastest inference at small batch", answer(_scores(_small_batch(infer), _times, floored=True))),
        ("Fastest start-up", answer(_scores(cases, lambda c: c.first_step_s))),
        ("Least memory", answer(_scores(cases, lambda c: c.memory_bytes))),
    ]
    contended = [f"{c.framework} {g.model} {g.mode} b={c.batch_size}" + (f" on {g.host}" if g.host else "")
                 for g, peers in cases for c in peers
                 if any(w.startswith(CONTENDED_PREFIX) for w in c.warnings)]
    if contended:  # the answers above rest on them: say so where the answers are read
        answers.append(("Measured under contention", f"{len(contended)} of {sum(len(p) for _, p in cases)} "
                        "measurements ran while other processes used the worker's CPUs or GPU, and no clean samples "
                        "could replace theirs (see Warnings): "
                        f"{', '.join(contended)}. Rerun on a quiet machine before relying on these answers."))
    return Verdict(METHOD + (HOSTS_METHOD if any(g.host for g in groups) else ""), table, answers)
