"""Reports from the checked-in fixture run: report.md against a golden file, report.html by structure."""
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xfbench.harness.cli import main
from xfbench.harness.report.build import build_report, collect_groups, differing_settings
from xfbench.harness.report.write import write_reports
from xfbench.harness.report.formats.markdown import render as render_markdown
from xfbench.harness.results import RunDir

FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "run-small-report.md"
PLOTS = ["at-a-glance.png", "batch-lenet5-infer-cpu-fp32-t2.png", "first-step.png",
         "throughput-gru-infer-cpu-fp32-t2.png", "throughput-gru-train-sgd-cpu-fp32-t2.png",
         "throughput-lenet5-infer-cpu-fp32-t2.png", "throughput-lenet5-train-sgd-cpu-fp32-t2.png"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("reports") / "run-small"
    shutil.copytree(FIXTURE, path)
    write_reports(path)
    return path


def test_report_md_matches_golden(run_dir):
    text = (run_dir / "report.md").read_text()
    if os.environ.get("XFBENCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "report.md changed; if intended: XFBENCH_UPDATE_GOLDEN=1 pytest " + __file__


def test_report_is_deterministic_and_never_writes_records(run_dir, tmp_path):
    again = tmp_path / "run-small"
    shutil.copytree(FIXTURE, again)
    assert render_markdown(build_report(RunDir(again))) == (run_dir / "report.md").read_text()
    assert (again / "cases.jsonl").read_bytes() == (FIXTURE / "cases.jsonl").read_bytes()


def test_plots_results_csv_and_html_written(run_dir):
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == PLOTS
    for p in (run_dir / "plots").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
    assert len((run_dir / "results.csv").read_text().splitlines()) == 1 + 20  # header + one row per record


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.ids, self.text, self.stack = [], [], {}, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "img":
            self.imgs.append(a)
        if "id" in a:
            self.ids[a["id"]] = tag

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_structure(run_dir):
    page = (run_dir / "report.html").read_text()
    p = _Html()
    p.feed(page)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert p.ids["verdict"] == "table" and p.ids["settings"] == "table" and p.ids["warnings"] == "section"
    # Self-contained: every image inline, no external stylesheet, script or link.
    assert len(p.imgs) == len(PLOTS) and all(i["src"].startswith("data:image/png;base64,") for i in p.imgs)
    assert not [t for t, a in p.tags if t in ("script", "link", "iframe")]
    assert not [a for _, a in p.tags for k in ("src", "href") if a.get(k, "").startswith(("http", "//"))]
    text = " ".join(p.text)
    for phrase in ("Fastest training:", "no clear winner", "Least memory:", "1.19x slower", "tied",
                   "passed (vs torch)", "not validated", "torch.compile needs a C compiler", "timeout",
                   "thread cap exceeded", "interop_threads"):
        assert phrase in text
    assert [a.get("id") for t, a in p.tags if t == "h2" or a.get("id") == "verdict"][:4] == [None, None, "verdict", None]
    # The answer at a glance comes first: the body opens with the heat map, before the title.
    tags = [t for t, _ in p.tags]
    first = tags.index("body") + 1
    assert tags[first:first + 4] == ["figure", "img", "figcaption", "h1"] and p.ids["at-a-glance"] == "figure"


def test_report_md_opens_with_the_heat_map(run_dir):
    first = (run_dir / "report.md").read_text().splitlines()[0]
    assert first.startswith("![At a glance") and first.endswith("](plots/at-a-glance.png)")
    assert (run_dir / "plots" / "at-a-glance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_says_it_depends(run_dir):
    md = (run_dir / "report.md").read_text()
    verdict = md.split("## Verdict")[1].split("## Settings")[0]
    assert "- **Fastest overall:** no clear winner: jax at 0.97" in verdict  # the CIs of jax and torch overlap
    assert "- **Fastest training:** jax at 1.00 of the best" in verdict
    assert "- **Fastest start-up:** torch" in verdict
    # 0.89, not 0.90: torch at batch 64 ran in 2 processes, which the bootstrap resamples first
    assert "| jax | 0.97 | 0.89–1.00 | 6 | 4 | 1 | 1 |" in verdict
    assert "| torch | 16 | 7,898 | 7,831–8,117 | 0.98 | tied |" in md  # torch vs jax at b=16: not significant


def test_differing_settings_ignore_versions_and_framework_specific_keys():
    groups = {g.title: g for g in collect_groups(RunDir(FIXTURE).records())}
    diff = differing_settings(groups["lenet5 · train (sgd) · cpu · fp32 · 2 threads"])
    # `compile_scope` from the records' own `compile` (they predate the shared key); interop threads matter in
    # training (a backward has independent ops), not in inference.
    assert sorted(diff) == ["compile_scope", "data_layout", "interop_threads"]
    assert diff["interop_threads"] == {"tensorflow": "2", "torch": "1"}  # jax does not report it
    infer = differing_settings(groups["lenet5 · infer · cpu · fp32 · 2 threads"])
    assert sorted(infer) == ["compile_scope", "data_layout"]
    gru = differing_settings(groups["gru · train (sgd) · cpu · fp32 · 2 threads"])
    assert sorted(gru) == ["compile_scope"]  # token layouts cannot change a result


def test_bench_report_cli_and_errors(tmp_path):
    from click.testing import CliRunner

    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output and (run / "plots" / "first-step.png").exists()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2


def test_stale_plots_are_removed(tmp_path):
    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    (run / "plots").mkdir()
    (run / "plots" / "throughput-old.png").write_bytes(b"x")
    write_reports(run)
    assert not (run / "plots" / "throughput-old.png").exists()


def test_a_verdict_built_on_contended_cases_says_so():
    import dataclasses

    from xfbench.harness.report.build import warning_lists
    from xfbench.harness.report.verdict import verdict

    note = "contended: other processes used up to 50% of the pinned CPUs in 10 of 10 samples; no clean sample was left, so these are reported"
    records = [dataclasses.replace(r, warnings=r.warnings + (note,)) if r.ok and r.case.framework == "torch" else r
               for r in RunDir(FIXTURE).records()]
    groups = collect_groups(records)
    answers = dict(verdict(groups).answers)
    assert "Rerun on a quiet machine" in answers["Measured under contention"]
    assert answers["Measured under contention"].startswith("6 of 16 measurements") and "torch lenet5 train b=64" in \
        answers["Measured under contention"]
    assert "Measured under contention" not in dict(verdict(collect_groups(RunDir(FIXTURE).records())).answers)
    heading, items = warning_lists(groups)[0]
    assert heading.startswith("Contended") and all(note in item for item in items)


def test_the_adapter_package_is_shown_and_old_records_still_render(tmp_path):
    """A record names the package that produced it; the fixture's older records (without it) render as before."""
    import json

    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    lines = []
    for line in (run / "cases.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["case"]["framework"] == "torch" and rec["status"] == "ok":
            rec["manifest"]["adapter_package"] = {"package": "xfbench", "version": "0.1.0",
                                                  "source_sha256": "1a2b3c4d5e6f"}
            if rec["case"]["model"] == "gru":
                rec["validated"] = {"status": "unverified", "against": "torch-twin", "sizes": "tiny"}
            if rec["case"]["model"] == "lenet5":  # validated beside the NumPy reference and no other trainer
                rec["validated"] = {"status": "passed", "against": "numpy", "scope": "forward only", "sizes": "tiny"}
        lines.append(json.dumps(rec))
    (run / "cases.jsonl").write_text("\n".join(lines) + "\n")
    report = build_report(RunDir.open(run))
    versions = dict(zip(report.frameworks["adapter"], report.frameworks["versions"]))
    assert versions["torch"] == "torch 2.13.0+cpu · adapter xfbench 0.1.0 (src 1a2b3c4d5e6f)"
    assert versions["jax"] == "jax 0.7.2, jaxlib 0.7.2, flax 0.11.2"  # an older record: its versions alone
    md = render_markdown(report)
    assert "| torch | torch 2.13.0+cpu · adapter xfbench 0.1.0 (src 1a2b3c4d5e6f) |" in md
    assert "agrees with torch-twin; not checked against the NumPy reference" in md
    assert "| passed (vs numpy; forward only) |" in md
