"""Workers run no code from the current directory; a broken or clashing third-party adapter is contained;
a worker's memory is bounded (reliability, round two)."""
import re
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import fault_adapter
from xfbench.harness.adapter import discover, discover_all
from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.cli import main
from xfbench.harness.measure.runner import memory_limit_bytes, run_worker
from xfbench.harness.plan.memory import GIB, MemoryEstimate, refusal
from xfbench.harness.plan.suites import SuiteError, expand, parse_suite
from xfbench.harness.records import ResultsError, parse_case
from xfbench.harness.validate.matrix import validate

TINY = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.002, min_samples=3, max_time_s=0.05)
MIB = 2**20


def case(**kw):
    return Case(**{"framework": "faulty", "model": "lenet5", "mode": "train", "batch_size": 2, "threads": 1,
                   "measure": TINY, "case_timeout_s": 60.0, **kw})


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *parts):
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert all(p in result.stderr for p in parts), result.stderr
    assert "Traceback" not in result.output


# ---- item 2: the worker runs no code from the current directory ----

@pytest.fixture
def shadowed(tmp_path, monkeypatch):
    """A current directory whose numpy.py, torch.py and harness/measure/worker.py leave a marker when run."""
    here, marker = tmp_path / "here", tmp_path / "ran"
    plant = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\n"
    for rel in ("numpy.py", "torch.py", "harness/__init__.py", "harness/measure/__init__.py",
                "harness/measure/worker.py", "harness/validate/__init__.py", "harness/validate/worker.py"):
        (here / rel).parent.mkdir(parents=True, exist_ok=True)
        (here / rel).write_text(plant)
    monkeypatch.chdir(here)
    return marker


