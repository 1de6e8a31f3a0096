"""Deliberately wrong adapters: the conformance kit and `bench validate` must catch each, naming the check.

Importable by validation workers too (tests put this directory on PYTHONPATH).
"""
import numpy as np
import torch

from adapters.torch_adapter import TorchAdapter


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
