"""GPU utilisation, NVML memory and GPU identity (xfbench.harness.measure.gpu_metrics) against a fake `pynvml`,
through the worker, the records and the report: no GPU needed, and no assertion on a real timing."""
from __future__ import annotations

import json
import os
import sys
import threading
import types

import pytest

from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.measure.gpu_metrics import GpuSampler, cuda_driver_text, driver_versions
from xfbench.harness.measure.worker import Prepared, run_case
from xfbench.harness.records import Metrics, Record, ResultsError, RunMeta
from xfbench.harness.report.build import build_report, collect_groups, group_table
from xfbench.harness.results import RunDir, flatten_record

MIB = 2**20
NOT_SUPPORTED, NOT_FOUND = 3, 6


class FakeDevice:
    """One GPU as the fake NVML sees it: its driver's utilisation buffer and its compute processes."""

    def __init__(self, name: str, samples: bool = True):
        self.name, self.samples = name, samples
        self.buffer: list[tuple[int, int]] = []  # (timestamp in µs, percent), oldest first
        self.processes: list[tuple[int, int | None]] = []  # (pid, usedGpuMemory)
        self.rates = [50]  # what nvmlDeviceGetUtilizationRates returns, the last one repeated

    def tick(self, percent: int) -> None:
        self.buffer.append(((self.buffer[-1][0] if self.buffer else 1_000) + 100_000, percent))


