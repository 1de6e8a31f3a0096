"""Real data sets for training to a target accuracy.

Framework-neutral NumPy arrays (docs/spec.md section 4.1): each framework's input pipeline gathers its
examples from the same read-only arrays, and a record names what it trained on by `Dataset.sha256`.
"""
from .catalog import NAMES, load_dataset
from .dataset import DataError, Dataset, accuracy, check_fits, content_sha256

__all__ = ["NAMES", "load_dataset", "DataError", "Dataset", "accuracy", "check_fits", "content_sha256"]
