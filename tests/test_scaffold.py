"""`bench new-adapter`, `bench list frameworks --check` and the adapter API version, as a plugin author meets them.

The end-to-end test writes a package with the scaffold, installs it as `pip install -e` would (the .dist-info
of the wheel pip builds from it, and its src/, on PYTHONPATH; the project's venv is left alone), and runs `bench`
and pytest on it in subprocesses.
"""
import json
import os
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from xfbench.harness import __version__
from xfbench.harness.adapter import discover_all
from xfbench.harness.cli import main
from xfbench.harness.resolve import check_targets, resolve
from xfbench.harness.scaffold import ScaffoldError, new_adapter, xfbench_range

CHECKS = ("parameter count", "output shapes", "canonical weight round trip", "forward agreement", "gradients",
          "optimizer", "inference disables dropout", "sync", "settings manifest")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def install(root: Path, site: Path) -> str:
    """Install the scaffolded package at `root` as `pip install -e` would; its PYTHONPATH.

    pip builds the package's wheel from its own pyproject.toml (seconds, offline: no build isolation, no
    dependencies); the wheel's .dist-info goes on the path, and src/ stands in for the editable package.
    """
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(site.parent / "wheel"), str(root)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (site.parent / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site, [m for m in z.namelist() if m.split("/")[0].endswith(".dist-info")])
    return os.pathsep.join([str(site), str(root / "src")])


