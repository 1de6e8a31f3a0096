"""Where TensorFlow's AlexNet training step spends its time on CPU (docs/fairness.md).

    python docs/measurements/tf_alexnet_profile.py adapter        # the adapter's train and infer step
    python docs/measurements/tf_alexnet_profile.py adapter-xla    # the same under jit_compile
    python docs/measurements/tf_alexnet_profile.py layers         # each layer's forward+backward alone

Run from the repository root, pinned like a worker (`taskset -c 0,1`), with TF_ENABLE_ONEDNN_OPTS=0 or 1.
Prints medians in seconds as JSON.
"""
import os, sys, time, json
import numpy as np
variant = sys.argv[1]
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
from xfbench.adapters.tensorflow_adapter import TensorFlowAdapter
from xfbench.harness.models import build_spec
from xfbench.harness.optimizers import build_optimizer
from xfbench.harness.weights import init_weights, make_inputs

def bench(fn, n=8):
    fn(); fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))

spec = build_spec("alexnet")
out = {}
if variant in ("adapter", "adapter-xla"):
    a = TensorFlowAdapter(device="cpu", precision="fp32", threads=2, seed=0, jit_compile=variant.endswith("xla"))
    a.build(spec, build_optimizer("sgd")); a.load_weights(init_weights(spec, 0))
    b = a.put_batch(*make_inputs(spec, 2, 0))
    out["train_step_s"] = bench(lambda: (a.train_step(b), a.sync()))
    out["infer_step_s"] = bench(lambda: (a.infer_step(b), a.sync()))
elif variant == "layers":
    # forward+backward of each layer alone, at the shapes AlexNet gives it (batch 2, NHWC)
    from xfbench.harness.models import feature_shapes, Conv, Dense
    for layer, chw_in, chw_out in feature_shapes(spec):
        if isinstance(layer, Conv):
            c, h, w = chw_in
            x = tf.random.normal([2, h, w, c])
            k = tf.Variable(tf.random.normal([layer.kernel, layer.kernel, c, layer.out_channels]) * 0.01)
            p = layer.padding
            def f_pad(x=x, k=k, p=p, s=layer.stride):
                with tf.GradientTape() as t:
                    t.watch(x)
                    y = tf.nn.conv2d(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), k, s, "VALID")
                    l = tf.reduce_sum(y)
                return t.gradient(l, [x, k])
            def f_explicit(x=x, k=k, p=p, s=layer.stride):
                with tf.GradientTape() as t:
                    t.watch(x)
                    y = tf.nn.conv2d(x, k, s, [[0, 0], [p, p], [p, p], [0, 0]])
                    l = tf.reduce_sum(y)
                return t.gradient(l, [x, k])
            def f_fwd(x=x, k=k, p=p, s=layer.stride):
                return tf.nn.conv2d(x, k, s, [[0, 0], [p, p], [p, p], [0, 0]])
            def f_bfilter(x=x, k=k, p=p, s=layer.stride):
                dy = f_fwd()
                return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(k), out_backprop=dy, strides=[1, s, s, 1], padding="EXPLICIT", explicit_paddings=[0, 0, p, p, p, p, 0, 0])
            def f_binput(x=x, k=k, p=p, s=layer.stride):
                dy = f_fwd()
                return tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=k, out_backprop=dy, strides=[1, s, s, 1], padding="EXPLICIT", explicit_paddings=[0, 0, p, p, p, p, 0, 0])
            for name, f in (("pad+valid fwd+bwd", f_pad), ("explicit fwd+bwd", f_explicit), ("fwd", f_fwd),
                            ("fwd+backprop_filter", f_bfilter), ("fwd+backprop_input", f_binput)):
                out[f"{layer.name} {name}"] = bench(tf.function(f))
    for name, n_in, units in (("fc6", 9216, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)):
        if True:
            x = tf.random.normal([2, n_in]); w = tf.Variable(tf.random.normal([n_in, units]) * 0.01)
            def f_dense(x=x, w=w):
                with tf.GradientTape() as t:
                    t.watch(x)
                    l = tf.reduce_sum(tf.matmul(x, w))
                return t.gradient(l, [x, w])
            out[f"{name} fwd+bwd"] = bench(tf.function(f_dense))
print(json.dumps({variant: out}, indent=1))
