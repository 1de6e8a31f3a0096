"""The report's "Keras backends" section, from synthetic configurations with known speeds (no real timing)."""
import numpy as np

from xfbench.harness.analysis.stats import summarize
from xfbench.harness.report.backends import backend_of, keras_backends_section
from xfbench.harness.report.formats.markdown import render
from xfbench.harness.report.model import Config, Group


def _config(framework: str, step_ms: float, batch: int = 8, seed: int = 0) -> Config:
    rng = np.random.default_rng(seed)
    per_process = tuple(tuple(step_ms / 1e3 * (1 + 0.01 * rng.standard_normal(10))) for _ in range(2))
    times = tuple(t for p in per_process for t in p)
    return Config(config_id=f"{framework}-{batch}", framework=framework, batch_size=batch, times_s=times,
                  summary=summarize(list(times), per_process), first_step_s=(0.1, 0.1), memory_bytes=(), flops_per_s=None,
                  cpu_utilisation=None, processes=2, warnings=(), validated="passed", manifest={},
                  process_times_s=per_process)


def _group(configs, model="lenet5", mode="train") -> Group:
    return Group(model, mode, "cpu", "fp32", 2, "{}", "sgd" if mode == "train" else "", configs=list(configs))


def test_backend_of_names_keras_adapters_only():
    assert [backend_of(n) for n in ("keras-jax", "keras-torch", "keras-", "jax", "torch-compile")] == \
        ["jax", "torch", None, None, None]


def test_no_keras_adapter_no_section():
    assert keras_backends_section([_group([_config("jax", 1.0), _config("torch", 2.0)])]) is None


def test_each_keras_adapter_against_keras_and_its_fastest_native():
    g = _group([_config("jax", 1.0, seed=1), _config("keras-jax", 2.0, seed=2),
                _config("torch", 1.5, seed=3), _config("torch-compile", 1.2, seed=4), _config("keras-torch", 3.0, seed=5),
                _config("tensorflow", 1.6, seed=6), _config("keras-tensorflow", 1.6, seed=7)])
    section = keras_backends_section([g])
    rows = {r["keras adapter"]: r for r in section.table.to_dict("records")}
    # keras-tensorflow is the fastest Keras adapter, and as fast as native TensorFlow (same step time: tied).
    assert rows["keras-tensorflow"]["among Keras"] == "fastest"
    assert rows["keras-tensorflow"]["native"] == "tensorflow"
    ratio, verdict = rows["keras-tensorflow"]["Keras / native"].split(" ")
    assert abs(float(ratio.rstrip("x")) - 1) <= 0.02 and verdict == "(tied)"
    # The native adapter compared with is the backend's fastest: torch-compile, not torch.
    assert rows["keras-torch"]["native"] == "torch-compile"
    assert rows["keras-torch"]["Keras / native"] == "0.40x (slower)"
    assert rows["keras-torch"]["among Keras"] == "0.53x (slower)"
    assert rows["keras-jax"]["Keras / native"] == "0.50x (slower)"
    assert rows["keras-jax"]["job"] == "lenet5 train b=8"
    notes = " ".join(section.notes)
    assert "keras-jax: 0.50x the speed of native jax (geometric mean over 1 job" in notes
    assert "keras-tensorflow fastest in 1, tied for fastest in 0, slower in 0" in notes
    assert "keras-torch fastest in 0, tied for fastest in 0, slower in 1" in notes


def test_keras_adapter_without_native_and_alone():
    section = keras_backends_section([_group([_config("keras-jax", 2.0)], mode="infer")])
    (row,) = section.table.to_dict("records")
    assert row["among Keras"] == "only one" and row["native"] == "-" and row["Keras / native"] == "not measured"
    assert not any("Which backend" in n for n in section.notes)  # nothing to pick from


def test_tied_keras_adapters_share_fastest():
    section = keras_backends_section([_group([_config("keras-jax", 1.0, seed=1), _config("keras-torch", 1.0, seed=2)])])
    rows = {r["keras adapter"]: r["among Keras"] for r in section.table.to_dict("records")}
    assert sorted(rows.values()) == ["1.00x (tied)", "fastest (tied)"]


def test_section_rendered_after_the_verdict():
    from xfbench.harness.report.model import Report
    import pandas as pd

    g = _group([_config("jax", 1.0), _config("keras-jax", 2.0)])
    empty = pd.DataFrame()
    r = Report(title="t", intro=[], frameworks=empty, verdict_method="m", verdict=empty, answers=[], settings=empty,
               method="m", sections=[], startup_plot=None, warnings=[], not_measured=[], notes=[], groups=[g],
               keras=keras_backends_section([g]))
    text = render(r)
    assert text.index("## Verdict") < text.index("## Keras backends") < text.index("## Settings that differ")
    assert "| lenet5 train b=8 | keras-jax |" in text
