"""The conformance kit over one Keras backend: keras-jax, keras-torch or keras-tensorflow.

Not a test_*.py module: Keras holds one backend per process, so tests/test_keras_adapters.py runs this module in
a pytest process of its own per backend, naming the backend in XFBENCH_KERAS_KIT (jax, torch or tensorflow)::

    XFBENCH_KERAS_KIT=jax python -m pytest tests/kits/keras_kit.py
"""
import importlib
import os

from xfbench.harness.conformance import *  # noqa: F401,F403  (the checks and their pytest hook)

BACKEND = os.environ.get("XFBENCH_KERAS_KIT", "tensorflow")
# The class itself (the kit accepts a registered name or the class): the target module sets KERAS_BACKEND.
ADAPTER = importlib.import_module(f"xfbench.adapters.keras_{BACKEND}").KerasAdapter
