"""Records measured on several hosts (a Ray cluster): frameworks compared per host, the "By host" table.

Fake runs with seeded sample times (no real timing): the checked-in fixture with host metadata added, and a
small two-host run built here.
"""
import html as html_lib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.measure.timing import Measurement
from xfbench.harness.measure.worker import metrics_for
from xfbench.harness.models import build_spec
from xfbench.harness.records import Metrics, Record, RunMeta
from xfbench.harness.report.build import build_report, collect_groups
from xfbench.harness.report.formats import html as html_format
from xfbench.harness.report.formats.markdown import render as render_markdown
from xfbench.harness.report.hosts import host_label, host_labels, hosts_seen
from xfbench.harness.report.plots import plot_paths
from xfbench.harness.report.verdict import comparable_cases
from xfbench.harness.results import RunDir

FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "run-small-report.md"
MEASURE = MeasureConfig(warmup_s=0.5, max_time_s=3.0)
T0 = 1767225600.0  # 2026-01-01 00:00 UTC
JOB = "lenet5 · infer · cpu · fp32 · 2 threads"


def _host(name: str, ip: str | None = None) -> dict:
    h = {"hostname": name, "cpu_model": f"{name} CPU", "cpu_count": 8, "cpus_available": 8, "gpus": []}
    return {**h, "ray_node": {"id": f"id-{name}", "ip": ip}} if ip else h


