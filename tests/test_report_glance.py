"""The heat map at the top of the report: its cells (a pure function of the records), then that it is drawn."""
import dataclasses
from pathlib import Path

import pytest

from xfbench.harness.report.build import collect_groups
from xfbench.harness.report.glance import at_a_glance, draw_glance
from xfbench.harness.report.model import Glance, GlanceCell, GlanceRow
from xfbench.harness.results import RunDir

FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
CONTENDED = "contended: other processes used up to 50% of the pinned CPUs in 10 of 10 samples; no clean sample was left, so these are reported"


def _glance(records) -> dict[str, dict[str, GlanceCell]]:
    g = at_a_glance(collect_groups(records), records)
    return {r.job: r.cells for r in g.rows}


@pytest.fixture(scope="module")
def records():
    return RunDir(FIXTURE).records()


def test_one_row_per_job_one_column_per_framework(records):
    g = at_a_glance(collect_groups(records), records)
    assert g.frameworks == ("jax", "tensorflow", "torch", "torch-compile")
    assert [r.job for r in g.rows] == [  # the report's order: comparison, then batch size
        "gru · infer · cpu · fp32 · 2 threads · batch 8", "gru · train (sgd) · cpu · fp32 · 2 threads · batch 8",
        "lenet5 · infer · cpu · fp32 · 2 threads · batch 1", "lenet5 · infer · cpu · fp32 · 2 threads · batch 16",
        "lenet5 · infer · cpu · fp32 · 2 threads · batch 64",
        "lenet5 · train (sgd) · cpu · fp32 · 2 threads · batch 64"]


def test_cells_are_the_tables_rel_speed_with_its_tied_verdict(records):
    rows = _glance(records)
    b16 = rows["lenet5 · infer · cpu · fp32 · 2 threads · batch 16"]
    # The report's table says "| torch | 16 | 7,898 | 7,831–8,117 | 0.98 | tied |": jax is fastest, torch tied with it,
    # so the fastest is marked tied too; tensorflow is significantly slower.
    assert b16["jax"] == GlanceCell(1.0, ("tied", "1 process"))
    assert round(b16["torch"].speed, 2) == 0.98 and b16["torch"].marks == ("tied", "1 process")
    assert round(b16["tensorflow"].speed, 2) == 0.64 and b16["tensorflow"].marks == ("1 process",)
    # A clear winner carries no "tied"; torch at batch 64 ran in 2 processes: no "1 process".
    b64 = rows["lenet5 · infer · cpu · fp32 · 2 threads · batch 64"]
    assert b64["torch"] == GlanceCell(1.0, ()) and b64["jax"].marks == ("1 process",)


def test_not_measured_cases_say_why(records):
    rows = _glance(records)
    assert rows["gru · infer · cpu · fp32 · 2 threads · batch 8"]["tensorflow"] == GlanceCell(None, (), "timed out")
    assert rows["gru · train (sgd) · cpu · fp32 · 2 threads · batch 8"]["tensorflow"] == GlanceCell(None, (), "failed")
    assert rows["lenet5 · infer · cpu · fp32 · 2 threads · batch 16"]["torch-compile"] == GlanceCell(None, (), "skipped")
    assert "torch-compile" not in rows["lenet5 · infer · cpu · fp32 · 2 threads · batch 64"]  # never planned there
    # A job that no framework measured still has its row, every cell grey.
    failed_only = [r for r in records if not (r.case.model == "gru" and r.case.mode == "train" and r.ok)]
    assert _glance(failed_only)["gru · train (sgd) · cpu · fp32 · 2 threads · batch 8"] == \
        {"tensorflow": GlanceCell(None, (), "failed")}


def test_a_measured_process_outweighs_a_failed_one(records):
    torch64 = next(r for r in records if r.case.framework == "torch" and r.case.model == "lenet5"
                   and r.case.mode == "infer" and r.case.batch_size == 64 and r.case.process == 1)
    failed = dataclasses.replace(torch64, status="failed", reason="worker died", metrics=type(torch64.metrics)(),
                                 samples_s=())
    rows = _glance([r for r in records if r is not torch64] + [failed])
    assert rows["lenet5 · infer · cpu · fp32 · 2 threads · batch 64"]["torch"].marks == ("1 process",)


def test_contended_and_only_one_marks(records):
    marked = [dataclasses.replace(r, warnings=r.warnings + (CONTENDED,))
              if r.ok and r.case.framework == "jax" and r.case.model == "lenet5" else r for r in records]
    rows = _glance(marked)
    assert rows["lenet5 · train (sgd) · cpu · fp32 · 2 threads · batch 64"]["jax"].marks == ("contended", "1 process")
    assert rows["lenet5 · infer · cpu · fp32 · 2 threads · batch 16"]["jax"].marks == ("tied", "contended", "1 process")
    gpu_note = "contended: other processes on the GPU: 4242 python (2.00 GiB)"  # xfbench.harness.measure.gpu_contention
    gpu = [dataclasses.replace(r, warnings=(gpu_note,)) if r.ok and r.case.framework == "torch" else r for r in records]
    assert "contended" in _glance(gpu)["lenet5 · infer · cpu · fp32 · 2 threads · batch 1"]["torch"].marks
    alone = [r for r in records if r.case.framework == "jax" or r.case.model != "lenet5"]
    assert _glance(alone)["lenet5 · infer · cpu · fp32 · 2 threads · batch 1"] == \
        {"jax": GlanceCell(1.0, ("only one", "1 process"))}


def test_drawn_for_many_rows(tmp_path):
    rows = tuple(GlanceRow(f"job {i}", {"a": GlanceCell(1.0, ("tied",)), "b": GlanceCell(0.5, ("tied", "contended")),
                                        "c": GlanceCell(None, (), "failed")}) for i in range(100))
    small = draw_glance(Glance(("a", "b", "c"), rows[:3]), tmp_path / "small.png")
    big = draw_glance(Glance(("a", "b", "c"), rows), tmp_path / "big.png")
    for p in (small, big):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def height_px(p):  # the PNG header's IHDR height, big-endian at bytes 20-24
        return int.from_bytes(p.read_bytes()[20:24], "big")
    assert height_px(small) < 400 and height_px(big) >= 100 * 30  # the figure grows with its rows: 30 px a row
