"""Bad input gets one clear line and exit code 2, never a traceback and never a half-written run;
suites and results are data, never code. Property-based tests feed random suites and command lines."""
import ast
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xfbench.harness.adapter import discover
from xfbench.harness.case import DEVICES, PRECISIONS
from xfbench.harness.cli import main
from xfbench.harness.models import MODELS
from xfbench.harness.optimizers import OPTIMIZERS
from xfbench.harness.records import Record, RunMeta
from xfbench.harness.results import RunDir
from xfbench.harness.plan.suites import SuiteError, expand, parse_suite

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = discover()
LENET = '[[cases]]\nmodels = ["lenet5"]\nframeworks = ["torch"]\n'


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, message", [
    ("[[cases]\nmodels = 1", "malformed TOML"),
    (LENET + 'optimizer = "lbfgs"', "unknown optimizer 'lbfgs'"),
    (LENET + "params = { depth = 3 }", "model 'lenet5' has no hyper-parameter 'depth'"),
    (LENET + 'threads = "two"', "threads must be an integer"),
    (LENET + "batch_sizes = [-1]", "batch size -1 must be a positive integer"),
    (LENET + "case_timeout_s = inf", "case_timeout_s must be a finite number"),
    (LENET + "processes = 1000000", "processes=1000000 is out of range"),
    (LENET + "seed = -1", "unknown key 'seed'"),  # seed is a top-level key
    ("seed = -1\n" + LENET, "seed=-1 is out of range"),
    (LENET.replace("lenet5", "lstm") + "params = { hidden = 1e9 }", "GiB in fp32"),
    (LENET.replace("lenet5", "alexnet") + "params = { width = nan }", "width must be a finite number"),
    (LENET + "batch_sizes = [100000000000]", "more than this host's"),
])
def test_a_bad_suite_is_one_line_exit_2_and_writes_nothing(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    assert_one_line_error(invoke("run", tmp_path / "bad.toml", "--out", tmp_path / "out"), message)
    assert not (tmp_path / "out").exists()


def test_an_absurd_batch_size_is_refused_with_the_estimate(tmp_path):
    r = invoke("run", "smoke", "--models", "lstm", "--batch-sizes", "100000000", "--out", tmp_path / "out")
    assert_one_line_error(r, "lstm train at batch size 100,000,000 needs ~")
    assert "GiB (parameters ~" in r.stderr and not (tmp_path / "out").exists()


def test_an_unwritable_output_directory_leaves_nothing_behind(tmp_path):
    (tmp_path / "file").write_text("")
    r = invoke("run", "smoke", "--frameworks", "torch", "--models", "lenet5", "--out", tmp_path / "file" / "sub")
    assert_one_line_error(r, "choose a writable --out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _run_dir(tmp_path, meta):
    run = RunDir.create(tmp_path, "t")
    (run.path / "run.json").write_text(json.dumps(meta))
    return run.path


@pytest.mark.parametrize("meta, message", [
    ({"schema": 3, "suite": "t"}, "newer xfbench (schema 3, this one reads up to 2); upgrade xfbench"),
    ({"schema": 1, "suite": "t"}, "lists no planned cases"),
    ({"schema": 1, "plan": [{"framework": "torch", "flux": 1}]}, "planned case #1 is not a case"),
    ("{not json", "cannot be read"),
])
def test_resume_refuses_what_it_cannot_continue(tmp_path, meta, message):
    run = _run_dir(tmp_path, meta) if isinstance(meta, dict) else None
    if run is None:
        run = RunDir.create(tmp_path, "t").path
        (run / "run.json").write_text(meta)
    before = sorted(p.name for p in run.iterdir())
    assert_one_line_error(invoke("run", "--resume", run), message)
    assert sorted(p.name for p in run.iterdir() if p.name != ".lock") == before


def test_a_newer_results_directory_is_refused_by_report(tmp_path):
    assert_one_line_error(invoke("report", _run_dir(tmp_path, {"schema": 9})), "newer xfbench")


@pytest.mark.parametrize("args, message", [
    (["run", "smoke", "--resume", "x"], "drop SUITE"),
    (["run", "--models", "gru", "--resume", "x"], "drop --models"),
    (["run", "--resume", "/nonexistent/run"], "is not a directory"),
])
def test_resume_takes_nothing_else(args, message):
    assert_one_line_error(invoke(*args), message)


# ---- property-based: random suite documents and random command lines, never a traceback ----

def toml(value):
    """A TOML value for any JSON-like value (inline tables and arrays only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml(k)} = {toml(v)}" for k, v in value.items()) + "}"


MARKUP = ["[/]", "[bold]", "[/bold]x", "[[cases]]", "[red]a[/red]", "$\\frac{$"]  # rich markup and TeX
text = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=6) | st.sampled_from(MARKUP)
scalars = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(), text, st.booleans())
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
                        max_leaves=6)
numbers = st.one_of(st.integers(1, 64), st.integers(-3, 2**40), st.floats(), st.integers(-2**63, 2**63 - 1))


def mostly(valid):
    """Usually a plausible value, sometimes anything at all."""
    return st.one_of(valid, valid, valid, anything)


ENTRY = {
    "modes": st.lists(st.sampled_from(["train", "infer", "train", "infer", "fit"]), min_size=1, max_size=2),
    "batch_sizes": st.lists(numbers, min_size=1, max_size=3),
    "frameworks": st.sampled_from(["all", "some"]) | st.lists(st.sampled_from(["torch", "jax", "mxnet"]),
                                                              min_size=1, max_size=2),
    "device": st.sampled_from([*DEVICES, "tpu"]), "precision": st.sampled_from([*PRECISIONS, "fp8"]),
    "threads": numbers, "processes": numbers, "case_timeout_s": numbers,
    "optimizer": st.sampled_from([*OPTIMIZERS, "lbfgs"]),
    "params": st.dictionaries(st.sampled_from(["hidden", "vocab", "seq_len", "width", "image_size", "dropout",
                                               "classes", "activation", "depth"]), numbers | scalars, max_size=2),
    "optimizer_params": st.dictionaries(st.sampled_from(["lr", "momentum", "nesterov", "eps", "x"]),
                                        numbers | scalars, max_size=2),
    "measure": st.dictionaries(st.sampled_from(["min_samples", "max_time_s", "warmup_s", "x"]), numbers | scalars,
                               max_size=2),
}
models = st.lists(st.sampled_from([*MODELS, "resnet"]), min_size=1, max_size=2)
entries = st.fixed_dictionaries({"models": mostly(models)}, optional={k: mostly(v) for k, v in ENTRY.items()})
documents = st.fixed_dictionaries({"cases": mostly(st.lists(entries, min_size=1, max_size=2))}, optional={
    "description": mostly(text), "seed": mostly(numbers), "defaults": mostly(entries.map(
        lambda e: {k: v for k, v in e.items() if k != "models"})), "bogus": anything})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, mangle=st.none() | st.none() | st.tuples(st.integers(0, 400), st.text(max_size=4)),
       depth=st.none() | st.none() | st.integers(1, 1500))
def test_random_suite_documents_parse_or_fail_with_one_line(doc, mangle, depth):
    source = "\n".join(f"{toml(k)} = {toml(v)}" for k, v in doc.items())
    if mangle:  # and some that are not even TOML
        at, junk = mangle
        source = source[:at] + junk + source[at:]
    if depth:  # arrays nested deeper than tomllib's recursion allows, past some depth
        source += f"\nnested = {'[' * depth}{']' * depth}"
    try:
        cases = expand(parse_suite(source, "h", Path("h.toml"), REGISTRY), REGISTRY, cpus=2)
    except SuiteError as e:
        assert str(e).startswith("h.toml") or str(e).startswith("suite 'h'"), str(e)
        assert "\n" not in str(e)
    else:
        assert cases and all(c.batch_size > 0 and 1 <= c.threads <= 2 for c in cases)


# A command line cannot carry a NUL byte (argv entries are C strings), so generated arguments hold none.
arg_text = st.text(st.characters(exclude_characters="\x00"), max_size=5) | st.sampled_from(MARKUP)
csv = st.lists(st.sampled_from(["torch", "jax", "lenet5", "gru", "train", "infer", "1", "0", "-2", "x", ""]),
               max_size=3).map(",".join)
option = st.one_of(
    st.tuples(st.just("--frameworks"), csv | arg_text), st.tuples(st.just("--models"), csv),
    st.tuples(st.just("--modes"), csv), st.tuples(st.just("--batch-sizes"), csv | arg_text),
    st.tuples(st.just("--batch-sizes"), st.integers(-2, 2**64).map(str)),
    st.tuples(st.just("--device"), st.sampled_from(["cpu", "cuda", "tpu"])),
    st.tuples(st.just("--threads"), st.integers(-3, 2**64).map(str) | arg_text),
    st.tuples(st.just("--resume"), st.sampled_from(["/nonexistent", "."]) | arg_text),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suite=st.sampled_from(["smoke", "optimizers", "nosuch", "x.toml", ""]) | arg_text,
       options=st.lists(option, max_size=4))
def test_random_command_lines_exit_0_or_2_without_a_traceback(suite, options):
    args = ["run", suite, *[a for pair in options for a in pair], "--dry-run"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert "Traceback" not in result.output


# ---- data, never code ----

def test_suites_and_results_are_read_as_data_never_as_code():
    """No eval, exec or compile of text; no pickle, marshal or shelve; no np.load(allow_pickle=True)."""
    banned_calls = {"eval", "exec", "compile", "__import__"}
    banned_modules = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle", "joblib"}
    found = []
    for path in sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("adapters/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in banned_calls:
                found.append(f"{where} {node.func.id}()")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                base = node.func.value
                if isinstance(base, ast.Name) and base.id in ("torch", "pickle", "yaml"):
                    found.append(f"{where} {base.id}.load()")  # torch.load unpickles
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f"{where} allow_pickle")
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{where} import {n}" for n in names if n.split(".")[0] in banned_modules]
    assert found == []


def test_strings_from_records_are_escaped_in_the_html_report(tmp_path):
    """Item 4 of the reliability issue; the report's own tests cover its structure."""
    from xfbench.harness.case import Case
    from xfbench.harness.report.write import write_reports

    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    run = RunDir.create(tmp_path, "t")
    run.write_meta(RunMeta(suite=evil, started=0.0, finished=1.0, host={"cpu_model": evil}))
    c = Case(framework="torch", model="lenet5", mode="train", batch_size=2)
    run.append(Record.of(c, "failed", evil, 0.0, 1.0, warnings=(evil,), stderr_tail=evil))
    page = write_reports(run.path)["report.html"].read_text()
    assert "alert(1)" in page or "alert" not in page  # the reason is shown, or not at all
    assert "<script>alert" not in page and "<img src=x" not in page
