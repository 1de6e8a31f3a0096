"""The harness's own overhead, isolated: its timed step vs a tutorial step on the same model, one process.

Two processes running identical code on this shared machine differ by up to ~20% (see overhead.py), which
hides a 2% budget. This script removes that spread: in one process, pinned and capped like a worker
(xfbench.harness.measure.process.pin_threads), it builds the adapter once and alternates samples of

  harness: xfbench.harness.measure.timing.step_timer(adapter.train_step, adapter.sync)  (what `bench run` times), and
  hand:    the step a framework tutorial writes, on the same model, optimizer and batch, then the same sync

in ABBA order (neither always first) for --pairs pairs, and prints the median per-step time of each
and the median of the paired ratios hand step time / harness step time (= harness speed / hand speed)
with its bootstrap 95% CI (lower bound >= 0.98: the harness loses at most 2%).

    .venv/bin/python tests/baselines/inprocess.py torch --pairs 30

A script, not a test: it measures real time, and nothing asserts on it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from xfbench.harness.measure.process import pin_threads  # noqa: E402  (first: before numpy or a framework loads)


def hand_torch(adapter, batch):
    import torch.nn.functional as F

    model, opt = adapter.model, adapter.opt
    x, y = batch
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step, adapter.sync  # torch on CPU: the work is done when step() returns


def hand_jax(adapter, batch):
    import jax
    import optax

    net, tx = adapter.net, adapter.tx
    x, y = batch
    state = {"params": jax.tree.map(lambda a: a.copy(), adapter.params)}
    state["opt"] = tx.init(state["params"])

    def loss_fn(params):
        logits = net.apply({"params": params}, x, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def update(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    update = jax.jit(update, donate_argnums=(0, 1))

    def step():
        state["params"], state["opt"], state["loss"] = update(state["params"], state["opt"])

    def sync():
        jax.block_until_ready(state)
    return step, sync


HAND = {"torch": hand_torch, "jax": hand_jax}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", choices=sorted(HAND))
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sample-s", type=float, default=0.2, help="seconds per sample (k steps)")
    args = p.parse_args()
    pin_threads(args.threads)

    from xfbench.harness.adapter import discover
    from xfbench.harness.models import build_spec
    from xfbench.harness.optimizers import build_optimizer
    from xfbench.harness.analysis.stats import median_ci
    from xfbench.harness.measure.timing import step_timer
    from xfbench.harness.weights import init_weights, make_inputs

    spec = build_spec("lenet5")
    adapter = discover()[args.adapter].load()(device="cpu", precision="fp32", threads=args.threads, seed=0)
    adapter.build(spec, build_optimizer("sgd"))
    adapter.load_weights(init_weights(spec, 0))
    batch = adapter.put_batch(*make_inputs(spec, args.batch_size, 1))
    kernels = {"harness": step_timer(lambda: adapter.train_step(batch), adapter.sync,
                                     clock=time.perf_counter_ns)}
    step, sync = HAND[args.adapter](adapter, batch)

    def hand(k: int) -> float:  # the same loop shape as step_timer, written out by hand
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        sync()
        return time.perf_counter() - t0
    kernels["hand"] = hand

    for kernel in kernels.values():  # compile and warm up both for >= 1 s
        kernel(1)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            kernel(3)
    k = max(1, round(args.sample_s / (kernels["hand"](10) / 10)))
    times: dict[str, list[float]] = {"harness": [], "hand": []}
    for i in range(args.pairs):
        for name in (("harness", "hand") if i % 2 else ("hand", "harness")):  # ABBA: neither always first
            times[name].append(kernels[name](k) / k)
    ratios = [h / b for h, b in zip(times["hand"], times["harness"])]
    lo, hi = median_ci(ratios)
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"{args.adapter} lenet5 train b={args.batch_size}, {args.pairs} pairs of {k} steps, one process:\n"
          f"  hand    {args.batch_size / med['hand']:,.1f} samples/s (median step {med['hand'] * 1e3:.3f} ms)\n"
          f"  harness {args.batch_size / med['harness']:,.1f} samples/s (median step {med['harness'] * 1e3:.3f} ms)\n"
          f"  harness speed / hand speed, median of paired ratios: {statistics.median(ratios):.4f} "
          f"(95% CI {lo:.4f}-{hi:.4f}); within the 2% overhead budget: {'yes' if lo >= 0.98 else 'not shown'}")


if __name__ == "__main__":
    main()