def run(args: list[str], path: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "250", "XFBENCH_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def bench(*args: str, path: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "xfbench.harness.cli", *args], path, cwd)


@pytest.mark.slow
def test_a_scaffolded_plugin_is_listed_kit_tested_validated_and_measured(tmp_path):
    pytest.importorskip("torch")
    marks = [("start", time.perf_counter())]

    def lap(step: str) -> None:
        marks.append((step, time.perf_counter()))

    made = invoke("new-adapter", "demo-fw", "--base", "none", "--dir", tmp_path)
    assert made.exit_code == 0, made.output
    root = tmp_path / "xfbench-demo-fw"
    assert "pip install -e" in made.output and "bench run smoke --frameworks demo-fw" in made.output
    path = install(root, tmp_path / "site")
    lap("scaffold")

    listed = bench("list", "frameworks", "--check", path=path, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if line.split()[:1] == ["demo-fw"])
    assert row[1:3] == ["demo-fw", "yes"] and row[-1] == "ok", listed.stdout
    lap("list --check")

    kit = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], path, root)
    assert kit.returncode == 1, kit.stdout + kit.stderr
    failures = [line for line in kit.stdout.splitlines() if line.startswith("FAILED ")]
    assert failures and "Traceback" not in kit.stdout, kit.stdout
    for line in failures:  # each failure names its check and the method to write
        assert "conformance check '" in line and "failed: not implemented: " in line, line
        assert any(f"check '{c}" in line for c in CHECKS), line
    assert "build must create the model" in kit.stdout
    lap("kit")

    # The plumbing is under test, not the math: borrow the torch adapter's (validation needs gradients, which
    # the inference-only NumPy reference does not offer).
    (root / "src" / "xfbench_demo_fw" / "adapter.py").write_text(
        "from xfbench.adapters.torch_adapter import TorchAdapter\n\n\nclass DemoFwAdapter(TorchAdapter):\n    pass\n")
    validated = bench("validate", "--tiny", "--frameworks", "demo-fw", "--models", "lenet5",
                      path=path, cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "passed" in validated.stdout and "demo-fw" in validated.stdout
    lap("validate")

    measured = bench("run", "smoke", "--frameworks", "demo-fw", "--models", "lenet5", "--out", str(tmp_path / "runs"),
                     path=path, cwd=tmp_path)
    assert measured.returncode == 0, measured.stdout + measured.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    status = {(r["case"]["framework"], r["case"]["model"], r["case"]["mode"]): r["status"] for r in records}
    assert status == {("demo-fw", m, mode): "ok" for m in ("lenet5",) for mode in ("train", "infer")}, status
    lap("smoke run")
    laps = ", ".join(f"{step} {t - before:.1f} s" for (step, t), (_, before) in zip(marks[1:], marks))
    print(f"scaffold -> listed -> kit -> validate -> smoke run: {marks[-1][1] - marks[0][1]:.1f} s ({laps})")


def test_the_scaffold_depends_on_this_xfbench_series_and_its_framework(tmp_path):
    root = new_adapter("my-jax", "jax", tmp_path)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == [xfbench_range(), "jax", "flax", "optax"]
    assert project["entry-points"]["xfbench.adapters"] == {"my-jax": "xfbench_my_jax:ADAPTER"}
    init = (root / "src/xfbench_my_jax/__init__.py").read_text()
    assert "import jax" not in init and "api=1" in init and 'target="xfbench_my_jax.adapter:MyJaxAdapter"' in init
    adapter = (root / "src/xfbench_my_jax/adapter.py").read_text()
    assert "\nimport jax\n" in adapter and "jax.block_until_ready" in adapter and "NCHW -> NHWC" in adapter
    assert 'ADAPTER = "my-jax"' in (root / "tests/test_conformance.py").read_text()
    compile(adapter, "adapter.py", "exec")
    plain = (new_adapter("plain", "none", tmp_path) / "src/xfbench_plain/adapter.py").read_text()
    assert [line for line in plain.splitlines() if line.startswith(("import ", "from "))] == [
        "from __future__ import annotations", "from typing import Any", "import numpy as np",
        "from xfbench.harness.api import Adapter, ModelSpec, OptimizerSpec, Unsupported"]


@pytest.mark.parametrize("version, expected", [("0.1.0", "xfbench>=0.1,<0.2"), ("0.12.3", "xfbench>=0.12,<0.13"),
                                               ("2.3.1", "xfbench>=2.3,<3")])
def test_the_xfbench_range_is_the_minor_series_while_major_is_zero(version, expected):
    assert xfbench_range(version) == expected


@pytest.mark.parametrize("name, message", [
    ("My_fw", "adapter name 'My_fw': use lowercase letters"), ("9lives", "starting with a letter"),
    ("a--b", "single '-'"), ("torch", "an adapter named 'torch' is already registered")])
def test_a_bad_or_taken_name_is_one_line_and_exit_2(tmp_path, name, message):
    result = invoke("new-adapter", name, "--dir", tmp_path)
    assert result.exit_code == 2 and message in result.stderr, (result.output, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_an_existing_folder_is_refused(tmp_path):
    (tmp_path / "xfbench-mine").mkdir()
    result = invoke("new-adapter", "mine", "--dir", tmp_path)
    assert result.exit_code == 2 and "xfbench-mine already exists" in result.stderr
    with pytest.raises(ScaffoldError, match="--base 'mxnet'"):
        new_adapter("other", "mxnet", tmp_path)


# ---- --check: every target resolved in a worker ----

@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """On sys.path: `typo`, whose target misspells its class, `partial`, missing methods, and `old`, API 2."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "xfb_plugins.py").write_text(
        "from xfbench.harness.api import AdapterInfo, Adapter\n"
        "class TypoAdapter(Adapter):\n    pass\n"
        "TYPO = AdapterInfo(name='typo', framework='typo', target='xfb_plugins:TypoAdaptr', requires=())\n"
        "PARTIAL = AdapterInfo(name='partial', framework='typo', target='xfb_plugins:TypoAdapter', requires=())\n"
        "OLD = AdapterInfo(name='old', framework='old', target='xfb_plugins:TypoAdapter', requires=(), api=2)\n")
    info = site / "xfbench_plugins-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xfbench-plugins\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[xfbench.adapters]\ntypo = xfb_plugins:TYPO\n"
                                           "partial = xfb_plugins:PARTIAL\nold = xfb_plugins:OLD\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return site


def test_check_names_a_misspelt_target_and_a_class_missing_methods(plugins):
    working = discover_all()[0]
    assert working["typo"].missing() == []  # "installed: yes" before --check
    why = check_targets({n: working[n] for n in ("typo", "partial", "numpy")})
    assert why["typo"] == "module xfb_plugins has no 'TypoAdaptr'; did you mean 'TypoAdapter'?"
    assert why["partial"].startswith("xfb_plugins:TypoAdapter does not implement build, dump_weights, forward")
    assert why["numpy"] is None


@pytest.mark.parametrize("target, why", [
    ("no_colon", "target 'no_colon' is not 'module:Class'"),
    ("xfb_nosuch_module:X", "importing xfb_nosuch_module failed: ModuleNotFoundError: No module named"),
    ("xfbench.harness.api:AdapterInfo", "xfbench.harness.api:AdapterInfo is not a subclass of xfbench.harness.api.Adapter"),
    ("xfbench.adapters.numpy_adapter:NumpyAdapter", None),
])
def test_resolve_says_why_a_target_is_not_an_adapter(target, why):
    got = resolve(target)
    assert got == why if why is None else got.startswith(why), got


def test_list_check_shows_each_reason_whole_and_exits_1(plugins, monkeypatch):
    import xfbench.harness.resolve as r

    # Only the plugins' worker runs here: the built-in targets are checked in the end-to-end test.
    real = r.check_targets
    monkeypatch.setattr(r, "check_targets", lambda infos: real({n: i for n, i in infos.items() if i.framework == "typo"}))
    result = invoke("list", "frameworks", "--check")
    assert result.exit_code == 1, (result.output, result.exception)
    flat = " ".join(result.output.split())  # the check column wraps at the runner's 80 columns; never cut
    assert "did you mean 'TypoAdapter'?" in flat and "does not implement build, dump_weights" in flat
    assert "settings" in flat.split("does not implement")[1] and "…" not in result.output
    assert "old ? broken written for xfbench adapter API 2;" in flat and "numpy numpy yes -" in flat


# ---- the adapter API version ----

def test_an_adapter_for_another_api_is_refused_with_one_line(plugins, tmp_path):
    working, broken = discover_all()
    assert "old" not in working
    assert broken["old"] == (f"written for xfbench adapter API 2; this xfbench ({__version__}) speaks API 1: install "
                             "a version of xfbench-plugins made for API 1, or an xfbench that speaks API 2")
    listed = invoke("list", "frameworks")
    assert listed.exit_code == 0 and "Traceback" not in listed.output
    flat = " ".join(listed.output.split())  # cells wrap at the runner's 80 columns
    assert "old ? broken:" in flat and "written for xfbench adapter API 2" in flat
    refused = invoke("run", "smoke", "--frameworks", "old", "--dry-run", "--out", tmp_path / "out")
    assert refused.exit_code == 2, (refused.output, refused.exception)
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.output
    assert "'old'" in refused.stderr and "written for xfbench adapter API 2" in refused.stderr
