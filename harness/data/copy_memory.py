"""`copy-memory`: the copy task for `lstm` and `gru` on the spec's token interface (docs/spec.md section 4.1).

Why this task. It is the classic test of an LSTM's memory (posed with the LSTM by Hochreiter and
Schmidhuber 1997; in this form Arjovsky, Shah and Bengio 2016), it needs no download, and its best answer
is known and exact: every answer is determined by the input, so a perfect model scores 100%, and a model
that remembers nothing expects 1/symbols. Its answer positions are the same in every sequence and the
other positions have a target too (blank), so the spec's loss at every step stays the loss: no framework
needs a masked loss that `bench validate` has not compared. Associative recall, the other candidate,
scores one position per sequence (a tenth of the signal per example) and needs a lookup by content,
which small recurrent models learn slowly; a word-level corpus has no known best answer.

A sequence of `seq_len` tokens; blank = 0, data symbols 1..symbols, delimiter = symbols + 1:

    input:   s1 .. sL  0 .. 0  D  0 .. 0      (L = copy_len data symbols, seq_len - 2L - 1 blanks, D, L blanks)
    target:  0 ........................ 0  s1 .. sL

The model must output blank until the delimiter, then the L symbols it saw first, in order. Accuracy
is scored on the last L positions only (`answer_mask`); chance there is 1/symbols, perfect is 1. The
loss of the best memoryless model (blank everywhere, uniform over the symbols at the answers) is
L * ln(symbols) / seq_len: the plateau a model sits on before it learns to remember.
"""
from __future__ import annotations

import numpy as np

from .dataset import Dataset, DataError

BLANK = 0
DEFAULTS = {"seq_len": 35, "copy_len": 10, "symbols": 8, "train": 10_000, "test": 1_000, "seed": 0}


def copy_memory(count: int, seq_len: int, copy_len: int, symbols: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` sequences: tokens (count, seq_len) and targets (count, seq_len), int32."""
    data = rng.integers(1, symbols + 1, size=(count, copy_len), dtype=np.int32)
    x = np.full((count, seq_len), BLANK, np.int32)
    y = np.full((count, seq_len), BLANK, np.int32)
    x[:, :copy_len] = data
    x[:, seq_len - copy_len - 1] = symbols + 1  # the delimiter: "now repeat"
    y[:, seq_len - copy_len:] = data
    return x, y


def answer_mask(seq_len: int, copy_len: int) -> np.ndarray:
    """(seq_len,) bool: True at the last `copy_len` positions, where the targets are the copied symbols."""
    return np.arange(seq_len) >= seq_len - copy_len


def load_copy_memory(**options: int) -> Dataset:
    """The `copy-memory` data set; options (all int) and defaults in DEFAULTS. Same options, same arrays.

    Train and test come from separate streams, `default_rng([seed, 0])` and `default_rng([seed, 1])`:
    a larger training set leaves the test set as it was.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise DataError(f"copy-memory has no option {', '.join(unknown)}; it takes {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **options}
    for key, value in p.items():
        if type(value) is not int or value < (0 if key == "seed" else 1):
            raise DataError(f"copy-memory: {key} must be a positive integer, got {value!r}")
    if p["seq_len"] < 2 * p["copy_len"] + 1:
        raise DataError(f"copy-memory: seq_len={p['seq_len']} is too short for copy_len={p['copy_len']} "
                        f"(needs at least {2 * p['copy_len'] + 1}); lower copy_len or raise seq_len")
    shape = (p["seq_len"], p["copy_len"], p["symbols"])
    x_train, y_train = copy_memory(p["train"], *shape, np.random.default_rng([p["seed"], 0]))
    x_test, y_test = copy_memory(p["test"], *shape, np.random.default_rng([p["seed"], 1]))
    return Dataset("copy-memory", "sequence", x_train, y_train, x_test, y_test,
                   classes=p["symbols"] + 2, chance=1 / p["symbols"],
                   answer_mask=answer_mask(p["seq_len"], p["copy_len"]), params=p)