def _fixture_with_hosts(tmp_path: Path, host_of) -> Path:
    """The fixture run with each record's `host` set to `host_of(index, record json)` (None: left without)."""
    run = tmp_path / "run-small"
    shutil.copytree(FIXTURE, run)
    lines = []
    for i, line in enumerate((run / "cases.jsonl").read_text().splitlines()):
        rec = json.loads(line)
        host = host_of(i, rec)
        if host is not None:
            rec["host"] = host
        lines.append(json.dumps(rec))
    (run / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return run


# (a) one host: nothing changes


def test_records_all_from_one_host_render_the_report_as_before(tmp_path):
    """Every record names one machine (even one that is not run.json's): the report is the golden one, byte for byte."""
    run = _fixture_with_hosts(tmp_path, lambda i, rec: _host("worker-7", "10.0.0.7"))
    report = build_report(RunDir(run))
    assert report.by_host is None
    assert all(g.host == "" and " on " not in g.title for g in report.groups)
    assert render_markdown(report) == GOLDEN.read_text()


# (c) records without a host are the run's host


def test_records_without_host_count_as_the_runs_host(tmp_path):
    """Half the records carry run.json's hostname, half (older) carry none: one host, the golden report."""
    run = _fixture_with_hosts(tmp_path, lambda i, rec: _host("fixture-host") if i % 2 else None)
    records = RunDir(run).records()
    assert {r.host is None for r in records} == {True, False}
    meta = RunDir(run).meta()
    assert {host_label(r, meta.host) for r in records} == {"fixture-host"}
    assert host_labels(records, meta.host) == [""] * len(records)
    report = build_report(RunDir(run))
    assert report.by_host is None
    assert render_markdown(report) == GOLDEN.read_text()


def test_a_record_from_another_host_splits_its_comparison(tmp_path):
    """The same fixture with the jax records measured elsewhere: jax is no longer compared with torch and tensorflow."""
    run = _fixture_with_hosts(tmp_path, lambda i, rec: _host("gpu-box") if rec["case"]["framework"] == "jax" else None)
    meta, records = RunDir(run).meta(), RunDir(run).records()
    labels = set(host_labels(records, meta.host))
    assert labels == {"fixture-host", "gpu-box"}
    groups = collect_groups(records, meta.host)
    assert {g.host for g in groups} == {"fixture-host", "gpu-box"}
    for g in groups:
        fws = {c.framework for c in g.configs}
        assert fws == {"jax"} if g.host == "gpu-box" else "jax" not in fws
    report = build_report(RunDir(run))
    assert report.by_host is None  # no framework ran on both machines: nothing to set side by side
    assert "jax" not in set(report.verdict["framework"])  # jax has no rival on its host
    assert report.intro[1].startswith("Run started on: fixture-host, Example CPU @ 3.0GHz")
    assert report.intro[2].startswith("The records come from 2 hosts: fixture-host (Example CPU @ 3.0GHz, 2 CPUs")
    assert report.intro[2].endswith("Frameworks are compared only on the same host.")


def test_host_label_falls_back_to_the_run_then_to_a_question_mark():
    case = Case(framework="torch", model="lenet5", mode="infer", batch_size=8, threads=2, measure=MEASURE)
    old, new = Record.of(case, "ok", None, 0, 1), Record.of(case, "ok", None, 0, 1, host=_host("node-b"))
    assert host_label(old, {"hostname": "driver"}) == "driver" and host_label(new, {"hostname": "driver"}) == "node-b"
    assert host_label(old) == "?" and host_labels([old, new], {"hostname": "driver"}) == ["driver", "node-b"]
    assert host_labels([old, old], {"hostname": "driver"}) == ["", ""]


# (b) two hosts, the same frameworks on both

# framework -> host -> median step seconds: jax is the faster on node-a, torch on node-b (by 2x each).
STEP = {"torch": {"node-a": 0.002, "node-b": 0.001}, "jax": {"node-a": 0.001, "node-b": 0.002}}
HOST_OF_PROCESS = ["node-a", "node-a", "node-b", "node-b"]  # each config ran 4 processes, 2 on each node


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """lenet5 infer b=8: torch and jax, each in 4 worker processes, two on node-a and two on node-b; tensorflow
    failed on node-b. The run was started on a third machine (run.json's host: driver)."""
    path = tmp_path_factory.mktemp("hosts") / "run"
    path.mkdir()
    rng = np.random.default_rng(17)
    run, t, samples, spec = RunDir(path), T0 + 5, {}, build_spec("lenet5")
    for fw in ("jax", "torch"):
        for p, host in enumerate(HOST_OF_PROCESS):
            case = Case(framework=fw, model="lenet5", mode="infer", batch_size=8, threads=2, measure=MEASURE, process=p)
            s = tuple(float(v) for v in STEP[fw][host] * rng.lognormal(0.0, 0.02, 30))
            samples.setdefault((fw, host), []).extend(s)
            m = Measurement(first_step_s=0.1 + 0.01 * p, warmup_steps=5, warmup_s=0.5, steps_per_sample=1,
                            samples_s=list(s), stop_reason="CI target reached", measure_s=sum(s))
            metrics, _ = metrics_for(case, spec, m, 1.8)
            metrics.update(setup_s=0.5, import_s=1.5, parameters=spec.parameter_count(),
                           peak_host_rss_bytes=(500 + p) * 2**20, peak_device_memory_bytes=None)
            run.append(Record.of(case, "ok", None, t, t + 4, metrics=Metrics.from_json(metrics), samples_s=s,
                                 manifest={"framework": fw, "threads": 2}, host=_host(host, f"10.0.0.{p}")))
            t += 5
    case = Case(framework="tensorflow", model="lenet5", mode="infer", batch_size=8, threads=2, measure=MEASURE)
    run.append(Record.of(case, "failed", "RuntimeError: boom", t, t + 1, host=_host("node-b", "10.0.0.9")))
    meta = RunMeta(suite="hosts", started=T0, finished=t + 1, planned_cases=9, host=_host("driver"),
                   executor={"kind": "ray", "address": "10.0.0.1:6379"})
    (path / "run.json").write_text(json.dumps(meta.to_json(), indent=1) + "\n")
    return path, samples


def test_each_comparison_is_one_hosts(two_hosts):
    path, _ = two_hosts
    run = RunDir(path)
    groups = collect_groups(run.records(), run.meta().host)
    assert [g.title for g in groups] == [f"{JOB} · on node-a", f"{JOB} · on node-b"]
    assert [g.job for g in groups] == [JOB, JOB]
    for g in groups:  # each config pools only its host's two processes
        assert sorted(c.framework for c in g.configs) == ["jax", "torch"]
        assert all(c.processes == 2 and c.summary.n == 60 for c in g.configs)
    slugs = [Path(rel).name for g in groups for _, rel in plot_paths(g)]
    assert len(set(slugs)) == 2 and all("-on-node-" in s for s in slugs)
    # The verdict compares within a host only: two cases of two frameworks, one per host.
    cases = comparable_cases(groups)
    assert [(g.host, sorted(c.framework for c in peers)) for g, peers in cases] == \
        [("node-a", ["jax", "torch"]), ("node-b", ["jax", "torch"])]


def test_verdict_and_glance_never_compare_across_hosts(two_hosts):
    path, _ = two_hosts
    report = build_report(RunDir(path))
    rows = {r["framework"]: r for r in report.verdict.to_dict("records")}
    # jax wins on node-a, torch on node-b; pooled over both hosts they would tie (same speed overall).
    assert (rows["jax"]["cases"], rows["jax"]["wins"], rows["jax"]["losses"]) == ("2", "1", "1")
    assert (rows["torch"]["cases"], rows["torch"]["wins"], rows["torch"]["losses"]) == ("2", "1", "1")
    assert "only on the same machine" in report.verdict_method
    glance = {r.job: r.cells for r in report.glance.rows}
    assert list(glance) == [f"{JOB} · on node-a · batch 8", f"{JOB} · on node-b · batch 8"]
    a, b = glance[f"{JOB} · on node-a · batch 8"], glance[f"{JOB} · on node-b · batch 8"]
    assert a["jax"].speed == 1.0 and a["torch"].speed == pytest.approx(0.5, rel=0.05) and "tensorflow" not in a
    assert b["torch"].speed == 1.0 and b["jax"].speed == pytest.approx(0.5, rel=0.05)
    assert b["tensorflow"].status == "failed"  # the failure stays on the host it happened on
    assert report.intro[1].startswith("Run started on: driver, driver CPU")  # it measured nothing itself
    assert "The records come from 3 hosts" not in " ".join(report.intro)
    assert "The records come from 2 hosts: node-a (node-a CPU, 8 CPUs, no GPU; Ray node 10.0.0.0); node-b" \
        in report.intro[2]


def test_by_host_table_sets_each_framework_side_by_side(two_hosts):
    path, samples = two_hosts
    report = build_report(RunDir(path))
    section = report.by_host
    assert section is not None and section.title == "By host"
    assert list(section.table.columns) == [
        "job", "batch", "framework", "samples/s on node-a", "95% CI on node-a", "samples/s on node-b",
        "95% CI on node-b", "ratio node-b / node-a"]
    rows = {r["framework"]: r for r in section.table.to_dict("records")}
    assert sorted(rows) == ["jax", "torch"]
    for fw, row in rows.items():
        assert row["job"] == JOB and row["batch"] == "8"
        med = {h: float(np.median(samples[(fw, h)])) for h in ("node-a", "node-b")}
        for h in ("node-a", "node-b"):  # the median over the host's processes, as the job tables show it
            assert row[f"samples/s on {h}"] == f"{8 / med[h]:,.0f}"
            low, high = (float(x.replace(",", "")) for x in row[f"95% CI on {h}"].split("–"))
            assert low <= 8 / med[h] <= high
        ratio, ci = row["ratio node-b / node-a"].split("x ")
        assert ratio == f"{med['node-a'] / med['node-b']:.2f}"
        low, high = (float(x) for x in ci.strip("()").split("–"))
        assert low <= float(ratio) <= high and high - low < 0.5
    assert rows["torch"]["ratio node-b / node-a"].startswith(("1.9", "2.0", "2.1"))  # twice as fast on node-b
    assert rows["jax"]["ratio node-b / node-a"].startswith(("0.4", "0.5"))  # half as fast
    notes = " ".join(section.notes)
    assert "hardware comparison" in notes and "never compared framework against framework" in notes
    ratios = [float(np.median(samples[(fw, "node-a")])) / float(np.median(samples[(fw, "node-b")])) for fw in rows]
    assert f"On node-b: {np.exp(np.mean(np.log(ratios))):.2f}x the throughput on node-a (geometric mean over 2 " \
        "measurements of a framework on a job, 95% CI " in notes
    assert "Hosts: node-a (node-a CPU, 8 CPUs, no GPU; Ray node 10.0.0.0); node-b (node-b CPU" in notes


def test_by_host_rendered_in_every_format(two_hosts):
    path, _ = two_hosts
    report = build_report(RunDir(path))
    md = render_markdown(report)
    assert md.index("## Verdict") < md.index("## By host") < md.index("## Settings that differ")
    assert "| job | batch | framework | samples/s on node-a | 95% CI on node-a |" in md
    assert "|---|---:|---|---:|---:|---:|---:|---:|" in md  # the per-host numbers right-aligned
    assert f"### {JOB} · on node-a" in md and f"### {JOB} · on node-b" in md
    page = html_format.render(report, path)
    assert '<section id="by-host"><h2>By host</h2>' in page
    assert "<th class=num>ratio node-b / node-a</th>" in page
    assert html_lib.escape("never compared framework against framework") in page


def test_nodes_of_the_same_hardware_are_one_host_and_pool_their_processes(tmp_path):
    """A cluster's identical nodes (same CPU model, CPUs and GPUs, other hostnames) are one host: a config's
    processes on node-1 and node-2 pool into one comparison, labelled by the first name "+1 alike"."""
    same = {"cpu_model": "Xeon 8480", "cpu_count": 8, "cpus_available": 8, "gpus": []}
    run = _fixture_with_hosts(tmp_path, lambda i, rec: {**same, "hostname": f"node-{i % 2 + 1}"})
    meta, records = RunDir(run).meta(), RunDir(run).records()
    assert host_labels(records, meta.host) == [""] * len(records)  # one host: nothing names it
    assert set(hosts_seen(records, meta.host)) == {"node-1 +1 alike"}
    assert build_report(RunDir(run)).by_host is None
    other = {**same, "cpu_model": "EPYC 9654"}  # a third node of other hardware: now hosts differ
    run2 = _fixture_with_hosts(tmp_path / "b", lambda i, rec: {**other, "hostname": "odd"} if i == 0 else
                               {**same, "hostname": f"node-{i % 2 + 1}"})
    records2 = RunDir(run2).records()
    assert set(host_labels(records2, meta.host)) == {"odd", "node-1 +1 alike"}
