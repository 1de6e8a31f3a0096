"""Tables and the plot of `bench validate`: drawn from a `Validation`, never computed here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from ..equivalence import FORWARD_TOL, FP64_TOL, TF32_FORWARD_TOL, pair_error
from ..optimizers import OPTIMIZERS
from .matrix import TF32_CHECKS, Validation

CURVE_COLUMNS = (1, 5, 10, 20)  # steps shown in the loss-curve table (1-based)
WIDTH = 160  # characters: the matrix is wide; a pipe's default of 80 would cut every cell
_SHORT = {"momentum": "mom.", "adagrad": "adagr.", "adadelta": "adadel.", "rmsprop": "rmsp.",
          "curve.sgd": "curve sgd", "curve.adam": "curve adam", "tf32.logits": "logits tf32", "tf32.loss": "loss tf32"}


def _exp(x: float) -> str:
    """1e-05 -> 1e-5."""
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def _columns(result: Validation) -> list[str]:
    order = ["logits", "loss", *TF32_CHECKS, "grad"]
    found = {c.check for c in result.checks} - {"run"}
    steps = [c for c in found if c.startswith("step.")]
    curves = [c for c in found if c.startswith("curve.")]
    return [c for c in order if c in found] + sorted(steps, key=_optimizer_order) + sorted(curves)


def _optimizer_order(check: str) -> int:
    return list(OPTIMIZERS).index(check.removeprefix("step.")) if check.removeprefix("step.") in OPTIMIZERS else 99


def matrix_table(result: Validation) -> Table:
    """model x framework rows, one column per check: the largest error against any other framework."""
    cols = _columns(result)
    tf32 = (f"; logits, loss tf32 <= {_exp(TF32_FORWARD_TOL)} max-abs-relative (float32 with TF32 matmuls and "
            "convolutions on the GPU, against the reference's float32)") if set(TF32_CHECKS) & set(cols) else ""
    t = Table(title="bench validate: largest error against every other framework",
              caption=f"pass: logits, loss <= {_exp(FORWARD_TOL)} max-abs-relative (float32); grad, curves <= "
                      f"{_exp(FP64_TOL)} max-abs-relative, 3-step updates <= {_exp(FP64_TOL)} norm-relative per tensor "
                      f"(float64){tf32}")
    t.add_column("model")
    t.add_column("framework")
    for c in cols:
        t.add_column(_SHORT.get(c.removeprefix("step."), c.removeprefix("step.")), justify="right")
    t.add_column("result")
    keys = list(dict.fromkeys((c.model, c.framework) for c in result.checks))
    for model, fw in keys:
        mine = {c.check: c for c in result.checks if c.model == model and c.framework == fw}
        cells = []
        for col in cols:
            c = mine.get(col)
            cells.append("-" if c is None else f"[{'green' if c.passed else 'red'}]{c.error:.1e}[/]")
        if "run" in mine:
            verdict = "[red]no result[/]"  # the reason is listed under the table
        else:
            verdict = "[green]pass[/]" if all(c.passed for c in mine.values()) else "[red]FAIL[/]"
        t.add_row(escape(model), escape(fw), *cells, verdict)
    return t


def curve_table(result: Validation) -> Table:
    """Loss at a few steps of each curve, per framework, and the largest difference between frameworks."""
    t = Table(title="training-curve parity (float64, same weights and batches, dropout off)")
    for col in ("model", "optimizer", "framework", *[f"loss @{s}" for s in CURVE_COLUMNS], "max rel. diff"):
        t.add_column(col, justify="left" if col in ("model", "optimizer", "framework") else "right")
    groups = sorted({(m, o) for m, o, _ in result.curves})
    for model, opt in groups:
        fws = sorted(fw for m, o, fw in result.curves if (m, o) == (model, opt))
        for fw in fws:
            curve = result.curves[(model, opt, fw)]
            worst = max((pair_error(curve, result.curves[(model, opt, g)]) for g in fws if g != fw), default=0.0)
            cells = [f"{curve[s - 1]:.6f}" if s <= len(curve) else "-" for s in CURVE_COLUMNS]
            t.add_row(escape(model), escape(opt), escape(fw), *cells, f"{worst:.1e}")
    return t


def plot_curves(result: Validation, path: Path) -> Path | None:
    """One panel per (model, optimizer): each framework's loss against the step."""
    if not result.curves:
        return None
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # adapter names are text, not TeX
    import matplotlib.pyplot as plt

    groups = sorted({(m, o) for m, o, _ in result.curves})
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 2.8), squeeze=False)
    for ax, (model, opt) in zip(axes[0], groups):
        fws = sorted(fw for m, o, fw in result.curves if (m, o) == (model, opt))
        for i, fw in enumerate(fws):
            curve = np.asarray(result.curves[(model, opt, fw)])
            ax.plot(np.arange(1, len(curve) + 1), curve, label=fw, linestyle=("-", "--", ":", "-.")[i % 4])
        ax.set_title(f"{model}, {opt}", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