def fake_nvml(devices: dict[str, FakeDevice], fail_init: bool = False) -> types.ModuleType:
    """A `pynvml` stand-in with the calls gpu_metrics and gpu_contention make; handles are UUIDs."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value: int):
            super().__init__(f"NVML error {value}")
            self.value = value

    uuids = list(devices)
    nvml.calls = {"init": 0, "shutdown": 0, "samples": 0, "rates": 0}
    nvml.rates_read = threading.Event()

    def init():
        if fail_init:
            raise NVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
        nvml.calls["init"] += 1

    def samples(handle, kind, since):
        assert kind == nvml.NVML_GPU_UTILIZATION_SAMPLES
        nvml.calls["samples"] += 1
        d = devices[handle]
        if not d.samples:
            raise NVMLError(NOT_SUPPORTED)
        newer = [types.SimpleNamespace(timeStamp=ts, sampleValue=types.SimpleNamespace(uiVal=p))
                 for ts, p in d.buffer if ts > since]
        if not newer:
            raise NVMLError(NOT_FOUND)
        return 1, newer  # NVML_VALUE_TYPE_UNSIGNED_INT

    def rates(handle):
        d = devices[handle]
        nvml.calls["rates"] += 1
        if nvml.calls["rates"] >= 3:
            nvml.rates_read.set()
        return types.SimpleNamespace(gpu=d.rates[min(nvml.calls["rates"], len(d.rates)) - 1], memory=0)

    def by_uuid(uuid):
        if uuid not in devices:
            raise NVMLError(NOT_FOUND)
        return uuid

    nvml.NVMLError, nvml.NVML_ERROR_NOT_FOUND, nvml.NVML_GPU_UTILIZATION_SAMPLES = NVMLError, NOT_FOUND, 1
    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.calls.__setitem__("shutdown", nvml.calls["shutdown"] + 1)
    nvml.nvmlDeviceGetCount = lambda: len(uuids)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: uuids[i]
    nvml.nvmlDeviceGetUUID = lambda h: h
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    nvml.nvmlDeviceGetSamples = samples
    nvml.nvmlDeviceGetUtilizationRates = rates
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in devices[h].processes]
    nvml.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    nvml.nvmlSystemGetProcessName = lambda pid: "python3"
    nvml.nvmlDeviceGetName = lambda h: devices[h].name
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=141 * 2**30, used=0, free=0)
    nvml.nvmlSystemGetDriverVersion = lambda: b"580.65.06"  # older nvidia-ml-py returns bytes
    nvml.nvmlSystemGetCudaDriverVersion = lambda: 13000
    return nvml


@pytest.fixture
def gpu(monkeypatch):
    """One H200 whose driver buffers utilisation samples, two old samples already in it; this process on it."""
    d = FakeDevice("NVIDIA H200")
    d.tick(5), d.tick(7)
    d.processes = [(os.getpid(), 300 * MIB)]
    nvml = fake_nvml({"GPU-aaaa1111-0000": d})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return d, nvml


def test_driver_samples_between_start_and_stop_only(gpu):
    d, nvml = gpu
    s = GpuSampler()
    s.start()
    for p in (90, 100, 80):  # the timed samples
        d.tick(p)
    d.processes = [(os.getpid(), 500 * MIB)]
    s.stop()
    d.tick(3)  # after the timed samples: not theirs
    d.processes = [(os.getpid(), 400 * MIB)]
    out = s.finish()
    assert out == {"gpu_utilisation": pytest.approx(0.9), "gpu_utilisation_min": 0.8, "gpu_utilisation_max": 1.0,
                   "gpu_utilisation_samples": 3, "nvml_used_memory_bytes": 500 * MIB}
    assert nvml.calls["samples"] == 2 and nvml.calls["rates"] == 0  # read twice, nothing polled in between
    assert s.device == {"name": "NVIDIA H200", "memory_bytes": 141 * 2**30, "driver": "580.65.06",
                        "cuda_driver": "13.0"}
    assert nvml.calls["init"] == nvml.calls["shutdown"] == 1


def test_an_empty_buffer_at_start_and_timed_samples_shorter_than_a_sample_period(gpu):
    d, _ = gpu
    d.buffer.clear()
    s = GpuSampler()
    s.start()  # NOT_FOUND: nothing buffered yet
    d.tick(60)
    s.stop()
    assert s.finish()["gpu_utilisation"] == pytest.approx(0.6)
    s = GpuSampler()
    s.start()
    s.stop()  # NOT_FOUND again: no sample fell in the timed samples
    assert s.finish() == {"nvml_used_memory_bytes": 300 * MIB}


def test_polling_when_the_driver_keeps_no_samples(monkeypatch):
    d = FakeDevice("Tesla T4", samples=False)
    d.rates = [40, 60, 80]
    nvml = fake_nvml({"GPU-t4": d})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    s = GpuSampler(poll_s=0.001)
    s.start()
    assert nvml.rates_read.wait(10)  # the thread has read three times
    s.stop()
    n = nvml.calls["rates"]
    out = s.finish()
    assert out["gpu_utilisation_samples"] == n >= 3 and nvml.calls["rates"] == n  # stopped: no read after
    assert (out["gpu_utilisation_min"], out["gpu_utilisation_max"]) == (0.4, 0.8)
    assert "nvml_used_memory_bytes" not in out  # this process is not on the device


@pytest.mark.parametrize("pynvml", ["missing", "init fails"])
def test_without_nvml_nothing_is_measured_and_nothing_raises(monkeypatch, pynvml):
    if pynvml == "missing":
        monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    else:
        monkeypatch.setitem(sys.modules, "pynvml", fake_nvml({"GPU-a": FakeDevice("A100")}, fail_init=True))
    s = GpuSampler()
    s.start()
    s.stop()
    assert s.finish() == {} and s.device is None
    assert driver_versions() == {}


@pytest.mark.parametrize("listed, expected", [
    ([(4242, 2 * 2**30), (5151, 3 * 2**30)], None),  # others only: which one is this process cannot be said
    ([(4242, 2 * 2**30)], 2 * 2**30),  # a lone process on a GPU this one holds a context on: the host's pid for it
    ([(4242, 2 * 2**30), (os.getpid(), 123 * MIB)], 123 * MIB),
    ([(os.getpid(), None)], None),  # NVML cannot say (Windows WDDM)
])
def test_which_entry_is_this_process(gpu, listed, expected):
    d, _ = gpu
    d.processes = listed
    s = GpuSampler()
    s.start()
    s.stop()
    assert s.finish().get("nvml_used_memory_bytes") == expected


def test_cuda_visible_devices_by_uuid_picks_the_device(monkeypatch):
    a, b = FakeDevice("NVIDIA A100"), FakeDevice("NVIDIA H100")
    b.processes = [(os.getpid(), 700 * MIB)]
    nvml = fake_nvml({"GPU-aaaa1111-0000": a, "GPU-bbbb2222-0000": b})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb2222")  # a prefix of the UUID is enough
    s = GpuSampler()
    s.start()
    a.tick(10)
    b.tick(95)
    s.stop()
    out = s.finish()
    assert out["gpu_utilisation"] == pytest.approx(0.95) and out["nvml_used_memory_bytes"] == 700 * MIB
    assert s.device["name"] == "NVIDIA H100"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ffff")  # no such device: nothing
    s = GpuSampler()
    s.start()
    s.stop()
    assert s.finish() == {} and s.device is None


def test_driver_versions_for_the_host(gpu):
    assert driver_versions() == {"gpu_driver": "580.65.06", "cuda_driver": "13.0"}
    assert cuda_driver_text(12040) == "12.4" and cuda_driver_text(13010) == "13.1"


# ---- the worker: the sampler runs around the timed samples of a cuda case only ----

class FakeGpuAdapter:
    """Steps that cost nothing and leave one utilisation sample each in the fake driver's buffer: 10% before
    the sampler has read the buffer (first step, warm-up, calibration), 100% after (the timed samples)."""

    device: FakeDevice
    nvml: types.ModuleType
    steps_before_sampling: int | None = None

    def __init__(self, device, precision, threads, seed):
        self.case_device, self.steps = device, 0

    def build(self, spec, optimizer):
        self.spec = spec

    def parameter_count(self):
        return self.spec.parameter_count()

    def load_weights(self, weights):
        pass

    def put_batch(self, x, y):
        return None

    def sync(self):
        pass

    def train_step(self, batch):
        sampling = self.nvml.calls["samples"] > 0
        if sampling and FakeGpuAdapter.steps_before_sampling is None:
            FakeGpuAdapter.steps_before_sampling = self.steps
        self.steps += 1
        self.device.tick(100 if sampling else 10)

    infer_step = train_step

    def peak_device_memory_bytes(self):
        return 64 * MIB if self.case_device == "cuda" else None

    def reset_peak_device_memory(self):
        return True

    def settings(self):
        return {"versions": {"fake": "1.0"}}


def _prepared() -> Prepared:
    info = types.SimpleNamespace(framework="fake", name="fake", options={},
                                 provenance=lambda: {"package": "tests", "version": None, "source_sha256": None})
    return Prepared(cpus=sorted(os.sched_getaffinity(0))[:1], env={}, info=info, adapter_cls=FakeGpuAdapter,
                    import_s=0.0)


QUICK = MeasureConfig(warmup_steps=2, warmup_s=0.0, min_sample_s=1e-9, min_samples=3, max_samples=3, max_time_s=5.0)


def test_the_worker_samples_the_timed_samples_of_a_cuda_case(gpu, monkeypatch):
    d, nvml = gpu
    monkeypatch.setattr(FakeGpuAdapter, "device", d, raising=False)
    monkeypatch.setattr(FakeGpuAdapter, "nvml", nvml, raising=False)
    monkeypatch.setattr(FakeGpuAdapter, "steps_before_sampling", None)
    case = Case(framework="fake", model="lenet5", mode="train", batch_size=2, device="cuda", measure=QUICK)
    rec = run_case(case, _prepared())
    assert rec.ok, rec.reason
    m = rec.metrics
    # Only the 100% samples of the timed steps count: none of the first step, warm-up or calibration.
    assert (m.gpu_utilisation, m.gpu_utilisation_min, m.gpu_utilisation_max) == (1.0, 1.0, 1.0)
    assert m.gpu_utilisation_samples == 3 * m.steps_per_sample  # 3 samples, one buffered per step
    assert FakeGpuAdapter.steps_before_sampling >= 1 + 2 + 1  # first step, 2 warm-up steps, a calibration sample
    assert m.nvml_used_memory_bytes == 300 * MIB and m.peak_device_memory_bytes == 64 * MIB
    assert rec.manifest["gpu_device"]["name"] == "NVIDIA H200"
    assert nvml.calls["init"] == nvml.calls["shutdown"]  # NVML closed by the end of the case


def test_a_cpu_case_never_asks_nvml(gpu, monkeypatch):
    d, nvml = gpu
    monkeypatch.setattr(FakeGpuAdapter, "device", d, raising=False)
    monkeypatch.setattr(FakeGpuAdapter, "nvml", nvml, raising=False)
    case = Case(framework="fake", model="lenet5", mode="infer", batch_size=2, device="cpu", measure=QUICK)
    rec = run_case(case, _prepared())
    assert rec.ok, rec.reason
    assert nvml.calls["init"] == 0 and "gpu_device" not in rec.manifest
    assert not {k for k in rec.metrics.to_json() if k.startswith(("gpu_", "nvml_"))}


# ---- records, results.csv and the report ----

GPU_METRICS = {"gpu_utilisation": 0.93, "gpu_utilisation_min": 0.81, "gpu_utilisation_max": 0.99,
               "gpu_utilisation_samples": 42, "nvml_used_memory_bytes": 1536 * MIB}


def test_the_metrics_round_trip_and_are_checked():
    m = Metrics.from_json({"samples_per_s": 10.0, **GPU_METRICS})
    assert m.gpu_utilisation == 0.93 and m.gpu_utilisation_samples == 42 and m.nvml_used_memory_bytes == 1536 * MIB
    assert m.to_json() == {"samples_per_s": 10.0, **GPU_METRICS} and not m.extra
    assert Metrics.from_json(json.loads(json.dumps(m.to_json()))) == m
    with pytest.raises(ResultsError, match="gpu_utilisation_samples"):
        Metrics.from_json({"gpu_utilisation_samples": 4.5})
    with pytest.raises(ResultsError, match="gpu_utilisation"):
        Metrics.from_json({"gpu_utilisation": "busy"})


def _record(fw: str, device: str, step_s: float, gpu: bool = True) -> Record:
    case = Case(framework=fw, model="lenet5", mode="train", batch_size=32, device=device, threads=2)
    samples = tuple(step_s * (1 + 0.001 * i) for i in range(10))
    metrics = {"samples_per_s": 32 / step_s, "samples_per_s_ci": [31 / step_s, 33 / step_s],
               "step_s": {"n": 10, "median": step_s}, "first_step_s": 0.5, "setup_s": 1.0, "parameters": 61706,
               "cpu_utilisation": 1.0, "step_peak_device_memory_bytes": 512 * MIB if device == "cuda" else None,
               "peak_host_rss_bytes": 900 * MIB, **(GPU_METRICS if device == "cuda" and gpu else {})}
    manifest = {"framework": fw, "versions": {fw: "1.0"}}
    if device == "cuda":
        manifest["versions"].update({"torch": {"cuda": "12.8", "cudnn": 91002},
                                     "jax": {"cuda": "12.9", "cudnn": "9.10.2.21"}}[fw])
        if gpu:
            manifest["gpu_device"] = {"name": "NVIDIA H200", "memory_bytes": 141 * 2**30, "driver": "580.65.06",
                                      "cuda_driver": "13.0"}
    return Record.of(case, "ok", None, 0.0, 1.0, metrics=Metrics.from_json(metrics), samples_s=samples,
                     manifest=manifest)


def _run(tmp_path, records: list[Record], host: dict):
    path = tmp_path / "run"
    path.mkdir(parents=True)
    run = RunDir(path)
    for r in records:
        run.append(r)
    (path / "run.json").write_text(json.dumps(RunMeta(suite="gpu", started=0.0, finished=1.0,
                                                      planned_cases=len(records), host=host).to_json()))
    return run


def test_the_report_shows_gpu_busy_and_nvml_memory_for_a_cuda_group_only(tmp_path):
    recs = [_record(fw, dev, 0.01 if fw == "torch" else 0.012) for fw in ("torch", "jax") for dev in ("cuda", "cpu")]
    host = {"hostname": "gpu-box", "gpus": ["NVIDIA H200, 143771 MiB, 580.65.06"], "gpu_driver": "580.65.06",
            "cuda_driver": "13.0"}
    report = build_report(_run(tmp_path, recs, host))
    tables = {g.device: group_table(g) for g in collect_groups(recs)}
    cuda, cpu = list(tables["cuda"].columns), list(tables["cpu"].columns)
    assert cuda[cuda.index("CPU busy") + 1] == "GPU busy" and cuda[cuda.index("step memory") + 1] == "NVML memory"
    assert "GPU busy" not in cpu and "NVML memory" not in cpu
    row = tables["cuda"].set_index("framework").loc["torch"]
    assert (row["GPU busy"], row["NVML memory"], row["step memory"]) == ("93%", "1.50 GiB", "512 MiB")
    assert report.intro[2] == ("GPU: NVIDIA H200 (driver 580.65.06, CUDA driver 13.0); jax: CUDA 12.9, cuDNN "
                               "9.10.2.21; torch: CUDA 12.8, cuDNN 91002.")
    assert "GPU busy is the share of the timed samples" in report.method
    row = flatten_record(recs[0])
    assert (row["gpu_utilisation"], row["nvml_used_memory_bytes"]) == (0.93, 1536 * MIB)


def test_a_cpu_run_and_a_gpu_run_without_nvml_show_no_gpu_columns(tmp_path):
    cpu_run = build_report(_run(tmp_path / "a", [_record("torch", "cpu", 0.01), _record("jax", "cpu", 0.02)],
                                {"hostname": "vm", "gpus": []}))
    assert len(cpu_run.intro) == 2 and "GPU busy" not in cpu_run.method
    assert all("GPU busy" not in s.table.columns for s in cpu_run.sections)
    # An older GPU record, without NVML's figures: the device from the host's nvidia-smi line, no empty columns.
    old = build_report(_run(tmp_path / "b", [_record("torch", "cuda", 0.01, gpu=False)],
                            {"hostname": "gpu-box", "gpus": ["NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15"]}))
    assert old.intro[2] == "GPU: NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15; torch: CUDA 12.8, cuDNN 91002."
    assert all("GPU busy" not in s.table.columns and "NVML memory" not in s.table.columns for s in old.sections)
    assert "GPU busy" not in old.method


def test_host_info_adds_the_drivers_only_where_a_gpu_is_listed(gpu, monkeypatch):
    from xfbench.harness.measure import host

    monkeypatch.setattr(host, "_gpus", lambda: ["NVIDIA H200, 143771 MiB, 580.65.06"])
    info = host.host_info()
    assert info["gpus"] == ["NVIDIA H200, 143771 MiB, 580.65.06"]
    assert (info["gpu_driver"], info["cuda_driver"]) == ("580.65.06", "13.0")
    monkeypatch.setattr(host, "_gpus", lambda: [])
    assert not {"gpu_driver", "cuda_driver"} & set(host.host_info())

