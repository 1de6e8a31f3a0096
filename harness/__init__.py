"""xfbench harness: the framework-neutral core. It never imports torch, tensorflow or jax."""

__version__ = "0.1.0"
