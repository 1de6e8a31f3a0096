"""Other processes on the GPU (xfbench.harness.measure.gpu_contention), against a fake `pynvml`: no GPU needed."""
import os
import sys
import types

import pytest

from xfbench.harness.measure import gpu_contention
from xfbench.harness.measure.gpu_contention import busy_gpu_line, gpu_busy_warning, other_gpu_processes

GIB = 2**30


def fake_nvml(devices: dict[str, dict[str, list]], names: dict[int, str] | None = None, fail: str | None = None):
    """A `pynvml` stand-in: devices in NVML order, UUID -> {"compute": [(pid, bytes)], "graphics": [...]}."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    uuids = list(devices)
    calls = {"init": 0, "shutdown": 0}

    def check(name):
        if fail == name:
            raise NVMLError(f"{name} failed")

    def init():
        check("init")
        calls["init"] += 1

    def shutdown():
        calls["shutdown"] += 1

    def running(kind):
        def query(handle):
            check(kind)
            return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in devices[handle].get(kind, [])]
        return query

    def process_name(pid):
        if pid not in (names or {}):
            raise NVMLError("Not Found")
        return (names or {})[pid]

    def by_uuid(uuid):
        if uuid not in devices:
            raise NVMLError("Not Found")
        return uuid

    nvml.NVMLError = NVMLError
    nvml.nvmlInit, nvml.nvmlShutdown = init, shutdown
    nvml.nvmlDeviceGetCount = lambda: len(uuids)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: uuids[i]  # a handle is the device's UUID here
    nvml.nvmlDeviceGetUUID = lambda h: h.encode()  # older nvidia-ml-py returns bytes
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    nvml.nvmlDeviceGetComputeRunningProcesses = running("compute")
    nvml.nvmlDeviceGetGraphicsRunningProcesses = running("graphics")
    nvml.nvmlSystemGetProcessName = process_name
    nvml.calls = calls
    return nvml


TWO_GPUS = {
    "GPU-aaaa1111-0000": {"compute": [(4242, 2 * GIB), (os.getpid(), GIB)], "graphics": [(77, 45 * 2**20)]},
    "GPU-bbbb2222-0000": {"compute": [(5151, None)]},
}


@pytest.fixture
def nvml(monkeypatch):
    fake = fake_nvml(TWO_GPUS, names={4242: "/usr/bin/python3", 77: "Xorg"})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def test_other_processes_found_and_own_pid_left_out(nvml):
    assert other_gpu_processes(0) == [(77, "Xorg", 45 * 2**20), (4242, "python3", 2 * GIB)]
    assert other_gpu_processes(1) == [(5151, "?", None)]  # no name from NVML nor /proc: "?"
    assert [p[0] for p in other_gpu_processes()] == [77, 4242, 5151]  # every visible device
    assert nvml.calls["init"] == nvml.calls["shutdown"] == 3
    assert other_gpu_processes(2) is None  # no such device: NVML cannot say


def test_compute_and_graphics_entries_of_one_process_are_one(monkeypatch):
    fake = fake_nvml({"GPU-x": {"compute": [(9, GIB)], "graphics": [(9, None)]}}, names={9: "app"})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert other_gpu_processes(0) == [(9, "app", GIB)]


@pytest.mark.parametrize("visible, pids", [
    ("1", [5151]), ("1,0", [5151]), (" 0 ", [77, 4242]),  # NVML indices
    ("GPU-bbbb2222-0000", [5151]), ("GPU-bbbb", [5151]),  # a UUID, or a prefix as CUDA accepts
    ("GPU-bbbb2222-0000,GPU-aaaa1111-0000", [5151]),
])
def test_cuda_visible_devices_maps_cuda_device_0(nvml, monkeypatch, visible, pids):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [p[0] for p in other_gpu_processes(0)] == pids


@pytest.mark.parametrize("visible", ["", "-1", "GPU-nope", "GPU-", "7", "MIG-unknown"])
def test_no_visible_device_means_no_answer(nvml, monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)  # CUDA sees no device: nothing to check
    assert other_gpu_processes(0) is None


def test_cuda_stops_at_the_first_entry_it_cannot_read(nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,bogus,0")
    assert [p[0] for p in other_gpu_processes()] == [5151]


def test_nvml_missing_or_failing_gives_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    assert other_gpu_processes(0) is None
    for step in ("init", "compute"):
        fake = fake_nvml(TWO_GPUS, fail=step)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        assert other_gpu_processes(0) is None
    fake = fake_nvml(TWO_GPUS, names={4242: "python"}, fail="graphics")  # graphics not supported: compute counts
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert other_gpu_processes(0) == [(4242, "python", 2 * GIB)] and fake.calls["shutdown"] == 1


def test_a_container_whose_pids_are_the_hosts(monkeypatch):
    host_pid = 10**7 + 5  # this worker as the host numbers it: not a pid of this namespace
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml({"GPU-x": {"compute": [(host_pid, GIB)]}}))
    assert other_gpu_processes(0, holding_context=True) == []  # the lone process is this one
    assert other_gpu_processes(0) == [(host_pid, "?", GIB)]  # the parent holds no context: it is another
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml({"GPU-x": {"compute": [(host_pid, GIB), (host_pid + 1, GIB)]}}))
    assert len(other_gpu_processes(0, holding_context=True)) == 2  # cannot tell which is this one: both listed


def test_processes_this_worker_started_are_its_own(nvml, monkeypatch):
    test_pid = os.getpid()  # listed on the GPU by TWO_GPUS; here a process of another session
    monkeypatch.setattr(gpu_contention.os, "getsid", lambda pid: 1 if pid in (0, 1, 4242) else 2)
    monkeypatch.setattr(gpu_contention.os, "getpid", lambda: 1)  # the worker, a session leader as every worker is
    assert [p[0] for p in other_gpu_processes(0)] == [77, test_pid]  # 4242 is in its session: its own


def test_warning_lines():
    assert gpu_busy_warning(None) is None and gpu_busy_warning([]) is None
    before = [(4242, "python3", 2 * GIB), (77, "Xorg", 45 * 2**20)]
    after = [(4242, "python3", 3 * GIB), (99, "ollama", None)]
    assert gpu_busy_warning(before + after) == \
        "contended: other processes on the GPU: 77 Xorg (45 MiB), 99 ollama, 4242 python3 (3.0 GiB)"
    many = [(pid, "p", None) for pid in range(1, 9)]
    assert gpu_busy_warning(many).endswith("5 p and 3 more")
    assert busy_gpu_line(before).startswith("busy GPU: other processes use the GPU the cases will run on: 77 Xorg")
    assert busy_gpu_line([]) is None


def test_bench_run_says_so_before_a_gpu_run(monkeypatch, capsys):
    from xfbench.harness import cli
    from xfbench.harness.case import Case

    seen = []
    monkeypatch.setattr(gpu_contention, "other_gpu_processes", lambda i=None, **kw: seen.append(i) or [(4242, "python3", GIB)])
    lines = []
    monkeypatch.setattr(cli.err_console, "print", lambda text, **kw: lines.append(text))
    cpu = Case(framework="torch", model="lenet5", mode="train", batch_size=8)
    cli._warn_if_gpu_busy([cpu])
    assert lines == [] and seen == []  # a CPU run asks nothing of NVML
    cli._warn_if_gpu_busy([cpu, Case(framework="torch", model="lenet5", mode="train", batch_size=8, device="cuda")])
    assert seen == [0] and len(lines) == 1 and "busy GPU: other processes use the GPU" in lines[0] \
        and "4242 python3 (1.0 GiB)" in lines[0]
