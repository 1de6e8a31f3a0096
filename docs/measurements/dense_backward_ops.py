"""The fc6-sized matmuls of AlexNet's dense backward and an SGD update, TensorFlow against torch (docs/fairness.md).

    python docs/measurements/dense_backward_ops.py tf       # (TF_ENABLE_ONEDNN_OPTS=0 or 1)
    python docs/measurements/dense_backward_ops.py torch

Prints median milliseconds as JSON; run pinned (`taskset -c 0,1`) on a quiet machine.
"""
import sys, time, json, numpy as np
def bench(fn, n=10):
    fn(); fn(); ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return round(float(np.median(ts)) * 1e3, 1)
out = {}
if sys.argv[1] == "tf":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2); tf.config.threading.set_inter_op_parallelism_threads(2)
    x = tf.random.normal([2, 9216]); w = tf.Variable(tf.random.normal([9216, 4096])); dy = tf.random.normal([2, 4096])
    out["fwd x@W ms"] = bench(tf.function(lambda: tf.matmul(x, w)))
    out["dW = x^T dy ms"] = bench(tf.function(lambda: tf.matmul(x, dy, transpose_a=True)))
    out["dx = dy W^T ms"] = bench(tf.function(lambda: tf.matmul(dy, w, transpose_b=True)))
    g = tf.random.normal([9216, 4096])
    out["sgd W -= lr*g ms"] = bench(tf.function(lambda: w.assign_sub(0.01 * g)))
else:
    import torch
    torch.set_num_threads(2)
    x = torch.randn(2, 9216); w = torch.randn(4096, 9216); dy = torch.randn(2, 4096)
    out["fwd x@W ms"] = bench(lambda: x @ w.T)
    out["dW = dy^T x ms"] = bench(lambda: dy.T @ x)
    out["dx = dy W ms"] = bench(lambda: dy @ w)
    g = torch.randn(4096, 9216)
    out["sgd W -= lr*g ms"] = bench(lambda: w.add_(g, alpha=-0.01))
print(sys.argv[1], json.dumps(out))
