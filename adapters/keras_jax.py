"""keras-jax: Keras 3 on JAX (keras_adapter.py). KERAS_BACKEND is set here, before Keras's first import."""
import os

os.environ["KERAS_BACKEND"] = "jax"  # Keras reads its backend once, at its first import
# As the jax adapter: XLA reads this when its backend starts (lazily, after this module), and a case's
# memory is what it uses, not a preallocated share of the GPU.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from xfbench.adapters import keras_adapter  # noqa: E402


class KerasAdapter(keras_adapter.KerasAdapter):
    """Keras 3 on JAX."""

    BACKEND = "jax"
