"""The adapter author's contract (docs/adding-an-adapter.md): the public API is what the guide says, and the guide's
links and tables match the code."""
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import xfbench.harness.api as api
from xfbench.harness.adapter import discover
from xfbench.harness.api import (ADAPTER_API, FORWARD_TOL, MODELS, OPTIMIZERS, TINY_SIZES, Adapter,  # noqa: F401
                                 AdapterInfo, Conv, Dense, Embedding, Flatten, ModelSpec, OptimizerSpec, PeakKernel,
                                 Pool, Recurrent, Unsupported, __version__, build_optimizer, build_spec,
                                 check_weights, init_weights, make_inputs, max_abs_rel)

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "adding-an-adapter.md"


def _table_after(marker: str) -> list[list[str]]:
    """The rows (cells, stripped) of the markdown table that follows the `<!-- marker ... -->` comment."""
    lines = GUIDE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"<!-- {marker}"))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [r for r in rows[2:]]  # less the header and the rule


def test_the_api_holds_exactly_the_names_the_guide_lists():
    listed = {n for row in _table_after("public-api") for n in re.findall(r"`(\w+)`", row[0])}
    assert set(api.__all__) == listed
    assert all(hasattr(api, n) for n in api.__all__)
    assert issubclass(AdapterInfo, object) and inspect.isabstract(Adapter) and ADAPTER_API >= 1


def test_the_api_and_the_kit_import_no_framework():
    code = ("import sys, xfbench.harness.api, xfbench.harness.conformance; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_the_documented_options_of_the_built_in_classes_are_their_constructors():
    rows, target = _table_after("builtin-options"), None
    documented: dict[str, dict[str, str]] = {}
    for cls, option, default, _what, _adapters in rows:
        target = cls.strip("`") or target
        if option.strip("`") != "(none)":
            documented.setdefault(target, {})[option.strip("`")] = default.strip("`")
        else:
            documented.setdefault(target, {})
    registry = {n: i for n, i in discover().items() if i.target.startswith("xfbench.adapters.")}  # built-ins
    assert {i.target for i in registry.values()} == set(documented)
    for info in registry.values():  # every built-in variant's options are documented ones
        assert set(info.options) <= set(documented[info.target]), info.name
    for target, options in documented.items():
        module, _, name = target.partition(":")
        pytest.importorskip(registry[next(n for n, i in registry.items() if i.target == target)].requires[0])
        params = _constructor_defaults(module, name)
        assert {p for p in params if p not in ("device", "precision", "threads", "seed")} == set(options), target
        assert {p: params[p] for p in options} == options, target


def _constructor_defaults(module: str, name: str) -> dict[str, str]:
    """The constructor's parameters and their defaults' reprs. A keras_* module fixes Keras's backend for the whole
    process (and sets KERAS_BACKEND, which child processes inherit), so it is imported in a process of its own."""
    code = ("import importlib, inspect, json, sys; m, n = sys.argv[1:]; "
            "ps = inspect.signature(getattr(importlib.import_module(m), n)).parameters; "
            "print(json.dumps({k: repr(p.default).replace(\"'\", '\"') for k, p in ps.items()}))")
    if not module.startswith("xfbench.adapters.keras_"):
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        return {k: repr(p.default).replace("'", '"') for k, p in params.items()}
    import json
    out = subprocess.run([sys.executable, "-c", code, module, name], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves_heading_included():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    anchors = {d: {_slug(m) for m in re.findall(r"^#+ (.*)$", d.read_text(), re.M)} for d in docs}
    bad = []
    for doc in docs:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                path, _, anchor = target.partition("#")
                where = (doc.parent / path).resolve() if path else doc
                if not where.exists() or not where.is_relative_to(ROOT):
                    bad.append(f"{doc.relative_to(ROOT)}:{n}: {target} (no such file)")
                elif anchor and where.suffix == ".md" and anchor not in anchors.get(where, set()):
                    bad.append(f"{doc.relative_to(ROOT)}:{n}: {target} (no such heading)")
    assert bad == []


def test_the_guide_shows_what_bench_new_adapter_prints(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from xfbench.harness.cli import main

    text = GUIDE.read_text()
    block = text[text.index("$ bench new-adapter mxnet"):]
    shown = block[block.index("\n") + 1:block.index("```")]
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["new-adapter", "mxnet"])
    assert out.exit_code == 0 and out.output == shown
