"""The conformance kit over every installed adapter at tiny sizes, and against deliberately broken ones."""
import importlib.util

import pytest

from xfbench.harness.conformance import *  # noqa: F401,F403  (the kit's checks and its pytest hook)
from xfbench.harness.api import Adapter
from xfbench.harness.conformance import (test_conformance_forward_agrees_with_reference, test_conformance_optimizer_steps,
                                         test_conformance_parameter_count, test_conformance_settings_manifest,
                                         test_conformance_sync_leaves_no_work, test_conformance_weight_round_trip)

_NEEDS = {"torch": "torch", "tensorflow": "tensorflow", "jax": "flax", "numpy": "numpy"}
ADAPTERS = [name for name, module in _NEEDS.items() if importlib.util.find_spec(module)]
ADAPTERS += ["torch-channels-last"] if "torch" in ADAPTERS else []  # a variant made of options alone


@pytest.fixture(autouse=True)
def _framework_globals_restored():
    """jax's x64 switch is process-wide: a float64 check must not leave it on for the next one."""
    yield
    if importlib.util.find_spec("jax"):
        import sys
        if "jax" in sys.modules:
            sys.modules["jax"].config.update("jax_enable_x64", False)


def test_kit_catches_gru_gates_in_the_wrong_order():
    pytest.importorskip("torch")
    from broken_adapters import SwappedGruGates

    with pytest.raises(pytest.fail.Exception, match=r"conformance check 'forward agreement' failed: gru: logits"):
        test_conformance_forward_agrees_with_reference(SwappedGruGates, "gru")
    with pytest.raises(pytest.fail.Exception, match=r"conformance check 'canonical weight round trip' failed"):
        test_conformance_weight_round_trip(SwappedGruGates, "gru")


def test_kit_catches_momentum_with_dampening():
    pytest.importorskip("torch")
    from broken_adapters import DampenedMomentum

    with pytest.raises(pytest.fail.Exception, match=r"conformance check 'optimizer momentum' failed: "
                                                    r"lenet5: after step 2"):
        test_conformance_optimizer_steps(DampenedMomentum, "lenet5", "momentum")
    test_conformance_optimizer_steps(DampenedMomentum, "lenet5", "adam")  # the other optimizers are right


class _Skeleton(Adapter):
    """What `bench new-adapter` writes: every method still says what it must do."""

    def build(self, spec, optimizer):
        raise NotImplementedError("create the model from spec.layers")

    parameter_count = load_weights = dump_weights = put_batch = train_step = infer_step = sync = forward = \
        gradients = settings = build


class _Crashing(Adapter):
    def __init__(self, **kw):
        super().__init__(**kw)
        raise KeyError("threads")


_Skeleton.__abstractmethods__ = _Crashing.__abstractmethods__ = frozenset()


def test_a_skeleton_fails_each_check_by_name_without_a_traceback():
    with pytest.raises(pytest.fail.Exception) as failed:
        test_conformance_parameter_count(_Skeleton, "lenet5")
    assert str(failed.value) == ("conformance check 'parameter count' failed: not implemented: "
                                 "_Skeleton.build: create the model from spec.layers")
    assert failed.value.pytrace is False
    with pytest.raises(pytest.fail.Exception, match=r"^conformance check 'settings manifest' failed: not implemented"):
        test_conformance_settings_manifest(_Skeleton)


def test_any_other_exception_names_the_check_and_keeps_its_traceback():
    with pytest.raises(AssertionError, match=r"^conformance check 'sync' failed: KeyError: 'threads'") as failed:
        test_conformance_sync_leaves_no_work(_Crashing, "infer")
    assert isinstance(failed.value.__cause__, KeyError)
