"""The run to accuracy (xfbench.harness.measure.convergence) with a fake clock and a fake adapter: what is timed,
what is left out, when it stops. The real frameworks' runs are tested with their input pipelines."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xfbench.harness.data import batch_order, load_dataset, order_sha256
from xfbench.harness.measure.convergence import train_to_target


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Learner:
    """Predicts every label right once it has taken `learns_at` steps, class 0 before. Each step costs
    STEP_S on the clock, each batch from the pipeline WAIT_S, each evaluation batch EVAL_S."""

    STEP_S, WAIT_S, EVAL_S = 0.010, 0.002, 0.5

    def __init__(self, clock: Clock, learns_at: int, classes: int = 10) -> None:
        self.clock, self.learns_at, self.classes = clock, learns_at, classes
        self.steps, self.seen, self.closed = 0, [], False

    def put_batch(self, x: np.ndarray, y: np.ndarray) -> Any:
        return x, y

    def pipeline_description(self, workers: int) -> str:
        return f"fake, {workers} workers"

    def input_pipeline(self, x, y, order, workers=0):
        try:
            for idx in order:
                self.clock.now += self.WAIT_S
                self.seen.append(idx)
                yield x[idx], y[idx]
        finally:
            self.closed = True

    def train_step(self, batch: Any) -> None:
        self.clock.now += self.STEP_S
        self.steps += 1

    def sync(self) -> None:
        pass

    def forward(self, batch: Any) -> tuple[np.ndarray, float]:
        self.clock.now += self.EVAL_S
        y = batch[1]  # (N,) labels, or (N, T) targets of a token model
        logits = np.zeros((*y.shape, self.classes), np.float32)
        if self.steps >= self.learns_at:
            np.put_along_axis(logits, y[..., None], 1.0, axis=-1)
        return logits, 1.0 / (1 + self.steps)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_time_to_target_counts_training_and_input_and_leaves_the_evaluations_out(digits):
    clock = Clock()
    learner = Learner(clock, learns_at=25)
    run = train_to_target(learner, digits, batch_size=32, seed=3, target=0.9, eval_every=10, max_steps=100,
                          workers=2, clock=clock)
    assert [p.step for p in run.curve] == [10, 20, 30]  # stopped at the first evaluation past the target
    assert run.steps_to_target == 30
    per_step = Learner.STEP_S + Learner.WAIT_S
    assert run.time_to_target_s == pytest.approx(30 * per_step)  # two evaluations (2 x 2 batches x 0.5 s) left out
    assert run.curve[-1].input_wait_s == pytest.approx(30 * Learner.WAIT_S)
    assert run.input_share == pytest.approx(Learner.WAIT_S / per_step)
    assert run.curve[0].eval_s == pytest.approx(2 * Learner.EVAL_S)  # 355 test images: two forward passes
    assert run.curve[-1].test_accuracy == 1.0 and run.curve[0].test_accuracy == pytest.approx(
        np.mean(digits.y_test == 0))
    assert run.interval_step_s() == pytest.approx([per_step] * 3)
    assert run.first_step_s == pytest.approx(per_step)
    assert run.pipeline == "fake, 2 workers" and learner.closed


def test_the_batches_fed_are_the_shared_order_and_its_hash_is_recorded(digits):
    clock = Clock()
    learner = Learner(clock, learns_at=10**9)
    run = train_to_target(learner, digits, batch_size=16, seed=7, target=0.99, eval_every=7, max_steps=20,
                          clock=clock)
    order = list(batch_order(len(digits.x_train), 16, 7, steps=20))
    assert len(learner.seen) == 20 and all(np.array_equal(a, b) for a, b in zip(learner.seen, order))
    assert run.order_sha256 == order_sha256(order)
    assert [p.step for p in run.curve] == [7, 14, 20]  # and once more at the step budget
    assert run.steps_to_target is None and run.time_to_target_s is None
    out = run.to_json()
    assert out["final_accuracy"] == run.curve[-1].test_accuracy and out["dataset"] == digits.short_id
    assert len(out["curve"]) == 3 and out["curve"][0]["step"] == 7


def test_sequence_accuracy_counts_the_answer_positions_only():
    data = load_dataset("copy-memory", train=64, test=32)
    clock = Clock()
    learner = Learner(clock, learns_at=2, classes=int(data.classes))
    run = train_to_target(learner, data, batch_size=8, seed=0, target=1.0, eval_every=1, max_steps=5, clock=clock)
    assert run.steps_to_target == 2 and run.curve[0].test_accuracy < 1.0


def test_bad_knobs_are_refused(digits):
    with pytest.raises(ValueError, match="eval_every and max_steps must be >= 1"):
        train_to_target(Learner(Clock(), 1), digits, batch_size=8, seed=0, target=0.5, eval_every=0, max_steps=5)
