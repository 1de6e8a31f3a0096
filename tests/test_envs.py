"""Framework environments (xfbench.harness.envs): adapters run with another interpreter, as `adapter@env` or by
default, records name the environment and its versions, and `bench compare` matches across environments.

Most tests use a quick environment: a venv without pip whose site-packages read bench's own (a `.pth` that
adds them), probed as `bench env create` probes. It runs real workers with another interpreter in seconds.
One slow test makes a real one with pip: numpy 1.26.4 beside bench's numpy 2, two versions as two adapters.
"""
import json
import shutil
import site
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from xfbench.harness import envs
from xfbench.harness.adapter import discover, discover_all
from xfbench.harness.cli import main
from xfbench.harness.report.compare import _alone, compare

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "run-small"


def bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture
def envs_dir(tmp_path, monkeypatch):
    folder = tmp_path / "envs"
    monkeypatch.setenv(envs.ENVS_VAR, str(folder))
    return folder


def quick_env(folder: Path, name: str, default_for: tuple[str, ...] = ()) -> envs.Environment:
    """A venv that sees bench's own packages (no pip, ~2 s), finished the way `envs.create` finishes one."""
    path = folder / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    lib = next((path / "lib").glob("python3*")) / "site-packages"
    dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    (lib / "xfbench-test.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in dirs))
    return envs._finish(name, path, ("(bench's own packages)",), default_for, "2026-12-07T00:00:00+00:00")


def test_names_split_and_bad_names_are_refused():
    assert envs.split("torch@torch-2-12") == ("torch", "torch-2-12")
    assert envs.split("torch-compile") == ("torch-compile", None)
    for bad in ("Torch", "", "a b", "-x", "x" * 49):
        with pytest.raises(envs.EnvError, match="environment name"):
            envs.check_name(bad)


def test_no_environments_changes_nothing(envs_dir):
    assert envs.environments() == {} and envs.unfinished() == []
    assert envs.interpreter_for("numpy") == (sys.executable, None)
    assert all("@" not in n and info.python is None for n, info in discover().items())


def test_an_environment_offers_its_adapters_as_name_at_env(envs_dir):
    env = quick_env(envs_dir, "fast")
    assert (env.path / envs.META).exists() and "numpy==" in (env.path / envs.LOCK).read_text()
    registry = discover()
    info = registry["numpy@fast"]
    assert info.python == str(env.python) and info.environment == "fast" and info.framework == "numpy"
    assert info.versions() == {"numpy": np.__version__} and info.missing() == []
    assert info.provenance()["package"] == "xfbench"
    assert registry["numpy"].python is None  # bench's own numpy stays what `numpy` names
    assert envs.interpreter_for("numpy@fast") == (str(env.python), "fast")
    assert envs.interpreter_for("numpy") == (sys.executable, None)
    # "all" in a suite is every base framework: numpy@fast only where named
    result = bench("run", "smoke", "--dry-run", "--out", envs_dir.parent / "r")
    assert result.exit_code == 0 and "@fast" not in result.output


def test_default_for_runs_an_adapter_with_the_environments_interpreter(envs_dir):
    env = quick_env(envs_dir, "np", default_for=("numpy",))
    assert discover()["numpy"].python == str(env.python)
    assert envs.interpreter_for("numpy") == (str(env.python), "np")
    with pytest.raises(envs.EnvError, match="both the default for 'numpy'"):
        quick_env(envs_dir, "np2", default_for=("numpy",))
    with pytest.raises(envs.EnvError, match="cannot be the default for no-such"):
        quick_env(envs_dir, "np3", default_for=("no-such",))


def test_unknown_environment_or_adapter_is_one_line_with_the_fix(envs_dir, tmp_path):
    quick_env(envs_dir, "fast")
    for name, expected in (("numpy@nope", "no framework environment 'nope' for 'numpy@nope'; make it with "
                                          "`bench env create nope PACKAGE...`"),
                           ("nosuch@fast", "environment 'fast' does not offer 'nosuch'")):
        result = bench("run", "smoke", "--frameworks", name, "--dry-run", "--out", tmp_path / "r")
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.output.split()), result.output
    with pytest.raises(envs.EnvError, match="no environment 'nope'"):
        envs.interpreter_for("numpy@nope")


def test_env_list_check_remove_and_an_unfinished_folder(envs_dir):
    quick_env(envs_dir, "fast")
    (envs_dir / "broken").mkdir()  # a create that was stopped: no xfbench-env.json
    result = bench("env", "list")
    assert result.exit_code == 0
    out = " ".join(result.output.split())
    assert "fast 3." in out and f"numpy {np.__version__}" in out and "unfinished: bench env create broken --force" in out
    assert set(envs.environments()) == {"fast"}
    result = bench("env", "check", "fast")
    assert result.exit_code == 0 and "numpy@fast" in result.output
    result = bench("env", "remove", "fast")
    assert result.exit_code == 0 and not (envs_dir / "fast").exists()
    result = bench("env", "remove", "fast")
    assert result.exit_code == 2 and "no environment 'fast'" in result.output
    result = bench("env", "create", "fast")
    assert result.exit_code == 2 and "name the packages to install" in result.output
    assert bench("env").exit_code == 0  # bare `bench env`: the host and its frameworks, as before


