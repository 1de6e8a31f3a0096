from pathlib import Path

import pytest

from xfbench.harness.adapter import AdapterInfo
from xfbench.harness.plan.suites import Overrides, SuiteError, available_suites, expand, load_suite, parse_suite

REGISTRY = {
    "torch": AdapterInfo("torch", "torch", "x:Y", ("torch",)),
    "torch-compile": AdapterInfo("torch-compile", "torch", "x:Y", ("torch",)),
    "jax": AdapterInfo("jax", "jax", "x:Y", ("jax",)),
}


def parse(text):
    return parse_suite(text, "t", Path("t.toml"), REGISTRY)


def test_shipped_suites_parse_and_expand():
    assert {"smoke", "quick", "standard", "optimizers"} <= set(available_suites())
    for name in ("smoke", "quick", "standard", "optimizers"):
        suite = load_suite(name, REGISTRY)
        assert expand(suite, REGISTRY, cpus=2)


def test_quick_covers_every_model_mode_and_base_framework():
    cases = expand(load_suite("quick", REGISTRY), REGISTRY, cpus=2)
    assert {(c.model, c.mode) for c in cases} == {(m, d) for m in ("lenet5", "alexnet", "lstm", "gru")
                                                  for d in ("train", "infer")}
    assert {c.framework for c in cases} == {"torch", "jax"}  # variants only by name
    assert {c.threads for c in cases} == {2}


def test_quick_runs_two_forked_processes_per_case():
    cases = expand(load_suite("quick", REGISTRY), REGISTRY, cpus=2)
    assert {c.process for c in cases} == {0, 1} and {c.process_start for c in cases} == {"fork"}
    assert len(cases) == 2 * len({c.config_id for c in cases})


def test_process_start_is_checked_kept_out_of_the_case_id_and_never_fork_on_a_gpu():
    text = '[[cases]]\nmodels = ["lenet5"]\nframeworks = ["torch"]\nmodes = ["infer"]\nprocess_start = "fork"\n'
    (forked,) = expand(parse(text), REGISTRY, cpus=1)
    (fresh,) = expand(parse(text.replace("fork", "exec")), REGISTRY, cpus=1)
    assert (forked.process_start, fresh.process_start) == ("fork", "exec") and forked.case_id == fresh.case_id
    (gpu,) = expand(parse(text), REGISTRY, Overrides(device="cuda"), cpus=1)
    assert gpu.process_start == "exec"
    with pytest.raises(SuiteError, match="process_start value 'spawn' is not one of exec, fork"):
        parse(text.replace("fork", "spawn"))


def test_optimizers_suite_has_all_six():
    cases = expand(load_suite("optimizers", REGISTRY), REGISTRY, cpus=2)
    assert sorted({c.optimizer for c in cases}) == sorted(
        ["sgd", "momentum", "adagrad", "adadelta", "rmsprop", "adam"])


def test_standard_repeats_every_case_in_three_processes():
    cases = expand(load_suite("standard", REGISTRY), REGISTRY, cpus=2)
    by_config = {}
    for c in cases:
        by_config.setdefault(c.config_id, set()).add(c.process)
    assert set(map(frozenset, by_config.values())) == {frozenset({0, 1, 2})}


def test_defaults_and_entries_merge():
    suite = parse('''
        seed = 3
        [defaults]
        batch_sizes = [4]
        measure = { min_samples = 5 }
        [[cases]]
        models = ["lenet5"]
        modes = ["train"]
        optimizer = "adam"
        optimizer_params = { lr = 0.1 }
        measure = { max_time_s = 2.0 }
    ''')
    (jax_case, torch_case) = sorted(expand(suite, REGISTRY, cpus=2), key=lambda c: c.framework)
    assert jax_case.framework == "jax" and torch_case.framework == "torch"
    assert torch_case.batch_size == 4 and torch_case.optimizer == "adam" and torch_case.optimizer_params == {"lr": 0.1}
    assert (torch_case.measure.min_samples, torch_case.measure.max_time_s) == (5, 2.0)
    assert torch_case.seed == 3


def test_order_is_seeded_shuffled_and_round_by_round():
    text = '''
        [[cases]]
        models = ["lenet5", "lstm"]
        batch_sizes = [1, 2]
        processes = 2
    '''
    a = [c.case_id for c in expand(parse(text), REGISTRY, cpus=2)]
    assert a == [c.case_id for c in expand(parse(text), REGISTRY, cpus=2)]
    half = len(a) // 2
    assert all(x.endswith("-p0") for x in a[:half]) and all(x.endswith("-p1") for x in a[half:])
    unshuffled = [c.case_id for c in expand(parse(text), REGISTRY, cpus=2) if c.process == 0]
    assert len(set(unshuffled)) == half
    frameworks = [c.framework for c in expand(parse(text), REGISTRY, cpus=2)][:half]
    assert frameworks != sorted(frameworks)  # interleaved, not grouped


