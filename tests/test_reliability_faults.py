"""Each fault of a case, in a real worker process with the test-only `faulty` adapter (tests/fault_adapter/).

The adapter is found through a fake distribution's entry point on PYTHONPATH, exactly as a third-party
adapter would be; it misbehaves as XFBENCH_FAULT says. Every fault must become a failed or timeout
record with a reason and the tail of stderr, and the parent must go on; in a fresh worker and in one
forked from a fork server (process_start "fork") alike.
"""
import dataclasses
import os
import time

import pytest

import fault_adapter
from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.measure.process import STDERR_TAIL_CHARS
from xfbench.harness.measure.forkserver import ForkServers
from xfbench.harness.measure.runner import run_worker

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


@pytest.fixture(params=["exec", "fork"])
def run(request, tmp_path):
    """`run(case)`: the case in a fresh worker, or forked from a fork server started at its first case
    (after the test set XFBENCH_FAULT: a server's children see the environment it started with)."""
    servers = ForkServers(tmp_path / "l")
    yield lambda c: run_worker(dataclasses.replace(c, process_start=request.param), tmp_path / "w", tmp_path / "l",
                               servers=servers)
    servers.close()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, just not reaped
    except OSError:
        return False


def test_without_a_fault_the_adapter_measures(fault, run, request):
    fault("")
    rec = run(case())
    assert rec.status == "ok", rec.stderr_tail
    assert rec.metrics.parameters == 61_706 and rec.manifest["adapter"] == "faulty"
    assert rec.manifest["process_start"] == request.node.callspec.params["run"]


@pytest.mark.parametrize("spec, status, reason, in_tail", [
    ("segfault", "failed", "worker killed by SIGSEGV (a crash in native code)", "injecting ['segfault']"),
    ("oom-kill", "failed", "worker killed by SIGKILL (out of memory?", "injecting ['oom-kill']"),
    ("oom", "failed", "out of memory (cpu, batch size 2): MemoryError: Unable to allocate", "MemoryError"),
    ("gpu-oom", "failed", "out of memory (cpu, batch size 2): OutOfMemoryError: CUDA out of memory", "Traceback"),
    ("raise", "failed", "RuntimeError: injected fault: raise", "Traceback"),
    ("garbage", "failed", "invalid worker record: ", "{this is not a record"),
    ("exit", "failed", "worker exited with code 3 without a record", "injecting ['exit']"),
])
def test_a_fault_becomes_a_record_with_reason_and_stderr(fault, run, tmp_path, request, spec, status, reason,
                                                         in_tail):
    if spec == "garbage" and request.node.callspec.params["run"] == "fork":
        pytest.skip("the fault writes garbage over sys.argv[2] at exit, the record path of a fresh worker only")
    fault(spec)
    rec = run(case())
    assert rec.status == status and rec.reason.startswith(reason), rec.reason
    assert in_tail in rec.stderr_tail
    assert not list((tmp_path / "w").iterdir())  # no scratch files left


def test_a_hang_times_out_and_its_whole_process_group_dies(fault, run, tmp_path, monkeypatch):
    fault("hang@2")
    monkeypatch.setenv("XFBENCH_FAULT_PIDS", str(tmp_path / "pids"))
    t0 = time.monotonic()
    # Long enough for the worker to reach the hang even on a loaded 2-core machine.
    rec = run(case(case_timeout_s=15.0))
    assert rec.status == "timeout" and rec.reason == "worker passed case_timeout_s=15 s"
    assert "injecting ['hang']" in rec.stderr_tail and time.monotonic() - t0 < 60
    worker, child = map(int, (tmp_path / "pids").read_text().split())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:  # the killed child is reaped by init
        time.sleep(0.1)
    assert not alive(worker) and not alive(child)
    assert run(case(batch_size=4)).status == "ok"  # and the next case runs (a fork server lives on)


def test_a_stderr_flood_leaves_a_bounded_tail(fault, run, tmp_path):
    fault("flood,raise")
    rec = run(case())
    assert rec.status == "failed" and rec.reason == "RuntimeError: injected fault: raise"
    assert "Traceback" in rec.stderr_tail and len(rec.stderr_tail) <= STDERR_TAIL_CHARS
    (log,) = (tmp_path / "l").glob(f"{rec.case_id}.log")
    assert log.stat().st_size > 8 * 2**20  # all of it is kept in the log, none of it in the record


