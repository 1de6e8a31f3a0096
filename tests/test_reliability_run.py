"""A whole `bench run` under faults, in real subprocesses: Ctrl-C, SIGTERM, SIGKILL of the parent, torn
lines, `--resume`, and a GPU out-of-memory in the middle of a batch-size sweep."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fault_adapter
from xfbench.harness.case import Case
from xfbench.harness.records import Record, RunMeta
from xfbench.harness.results import RunDir

ROOT = Path(__file__).resolve().parent.parent
SUITE = """
seed = 0
[defaults]
frameworks = ["faulty"]
threads = 1
case_timeout_s = 120
measure = { warmup_steps = 1, warmup_s = 0.01, min_sample_s = 0.002, min_samples = 3, max_time_s = 0.05 }
[[cases]]
models = ["lenet5"]
modes = ["train"]
batch_sizes = [2, 4, 8]
"""


@pytest.fixture(scope="module")
def faults_path(tmp_path_factory):
    return fault_adapter.install(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "faults.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def reaper(tmp_path):
    """Whatever happens in the test, end the processes it started: the parent, and the pids it wrote."""
    started = []
    yield started.append
    pids = tmp_path / "pids"
    for pid in (pids.read_text().split() if pids.exists() else []):
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGKILL)
    for proc in started:
        proc.kill()
        proc.wait()


def env(faults_path, fault="", **extra):
    return {**os.environ, "PYTHONPATH": faults_path, "XFBENCH_FAULT": fault, "COLUMNS": "200", **extra}


def bench(*args, environ, timeout=300):
    return subprocess.run([sys.executable, "-m", "xfbench.harness.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=environ)


def start_bench(*args, environ):
    return subprocess.Popen([sys.executable, "-m", "xfbench.harness.cli", *args], cwd=ROOT, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout=240.0):  # generous: two shared cores may be very busy
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def lines(run):
    return (run / "cases.jsonl").read_text().splitlines() if (run / "cases.jsonl").exists() else []


def test_gpu_oom_at_one_batch_size_and_the_sweep_goes_on(faults_path, suite, tmp_path):
    p = bench("run", str(suite), "--out", str(tmp_path / "out"), environ=env(faults_path, "gpu-oom@4"))
    assert p.returncode == 1, p.stderr  # a failed case: exit 1, and every case still ran
    (run,) = (tmp_path / "out").iterdir()
    by_batch = {r.case.batch_size: r for r in RunDir(run).records()}
    assert {b: r.status for b, r in by_batch.items()} == {2: "ok", 4: "failed", 8: "ok"}
    assert by_batch[4].reason.startswith("out of memory (cpu, batch size 4): OutOfMemoryError")
    assert "CUDA out of memory" in by_batch[4].stderr_tail
    assert "1 case(s) failed or timed out" in p.stderr


def start_hanging_run(faults_path, suite, tmp_path, reaper):
    """`bench run` whose batch-4 case hangs; returns once that worker and its child are up."""
    pids = tmp_path / "pids"
    parent = start_bench("run", str(suite), "--out", str(tmp_path / "out"),
                         environ=env(faults_path, "hang@4", XFBENCH_FAULT_PIDS=str(pids)))
    reaper(parent)
    wait_for(lambda: pids.exists() and pids.read_text().endswith("\n"))
    worker, child = map(int, pids.read_text().split())
    (run,) = (tmp_path / "out").iterdir()
    return parent, worker, child, run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_kills_the_worker_keeps_the_records_and_resume_finishes(
        faults_path, suite, tmp_path, sig, reaper):
    parent, worker, child, run = start_hanging_run(faults_path, suite, tmp_path, reaper)
    before = lines(run)
    parent.send_signal(sig)
    out, err = parent.communicate(timeout=60)
    assert parent.returncode == 130, err
    assert f"continue with: bench run --resume {run}" in err
    wait_for(lambda: not alive(worker) and not alive(child), timeout=30)
    assert lines(run) == before  # nothing lost, nothing half-written
    meta = json.loads((run / "run.json").read_text())
    assert meta["interrupted"] and len(meta["plan"]) == 3

    if sig == signal.SIGTERM:
        return  # the same directory as after Ctrl-C; resuming it is tested once
    p = bench("run", "--resume", str(run), environ=env(faults_path))
    assert p.returncode == 0, p.stderr
    assert f"{len(before)} of 3 cases recorded, {3 - len(before)} to run" in p.stdout
    assert lines(run)[:len(before)] == before  # finished cases kept, not rerun
    records = RunDir(run).records()
    assert sorted(r.case.batch_size for r in records) == [2, 4, 8]
    assert {r.status for r in records} == {"ok"}
    meta = json.loads((run / "run.json").read_text())
    assert meta["finished"] and not meta["interrupted"] and len(meta["resumed"]) == 1


def test_sigkill_of_the_parent_takes_the_worker_along_and_resume_repairs_and_reaps(faults_path, suite, tmp_path,
                                                                                     reaper):
    parent, worker, child, run = start_hanging_run(faults_path, suite, tmp_path, reaper)
    parent.kill()  # SIGKILL: no handler runs, nothing is cleaned up by the parent
    parent.communicate(timeout=30)
    wait_for(lambda: not alive(worker), timeout=30)  # PR_SET_PDEATHSIG
    # The worker's own child (say, a compiler process of its framework) is orphaned until the next run.
    assert alive(child)
    before = lines(run)
    with open(run / "cases.jsonl", "a") as f:  # and the kill tore a record in half
        f.write('{"schema": 1, "case_id": "torn')

    p = bench("report", str(run), environ=env(faults_path))
    assert p.returncode == 0, p.stderr
    assert "torn write" in (run / "report.md").read_text()

    p = bench("run", "--resume", str(run), environ=env(faults_path))
    assert p.returncode == 0, p.stderr
    assert re.search(r"killed \d+ process\(es\) left behind by an interrupted run", p.stderr)
    assert "torn line" in p.stderr and (run / "cases.jsonl.torn").read_text().startswith('{"schema": 1')
    wait_for(lambda: not alive(child), timeout=30)
    assert lines(run)[:len(before)] == before and len(lines(run)) == 3
    assert all(json.loads(line) for line in lines(run))
    run_dir = RunDir(run)
    assert sorted(r.case.batch_size for r in run_dir.records()) == [2, 4, 8] and not run_dir.torn_lines


def test_resume_of_a_run_still_being_written_is_refused(faults_path, tmp_path):
    from xfbench.harness.case import Case
    from xfbench.harness.measure.runner import plan_for_meta

    cases = [Case(framework="faulty", model="lenet5", mode="infer", batch_size=b) for b in (2, 4)]
    run = RunDir.create(tmp_path, "t")
    run.write_meta(RunMeta(suite="t", started=time.time(), plan=plan_for_meta(cases)))
    for c in cases:
        run.append(Record.of(c, "skipped", "x", 0.0, 1.0))
    run.lock()  # as a live `bench run` holds it
    try:
        p = bench("run", "--resume", str(run.path), environ=env(faults_path))
    finally:
        run.unlock()
    assert p.returncode == 2 and "being written by another bench process" in p.stderr
    p = bench("run", "--resume", str(run.path), environ=env(faults_path))
    assert p.returncode == 0 and "2 of 2 cases recorded, 0 to run" in p.stdout, p.stderr
    assert len(lines(run.path)) == 2 and json.loads((run.path / "run.json").read_text())["finished"]


def _rec(batch_size):
    return Record.of(Case(framework="faulty", model="lenet5", mode="infer", batch_size=batch_size), "skipped", "x",
                     0.0, 1.0)


def test_repair_cuts_a_torn_tail_keeps_it_and_appends_cleanly(tmp_path):
    run = RunDir.create(tmp_path, "t")
    run.append(_rec(1))
    with open(run.path / "cases.jsonl", "ab") as f:
        f.write(b'{"schema": 2, "case_id": "b-')
    assert run.repair().startswith("cases.jsonl ended in a torn line 2 (28 bytes")
    assert (run.path / "cases.jsonl.torn").read_bytes() == b'{"schema": 2, "case_id": "b-\n'
    run.append(_rec(3))
    assert [r.case_id for r in run.records()] == [_rec(1).case_id, _rec(3).case_id] and not run.torn_lines
    assert run.repair() is None


def test_repair_keeps_a_whole_record_that_lacks_its_newline(tmp_path):
    run = RunDir.create(tmp_path, "t")
    (run.path / "cases.jsonl").write_text(json.dumps(_rec(1).to_json()))
    assert "lacked its final newline" in run.repair()
    run.append(_rec(2))
    assert [r.case_id for r in run.records()] == [_rec(1).case_id, _rec(2).case_id]
