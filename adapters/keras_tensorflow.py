"""keras-tensorflow: Keras 3 on TensorFlow (keras_adapter.py). KERAS_BACKEND is set here, before Keras's first
import."""
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"  # Keras reads its backend once, at its first import
# As the tensorflow adapter: oneDNN's CPU kernels, which TensorFlow turns on by default only on CPUs with
# AVX-512 features (docs/fairness.md); a value the user set is kept, and the manifest records it.
_TF_IMPORTED_BEFORE = "tensorflow" in sys.modules  # then TensorFlow has read the variable already
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Keras 3.15 imports jax, where installed, on every backend (keras/src/callbacks/orbax_checkpoint.py, inside
# `try: import jax / except ImportError`): a second framework in a process that should hold one (docs/spec.md
# section 5.1). It is hidden while Keras imports.
_HIDDEN = [m for m in ("jax",) if m not in sys.modules and "keras" not in sys.modules]
sys.modules.update(dict.fromkeys(_HIDDEN))
try:
    from xfbench.adapters import keras_adapter  # noqa: E402
finally:
    for _m in _HIDDEN:
        if sys.modules.get(_m, 0) is None:
            del sys.modules[_m]


class KerasAdapter(keras_adapter.KerasAdapter):
    """Keras 3 on TensorFlow."""

    BACKEND = "tensorflow"
    tf_imported_before = _TF_IMPORTED_BEFORE
