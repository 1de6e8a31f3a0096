"""Real data sets for training to a target accuracy, and the batch order every framework follows.

Framework-neutral NumPy arrays (docs/spec.md sections 4.1 and 4.2): each framework's input pipeline
gathers the same examples, in the order `batch_order` gives, from the same read-only arrays, and a
record names what it trained on by `Dataset.sha256` and `order_sha256`.
"""
from .catalog import NAMES, load_dataset
from .dataset import DataError, Dataset, accuracy, check_fits, content_sha256
from .order import batch_order, epoch_permutation, order_sha256, steps_per_epoch

__all__ = ["NAMES", "load_dataset", "DataError", "Dataset", "accuracy", "check_fits", "content_sha256",
           "batch_order", "epoch_permutation", "order_sha256", "steps_per_epoch"]
