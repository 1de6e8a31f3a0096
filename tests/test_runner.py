"""The worker protocol with real subprocesses: good records, crashes, garbage, hangs, skips."""
import json
import subprocess
import sys

import pytest

from xfbench.harness.adapter import AdapterInfo
from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.records import Record
from xfbench.harness.results import RunDir
from xfbench.harness.measure.runner import run_cases, run_worker

TINY = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.001, min_samples=3, max_time_s=0.2)


def case(**kw):
    base = dict(framework="torch", model="lenet5", mode="train", batch_size=2, threads=1, measure=TINY,
                case_timeout_s=120.0)
    return Case(**{**base, **kw})


def python(code):
    """A fake worker command: runs `code` with CASE and RECORD paths in sys.argv."""
    return lambda case_file, rec_file: [sys.executable, "-c", code, str(case_file), str(rec_file)]


def test_crashing_worker_is_a_failed_record_with_stderr(tmp_path):
    code = "import sys, os; sys.stderr.write('segfault ahead\\n'); sys.stderr.flush(); os.abort()"
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l", python(code))
    assert rec.status == "failed" and rec.reason == "worker killed by SIGABRT"
    assert "segfault ahead" in rec.stderr_tail


def test_worker_exiting_without_record(tmp_path):
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l", python("import sys; print('hi'); sys.exit(3)"))
    assert rec.status == "failed" and rec.reason == "worker exited with code 3 without a record"
    assert "hi" in rec.stderr_tail


def test_garbage_record_is_rejected(tmp_path):
    code = "import sys; open(sys.argv[2], 'w').write('{not json')"
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l", python(code))
    assert rec.status == "failed" and rec.reason.startswith("invalid worker record")


def test_record_of_the_wrong_shape_is_rejected(tmp_path):
    code = "import sys, json; json.dump({'schema': 2, 'status': 'ok'}, open(sys.argv[2], 'w'))"
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l", python(code))
    assert rec.status == "failed" and "'case_id' must be a string" in rec.reason


def test_hanging_worker_times_out_and_is_killed(tmp_path):
    rec = run_worker(case(case_timeout_s=1.0), tmp_path / "w", tmp_path / "l",
                     python("import time; time.sleep(120)"))
    assert rec.status == "timeout" and "case_timeout_s=1" in rec.reason
    assert rec.finished - rec.started < 30


def test_uninstalled_framework_is_skipped_without_a_worker(tmp_path):
    registry = {"ghost": AdapterInfo("ghost", "ghost", "ghost:Adapter", ("xfbench_ghost_framework",))}
    run = RunDir.create(tmp_path, "t")

    def never(*a, **k):
        raise AssertionError("no worker may start for a missing framework")

    summary = run_cases([case(framework="ghost")], run, registry, worker=never)
    (rec,) = summary.records
    assert rec.status == "skipped" and "xfbench_ghost_framework not installed" in rec.reason
    assert [r.status for r in run.records()] == ["skipped"]


def test_each_record_is_on_disk_before_the_next_case_starts(tmp_path):
    registry = {"torch": AdapterInfo("torch", "torch", "x:Y", ())}
    run = RunDir.create(tmp_path, "t")
    seen = []

    def worker(c, workdir, logdir):
        seen.append(len(run.records()))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return Record.of(c, "failed", "x", 0.0, 1.0)

    summary = run_cases([case(batch_size=1), case(batch_size=2), case(batch_size=3)], run, registry, worker=worker)
    assert seen == [0, 1] and summary.interrupted and len(run.records()) == 1


@pytest.mark.slow
def test_real_worker_measures_torch(tmp_path):
    pytest.importorskip("torch")
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l")
    assert rec.status == "ok", rec.stderr_tail
    m = rec.metrics
    assert m.parameters == 61_706 and len(rec.samples_s) >= 3
    assert m.samples_per_s == pytest.approx(2 / m.step_s["median"])
    assert m.achieved_flops_per_s == pytest.approx(3 * 833_040 * m.samples_per_s)
    assert rec.manifest["affinity"] and rec.manifest["threads"] == 1
    assert rec.manifest["env"]["OMP_NUM_THREADS"] == "1"
    assert m.first_step_s > 0 and m.setup_s > 0 and m.peak_host_rss_bytes > 0
    assert not list((tmp_path / "w").iterdir())  # the worker's scratch files are gone


@pytest.mark.slow
def test_real_worker_skips_cuda_without_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rec = run_worker(case(device="cuda"), tmp_path / "w", tmp_path / "l")
    assert rec.status == "skipped" and "CUDA is not available" in rec.reason


@pytest.mark.slow
def test_real_worker_reports_an_adapter_error(tmp_path):
    pytest.importorskip("torch")
    rec = run_worker(case(threads=512), tmp_path / "w", tmp_path / "l")
    assert rec.status == "failed" and "threads=512" in rec.reason
    assert "Traceback" in rec.stderr_tail


def test_a_gpu_case_caps_the_thread_pools_but_is_not_pinned():
    """Run in a child: affinity is process-wide. CPU cases are pinned to `threads` CPUs, GPU cases keep all."""
    code = ("import json, os, sys; from xfbench.harness.measure.process import pin_threads;"
            "n = len(os.sched_getaffinity(0)); cpus = pin_threads(1, pin=sys.argv[1] == 'cpu');"
            "print(json.dumps([len(cpus), len(os.sched_getaffinity(0)), n, os.environ['OMP_NUM_THREADS']]))")
    for device, pinned in (("cpu", True), ("cuda", False)):
        out = subprocess.run([sys.executable, "-c", code, device], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        got, now, allowed, omp = json.loads(out)
        assert omp == "1" and got == now == (1 if pinned else allowed), (device, out)
