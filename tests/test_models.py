import pytest

from xfbench.harness.models import MODELS, SpecError, build_spec

SPEC_COUNTS = {  # docs/spec.md section 1, at default hyper-parameters
    "lenet5": (61_706, 833_040),
    "lenet5-classic": (61_706, 833_040),
    "alexnet": (61_100_840, 1_428_376_960),
    "lstm": (14_448_400, 652_001_280),
    "gru": (13_399_824, 578_600_960),
}


@pytest.mark.parametrize("name", SPEC_COUNTS)
def test_parameter_count_and_flops_match_spec(name):
    spec = build_spec(name)
    assert (spec.parameter_count(), spec.forward_flops()) == SPEC_COUNTS[name]
    assert spec.train_flops() == 3 * SPEC_COUNTS[name][1]


def test_every_catalogue_model_is_covered():
    assert set(MODELS) == set(SPEC_COUNTS)


def test_lenet_classic_is_tanh_avg():
    spec = build_spec("lenet5-classic")
    assert spec.hparams["activation"] == "tanh" and spec.hparams["pool"] == "avg"


def test_canonical_weight_names_follow_spec():
    assert list(build_spec("gru", layers=2).weight_shapes()) == [
        "embed.weight", "gru0.weight_ih", "gru0.weight_hh", "gru0.bias_ih", "gru0.bias_hn",
        "gru1.weight_ih", "gru1.weight_hh", "gru1.bias_ih", "gru1.bias_hn", "out.weight", "out.bias"]
    shapes = build_spec("lstm", vocab=7, embed=3, hidden=2, layers=1).weight_shapes()
    assert shapes["lstm0.weight_ih"] == (8, 3) and shapes["lstm0.bias"] == (8,) and shapes["out.weight"] == (7, 2)
    assert build_spec("alexnet").weight_shapes()["fc6.weight"] == (4096, 9216)


def test_tiny_overrides_change_counts():
    spec = build_spec("lstm", vocab=50, embed=8, hidden=4, layers=2, seq_len=5)
    # embed 400; layer0 16*8+16*4+16; layer1 16*4+16*4+16; out 4*50+50
    assert spec.parameter_count() == 400 + 208 + 144 + 250
    assert spec.forward_flops() == 2 * 5 * (16 * 12 + 16 * 8 + 4 * 50)


@pytest.mark.parametrize("name, overrides, message", [
    ("resnet", {}, "unknown model 'resnet'"),
    ("lenet5", {"activation": "gelu"}, "activation='gelu' is not one of"),
    ("lenet5", {"depth": 3}, "has no hyper-parameter 'depth'"),
    ("lstm", {"hidden": 0}, "hidden=0 is out of range"),
    ("lstm", {"hidden": "big"}, "hidden must be int"),
    ("lstm", {"hidden": 10**9}, "parameters"),
    ("alexnet", {"dropout": 1.0}, "dropout=1.0 is out of range"),
    ("alexnet", {"image_size": 32}, "too small"),
])
def test_bad_hyper_parameters_are_refused(name, overrides, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        build_spec(name, **overrides)
