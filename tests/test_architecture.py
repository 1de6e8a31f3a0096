"""The house rules of docs/architecture.md that import-linter cannot see: one error base, pluggable formats."""
import importlib
import inspect
import pkgutil

from click.testing import CliRunner

import harness
from harness.errors import XfbenchError


def _error_classes():
    for mod in pkgutil.walk_packages(harness.__path__, "harness."):
        if mod.name.endswith(".worker"):
            continue  # entry points of worker processes; their errors are records, not exceptions
        module = importlib.import_module(mod.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == mod.name:
                yield f"{mod.name}.{name}", obj


def test_every_error_of_the_harness_derives_from_one_base():
    found = dict(_error_classes())
    assert {"harness.models.SpecError", "harness.plan.suites.SuiteError", "harness.records.ResultsError",
            "harness.validate.matrix.ValidateError", "harness.report.compare.CompareError",
            "harness.report.export.ExportError", "harness.session.InputError"} <= set(found)
    # Unsupported is not a user error: it turns a case into a `skipped` record inside the worker.
    strays = [name for name, cls in found.items() if not issubclass(cls, XfbenchError)
              and name != "harness.adapter.Unsupported"]
    assert strays == []


def test_the_cli_maps_any_xfbench_error_to_one_line_and_exit_2(monkeypatch):
    from harness import cli

    class Custom(XfbenchError):
        pass

    def boom(*a, **kw):
        raise Custom("a [bold]bracketed[/] problem; do this instead")

    monkeypatch.setattr(cli.session, "plan", boom)
    out = CliRunner().invoke(cli.main, ["run", "smoke", "--dry-run"])
    assert out.exit_code == 2
    assert out.stderr == "error: a [bold]bracketed[/] problem; do this instead\n"


def test_report_formats_are_found_by_their_module():
    from harness.report import formats

    assert {(m.__name__.rsplit(".", 1)[1], m.FILENAME) for m in formats.available()} == {
        ("html", "report.html"), ("markdown", "report.md")}
