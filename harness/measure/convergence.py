"""Time to accuracy (issue 16): train from the canonical weights on real data until a target test accuracy.

The loop runs in a case's worker, after the adapter is built and loaded, with the adapter's own input
pipeline (`Adapter.input_pipeline`: torch DataLoader, tf.data, a JAX prefetching loop) over the batch order
every framework shares (`xfbench.harness.data.batch_order`, seeded). What is timed, as DAWNBench and MLPerf
Training time it:

- **training time**: wall time from the first batch request to the end of the last step of each interval
  (the device synced there), input pipeline included; the evaluations are outside it.
- **input wait**: the part of the training time spent waiting for the next batch (`next(pipeline)`); its
  share of the training time is the pipeline's cost that compute did not hide.
- **evaluation**: every `eval_every` steps, the test set's accuracy and loss through `adapter.forward`
  (the test batches are built once, before any timing); its time is recorded apart and never counted.

The run stops at the first evaluation whose accuracy reaches `target`, or after `max_steps`. Time to
target is the training time at that evaluation; a run that never reaches it has none (not a number).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..data import Dataset, accuracy, batch_order, order_sha256

EVAL_BATCH = 256  # examples per forward pass of the evaluation: its time is not measured, only its result


@dataclass(frozen=True)
class Point:
    """One evaluation: after `step` steps and `train_s` seconds of training."""

    step: int
    train_s: float
    input_wait_s: float
    test_accuracy: float
    test_loss: float
    eval_s: float

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "train_s": self.train_s, "input_wait_s": self.input_wait_s,
                "test_accuracy": self.test_accuracy, "test_loss": self.test_loss, "eval_s": self.eval_s}


@dataclass
class Convergence:
    """What a run to accuracy measured (the record's `convergence` entry)."""

    dataset: str  # Dataset.short_id: name@content hash
    target: float
    eval_every: int
    max_steps: int
    batch_size: int
    workers: int
    order_sha256: str  # the batches every framework was fed, in order (xfbench.harness.data.order_sha256)
    pipeline: str  # Adapter.pipeline_description
    curve: list[Point] = field(default_factory=list)
    first_step_s: float = 0.0  # the first batch and step, synced: tracing, compilation, the pipeline's start
    steps_to_target: int | None = None
    time_to_target_s: float | None = None

    @property
    def train_s(self) -> float:
        return self.curve[-1].train_s if self.curve else 0.0

    @property
    def input_share(self) -> float | None:
        return self.curve[-1].input_wait_s / self.train_s if self.curve and self.train_s > 0 else None

    def interval_step_s(self) -> list[float]:
        """Seconds per training step over each interval between evaluations (the record's samples)."""
        out, prev_step, prev_s = [], 0, 0.0
        for p in self.curve:
            if p.step > prev_step and p.train_s > prev_s:
                out.append((p.train_s - prev_s) / (p.step - prev_step))
            prev_step, prev_s = p.step, p.train_s
        return out

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "target": self.target, "eval_every": self.eval_every,
                "max_steps": self.max_steps, "batch_size": self.batch_size, "workers": self.workers,
                "order_sha256": self.order_sha256, "pipeline": self.pipeline,
                "steps_to_target": self.steps_to_target, "time_to_target_s": self.time_to_target_s,
                "train_s": self.train_s, "input_share": self.input_share, "first_step_s": self.first_step_s,
                "final_accuracy": self.curve[-1].test_accuracy if self.curve else None,
                "curve": [p.to_json() for p in self.curve]}


def evaluate(adapter: Any, test_batches: list[tuple[Any, np.ndarray, int]], data: Dataset) -> tuple[float, float]:
    """Test accuracy and mean loss over `test_batches` (adapter batch, targets, examples) via `adapter.forward`."""
    correct, loss, n = 0.0, 0.0, 0
    for batch, targets, count in test_batches:
        logits, batch_loss = adapter.forward(batch)
        predicted = np.asarray(logits).argmax(axis=-1)
        correct += accuracy(predicted, targets, data.answer_mask) * count
        loss += float(batch_loss) * count
        n += count
    return correct / n, loss / n


def test_batches(adapter: Any, data: Dataset) -> list[tuple[Any, np.ndarray, int]]:
    """The test set as adapter batches, built once before anything is timed."""
    out = []
    for i in range(0, len(data.x_test), EVAL_BATCH):
        x, y = data.x_test[i:i + EVAL_BATCH], data.y_test[i:i + EVAL_BATCH]
        out.append((adapter.put_batch(np.ascontiguousarray(x), np.ascontiguousarray(y)), np.asarray(y), len(x)))
    return out


def train_to_target(adapter: Any, data: Dataset, *, batch_size: int, seed: int, target: float, eval_every: int,
                    max_steps: int, workers: int = 0, clock: Callable[[], float] = time.perf_counter) -> Convergence:
    """Train `adapter` (built, weights loaded) on `data` until `target` test accuracy or `max_steps`."""
    if eval_every < 1 or max_steps < 1:
        raise ValueError(f"eval_every and max_steps must be >= 1, got {eval_every} and {max_steps}")
    order = list(batch_order(len(data.x_train), batch_size, seed, steps=max_steps))
    run = Convergence(data.short_id, target, eval_every, max_steps, batch_size, workers, order_sha256(order),
                      adapter.pipeline_description(workers))
    tests = test_batches(adapter, data)
    adapter.sync()
    pipeline = iter(adapter.input_pipeline(data.x_train, data.y_train, order, workers))
    train_s = wait_s = 0.0
    t = clock()
    for step in range(1, max_steps + 1):
        asked = clock()
        batch = next(pipeline)
        wait_s += clock() - asked
        adapter.train_step(batch)
        if step == 1:
            adapter.sync()
            run.first_step_s = clock() - t
        if step % eval_every and step != max_steps:
            continue
        adapter.sync()
        train_s += clock() - t
        e0 = clock()
        acc, loss = evaluate(adapter, tests, data)
        run.curve.append(Point(step, train_s, wait_s, acc, loss, clock() - e0))
        if acc >= target:
            run.steps_to_target, run.time_to_target_s = step, train_s
            break
        t = clock()
    close = getattr(pipeline, "close", None)
    if close:
        close()  # a DataLoader's workers, a prefetch thread: stopped, not left to the interpreter's exit
    return run
