"""docs/spec.md states facts the code also holds: counts, tolerances, defaults, the schema version.

Each check reads a table (or line) of the document and compares it with the code; a failure names the
document line that is wrong.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path

from xfbench.harness.models import MODELS, TINY_SIZES, build_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "spec.md"
LINES = DOC.read_text().splitlines()


def where(n: int) -> str:
    return f"docs/spec.md line {n}: {LINES[n - 1].strip()}"


def table(marker: str) -> list[tuple[int, dict[str, str]]]:
    """The first table below the first line that starts with `marker`: (line number, {header: cell})."""
    start = next((i for i, line in enumerate(LINES) if line.startswith(marker)), None)
    assert start is not None, f"docs/spec.md has no line starting with {marker!r}"
    header, rows = None, []
    for i in range(start + 1, len(LINES)):
        line = LINES[i].strip()
        if not line.startswith("|"):
            if header:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            rows.append((i + 1, dict(zip(header, cells))))
    assert rows, f"docs/spec.md has no table below {marker!r}"
    return rows


def name(cell: str) -> str:
    return cell.strip("`")


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def settings(cell: str) -> dict[str, object]:
    """`a=1, b=0.5, c=False` -> {"a": 1, "b": 0.5, "c": False}."""
    out: dict[str, object] = {}
    for pair in cell.strip("`").split(", "):
        key, _, value = pair.partition("=")
        if value in ("True", "False"):
            out[key] = value == "True"
        else:
            out[key] = int(value) if value.isdigit() else float(value)
    return out


def test_model_counts_at_default_sizes():
    rows = table("Counts at default hyper-parameters")
    assert {name(r["model"]) for _, r in rows} == set(MODELS), \
        f"the models listed at docs/spec.md line {rows[0][0]} and below are not {sorted(MODELS)}"
    for n, r in rows:
        spec = build_spec(name(r["model"]))
        assert number(r["parameters"]) == spec.parameter_count(), where(n)
        assert number(r["forward FLOPs/sample"]) == spec.forward_flops(), where(n)
        assert number(r["train FLOPs/sample"]) == spec.train_flops(), where(n)


def test_layer_tables():
    for model in ("lenet5", "alexnet", "lstm", "gru"):
        spec, rows = build_spec(model), table(f"Layers of `{model}`")
        for n, r in rows:
            layer = name(r["layer"])
            params = sum(math.prod(shape) for w, shape in spec.weight_shapes().items()
                         if w.split(".")[0] == layer)
            assert number(r["params"]) == params, where(n)
        assert sum(number(r["params"]) for _, r in rows) == spec.parameter_count(), \
            f"the params of the {model} table at docs/spec.md line {rows[0][0]} do not add up to the spec's"
        assert sum(number(r["forward FLOPs"]) for _, r in rows) == spec.forward_flops(), \
            f"the FLOPs of the {model} table at docs/spec.md line {rows[0][0]} do not add up to the spec's"


def test_tiny_sizes():
    rows = table("### 1.4 Tiny sizes")
    assert {name(r["model"]) for _, r in rows} == set(TINY_SIZES), where(rows[0][0])
    for n, r in rows:
        model = name(r["model"])
        params = {} if r["hyper-parameters"] == "(defaults)" else settings(r["hyper-parameters"])
        assert params == TINY_SIZES[model], where(n)
        spec = build_spec(model, **params)
        assert number(r["parameters"]) == spec.parameter_count(), where(n)
        assert number(r["forward FLOPs/sample"]) == spec.forward_flops(), where(n)


def test_optimizer_defaults():
    from xfbench.harness.optimizers import OPTIMIZERS

    rows = table("### 3.2 Canonical optimizers")
    assert [name(r["optimizer"]) for _, r in rows] == list(OPTIMIZERS), where(rows[0][0])
    for n, r in rows:
        stated, code = settings(r["defaults"]), OPTIMIZERS[name(r["optimizer"])]
        assert stated == code, f"{where(n)}; the code says {code}"
        assert all(isinstance(stated[k], bool) == isinstance(code[k], bool) for k in code), where(n)


def test_case_and_measure_defaults():
    from xfbench.harness.case import Case, MeasureConfig

    fields = {f.name: f for f in dataclasses.fields(Case)}
    rows = table("## 5. Measurement protocol")
    assert [name(r["field"]) for _, r in rows] == list(fields), where(rows[0][0])
    for n, r in rows:
        f = fields[name(r["field"])]
        if r["default"].startswith("`"):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            assert json.loads(name(r["default"])) == default, where(n)
        elif r["default"] == "(required)":
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, where(n)

    quick = tomllib.loads((ROOT / "suites" / "quick.toml").read_text())["defaults"]["measure"]
    knobs = {f.name: f.default for f in dataclasses.fields(MeasureConfig)}
    rows = table("### 5.4 Samples")
    assert [name(r["knob"]) for _, r in rows] == list(knobs), where(rows[0][0])
    for n, r in rows:
        knob = name(r["knob"])
        assert float(r["default"]) == knobs[knob], where(n)
        assert float(r["`quick` suite"]) == quick.get(knob, knobs[knob]), f"{where(n)}; see suites/quick.toml"


def test_tolerances():
    import xfbench.harness.validate as validate

    rows = table("### 6.2 Checks and tolerances")
    for n, r in rows:
        constant = name(r["constant"])
        assert float(r["tolerance"]) == getattr(validate, constant), \
            f"{where(n)}; xfbench.harness.validate.{constant} = {getattr(validate, constant)}"
    assert {name(r["constant"]) for _, r in rows} == {"FORWARD_TOL", "FP64_TOL", "CURVE_TOL", "TF32_FORWARD_TOL"}


def test_schema_version():
    from xfbench.harness.results import SCHEMA_VERSION

    hits = [(i + 1, int(m[1])) for i, line in enumerate(LINES)
            if (m := re.search(r"current schema version is \*\*(\d+)\*\*", line))]
    assert len(hits) == 1, "docs/spec.md must say 'The current schema version is **N**' exactly once"
    n, stated = hits[0]
    assert stated == SCHEMA_VERSION, f"{where(n)}; xfbench.harness.results.SCHEMA_VERSION = {SCHEMA_VERSION}"


def test_no_link_leaves_the_repository():
    for n, line in enumerate(LINES, 1):
        assert "://" not in line, f"{where(n)}: no links outside the repository"
        assert "SPEC.md" not in line and "shared/" not in line, \
            f"{where(n)}: the repository does not hold that file; docs/spec.md is the specification"
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            path = (DOC.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{where(n)}: {target} is not in the repository"
