import json

import pytest

from harness.results import ResultsError, RunDir, load_frame, validate_record


def record(case_id="abc-p0", status="ok", **kw):
    rec = {"schema": 1, "case_id": case_id, "status": status, "reason": None if status == "ok" else "why",
           "case": {"framework": "torch", "model": "lenet5", "mode": "train", "batch_size": 8, "device": "cpu",
                    "precision": "fp32", "threads": 2, "model_params": {}, "optimizer": "sgd", "process": 0},
           "metrics": {"samples_per_s": 800.0, "samples_per_s_ci": [790.0, 810.0], "step_s": {"median": 0.01},
                       "first_step_s": 0.5, "setup_s": 0.1, "parameters": 61706} if status == "ok" else {},
           "samples_s": [0.01, 0.0101] if status == "ok" else [], "warnings": [], "manifest": {},
           "started": 1.0, "finished": 2.0}
    rec.update(kw)
    return rec


def test_append_and_read_back(tmp_path):
    run = RunDir.create(tmp_path, "s")
    run.append(record("a-p0"))
    run.append(record("b-p0", status="skipped"))
    assert [r["case_id"] for r in run.records()] == ["a-p0", "b-p0"]
    assert (run.path / "cases.jsonl").read_text().count("\n") == 2


def test_torn_last_line_is_ignored_and_noted(tmp_path):
    run = RunDir.create(tmp_path, "s")
    run.append(record("a-p0"))
    with open(run.path / "cases.jsonl", "a") as f:
        f.write(json.dumps(record("b-p0"))[:40])  # a write cut short by a crash
    assert [r["case_id"] for r in run.records()] == ["a-p0"]
    assert run.torn_lines == [2]


def test_newer_schema_is_refused_with_the_fix(tmp_path):
    run = RunDir.create(tmp_path, "s")
    with open(run.path / "cases.jsonl", "w") as f:
        f.write(json.dumps(record(schema=99)) + "\n")
    with pytest.raises(ResultsError, match="newer xfbench.*upgrade"):
        run.records()
    run.write_meta({"suite": "s"})
    (run.path / "run.json").write_text(json.dumps({"schema": 7}))
    with pytest.raises(ResultsError, match="newer xfbench"):
        run.meta()


@pytest.mark.parametrize("change, message", [
    ({"status": "fine"}, "status 'fine'"),
    ({"samples_s": []}, "lacks samples"),
    ({"samples_s": [0.1, -1]}, "positive"),
    ({"metrics": {}}, "lacks samples_per_s"),
    ({"started": "yesterday"}, "'started' has the wrong type"),
])
def test_validation_is_strict(change, message):
    with pytest.raises(ResultsError, match=message):
        validate_record(record(**change))


def test_failed_record_must_say_why():
    with pytest.raises(ResultsError, match="must say why"):
        validate_record(record(status="failed", reason=""))


def test_run_directories_never_collide(tmp_path):
    a, b = RunDir.create(tmp_path, "s"), RunDir.create(tmp_path, "s")
    assert a.path != b.path


def test_frame_has_one_row_per_record(tmp_path):
    run = RunDir.create(tmp_path, "s")
    run.append(record("a-p0"))
    run.append(record("a-p1", status="failed"))
    df = load_frame(run.path)
    assert list(df["status"]) == ["ok", "failed"]
    assert df.loc[0, "samples_per_s"] == 800.0 and df.loc[0, "config"] == "a"
    assert list(load_frame(RunDir.create(tmp_path, "e").path).columns) == list(df.columns)
