"""How much does the harness lose to its own overhead? Paired rounds of hand-written loop vs `bench run`.

On a shared machine one process can run 15% faster than the next with identical code, so a single
pair proves nothing about a 2% budget. This script runs ROUNDS rounds; each round runs the hand-written
baseline and the harness once, in a seeded random order, and prints every pair, then the median of the
per-round ratios harness / hand with its bootstrap 95% CI (xfbench.harness.analysis.stats.median_ci). The harness loses
at most 2% when that CI's lower bound is >= 0.98.

    .venv/bin/python tests/baselines/overhead.py torch --rounds 10

A script, not a test: it measures real time, and nothing asserts on it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from xfbench.harness.analysis.stats import median_ci  # noqa: E402

HAND = {  # adapter -> the hand-written baseline's command-line arguments
    "torch": ["hand_torch.py"],
    "tensorflow": ["hand_tensorflow.py"],
    "tensorflow-xla": ["hand_tensorflow.py", "--xla"],
    "jax": ["hand_jax.py"],
}
RATE = re.compile(r"([\d.]+) samples/s")


def hand(adapter: str, threads: int, seconds: float) -> float:
    script, *extra = HAND[adapter]
    out = subprocess.run([sys.executable, str(HERE / script), *extra, "--threads", str(threads),
                          "--seconds", str(seconds)], capture_output=True, text=True, check=True).stdout
    return float(RATE.search(out).group(1))


def harness(adapter: str, out: Path) -> tuple[float, float, float]:
    """samples/s and its 95% CI from one `bench run` of tests/baselines/lenet5_b64.toml."""
    bench = Path(sys.executable).with_name("bench")
    subprocess.run([str(bench), "run", str(HERE / "lenet5_b64.toml"), "--frameworks", adapter, "--out", str(out)],
                   capture_output=True, text=True, check=True)
    run = max((p for p in out.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    rec = json.loads((run / "cases.jsonl").read_text().splitlines()[-1])
    if rec["status"] != "ok":
        raise SystemExit(f"harness case {rec['status']}: {rec.get('reason')}")
    m = rec["metrics"]
    return m["samples_per_s"], m["samples_per_s_ci"][0], m["samples_per_s_ci"][1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", choices=sorted(HAND))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="must match tests/baselines/lenet5_b64.toml")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds of the hand-written loop")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    order = random.Random(args.seed)
    ratios = []
    print("round | load (1/5/15 min) | hand samples/s | harness samples/s (95% CI) | harness / hand", flush=True)
    with tempfile.TemporaryDirectory(prefix="xfbench-overhead-") as tmp:
        for i in range(1, args.rounds + 1):
            first_hand = order.random() < 0.5
            before = load()
            if first_hand:
                h = hand(args.adapter, args.threads, args.seconds)
                b, lo, hi = harness(args.adapter, Path(tmp))
            else:
                b, lo, hi = harness(args.adapter, Path(tmp))
                h = hand(args.adapter, args.threads, args.seconds)
            ratios.append(b / h)
            print(f"{i} | {before} | {h:,.0f}{' (first)' if first_hand else ''} | {b:,.0f} ({lo:,.0f}-{hi:,.0f})"
                  f" | {b / h:.3f}", flush=True)
    lo, hi = median_ci(ratios)
    median = statistics.median(ratios)
    print(f"{args.adapter}: median harness/hand {median:.3f} (95% CI {lo:.3f}-{hi:.3f}) over {len(ratios)} rounds;"
          f" within the 2% overhead budget: {'yes' if lo >= 0.98 else 'not shown'}")


if __name__ == "__main__":
    main()
