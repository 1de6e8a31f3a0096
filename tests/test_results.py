"""Run directories and typed records: append, read back, strict checks, schema migrations, stable ids."""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.records import SCHEMA_VERSION, Record, RunMeta, v1_config_id
from xfbench.harness.results import ResultsError, RunDir, load_frame

FIXTURES = Path(__file__).parent / "fixtures"
CASE = Case("torch", "lenet5", "train", 8, threads=2)


def record(of=CASE, status="ok", **kw):
    """A record's JSON object as the worker writes it, with `kw` replacing its fields."""
    rec = Record.of(of, status, None if status == "ok" else "why", 1.0, 2.0).to_json()
    if status == "ok":
        rec.update(metrics={"samples_per_s": 800.0, "samples_per_s_ci": [790.0, 810.0], "step_s": {"median": 0.01},
                            "first_step_s": 0.5, "setup_s": 0.1, "parameters": 61706},
                   samples_s=[0.01, 0.0101])
    rec.update(kw)
    return rec


def process(p):
    return dataclasses.replace(CASE, process=p)


def test_append_and_read_back(tmp_path):
    run = RunDir.create(tmp_path, "s")
    run.append(Record.from_json(record(process(0))))
    run.append(Record.from_json(record(process(1), status="skipped")))
    recs = run.records()
    assert [r.case_id for r in recs] == [process(0).case_id, process(1).case_id]
    assert recs[0].config_id == recs[1].config_id == CASE.config_id
    assert recs[0].metrics.samples_per_s_ci == (790.0, 810.0) and recs[1].status == "skipped"
    assert (run.path / "cases.jsonl").read_text().count("\n") == 2
    assert Record.from_json(recs[0].to_json()) == recs[0]


def test_torn_last_line_is_ignored_and_noted(tmp_path):
    run = RunDir.create(tmp_path, "s")
    run.append(Record.from_json(record()))
    with open(run.path / "cases.jsonl", "a") as f:
        f.write(json.dumps(record(process(1)))[:40])  # a write cut short by a crash
    assert [r.case_id for r in run.records()] == [CASE.case_id]
    assert run.torn_lines == [2]


def test_newer_schema_is_refused_with_the_fix(tmp_path):
    run = RunDir.create(tmp_path, "s")
    with open(run.path / "cases.jsonl", "w") as f:
        f.write(json.dumps(record(schema=99)) + "\n")
    with pytest.raises(ResultsError, match="newer xfbench.*upgrade"):
        run.records()
    run.write_meta(RunMeta(suite="s", started=1.0))
    (run.path / "run.json").write_text(json.dumps({"schema": 7}))
    with pytest.raises(ResultsError, match="newer xfbench"):
        run.meta()


@pytest.mark.parametrize("change, message", [
    ({"status": "fine"}, "status 'fine'"),
    ({"samples_s": []}, "lacks samples"),
    ({"samples_s": [0.1, -1]}, "positive"),
    ({"samples_s": [0.1, float("inf")]}, "finite"),
    ({"metrics": {}}, "lacks samples_per_s"),
    ({"started": "yesterday"}, "'started' must be a finite number"),
    ({"case": {}}, "'case' is not a case"),
    ({"warnings": [1]}, "'warnings' must hold strings"),
    ({"metrics": {**record()["metrics"], "first_step_s": "fast"}}, "'first_step_s' must be a finite number"),
    ({"metrics": {**record()["metrics"], "samples_per_s": float("nan")}}, "'samples_per_s' must be a finite"),
    ({"case_id": "abc-p0"}, "does not match"),
])
def test_reading_is_strict_to_the_nested_fields(change, message):
    with pytest.raises(ResultsError, match=message):
        Record.from_json(record(**change))


def test_a_case_field_of_the_wrong_type_is_refused():
    bad = record()
    bad["case"]["batch_size"] = "2"
    with pytest.raises(ResultsError, match="'batch_size' must be an integer"):
        Record.from_json(bad)


def test_failed_record_must_say_why():
    with pytest.raises(ResultsError, match="must say why"):
        Record.from_json(record(status="failed", reason=""))


def test_run_directories_never_collide(tmp_path):
    a, b = RunDir.create(tmp_path, "s"), RunDir.create(tmp_path, "s")
    assert a.path != b.path


def test_frame_has_one_row_per_record(tmp_path):
    run = RunDir.create(tmp_path, "s")
    run.append(Record.from_json(record()))
    run.append(Record.from_json(record(process(1), status="failed")))
    df = load_frame(run.path)
    assert list(df["status"]) == ["ok", "failed"]
    assert df.loc[0, "samples_per_s"] == 800.0 and df.loc[0, "config"] == CASE.config_id
    assert list(load_frame(RunDir.create(tmp_path, "e").path).columns) == list(df.columns)


def test_case_id_is_stable_when_an_optional_field_is_added():
    @dataclasses.dataclass(frozen=True)
    class NewerCase(Case):  # a later xfbench with one more optional knob
        memory_limit_gib: float | None = None

    @dataclasses.dataclass(frozen=True)
    class NewerMeasure(MeasureConfig):
        contention_share: float = 0.1

    base = Case("jax", "gru", "infer", 16, threads=2, measure=MeasureConfig(max_time_s=2.5), process=1)
    newer = NewerCase("jax", "gru", "infer", 16, threads=2, measure=NewerMeasure(max_time_s=2.5), process=1)
    assert newer.case_id == base.case_id and newer.config_id == base.config_id
    assert NewerCase("jax", "gru", "infer", 16, memory_limit_gib=4.0).config_id != base.config_id
    assert dataclasses.replace(base, process=0).config_id == base.config_id  # processes share the config


def test_schema_1_run_still_loads_and_resumes_with_migrated_ids(tmp_path):
    """tests/fixtures/run-schema1 is a run written by schema 1; it must load as it is, forever."""
    run = RunDir(shutil.copytree(FIXTURES / "run-schema1", tmp_path / "old"))
    lines = [json.loads(line) for line in (run.path / "cases.jsonl").read_text().splitlines()]
    recs = run.records()
    assert not run.torn_lines and len(recs) == len(lines) and SCHEMA_VERSION == 2
    for raw, rec in zip(lines, recs):
        assert raw["schema"] == 1 and raw["case_id"].rsplit("-p", 1)[0] == v1_config_id(raw["case"])
        assert rec.case_id == rec.case.case_id and rec.config_id == rec.case.config_id
    meta = run.meta()
    assert meta.suite == "small" and meta.host["hostname"] == "fixture-host"


def test_resume_of_a_schema_1_plan_matches_its_records(tmp_path):
    from xfbench.harness.measure.runner import pending_cases

    run = RunDir.create(tmp_path, "s")
    done, todo = process(0), process(1)
    old = record(done)
    old.update(schema=1, case_id=f"{v1_config_id(done.to_dict())}-p0")
    del old["config_id"]
    (run.path / "cases.jsonl").write_text(json.dumps(old) + "\n")
    (run.path / "run.json").write_text(json.dumps({"schema": 1, "suite": "s", "started": 1.0,
                                                   "plan": [done.to_dict(), todo.to_dict()]}))
    pending, planned = pending_cases(run)
    assert planned == 2 and pending == [todo]
