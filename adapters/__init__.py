"""Built-in adapters. This module stays import-cheap: it names adapters, it never imports a framework.

Each object below is registered in pyproject.toml under the entry-point group `xfbench.adapters`,
exactly as a third-party adapter package would register its own.
"""
from xfbench.harness.adapter import AdapterInfo

TORCH = AdapterInfo(
    name="torch", framework="torch", target="xfbench.adapters.torch_adapter:TorchAdapter",
    requires=("torch",), summary="PyTorch eager, native layers (nn.Conv2d, nn.LSTM, nn.GRU)")
TORCH_COMPILE = AdapterInfo(
    name="torch-compile", framework="torch", target="xfbench.adapters.torch_adapter:TorchAdapter",
    requires=("torch",), summary="PyTorch with torch.compile (inductor) on the model",
    options={"compile": True})
TORCH_CHANNELS_LAST = AdapterInfo(
    name="torch-channels-last", framework="torch", target="xfbench.adapters.torch_adapter:TorchAdapter",
    requires=("torch",), summary="PyTorch eager, images and conv weights in channels_last (NHWC) memory",
    options={"channels_last": True})
TENSORFLOW = AdapterInfo(
    name="tensorflow", framework="tensorflow", target="xfbench.adapters.tensorflow_adapter:TensorFlowAdapter",
    requires=("tensorflow", "keras"), distributions=("tensorflow", "tensorflow-cpu", "keras"),
    summary="Keras 3 on TensorFlow, train and infer steps as tf.function")
TENSORFLOW_XLA = AdapterInfo(
    name="tensorflow-xla", framework="tensorflow", target="xfbench.adapters.tensorflow_adapter:TensorFlowAdapter",
    requires=("tensorflow", "keras"), distributions=("tensorflow", "tensorflow-cpu", "keras"),
    summary="Keras 3 on TensorFlow, steps as tf.function(jit_compile=True)", options={"jit_compile": True})
JAX = AdapterInfo(
    name="jax", framework="jax", target="xfbench.adapters.jax_adapter:JaxAdapter",
    requires=("jax", "flax", "optax"), distributions=("jax", "jaxlib", "flax", "optax"),
    summary="Flax linen modules, Optax, train and infer steps each one jax.jit")
NUMPY = AdapterInfo(
    name="numpy", framework="numpy", target="xfbench.adapters.numpy_adapter:NumpyAdapter",
    requires=("numpy",), summary="NumPy reference (inference only): the oracle of `bench validate`",
    reference=True)