def test_a_run_records_the_environment_and_its_versions(envs_dir, tmp_path):
    """numpy with bench's interpreter and numpy@fast with the environment's: two adapters in one run."""
    quick_env(envs_dir, "fast")
    out = tmp_path / "runs"
    result = bench("run", "smoke", "--frameworks", "numpy,numpy@fast", "--models", "lenet5", "--modes", "infer",
                   "--out", out)
    assert result.exit_code == 0, result.output
    run = next(out.iterdir())
    records = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines()]
    by_name = {r["case"]["framework"]: r for r in records}
    assert set(by_name) == {"numpy", "numpy@fast"} and all(r["status"] == "ok" for r in records)
    fast, own = by_name["numpy@fast"]["manifest"], by_name["numpy"]["manifest"]
    assert fast["environment"]["name"] == "fast"
    assert fast["environment"]["executable"] == str(envs_dir / "fast" / "bin" / "python")
    assert own["environment"] == {"name": "main", "python": fast["environment"]["python"],
                                  "executable": sys.executable}
    assert fast["versions"] == {"numpy": np.__version__}
    assert "environment fast (Python 3." in (run / "report.md").read_text()


def test_the_roofline_of_an_environments_adapter_runs_there(envs_dir, tmp_path):
    quick_env(envs_dir, "fast")
    out = tmp_path / "peak.json"
    result = bench("peak", "--frameworks", "numpy@fast", "--threads", "1", "--size", "64", "--copy-mib", "1",
                   "--out", out)
    assert result.exit_code == 0, result.output
    peak = json.loads(out.read_text())["numpy@fast"]
    assert peak["adapter"] == "numpy@fast" and peak["versions"] == {"numpy": np.__version__}


def _renamed(tmp_path: Path, name: str, framework: str, versions: dict, env: str) -> Path:
    """The fixture run with torch renamed to `framework`, its versions and environment as given."""
    out = tmp_path / name
    shutil.copytree(FIXTURE, out)
    lines = []
    for line in (out / "cases.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["case"]["framework"] == "torch":
            r["case"]["framework"] = framework
            r["manifest"] = {**r.get("manifest", {}), "versions": versions, "environment": {"name": env}}
        lines.append(json.dumps(r))
    (out / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return out


def test_compare_matches_one_adapter_across_environments(tmp_path):
    """torch@torch-2-12 in A against torch in B: the same configurations, and the versions are said."""
    a = _renamed(tmp_path, "a", "torch@torch-2-12", {"torch": "2.12.0"}, "torch-2-12")
    b = _renamed(tmp_path, "b", "torch", {"torch": "2.13.0"}, "main")
    text, code = compare(a, b)
    assert code == 0
    assert "16 configurations in both runs" in text
    assert "Versions of torch: A torch 2.12.0 (environment torch-2-12); B torch 2.13.0." in text
    # A run that holds torch in two environments keeps them apart: neither is matched as plain torch
    recs = [SimpleNamespace(case=SimpleNamespace(framework=f)) for f in ("torch@x", "torch", "jax@y", "numpy")]
    assert _alone(recs) == {"jax@y", "numpy"}


@pytest.mark.slow
def test_bench_env_create_with_pip_two_numpy_versions_side_by_side(envs_dir, tmp_path):
    """A real environment: pip installs numpy 1.26.4 and this checkout (editable) into a fresh venv."""
    result = bench("env", "create", "np-old", "numpy==1.26.4")
    assert result.exit_code == 0, result.output
    assert "numpy@np-old" in result.output and "numpy 1.26.4" in result.output
    env = envs.environments()["np-old"]
    assert env.versions() == {"numpy": "1.26.4"} and "numpy==1.26.4" in (env.path / envs.LOCK).read_text()
    assert discover()["numpy@np-old"].versions() == {"numpy": "1.26.4"}
    out = tmp_path / "runs"
    result = bench("run", "smoke", "--frameworks", "numpy@np-old", "--models", "lenet5", "--modes", "infer",
                   "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads((next(out.iterdir()) / "cases.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok" and record["manifest"]["versions"] == {"numpy": "1.26.4"}
    # again without --force: refused; a package pip cannot find: one line, and the folder is left unfinished
    result = bench("env", "create", "np-old", "numpy==1.26.4")
    assert result.exit_code == 2 and "exists" in result.output and "--force" in result.output
    result = bench("env", "create", "bad", "xfbench-no-such-package-anywhere==1")
    assert result.exit_code == 2 and "pip install failed" in result.output
    assert envs.unfinished() == ["bad"] and set(discover_all()[0]) >= {"numpy@np-old"}