def test_a_flood_alone_does_not_stop_the_case(fault, run):
    fault("flood")
    rec = run(case(mode="infer"))
    assert rec.status == "ok", rec.stderr_tail


def test_a_fault_at_one_batch_size_spares_the_others(fault, run):
    fault("gpu-oom@4")
    recs = {b: run(case(batch_size=b)) for b in (2, 4)}
    assert recs[2].status == "ok" and recs[4].reason.startswith("out of memory (cpu, batch size 4)")


def test_workers_carry_the_parent_marker(fault, tmp_path):
    from xfbench.harness.measure.process import PARENT_ENV, worker_env
    assert worker_env()[PARENT_ENV].startswith(f"{os.getpid()}:")


# ---- fork servers only ----

def test_a_forked_case_over_its_memory_limit_is_killed_and_the_server_serves_on(fault, tmp_path):
    fault("hog@2")
    servers = ForkServers(tmp_path / "l")
    try:
        forked = lambda c: run_worker(dataclasses.replace(c, process_start="fork"), tmp_path / "w", tmp_path / "l",
                                      servers=servers)
        rec = forked(case(memory_limit_gib=0.2, case_timeout_s=60.0))
        assert rec.status == "failed" and rec.reason.startswith("out of memory: limit 0.2 GiB"), rec.reason
        after = forked(case(batch_size=4))
        assert after.status == "ok" and after.manifest["process_start"] == "fork"
    finally:
        servers.close()


def test_each_round_has_its_own_server_and_the_last_one_ends(fault, tmp_path):
    fault("")
    servers = ForkServers(tmp_path / "l")
    try:
        run_worker(case(process_start="fork"), tmp_path / "w", tmp_path / "l", servers=servers)
        (first,) = servers.servers.values()
        rec = run_worker(case(process_start="fork", process=1), tmp_path / "w", tmp_path / "l", servers=servers)
        (second,) = servers.servers.values()
        assert rec.status == "ok" and second is not first and first.proc.poll() is not None
    finally:
        servers.close()
    assert second.proc.poll() is not None


def test_a_server_that_cannot_start_leaves_its_cases_to_fresh_workers(monkeypatch, tmp_path):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the faulty adapter is not installed: nothing imports it
    servers = ForkServers(tmp_path / "l")
    rec = run_worker(case(process_start="fork"), tmp_path / "w", tmp_path / "l", servers=servers)
    (why,) = servers.broken.values()
    assert why.startswith("the fork server for faulty could not start (KeyError: 'faulty')"), why
    assert rec.status == "failed" and "faulty" in rec.reason  # from the fresh worker, which fails the same way
    servers.close()


def test_a_server_that_dies_is_replaced_by_a_fresh_worker(fault, tmp_path):
    fault("")
    servers = ForkServers(tmp_path / "l")
    first = run_worker(case(process_start="fork"), tmp_path / "w", tmp_path / "l", servers=servers)
    (server,) = servers.servers.values()
    server.proc.kill()
    server.proc.wait()
    rec = run_worker(case(process_start="fork", batch_size=4), tmp_path / "w", tmp_path / "l", servers=servers)
    assert first.manifest["process_start"] == "fork" and rec.status == "ok", rec.stderr_tail
    assert rec.manifest["process_start"] == "exec" and not servers.servers
    servers.close()


def test_a_rounds_servers_start_together_before_its_first_case(fault, tmp_path):
    fault("")
    servers = ForkServers(tmp_path / "l")
    cases = [case(process_start="fork", framework=fw, mode="infer", process=p) for p in (0, 1)
             for fw in ("faulty", "numpy")]
    servers.plan(cases)
    try:
        rec = run_worker(cases[0], tmp_path / "w", tmp_path / "l", servers=servers)
        assert rec.status == "ok" and sorted(k[0] for k in servers.servers) == ["faulty", "numpy"]
        assert {k[3] for k in servers.servers} == {0}  # the next round's start with it
    finally:
        servers.close()
