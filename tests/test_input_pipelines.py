"""Each adapter's input pipeline (`Adapter.input_pipeline`) feeds what `put_batch` gives, in the shared order.

Real frameworks at tiny sizes on real data (issue 16, "same batches in the same order in every framework"): for
every index array of the order, the pipeline's batch has put_batch's values, layout, dtype and device, and
`forward` on it gives bit-identical logits; the order each pipeline consumed hashes to one value for every
framework; 2 workers give what 0 give. Keras adapters keep the default pipeline and are not imported here: a
keras_* module fixes Keras's backend for the whole process (tests/test_keras_adapters.py runs them apart).
"""
from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest

from xfbench.harness.data import batch_order, check_fits, load_dataset, order_sha256
from xfbench.harness.models import TINY_SIZES, build_spec
from xfbench.harness.optimizers import build_optimizer
from xfbench.harness.weights import init_weights, make_inputs

# DataLoader workers fork this process, which holds jax's threads too (a worker holds one framework).
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
STEPS, SEED, WORKERS = 5, 3, (0, 2)
# name -> (module, class, constructor options, the import names it needs); numpy keeps the default pipeline.
ADAPTERS = {
    "torch": ("xfbench.adapters.torch_adapter", "TorchAdapter", {}, ("torch",)),
    "torch-channels-last": ("xfbench.adapters.torch_adapter", "TorchAdapter", {"channels_last": True}, ("torch",)),
    "tensorflow": ("xfbench.adapters.tensorflow_adapter", "TensorFlowAdapter", {}, ("tensorflow", "keras")),
    "jax": ("xfbench.adapters.jax_adapter", "JaxAdapter", {}, ("jax", "flax", "optax")),
    "numpy": ("xfbench.adapters.numpy_adapter", "NumpyAdapter", {}, ()),
}
# data set -> (model, its tiny size, batch size, the order's SHA-256 with SEED and STEPS: one for every framework).
# copy-memory holds 16 sequences, 4 batches an epoch: the 5 steps cross into the second epoch's permutation.
DATA = {
    "digits": ("lenet5", {}, 8, "38a4da43245ba956f3e35dff2d325843784e74854a843a5de18cf3b6036c9a99"),
    "copy-memory": ("lstm", {**TINY_SIZES["lstm"], "seq_len": 7}, 4,
                    "1f215711617de4af89f20e33f043993785afc721fe19793649d9ed10b0d8562a"),
}
CASES = [(a, d) for a in ADAPTERS for d in DATA if not (a == "torch-channels-last" and d != "digits")]


@pytest.fixture(scope="module")
def datasets():
    return {"digits": load_dataset("digits"),
            "copy-memory": load_dataset("copy-memory", seq_len=7, copy_len=3, symbols=4, train=16, test=4)}


def build(name: str, spec):
    """The adapter `name` on the CPU, built for `spec` with its canonical weights; skipped where not installed."""
    module, cls, options, requires = ADAPTERS[name]
    for m in requires:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed: {name}'s pipeline cannot run here")
    adapter = getattr(importlib.import_module(module), cls)(device="cpu", precision="fp32", threads=1, seed=0,
                                                              **options)
    adapter.build(spec, None if name == "numpy" else build_optimizer("sgd"))
    adapter.load_weights(init_weights(spec, seed=1))
    return adapter


class Recorded:
    """An order that remembers the index arrays a pipeline drew from it."""

    def __init__(self, order):
        self.order, self.drawn = order, []

    def __iter__(self):
        for idx in self.order:
            self.drawn.append(np.array(idx))
            yield idx


def leaves(batch) -> list:
    return list(batch) if isinstance(batch, (tuple, list)) else [batch]


def layout(t) -> dict:
    """What must match besides the values: type, shape, dtype, device and, for torch, the strides."""
    out = {"type": type(t).__name__, "shape": tuple(t.shape), "dtype": str(t.dtype), "device": str(t.device)}
    if callable(getattr(t, "stride", None)):
        out["stride"] = t.stride()  # channels_last: NHWC strides on an NCHW shape
    return out


@pytest.mark.parametrize("name,data_name", CASES)
def test_the_pipeline_feeds_put_batch_in_the_order(name, data_name, datasets):
    dataset = datasets[data_name]
    model, sizes, batch_size, order_hash = DATA[data_name]
    adapter = build(name, build_spec(model, **sizes))
    check_fits(dataset, adapter.spec)
    check_pipeline(adapter, dataset.x_train, dataset.y_train, batch_size, order_hash)


@pytest.mark.parametrize("name", ["torch-channels-last", "tensorflow", "jax"])
def test_three_channels_get_put_batch_layout(name):
    """Digits has one channel, where NHWC and channels_last strides are NCHW's: AlexNet's three show the layout."""
    spec = build_spec("alexnet", **TINY_SIZES["alexnet"])
    x, y = make_inputs(spec, 6, seed=4)
    x.flags.writeable = y.flags.writeable = False  # as a Dataset's arrays
    check_pipeline(build(name, spec), x, y, 2, order_hash=None, steps=2)


def check_pipeline(adapter, x, y, batch_size: int, order_hash: str | None, steps: int = STEPS) -> None:
    """(a) `steps` batches, (b) put_batch's batch and bit-identical logits for each index array, (c) the order
    consumed hashes to `order_hash`, the same for every framework, (d) 2 workers give what 0 give."""
    logits = {}
    for workers in WORKERS:
        order = Recorded(batch_order(len(x), batch_size, SEED, steps=steps))  # built anew: framework-neutral
        batches = list(adapter.input_pipeline(x, y, order, workers))
        assert len(batches) == steps and len(order.drawn) == steps
        assert order_hash is None or order_sha256(order.drawn) == order_hash
        logits[workers] = []
        for idx, got in zip(order.drawn, batches):
            want = adapter.put_batch(x[idx], y[idx])
            assert [layout(t) for t in leaves(got)] == [layout(t) for t in leaves(want)]
            assert all(np.array_equal(np.asarray(g), np.asarray(w)) for g, w in zip(leaves(got), leaves(want)))
            (got_logits, got_loss), (want_logits, want_loss) = adapter.forward(got), adapter.forward(want)
            assert np.array_equal(got_logits, want_logits) and got_loss == want_loss
            logits[workers].append(got_logits)
    assert all(np.array_equal(a, b) for a, b in zip(logits[0], logits[2]))


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_manifest_names_the_mechanism_and_the_workers(name):
    adapter = build(name, build_spec("lenet5"))
    described = adapter.pipeline_description(2)
    mechanism = {"torch": "DataLoader", "torch-channels-last": "DataLoader", "tensorflow": "tf.data",
                 "jax": "jax.device_put", "numpy": "put_batch per step"}[name]
    assert mechanism in described and (name == "numpy" or "2" in described)


@pytest.mark.parametrize("name", [n for n in ADAPTERS if n != "numpy"])
def test_a_pipeline_closed_early_stops_cleanly(name, datasets):
    adapter, batch_size = build(name, build_spec("lenet5")), DATA["digits"][2]
    x, y = datasets["digits"].x_train, datasets["digits"].y_train
    pipeline = adapter.input_pipeline(x, y, batch_order(len(x), batch_size, SEED, steps=STEPS), 2)
    first = next(pipeline)
    pipeline.close()  # what the convergence runner does at the target: workers and threads stop here
    with pytest.raises(StopIteration):
        next(pipeline)
    assert np.array_equal(np.asarray(leaves(first)[1]), y[next(batch_order(len(x), batch_size, SEED, steps=1))])
