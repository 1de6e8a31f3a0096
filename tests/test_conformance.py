"""The conformance kit over every installed adapter at tiny sizes, and against deliberately broken ones."""
import importlib.util

import pytest

from xfbench.harness.conformance import *  # noqa: F401,F403  (the kit's checks and its pytest hook)
from xfbench.harness.conformance import (test_conformance_forward_agrees_with_reference, test_conformance_optimizer_steps,
                                 test_conformance_weight_round_trip)

_NEEDS = {"torch": "torch", "tensorflow": "tensorflow", "jax": "flax", "numpy": "numpy"}
ADAPTERS = [name for name, module in _NEEDS.items() if importlib.util.find_spec(module)]


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
