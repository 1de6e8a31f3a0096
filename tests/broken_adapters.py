"""Deliberately wrong adapters: the conformance kit and `bench validate` must catch each, naming the check.

Importable by validation workers too (tests put this directory on PYTHONPATH).
"""
import numpy as np
import torch

from xfbench.adapters.torch_adapter import TorchAdapter


class SwappedGruGates(TorchAdapter):
    """Loads the GRU's canonical r, z, n blocks in the order z, r, n (Keras's order, mapped naively)."""

    def load_weights(self, weights):
        swapped = dict(weights)
        for name, value in weights.items():
            if name.startswith("gru") and name.rsplit(".", 1)[1] in ("weight_ih", "weight_hh", "bias_ih"):
                r, z, n = np.split(value, 3, axis=0)
                swapped[name] = np.concatenate([z, r, n])
        super().load_weights(swapped)


class DampenedMomentum(TorchAdapter):
    """Momentum SGD with dampening 0.5; the spec's canonical momentum has dampening 0."""

    def _make_optimizer(self):
        o = self.optimizer_spec
        if o.name != "momentum":
            return super()._make_optimizer()
        params = [q for q in self.model.parameters() if q.requires_grad]
        return torch.optim.SGD(params, lr=o.params["lr"], momentum=o.params["momentum"], dampening=0.5)


class WrongTimedInference(TorchAdapter):
    """The timed inference function is wrong (logits doubled) while the eager model is right."""

    def build(self, spec, optimizer):
        super().build(spec, optimizer)
        timed = self._infer
        self._infer = lambda x: 2 * timed(x)


class WrongTimedUpdate(TorchAdapter):
    """The timed train step applies each update twice while the optimizer itself is right."""

    def build(self, spec, optimizer):
        super().build(spec, optimizer)
        timed = self._update

        def twice():
            timed()
            timed()
        self._update = twice


def _jax_wrong_infer():
    from xfbench.adapters.jax_adapter import JaxAdapter

    class WrongTimedJaxInference(JaxAdapter):
        """JAX: the jitted inference function that `infer_step` times returns shifted logits."""

        def build(self, spec, optimizer):
            super().build(spec, optimizer)
            timed = self._infer
            self._infer = lambda params, x: timed(params, x) + 1.0
    return WrongTimedJaxInference


def __getattr__(name):  # the JAX class only when asked for: this module must import without jax
    if name == "WrongTimedJaxInference":
        return _jax_wrong_infer()
    raise AttributeError(name)