def test_overrides_filter_and_replace():
    suite = parse('[[cases]]\nmodels = ["lenet5", "gru"]\nbatch_sizes = [8]\n')
    cases = expand(suite, REGISTRY, Overrides(frameworks=["torch-compile"], models=["gru"], modes=["infer"],
                                              batch_sizes=[1, 3], threads=1), cpus=2)
    assert {(c.framework, c.model, c.mode, c.batch_size, c.threads) for c in cases} == {
        ("torch-compile", "gru", "infer", 1, 1), ("torch-compile", "gru", "infer", 3, 1)}
    with pytest.raises(SuiteError, match="no case for model 'alexnet'"):
        expand(suite, REGISTRY, Overrides(models=["alexnet"]), cpus=2)


@pytest.mark.parametrize("text, message", [
    ("[[cases]\nmodels = 1", "malformed TOML"),
    ('bogus = 1\n[[cases]]\nmodels = ["lenet5"]', "unknown key 'bogus'"),
    ('[[cases]]\nmodels = ["lenet5"]\nbatch_size = [2]', "unknown key 'batch_size'"),
    ('[[cases]]\nmodels = ["lenet5"]\nmeasure = { samples = 3 }', "unknown key measure.samples"),
    ('[[cases]]\nmodels = ["lenet5"]\nmeasure = { min_samples = 0 }', "measure.min_samples must be a positive"),
    ('[[cases]]\nmodels = ["lenet5"]\nbatch_sizes = [0]', "batch size 0 must be a positive"),
    ('[[cases]]\nmodels = ["lenet5"]\nbatch_sizes = [-4]', "batch size -4"),
    ('[[cases]]\nmodels = ["lenet5"]\nbatch_sizes = 4', "batch_sizes must be a non-empty list"),
    ('[[cases]]\nmodels = ["lenet5"]\nbatch_sizes = ["4"]', "batch_sizes must be"),
    ('[[cases]]\nmodels = ["lenet5"]\nthreads = true', "threads must be an integer"),
    ('[[cases]]\nmodels = ["resnet"]', "unknown model 'resnet'"),
    ('[[cases]]\nmodels = ["lenet5"]\nmodes = ["fit"]', "modes value 'fit'"),
    ('[[cases]]\nmodels = ["lenet5"]\ndevice = "tpu"', "device value 'tpu'"),
    ('[[cases]]\nmodels = ["lenet5"]\nframeworks = ["mxnet"]', "unknown framework 'mxnet'"),
    ('[[cases]]\nmodels = ["lenet5"]\noptimizer = "lbfgs"', "unknown optimizer 'lbfgs'"),
    ('[[cases]]\nmodels = ["lenet5"]\noptimizer_params = { momentum = 0.9 }', "has no setting 'momentum'"),
    ('[[cases]]\nmodels = ["lstm"]\nparams = { hidden = 1e9 }', "hidden must be int"),
    ('[[cases]]\nmodels = ["lstm"]\nparams = { hidden = 1000000000 }', "GiB"),
    ('[[cases]]\nmodes = ["train"]', "missing key 'models'"),
    ('description = "x"', "no \\[\\[cases\\]\\] entries"),
    ('cases = 3', "cases must be"),
])
def test_malformed_suites_name_the_file_and_the_key(text, message):
    with pytest.raises(SuiteError, match=message) as e:
        parse(text)
    assert str(e.value).startswith("t.toml")
    assert "\n" not in str(e.value).split(":", 1)[0]


def test_threads_above_the_cpus_available_is_an_error():
    suite = parse('[[cases]]\nmodels = ["lenet5"]\nthreads = 64')
    with pytest.raises(SuiteError, match="threads=64 but this machine lets xfbench use 2 CPUs"):
        expand(suite, REGISTRY, cpus=2)


def test_unknown_suite_lists_the_choices(tmp_path):
    with pytest.raises(SuiteError, match="unknown suite 'nope'.*quick"):
        load_suite("nope", REGISTRY)
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(str(tmp_path / "missing.toml"), REGISTRY)


def test_roofline_is_on_unless_the_suite_turns_it_off_and_a_run_remembers_it():
    from xfbench.harness.records import RunMeta
    text = '[[cases]]\nmodels = ["lenet5"]\n'
    assert parse(text).roofline is True and parse("roofline = false\n" + text).roofline is False
    assert load_suite("smoke", REGISTRY).roofline is False and load_suite("quick", REGISTRY).roofline is True
    with pytest.raises(SuiteError, match="roofline must be true or false"):
        parse("roofline = 1\n" + text)
    off = RunMeta(suite="t", started=0.0, roofline=False)
    assert RunMeta.from_json(off.to_json()).roofline is False
    assert "roofline" not in RunMeta(suite="t", started=0.0).to_json()  # older run.json files read as on
