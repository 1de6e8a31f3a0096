"""The roofline (`bench peak`, xfbench.harness.measure.peak): the protocol with a fake clock, every installed framework's
kernels at tiny sizes (they compute the right numbers), the worker processes, the CLI and the report's share column."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fault_adapter
from xfbench.harness.adapter import AdapterInfo, PeakKernel, discover
from xfbench.harness.case import MeasureConfig
from xfbench.harness.cli import main
from xfbench.harness.measure import peak as peak_mod
from xfbench.harness.measure.peak import (PEAK_FILE, PeakOutcome, check_peak, measure_peak, measure_peaks, peak_inputs,
                                  read_peaks, run_peak)
from xfbench.harness.report.build import build_report, collect_groups
from xfbench.harness.report.formats.html import render as render_html
from xfbench.harness.report.formats.markdown import render as render_markdown
from xfbench.harness.report.roofline import host_peak, share_text
from xfbench.harness.results import RunDir

FAST = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.01, min_samples=3, max_samples=20, max_time_s=0.1)
FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
N, NBYTES = 64, 2**20


# ---- the protocol, with a fake clock ----

class FakeClock:
    def __init__(self):
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class FakeAdapter:
    """Kernels that take a fixed time on the fake clock; records what it was given and when it synced."""

    device, threads = "cpu", 2

    def __init__(self, clock: FakeClock, gemm_ns: int, copy_ns: int):
        self.clock, self.gemm_ns, self.copy_ns, self.log = clock, gemm_ns, copy_ns, []

    def _kernel(self, what: str, ns: int) -> PeakKernel:
        def run():
            self.clock.ns += ns
            self.log.append(what)
        return PeakKernel(run=run, result=lambda: np.zeros(1, np.float32), what=f"fake {what}")

    def peak_gemm(self, a, b):
        self.gemm_inputs = (a.shape, b.shape, a.dtype)
        return self._kernel("gemm", self.gemm_ns)

    def peak_copy(self, x):
        self.copy_input = (x.nbytes, x.dtype)
        return self._kernel("copy", self.copy_ns)

    def sync(self):
        self.log.append("sync")


def test_measure_peak_times_both_kernels_with_the_case_protocol():
    clock = FakeClock()
    adapter = FakeAdapter(clock, gemm_ns=50_000_000, copy_ns=20_000_000)  # 0.05 s and 0.02 s per call
    p = measure_peak(adapter, n=4, nbytes=64, cfg=FAST, clock=clock)
    assert adapter.gemm_inputs == ((4, 4), (4, 4), np.float32) and adapter.copy_input == (64, np.float32)
    # Every GEMM call is timed before the copy kernel exists; each sample ends with the adapter's sync.
    assert "gemm" not in adapter.log[adapter.log.index("copy"):]
    assert adapter.log[-1] == "sync"
    # Equal samples: the median and both ends of its CI are the exact rates.
    assert p["gemm_gflops"] == pytest.approx(2 * 4**3 / 0.05 / 1e9, rel=1e-12)
    assert p["gemm_gflops_ci"] == pytest.approx([p["gemm_gflops"]] * 2, rel=1e-12)
    assert p["copy_gbs"] == pytest.approx(2 * 64 / 0.02 / 1e9, rel=1e-12)  # read plus write
    assert p["gemm_s"] == pytest.approx(0.05) and p["copy_s"] == pytest.approx(0.02)
    assert p["gemm_samples"] == p["copy_samples"] == FAST.min_samples
    assert (p["gemm_n"], p["gemm_flops"], p["copy_bytes"], p["device"], p["threads"]) == (4, 128.0, 64, "cpu", 2)
    assert (p["gemm_kernel"], p["copy_kernel"], p["warnings"]) == ("fake gemm", "fake copy", [])
    assert check_peak(json.loads(json.dumps(p))) == p


def test_an_unstable_kernel_is_warned_about():
    clock = FakeClock()
    adapter = FakeAdapter(clock, gemm_ns=50_000_000, copy_ns=20_000_000)
    times = iter([50_000_000, 90_000_000] * 1000)
    adapter._kernel = lambda what, ns: PeakKernel(run=lambda: setattr(clock, "ns", clock.ns + (
        next(times) if what == "gemm" else ns)), result=lambda: np.zeros(1), what=what)
    p = measure_peak(adapter, n=4, nbytes=64, cfg=FAST, clock=clock)
    assert [w.split(":")[0] for w in p["warnings"]] == ["GEMM"] and "unstable" in p["warnings"][0]


def test_peak_inputs_refuse_empty_sizes():
    with pytest.raises(ValueError):
        peak_inputs(0, 1024)
    with pytest.raises(ValueError):
        peak_inputs(4, 2)


# ---- every installed framework, at tiny sizes ----

ADAPTERS = {"numpy": "numpy", "torch": "torch", "torch-compile": "torch", "jax": "jax", "tensorflow": "tensorflow",
            "tensorflow-xla": "tensorflow"}


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_each_framework_computes_the_gemm_and_copies_every_byte(name):
    pytest.importorskip(ADAPTERS[name])
    info = discover()[name]
    adapter = info.load()(device="cpu", precision="fp32", threads=1, seed=0, **info.options)
    a, b, x = peak_inputs(N, NBYTES)
    gemm = adapter.peak_gemm(a, b)
    gemm.run()
    gemm.run()
    adapter.sync()
    np.testing.assert_allclose(gemm.result(), a @ b, rtol=1e-4, atol=1e-4)
    copy = adapter.peak_copy(x)
    for _ in range(3):  # again and again: JAX's donated destination must stay valid
        copy.run()
    adapter.sync()
    assert np.array_equal(copy.result(), x) and copy.result().dtype == np.float32
    assert gemm.what and copy.what


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_run_peak_with_each_framework(name):
    pytest.importorskip(ADAPTERS[name])
    p = run_peak(discover()[name].load(), name, "cpu", 1, N, NBYTES, FAST)
    assert check_peak(p) is p
    assert (p["adapter"], p["framework"], p["device"], p["threads"], p["precision"]) == (
        name, discover()[name].framework, "cpu", 1, "fp32")
    assert (p["gemm_n"], p["gemm_flops"], p["copy_bytes"]) == (N, 2.0 * N**3, NBYTES)
    for key in ("gemm_gflops", "copy_gbs", "gemm_s", "copy_s", "measure_s"):
        assert math.isfinite(p[key]) and p[key] > 0
    assert p["gemm_gflops_ci"][0] <= p["gemm_gflops"] <= p["gemm_gflops_ci"][1]
    assert p["copy_gbs_ci"][0] <= p["copy_gbs"] <= p["copy_gbs_ci"][1]
    assert p["versions"] and isinstance(p["warnings"], list)


# ---- worker processes ----

def test_measure_peaks_one_worker_per_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", fault_adapter.install(tmp_path / "dist"))
    adapters = {"numpy": discover()["numpy"],
                "faulty": AdapterInfo(name="faulty", framework="faulty", target="xfbench_faults:FaultyAdapter",
                                      requires=("numpy",)),
                "ghost": AdapterInfo(name="ghost", framework="ghost", target="ghost:Ghost", requires=("no_such_mod",))}
    started = []
    out = measure_peaks(adapters, device="cpu", threads=1, n=N, nbytes=NBYTES, cfg=FAST, started=started.append)
    assert started == ["numpy", "faulty"]  # a missing framework starts no process
    assert list(out.peaks) == ["numpy"] and out.peaks["numpy"]["affinity"] and out.peaks["numpy"]["threads"] == 1
    assert out.skipped == {"faulty": "FaultyAdapter does not implement peak_gemm",
                           "ghost": "not installed (no_such_mod missing)"}
    assert out.failed == {} and out.logs is None


def test_a_crashing_worker_is_one_failure_with_its_log(monkeypatch):
    import sys

    monkeypatch.setattr(peak_mod, "module_command",
                        lambda module, *a, python=None: [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    out = measure_peaks({"numpy": discover()["numpy"]}, device="cpu", threads=1, n=N, nbytes=NBYTES, cfg=FAST)
    assert out.peaks == {} and list(out.failed) == ["numpy"]
    why = out.failed["numpy"]
    assert why.startswith("worker exited with code 3 without a record: boom (log: ") and why.endswith("numpy.log)")
    assert out.logs is not None and (out.logs / "numpy.log").read_text() == "boom\n"
    shutil.rmtree(out.logs)


# ---- the command ----

def _peak(name: str, gflops: float = 100.0, gbs: float = 10.0, threads: int = 2, device: str = "cpu") -> dict:
    return {"adapter": name, "device": device, "threads": threads, "precision": "fp32", "gemm_n": 2048,
            "gemm_flops": 2.0 * 2048**3, "gemm_kernel": f"{name} mm", "gemm_gflops": gflops,
            "gemm_gflops_ci": [gflops * 0.99, gflops * 1.01], "copy_bytes": 2**28, "copy_kernel": f"{name} copy",
            "copy_gbs": gbs, "copy_gbs_ci": [gbs * 0.9, gbs * 1.1], "warnings": []}


def test_bench_peak_prints_the_table_and_writes_json(tmp_path, monkeypatch):
    seen = {}

    def fake(adapters, **kw):
        seen.update(kw, names=list(adapters))
        return PeakOutcome(peaks={"torch": _peak("torch", 123.4, 19.5)}, skipped={"jax": "not installed (jax missing)"},
                           failed={"tensorflow": "worker killed by SIGSEGV (log: /tmp/x/tensorflow.log)"})

    monkeypatch.setattr(peak_mod, "measure_peaks", fake)
    out = tmp_path / "peak.json"
    res = CliRunner().invoke(main, ["peak", "--frameworks", "torch,jax,tensorflow", "--threads", "1", "--size", "64",
                                    "--copy-mib", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert seen["names"] == ["torch", "jax", "tensorflow"]
    assert (seen["device"], seen["threads"], seen["n"], seen["nbytes"]) == ("cpu", 1, 64, 2**20)
    assert "123.4" in res.stdout and "122.2–124.6" in res.stdout and "19.5" in res.stdout
    assert "skipped jax: not installed (jax missing)" in res.stderr
    assert "tensorflow failed: worker killed by SIGSEGV (log: /tmp/x/tensorflow.log)" in res.stderr
    assert json.loads(out.read_text()) == {"torch": _peak("torch", 123.4, 19.5)}


def test_bench_peak_defaults_exit_codes_and_input_errors(monkeypatch):
    import os

    seen = {}

    def nothing(adapters, **kw):
        seen.update(kw, names=list(adapters))
        return PeakOutcome(failed={"torch": "boom (log: x)"})

    monkeypatch.setattr(peak_mod, "measure_peaks", nothing)
    res = CliRunner().invoke(main, ["peak"])
    assert res.exit_code == 1  # nothing measured
    assert "numpy" not in seen["names"] and "torch" in seen["names"]  # the reference only when named
    assert seen["threads"] == len(os.sched_getaffinity(0)) and (seen["n"], seen["nbytes"]) == (2048, 256 * 2**20)
    assert CliRunner().invoke(main, ["peak", "--frameworks", "nope"]).exit_code == 2
    assert CliRunner().invoke(main, ["peak", "--threads", "999"]).exit_code == 2
    assert CliRunner().invoke(main, ["peak", "--size", "0"]).exit_code == 2


# ---- the report ----

@pytest.fixture
def run_with_peaks(tmp_path):
    run = tmp_path / "run-small"
    shutil.copytree(FIXTURE, run)
    peaks = {"torch": _peak("torch", 100.0, 19.0), "jax": _peak("jax", 125.0, 11.6),
             "tensorflow": _peak("tensorflow", 50.0, 10.0, threads=1),  # not the jobs' 2 threads
             "broken": {"gemm_gflops": -1}}
    (run / PEAK_FILE).write_text(json.dumps(peaks))
    return run


def test_the_report_shows_the_roofline_and_each_jobs_share_of_the_host_peak(run_with_peaks):
    report = build_report(RunDir(run_with_peaks))
    roof = report.roofline
    assert roof is not None and list(roof.table["framework"]) == ["jax", "torch", "tensorflow"]
    assert list(roof.table["of host peak"]) == ["100%", "80%", "100%"]  # tensorflow: alone at 1 thread
    assert list(roof.table["copy GB/s"]) == ["11.6", "19.0", "10.0"]
    assert any("broken" in n and "left out" in n for n in report.notes)
    groups = {g.title: g for g in collect_groups(RunDir(run_with_peaks).records())}
    for section in report.sections:
        g = groups[section.title]
        table = section.table
        assert list(table.columns).index("share of peak") == list(table.columns).index("GFLOP/s") + 1
        # The host peak of 2-thread CPU jobs is jax's 125 GFLOP/s, for every framework's row.
        expected = [share_text(c.flops_per_s / 125e9) if c.flops_per_s else "-" for c in g.configs]
        assert list(table["share of peak"]) == expected
    md = render_markdown(report)
    assert "## Roofline: this host's measured peak" in md and "| GFLOP/s | share of peak |" in md
    assert md.index("## Roofline") < md.index("## Results by job")
    assert 'id="roofline"' in render_html(report, run_with_peaks)


def test_without_peak_json_the_report_has_no_roofline(tmp_path):
    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    report = build_report(RunDir(run))
    assert report.roofline is None and all("share of peak" not in s.table.columns for s in report.sections)


def test_read_peaks_notes_what_it_cannot_read(tmp_path):
    assert read_peaks(tmp_path) == ({}, [])
    (tmp_path / PEAK_FILE).write_text("{not json")
    peaks, notes = read_peaks(tmp_path)
    assert peaks == {} and "could not be read" in notes[0]
    (tmp_path / PEAK_FILE).write_text(json.dumps({"torch": {**_peak("torch"), "copy_gbs_ci": [1.0, math.inf]}}))
    assert "copy_gbs_ci must be two positive numbers" in read_peaks(tmp_path)[1][0]


def test_host_peak_is_per_device_and_threads():
    peaks = {"torch": _peak("torch", 100.0), "jax": _peak("jax", 90.0), "gpu": _peak("gpu", 9000.0, device="cuda",
                                                                                        threads=16)}
    assert host_peak(peaks, "cpu", 2) == ("torch", 100e9)
    assert host_peak(peaks, "cpu", 1) is None
    assert host_peak(peaks, "cuda", 1) == ("gpu", 9000e9)  # a GPU's peak does not depend on the host threads


# ---- bench run: the roofline after the cases (xfbench.harness.measure.runner.run_peaks) ----

@pytest.mark.parametrize("start", ["fork", "exec"])
def test_a_run_measures_each_adapters_peak_at_its_cases_threads(tmp_path, start):
    from xfbench.harness.adapter import discover
    from xfbench.harness.case import Case
    from xfbench.harness.measure.forkserver import ForkServers
    from xfbench.harness.measure.runner import run_peaks
    from xfbench.harness.results import RunDir, write_json_atomic

    run = RunDir.create(tmp_path, "t")
    kept = {"other": _peak("other")}
    write_json_atomic(run.path / "peak.json", kept)
    cases = [Case("numpy", "lenet5", "infer", 2, threads=1, process_start=start, process=p) for p in (0, 1)]
    servers = ForkServers(run.path / "logs")
    try:
        notes = run_peaks(cases, run, discover(), servers, n=64, nbytes=2**20)
    finally:
        servers.close()
    peaks, _ = read_peaks(run.path)
    assert notes == [] and set(peaks) == {"numpy", "other"}
    assert (peaks["numpy"]["threads"], peaks["numpy"]["gemm_n"], peaks["numpy"]["device"]) == (1, 64, "cpu")
    # forked from the last round's server (the framework imported once), or a fresh worker
    assert [p.name for p in (run.path / "logs").glob("forkserver-*")] == (
        ["forkserver-numpy-cpu-t1-p1.log"] if start == "fork" else [])
