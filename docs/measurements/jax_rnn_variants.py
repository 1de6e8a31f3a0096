"""The JAX adapter's recurrent layer (input projection hoisted out of lax.scan) against the tutorial-style
flax.linen cells under nn.RNN (projection inside the scan), interleaved in one process (docs/fairness.md).

    python docs/measurements/jax_rnn_variants.py [lstm|gru] [batch] [rounds]

Both variants train the spec model (embedding, 2 recurrent layers of 512, dense to 10,000 at every step) with
SGD, one jax.jit each; rounds alternate A, B so that a drifting machine affects both alike. Prints the median
seconds per train step of each and their ratio. Run pinned like a worker (`taskset -c 0,1`).
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from xfbench.adapters.jax_adapter import _Recurrent, _loss

cell_kind = sys.argv[1] if len(sys.argv) > 1 else "lstm"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 8
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 15
VOCAB, EMBED, HIDDEN, LAYERS, T = 10000, 512, 512, 2, 35


class Model(nn.Module):
    hoisted: bool

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(VOCAB, EMBED)(tokens)
        for i in range(LAYERS):
            if self.hoisted:
                x = _Recurrent(cell_kind, HIDDEN, jnp.float32, jnp.float32, name=f"r{i}")(x)
            else:
                cell = nn.OptimizedLSTMCell if cell_kind == "lstm" else nn.GRUCell
                x = nn.RNN(cell(HIDDEN, parent=None), name=f"r{i}")(x)
        return nn.Dense(VOCAB)(x)


def make_step(model):
    tx = optax.sgd(0.01)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, (batch, T)), jnp.int32)
    params = model.init(jax.random.key(0), tokens)["params"]
    params = jax.tree.map(lambda p: jax.random.uniform(jax.random.key(1), p.shape, p.dtype, -0.04, 0.04), params)
    state = [params, tx.init(params)]

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: _loss(model.apply({"params": p}, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def run(n):
        t0 = time.perf_counter()
        for _ in range(n):
            state[0], state[1] = step(state[0], state[1], tokens, tokens)
        jax.block_until_ready(state)
        return (time.perf_counter() - t0) / n
    run(2)  # compile and warm up
    return run


variants = {"hoisted (adapter)": make_step(Model(hoisted=True)), "linen cells": make_step(Model(hoisted=False))}
times = {name: [] for name in variants}
for _ in range(rounds):
    for name, run in variants.items():
        times[name].append(run(2))
med = {name: float(np.median(t)) for name, t in times.items()}
for name, m in med.items():
    print(f"{cell_kind} b={batch} {name}: {m * 1e3:.1f} ms per train step "
          f"(IQR {np.percentile(times[name], 25) * 1e3:.1f}-{np.percentile(times[name], 75) * 1e3:.1f})")
print(f"{cell_kind} b={batch} linen cells / hoisted: {med['linen cells'] / med['hoisted (adapter)']:.2f}x")
