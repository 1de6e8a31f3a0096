"""A minimal hand-written Keras/TensorFlow LeNet-5 training loop (batch 64, SGD) as a tf.function."""
import argparse
import os
import statistics
import time

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seconds", type=float, default=10.0)
parser.add_argument("--xla", action="store_true")
args = parser.parse_args()
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)
L = keras.layers
model = keras.Sequential([
    keras.Input((32, 32, 1)),
    L.Conv2D(6, 5, activation="relu"), L.MaxPooling2D(2),
    L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
    L.Conv2D(120, 5, activation="relu"), L.Flatten(),
    L.Dense(84, activation="relu"), L.Dense(10)])
opt = keras.optimizers.SGD(0.01)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
x = tf.random.normal((64, 32, 32, 1))
y = tf.random.uniform((64,), 0, 10, dtype=tf.int32)


@tf.function(jit_compile=args.xla)
def step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss


for _ in range(50):
    step(x, y)
k, times, start = 20, [], time.perf_counter()
while time.perf_counter() - start < args.seconds:
    t0 = time.perf_counter()
    for _ in range(k):
        loss = step(x, y)
    loss.numpy()  # wait for the last update
    times.append((time.perf_counter() - t0) / k)
print(f"hand-written tensorflow{'-xla' if args.xla else ''} lenet5 train b=64: {64 / statistics.median(times):.1f} "
      f"samples/s (median of {len(times)} samples of {k} steps)")
