"""keras-torch: Keras 3 on PyTorch (keras_adapter.py). KERAS_BACKEND is set here, before Keras's first import."""
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"  # Keras reads its backend once, at its first import

# Keras 3.15 imports jax, where installed, on every backend (keras/src/callbacks/orbax_checkpoint.py, inside
# `try: import jax / except ImportError`): 1.2 s and 170 MiB of a torch worker that never uses it, and a second
# framework in a process that should hold one (docs/spec.md section 5.1). It is hidden while Keras imports.
_HIDDEN = [m for m in ("jax",) if m not in sys.modules and "keras" not in sys.modules]
sys.modules.update(dict.fromkeys(_HIDDEN))
try:
    from xfbench.adapters import keras_adapter  # noqa: E402
finally:
    for _m in _HIDDEN:
        if sys.modules.get(_m, 0) is None:
            del sys.modules[_m]


class KerasAdapter(keras_adapter.KerasAdapter):
    """Keras 3 on PyTorch."""

    BACKEND = "torch"
