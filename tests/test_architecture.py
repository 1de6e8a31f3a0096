"""The house rules of docs/architecture.md that import-linter cannot see: one error base, pluggable formats."""
import ast
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

import xfbench.harness
from xfbench.harness.errors import XfbenchError


def _error_classes():
    for mod in pkgutil.walk_packages(xfbench.harness.__path__, "xfbench.harness."):
        if mod.name.endswith(".worker"):
            continue  # entry points of worker processes; their errors are records, not exceptions
        module = importlib.import_module(mod.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == mod.name:
                yield f"{mod.name}.{name}", obj


def test_every_error_of_the_harness_derives_from_one_base():
    found = dict(_error_classes())
    assert {"xfbench.harness.models.SpecError", "xfbench.harness.plan.suites.SuiteError", "xfbench.harness.records.ResultsError",
            "xfbench.harness.validate.matrix.ValidateError", "xfbench.harness.report.compare.CompareError",
            "xfbench.harness.report.export.ExportError", "xfbench.harness.session.InputError"} <= set(found)
    # Unsupported is not a user error: it turns a case into a `skipped` record inside the worker.
    strays = [name for name, cls in found.items() if not issubclass(cls, XfbenchError)
              and name != "xfbench.harness.adapter.Unsupported"]
    assert strays == []


def test_the_cli_maps_any_xfbench_error_to_one_line_and_exit_2(monkeypatch):
    from xfbench.harness import cli

    class Custom(XfbenchError):
        pass

    def boom(*a, **kw):
        raise Custom("a [bold]bracketed[/] problem; do this instead")

    monkeypatch.setattr(cli.session, "plan", boom)
    out = CliRunner().invoke(cli.main, ["run", "smoke", "--dry-run"])
    assert out.exit_code == 2
    assert out.stderr == "error: a [bold]bracketed[/] problem; do this instead\n"


def test_report_formats_are_found_by_their_module():
    from xfbench.harness.report import formats

    assert {(m.__name__.rsplit(".", 1)[1], m.FILENAME) for m in formats.available()} == {
        ("html", "report.html"), ("markdown", "report.md")}


# ---- import names: the folders harness/ and adapters/ install as xfbench.harness and xfbench.adapters ----
ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"harness": "xfbench.harness", "adapters": "xfbench.adapters"}


def test_every_package_folder_is_installed_under_its_xfbench_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    folders = sorted(FOLDERS[init.parent.relative_to(ROOT).parts[0]] + "".join(
        f".{part}" for part in init.parent.relative_to(ROOT).parts[1:])
        for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py"))
    assert sorted(config["packages"]) == folders  # a package folder missing here is missing from the wheel


def _bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FOLDERS]
    return found


def test_nothing_imports_the_folders_by_their_bare_names():
    """`import harness` works from the repository root only, and would load a second copy of every module."""
    files = [p for top in ("harness", "adapters", "tests") for p in (ROOT / top).rglob("*.py")]
    assert len(files) > 50
    assert [hit for p in files for hit in _bare_imports(p)] == []


def test_a_foreign_top_level_adapters_package_does_not_shadow_ours(tmp_path):
    """AdapterHub's distribution `adapters` installs a top-level `adapters`; with it first on the path, every
    built-in adapter is still found, and both packages import."""
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "__init__.py").write_text("ADAPTERHUB = True\n")
    code = ("import adapters, xfbench.adapters; from xfbench.harness.adapter import discover; "
            "assert adapters.ADAPTERHUB; print(sorted(discover()))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd="/",
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert {"numpy", "torch", "jax", "tensorflow"} <= set(eval(out.stdout))
