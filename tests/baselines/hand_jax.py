"""A minimal hand-written Flax/Optax LeNet-5 training loop (batch 64, SGD), one jitted step."""
import argparse
import os
import statistics
import time

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seconds", type=float, default=10.0)
args = parser.parse_args()
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
os.environ["OMP_NUM_THREADS"] = str(args.threads)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402


class LeNet5(nn.Module):
    @nn.compact
    def __call__(self, x):
        for ch in (6, 16):
            x = nn.max_pool(nn.relu(nn.Conv(ch, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = nn.relu(nn.Conv(120, (5, 5), padding="VALID")(x)).reshape(x.shape[0], -1)
        return nn.Dense(10)(nn.relu(nn.Dense(84)(x)))


model, tx = LeNet5(), optax.sgd(0.01)
kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
x, y = jax.random.normal(kx, (64, 32, 32, 1)), jax.random.randint(ky, (64,), 0, 10)
params = model.init(kp, x)
state = tx.init(params)


@jax.jit
def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()


def step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss


step = jax.jit(step, donate_argnums=(0, 1))  # params and optimizer state updated in place
for _ in range(50):
    params, state, loss = step(params, state, x, y)
k, times, start = 20, [], time.perf_counter()
while time.perf_counter() - start < args.seconds:
    t0 = time.perf_counter()
    for _ in range(k):
        params, state, loss = step(params, state, x, y)
    jax.block_until_ready((params, state, loss))
    times.append((time.perf_counter() - t0) / k)
print(f"hand-written jax lenet5 train b=64: {64 / statistics.median(times):.1f} samples/s "
      f"(median of {len(times)} samples of {k} steps)")
