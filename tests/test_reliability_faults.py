"""Each fault of a case, in a real worker process with the test-only `faulty` adapter (tests/fault_adapter/).

The adapter is found through a fake distribution's entry point on PYTHONPATH, exactly as a third-party
adapter would be; it misbehaves as XFBENCH_FAULT says. Every fault must become a failed or timeout
record with a reason and the tail of stderr, and the parent must go on.
"""
import os
import time

import pytest

import fault_adapter
from harness.case import Case, MeasureConfig
from harness.measure.process import STDERR_TAIL_CHARS
from harness.measure.runner import run_worker

TINY = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.002, min_samples=3, max_time_s=0.05)


@pytest.fixture(scope="module")
def faults_path(tmp_path_factory):
    return fault_adapter.install(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def fault(monkeypatch, faults_path):
    """Set the fault the next worker injects; the runner hands os.environ to its workers."""
    monkeypatch.setenv("PYTHONPATH", faults_path)
    return lambda spec: monkeypatch.setenv("XFBENCH_FAULT", spec)


def case(**kw):
    return Case(**{"framework": "faulty", "model": "lenet5", "mode": "train", "batch_size": 2, "threads": 1,
                   "measure": TINY, "case_timeout_s": 60.0, **kw})


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, just not reaped
    except OSError:
        return False


def test_without_a_fault_the_adapter_measures(fault, tmp_path):
    fault("")
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l")
    assert rec.status == "ok", rec.stderr_tail
    assert rec.metrics.parameters == 61_706 and rec.manifest["adapter"] == "faulty"


@pytest.mark.parametrize("spec, status, reason, in_tail", [
    ("segfault", "failed", "worker killed by SIGSEGV (a crash in native code)", "injecting ['segfault']"),
    ("oom-kill", "failed", "worker killed by SIGKILL (out of memory?", "injecting ['oom-kill']"),
    ("oom", "failed", "out of memory (cpu, batch size 2): MemoryError: Unable to allocate", "MemoryError"),
    ("gpu-oom", "failed", "out of memory (cpu, batch size 2): OutOfMemoryError: CUDA out of memory", "Traceback"),
    ("raise", "failed", "RuntimeError: injected fault: raise", "Traceback"),
    ("garbage", "failed", "invalid worker record: ", "{this is not a record"),
    ("exit", "failed", "worker exited with code 3 without a record", "injecting ['exit']"),
])
def test_a_fault_becomes_a_record_with_reason_and_stderr(fault, tmp_path, spec, status, reason, in_tail):
    fault(spec)
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l")
    assert rec.status == status and rec.reason.startswith(reason), rec.reason
    assert in_tail in rec.stderr_tail
    assert not list((tmp_path / "w").iterdir())  # no scratch files left


def test_a_hang_times_out_and_its_whole_process_group_dies(fault, tmp_path, monkeypatch):
    fault("hang")
    monkeypatch.setenv("XFBENCH_FAULT_PIDS", str(tmp_path / "pids"))
    t0 = time.monotonic()
    # Long enough for the worker to reach the hang even on a loaded 2-core machine.
    rec = run_worker(case(case_timeout_s=15.0), tmp_path / "w", tmp_path / "l")
    assert rec.status == "timeout" and rec.reason == "worker passed case_timeout_s=15 s"
    assert "injecting ['hang']" in rec.stderr_tail and time.monotonic() - t0 < 60
    worker, child = map(int, (tmp_path / "pids").read_text().split())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:  # the killed child is reaped by init
        time.sleep(0.1)
    assert not alive(worker) and not alive(child)


def test_a_stderr_flood_leaves_a_bounded_tail(fault, tmp_path):
    fault("flood,raise")
    rec = run_worker(case(), tmp_path / "w", tmp_path / "l")
    assert rec.status == "failed" and rec.reason == "RuntimeError: injected fault: raise"
    assert "Traceback" in rec.stderr_tail and len(rec.stderr_tail) <= STDERR_TAIL_CHARS
    (log,) = (tmp_path / "l").iterdir()
    assert log.stat().st_size > 8 * 2**20  # all of it is kept in the log, none of it in the record


def test_a_flood_alone_does_not_stop_the_case(fault, tmp_path):
    fault("flood")
    rec = run_worker(case(mode="infer"), tmp_path / "w", tmp_path / "l")
    assert rec.status == "ok", rec.stderr_tail


def test_a_fault_at_one_batch_size_spares_the_others(fault, tmp_path):
    fault("gpu-oom@4")
    recs = {b: run_worker(case(batch_size=b), tmp_path / "w", tmp_path / "l") for b in (2, 4)}
    assert recs[2].status == "ok" and recs[4].reason.startswith("out of memory (cpu, batch size 4)")


def test_workers_carry_the_parent_marker(fault, tmp_path):
    from harness.measure.process import PARENT_ENV, worker_env
    assert worker_env()[PARENT_ENV].startswith(f"{os.getpid()}:")
