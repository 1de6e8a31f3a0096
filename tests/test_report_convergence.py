"""The "Time to accuracy" section from fake runs to accuracy (made-up curves, no real timing)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from xfbench.harness.case import Case, Convergence
from xfbench.harness.records import Metrics, Record, RunMeta
from xfbench.harness.report.build import build_report
from xfbench.harness.report.convergence import convergence_section
from xfbench.harness.report.write import write_reports
from xfbench.harness.results import RunDir

CONV = Convergence(dataset="digits", target=0.9, eval_every=10, max_steps=50)
JOB = "lenet5 on digits to 0.9 · b=32 · sgd · cpu · fp32 · 2 threads"


def _record(fw: str, seed: int, step_s: float, reach_at: int | None, final: float, loss_shift: float = 0.0) -> Record:
    """A run to accuracy of `fw` at `seed`: evaluations every 10 steps, `step_s` seconds per step, accuracy
    rising to `final` (reaching 0.9 at step `reach_at`, or never)."""
    case = Case(framework=fw, model="lenet5", mode="converge", batch_size=32, threads=2, process=seed, convergence=CONV)
    curve, last = [], reach_at or 50
    for step in range(10, last + 1, 10):
        acc = final if step == last else 0.5 + 0.3 * step / last
        curve.append({"step": step, "train_s": step * step_s, "input_wait_s": step * step_s * 0.1,
                      "test_accuracy": acc, "test_loss": 2.0 / step + loss_shift, "eval_s": 0.3})
    samples = [step_s] * len(curve)
    metrics = {"samples_per_s": 32 / step_s, "samples_per_s_ci": [32 / step_s, 32 / step_s],
               "step_s": {"n": len(samples), "median": step_s}, "first_step_s": 0.2, "setup_s": 0.5, "parameters": 61706}
    conv = {"dataset": "digits@0123456789ab", "target": 0.9, "steps_to_target": reach_at,
            "time_to_target_s": reach_at * step_s if reach_at else None, "train_s": curve[-1]["train_s"],
            "input_share": 0.1, "final_accuracy": final, "curve": curve}
    return Record.of(case, "ok", None, 0.0, 1.0, metrics=Metrics.from_json(metrics), samples_s=tuple(samples),
                     manifest={"framework": fw, "input_pipeline": f"{fw} pipeline"}, convergence=conv)


def _run(tmp_path, records: list[Record]):
    path = tmp_path / "run"
    path.mkdir()
    run = RunDir(path)
    for r in records:
        run.append(r)
    (path / "run.json").write_text(json.dumps(RunMeta(suite="convergence", started=0.0, finished=1.0,
                                                      planned_cases=len(records), host={"hostname": "vm"}).to_json()))
    return run


def test_time_to_target_per_framework_with_its_ci_over_seeds_and_the_fastest_named():
    # torch: 0.01 s per step, reaches 0.9 at step 30 in every seed; jax: 0.02 s per step, at step 40.
    recs = [_record("torch", s, 0.01 + 0.001 * s, 30, 0.95 + 0.01 * s) for s in range(3)] + \
           [_record("jax", s, 0.02 + 0.001 * s, 40, 0.94 + 0.01 * s) for s in range(3)]
    section, answers = convergence_section(recs)
    rows = {r["framework"]: r for r in section.table.to_dict("records")}
    assert list(rows) == ["torch", "jax"]  # fastest to target first
    assert rows["torch"]["job"] == JOB and rows["torch"]["reached"] == "3 of 3"
    assert rows["torch"]["time to target s"] == f"{np.median([0.30, 0.33, 0.36]):.2f}"
    assert rows["jax"]["time to target s"] == f"{np.median([0.80, 0.84, 0.88]):.2f}"
    assert rows["torch"]["steps to target"] == "30" and rows["jax"]["final accuracy"] == "0.950"
    assert rows["torch"]["input share"] == "10.0%"
    low, high = (float(x) for x in rows["torch"]["95% CI"].split("–"))
    assert 0.30 <= low <= 0.33 <= high <= 0.36
    ((question, answer),) = answers
    assert question == f"Fastest to target accuracy ({JOB})"
    assert answer.startswith("torch in 0.33 s") and answer.endswith("next jax in 0.84 s")
    assert "largest test-loss gap between two frameworks on the same seed was 0" in section.notes[1]
    assert "within the seed-to-seed spread" in section.notes[1]


def test_a_framework_that_misses_the_target_and_one_off_by_more_than_the_seed_spread():
    recs = [_record("torch", s, 0.01, 30, 0.95 + 0.001 * s) for s in range(3)] + \
           [_record("jax", s, 0.01, 30, 0.951 + 0.001 * s) for s in range(3)] + \
           [_record("tensorflow", s, 0.01, None if s else 30, 0.80, loss_shift=0.25) for s in range(3)]
    section, answers = convergence_section(recs)
    rows = {r["framework"]: r for r in section.table.to_dict("records")}
    assert rows["tensorflow"]["reached"] == "1 of 3" and rows["tensorflow"]["time to target s"] == "-"
    assert list(rows)[-1] == "tensorflow"
    assert answers[0][1].startswith("no clear winner: ")  # torch and jax: the same times
    note = section.notes[1]
    assert note.count("⚠") == 1 and "⚠ final accuracy of tensorflow differs from the frameworks' common level" in note
    assert "was 0.25 (" in note and "tensorflow" in note.split("was 0.25")[1]


def test_one_seed_flags_nothing_and_says_so():
    section, _ = convergence_section([_record("torch", 0, 0.01, 30, 0.95), _record("jax", 0, 0.01, 30, 0.5)])
    assert "with one seed, no final accuracy can be told apart" in section.notes[1]


def test_the_report_shows_the_section_and_its_plots_and_leaves_the_throughput_parts_alone(tmp_path):
    run = _run(tmp_path, [_record(fw, s, 0.01 * (i + 1), 30, 0.95) for i, fw in enumerate(["torch", "jax"])
                          for s in range(2)])
    report = build_report(run)
    assert report.convergence is not None and report.sections == [] and len(report.verdict) == 0
    assert any(q.startswith("Fastest to target accuracy") for q, _ in report.answers)
    written = write_reports(run.path)
    md = (run.path / "report.md").read_text()
    assert "## Time to accuracy" in md and "plots/convergence-lenet5-digits-" in md
    pngs = sorted(p.name for p in (run.path / "plots").glob("convergence-*.png"))
    assert len(pngs) == 2 and pngs[0].endswith("-steps.png") and pngs[1].endswith("-time.png")
    assert 'id="time-to-accuracy"' in (run.path / "report.html").read_text()
    assert written


@pytest.mark.parametrize("bad", [{"curve": "x"}, {"curve": [1]}])
def test_a_malformed_convergence_entry_is_refused(bad):
    from xfbench.harness.records import ResultsError
    rec = _record("torch", 0, 0.01, 30, 0.95).to_json()
    rec["convergence"] = bad
    with pytest.raises(ResultsError, match="'convergence' must be an object with a 'curve' list"):
        Record.from_json(rec)


GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "convergence-section.md"


def test_the_section_renders_as_the_golden_file(tmp_path):
    """Three frameworks, three seeds, one missing the target once: the markdown section, byte for byte.
    (Regenerate with XFBENCH_REGOLD=1 after a deliberate change, and read the diff.)"""
    recs = [_record("torch", s, 0.01 + 0.001 * s, 30, 0.95 + 0.01 * s) for s in range(3)] + \
           [_record("jax", s, 0.02 + 0.001 * s, 40, 0.94 + 0.01 * s) for s in range(3)] + \
           [_record("tensorflow", s, 0.015, None if s == 2 else 30, 0.93, loss_shift=0.01 * s) for s in range(3)]
    md = write_reports(_run(tmp_path, recs).path)["report.md"].read_text()
    section = md[md.index("## Time to accuracy"):md.index("## Settings that differ")]
    if os.environ.get("XFBENCH_REGOLD"):
        GOLDEN.write_text(section)
    assert section == GOLDEN.read_text()