@pytest.fixture
def faulty_on_path(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("PYTHONPATH", fault_adapter.install(tmp_path_factory.mktemp("dist")))
    monkeypatch.setenv("XFBENCH_FAULT", "")


def test_a_worker_runs_no_code_from_the_current_directory(shadowed, faulty_on_path):
    rec = run_worker(case(), Path("w"), Path("l"))  # relative, as `--out results` makes them
    assert not shadowed.exists(), f"code from the current directory ran: {shadowed.read_text()}"
    assert rec.status == "ok", (rec.reason, rec.stderr_tail)
    assert list(Path("l").iterdir())  # the log is where it was asked for


def test_a_validation_worker_runs_no_code_from_the_current_directory(shadowed):
    result = validate(registry=discover(), models=["lenet5"], frameworks=["numpy"], tiny=True, checks="forward",
                      artifacts=Path("art"), timeout_s=120)
    assert not shadowed.exists(), f"code from the current directory ran: {shadowed.read_text()}"
    assert not any(c.check == "run" for c in result.checks), result.checks
    assert Path("art/lenet5/numpy.npz").is_file()


# ---- item 3: a broken or clashing third-party adapter ----

def fake_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A distribution as pip leaves it (dist-info with entry_points.txt), plus its modules, under `root`."""
    info = root / f"{dist.replace('-', '_')}-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[xfbench.adapters]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, text in modules.items():
        (root / f"{name}.py").write_text(text)


@pytest.fixture
def broken(tmp_path, monkeypatch):
    """Two broken adapters on sys.path: one raises on import, one is not an AdapterInfo."""
    fake_dist(tmp_path / "site", "xfbench-broken", {"crashing": "xfb_crashing:INFO"},
              {"xfb_crashing": "raise ImportError('needs libfoo 2.0 [/bold]')\n"})
    fake_dist(tmp_path / "site", "xfbench-wrong", {"wrong": "xfb_wrong:INFO"}, {"xfb_wrong": "INFO = 'an adapter'\n"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_broken_adapters_are_set_aside_with_the_reason(broken):
    found, bad = discover_all()
    assert "torch" in found and "crashing" not in found and "wrong" not in found
    assert bad["crashing"].startswith("ImportError: needs libfoo 2.0 [/bold]") and "xfbench-broken" in bad["crashing"]
    assert "not an AdapterInfo" in bad["wrong"] and "xfbench-wrong" in bad["wrong"]
    assert set(discover()) == set(found)


def test_broken_adapters_are_listed_and_every_command_still_works(broken, tmp_path):
    listed = invoke("list", "frameworks")
    assert listed.exit_code == 0, (listed.output, listed.exception)
    flat = " ".join(listed.output.split())  # the table wraps its cells at the runner's 80 columns
    assert "crashing ? broken: - ImportError: needs libfoo 2.0 [/bold] (entry point" in flat, listed.output
    assert "wrong ? broken: - TypeError: str is not an AdapterInfo" in flat and "torch torch yes" in flat
    env = invoke("env")
    assert env.exit_code == 0 and "adapter crashing broken: ImportError: needs libfoo 2.0 [/bold]" in env.output
    dry = invoke("run", "smoke", "--frameworks", "torch", "--dry-run", "--out", tmp_path / "out")
    assert dry.exit_code == 0 and "cases from" in dry.output, (dry.output, dry.exception)


def test_naming_a_broken_adapter_is_one_line(broken, tmp_path):
    assert_one_line_error(invoke("run", "smoke", "--frameworks", "crashing", "--dry-run"),
                          "'crashing'", "broken", "ImportError: needs libfoo")
    (tmp_path / "s.toml").write_text('[[cases]]\nmodels = ["lenet5"]\nframeworks = ["wrong"]\n')
    assert_one_line_error(invoke("run", tmp_path / "s.toml", "--dry-run"), "'wrong'", "not an AdapterInfo")


def test_a_second_package_registering_a_name_is_refused_naming_both(tmp_path, monkeypatch):
    fake_dist(tmp_path / "site", "xfbench-evil-torch", {"torch": "evil_torch:TORCH"}, {})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for args in (["list", "frameworks"], ["run", "smoke", "--frameworks", "numpy", "--dry-run"], ["env"]):
        result = invoke(*args)
        assert_one_line_error(result, "two packages register the adapter 'torch': ")
        named = re.search(r"'torch': (\S+) and (\S+);", result.stderr)
        assert named and set(named.groups()) == {"xfbench", "xfbench-evil-torch"}, result.stderr


# ---- item 4: a bound on a worker's memory ----

def test_the_estimate_is_checked_against_available_memory_with_a_margin():
    alexnet = MemoryEstimate(parameters_bytes=int(0.5 * GIB), activations_bytes=int(22.8 * GIB))  # 23.3 GiB
    why = refusal("alexnet train at batch size 4,096", alexnet, available=int(22.7 * GIB), total=24 * GIB)
    assert why and "needs ~23.3 GiB" in why and "22.7 GiB available" in why and "more than this host's" in why
    small = MemoryEstimate(parameters_bytes=GIB, activations_bytes=GIB)
    assert refusal("x", small, available=12 * GIB, total=24 * GIB) is None
    assert refusal("x", small, available=2 * GIB, total=24 * GIB)  # fits in total, not in what is free now
    assert refusal("x", small, available=None, total=24 * GIB) is None  # no /proc/meminfo: the total decides
    assert refusal("x", small, available=None, total=None) is None


def test_the_default_memory_limit_is_a_safe_share_of_available_memory():
    assert memory_limit_bytes(case(memory_limit_gib=2.5), available=64 * GIB) == int(2.5 * GIB)
    assert memory_limit_bytes(case(), available=20 * GIB) == pytest.approx(17 * GIB, abs=1)
    assert memory_limit_bytes(case(), available=GIB) == GIB // 2  # a small host: at least half of it
    assert memory_limit_bytes(case(), available=None) is None  # unknown: only the kernel's OOM killer


ALLOC = "import time; x = b'x' * (300 << 20); time.sleep(60)"


@pytest.mark.parametrize("where", ["worker", "child"])
def test_a_worker_over_its_memory_limit_is_killed_and_recorded(tmp_path, where):
    code = ALLOC if where == "worker" else \
        f"import subprocess, sys; subprocess.run([sys.executable, '-c', {ALLOC!r}])"
    t0 = time.monotonic()
    rec = run_worker(case(memory_limit_gib=100 * MIB / GIB), tmp_path / "w", tmp_path / "l",
                     lambda c, r: [sys.executable, "-c", code, str(c), str(r)])
    assert rec.status == "failed" and rec.reason.startswith("out of memory: limit 0.0977 GiB"), rec.reason
    assert "(the worker's processes reached " in rec.reason and time.monotonic() - t0 < 30


def test_a_worker_under_its_memory_limit_is_left_alone(tmp_path):
    code = "import sys; x = b'x' * (50 << 20); sys.exit(3)"
    rec = run_worker(case(memory_limit_gib=1.0), tmp_path / "w", tmp_path / "l",
                     lambda c, r: [sys.executable, "-c", code, str(c), str(r)])
    assert rec.reason == "worker exited with code 3 without a record"


def test_a_suite_sets_the_memory_limit(tmp_path):
    registry = discover()
    text = '[[cases]]\nmodels = ["lenet5"]\nframeworks = ["torch"]\nmodes = ["infer"]\n'
    cases = expand(parse_suite(text + "memory_limit_gib = 2\n", "t", Path("t.toml"), registry), registry, cpus=1)
    assert [c.memory_limit_gib for c in cases] == [2.0]
    (plain,) = expand(parse_suite(text, "t", Path("t.toml"), registry), registry, cpus=1)
    assert plain.memory_limit_gib is None
    for bad, message in (("0", "memory_limit_gib=0 is out of range"), ("-1.5", "out of range"),
                         ('"2G"', "memory_limit_gib must be")):
        with pytest.raises(SuiteError, match=message):
            parse_suite(text + f"memory_limit_gib = {bad}\n", "t", Path("t.toml"), registry)


def test_the_memory_limit_field_keeps_existing_case_ids():
    assert Case("torch", "lenet5", "train", 32).case_id == "bdc2ab24d30a-p0"  # ids from before the field
    assert Case("jax", "gru", "infer", 16, threads=2, measure=MeasureConfig(max_time_s=2.5), process=1,
                memory_limit_gib=None).case_id == "44119688b81d-p1"
    limited = Case("torch", "lenet5", "train", 32, memory_limit_gib=4.0)
    assert limited.case_id != "bdc2ab24d30a-p0" and Case.from_dict(limited.to_dict()) == limited
    with pytest.raises(ResultsError, match="memory_limit_gib"):
        parse_case({**limited.to_dict(), "memory_limit_gib": "x" * 10})
