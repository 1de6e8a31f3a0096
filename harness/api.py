"""The public API of xfbench for adapter authors: everything a plugin may import, subclass or call.

Import from here (`from xfbench.harness.api import Adapter, AdapterInfo, ...`) and from the conformance kit
(`xfbench.harness.conformance`); every other module of `xfbench.harness` and `xfbench.adapters` is private
and may change in any release. The names below keep their meaning for as long as `ADAPTER_API` keeps its
value: a change that would break a plugin raises it, and the harness then refuses plugins written for the
old value with one line (docs/adding-an-adapter.md, "Versions").

`Adapter` methods with a default (`preload`, `input_pipeline`, `pipeline_description`, `peak_gemm`, `peak_copy`,
the device-memory pair) are optional: adding one keeps `ADAPTER_API`, since every existing plugin still works.

The built-in adapter classes (`xfbench.adapters.*`) are not base classes: their internals follow each
framework release. A variant of a built-in adapter is an `AdapterInfo` with `options` (zero code); a new
adapter subclasses `Adapter` (`bench new-adapter` writes the package).
"""
from . import __version__
from .adapter import ADAPTER_API, Adapter, AdapterInfo, PeakKernel, Unsupported
from .equivalence import FORWARD_TOL, max_abs_rel
from .models import MODELS, TINY_SIZES, Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent, build_spec
from .optimizers import OPTIMIZERS, OptimizerSpec, build_optimizer
from .weights import check_weights, init_weights, make_inputs

__all__ = [
    # registering and writing an adapter
    "ADAPTER_API", "Adapter", "AdapterInfo", "PeakKernel", "Unsupported",
    # the models an adapter builds (docs/spec.md section 1)
    "MODELS", "TINY_SIZES", "ModelSpec", "Conv", "Pool", "Flatten", "Dense", "Embedding", "Recurrent", "build_spec",
    # the optimizers it creates (section 3)
    "OPTIMIZERS", "OptimizerSpec", "build_optimizer",
    # canonical weights and inputs (section 2), and the forward tolerance (section 6)
    "init_weights", "check_weights", "make_inputs", "FORWARD_TOL", "max_abs_rel",
    "__version__",
]
