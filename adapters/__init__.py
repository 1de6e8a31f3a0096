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
TORCH_CUDAGRAPHS = AdapterInfo(
    name="torch-cudagraphs", framework="torch", target="xfbench.adapters.torch_adapter:TorchAdapter",
    requires=("torch",), summary="PyTorch with torch.compile(mode=\"reduce-overhead\"): inductor and CUDA graphs "
                                 "(CUDA only)",
    options={"compile": True, "compile_mode": "reduce-overhead"})
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
# Keras 3 on each backend: one model definition (keras_model.py); the backend is fixed by the target module,
# which sets KERAS_BACKEND before Keras is imported (a worker holds one framework, and Keras one backend).
_KERAS = "Keras 3 on {}: model.compile(jit_compile='auto') and train_on_batch; inference {}"
KERAS_JAX = AdapterInfo(
    name="keras-jax", framework="keras", target="xfbench.adapters.keras_jax:KerasAdapter",
    requires=("keras", "jax"), distributions=("keras", "jax", "jaxlib"),
    summary=_KERAS.format("JAX", "jax.jit of model.stateless_call"))
KERAS_TORCH = AdapterInfo(
    name="keras-torch", framework="keras", target="xfbench.adapters.keras_torch:KerasAdapter",
    requires=("keras", "torch"), distributions=("keras", "torch"),
    summary=_KERAS.format("PyTorch", "eager under torch.no_grad"))
KERAS_TENSORFLOW = AdapterInfo(
    name="keras-tensorflow", framework="keras", target="xfbench.adapters.keras_tensorflow:KerasAdapter",
    requires=("keras", "tensorflow"), distributions=("keras", "tensorflow", "tensorflow-cpu"),
    summary=_KERAS.format("TensorFlow", "tf.function, XLA as jit_compile='auto' resolves"))
ONNXRUNTIME = AdapterInfo(
    name="onnxruntime", framework="onnx", target="xfbench.adapters.onnxruntime_adapter:OnnxRuntimeAdapter",
    requires=("onnx", "onnxruntime"), distributions=("onnx", "onnxruntime"),
    summary="ONNX Runtime (inference only): an ONNX graph built from the spec, CPU or CUDA execution provider")
NUMPY = AdapterInfo(
    name="numpy", framework="numpy", target="xfbench.adapters.numpy_adapter:NumpyAdapter",
    requires=("numpy",), summary="NumPy reference (inference only): the oracle of `bench validate`",
    reference=True)
