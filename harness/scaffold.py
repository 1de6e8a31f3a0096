"""`bench new-adapter`: write a ready adapter package (pyproject, AdapterInfo, skeleton, conformance test).

The skeleton subclasses `xfbench.harness.api.Adapter` (never a built-in adapter: those are not base classes)
and every method raises `NotImplementedError` saying what it must do, so the conformance kit fails at once,
each failure naming its check and the method to write. Templates are plain strings; nothing here imports a
framework.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .adapter import ADAPTER_API, discover_all
from .errors import XfbenchError

BASES = ("torch", "tensorflow", "jax", "none")
NAME_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
# What each base needs: import names (AdapterInfo.requires) and distributions (its versions, the dependencies).
_REQUIRES = {"torch": ("torch",), "tensorflow": ("tensorflow", "keras"), "jax": ("jax", "flax", "optax"), "none": ()}
_DISTRIBUTIONS = {"torch": ("torch",), "tensorflow": ("tensorflow", "keras"), "jax": ("jax", "jaxlib", "flax", "optax"),
                  "none": ()}
_DEPENDENCIES = {"torch": ("torch",), "tensorflow": ("tensorflow", "keras"), "jax": ("jax", "flax", "optax"),
                 "none": ()}
_IMPORTS = {"torch": "import torch\n", "tensorflow": "import keras\nimport tensorflow as tf\n",
            "jax": "import flax.linen as nn\nimport jax\nimport jax.numpy as jnp\nimport optax\n", "none": ""}


class ScaffoldError(XfbenchError):
    """The adapter package cannot be written: a bad name, a taken name, an existing folder."""


@dataclass(frozen=True)
class Names:
    """The names one adapter NAME gives its package."""

    adapter: str  # "my-fw": the registered name, in suites and reports
    distribution: str  # "xfbench-my-fw"
    package: str  # "xfbench_my_fw"
    cls: str  # "MyFwAdapter"

    @classmethod
    def of(cls, name: str) -> "Names":
        return cls(name, f"xfbench-{name}", "xfbench_" + name.replace("-", "_"),
                   "".join(part.capitalize() for part in name.split("-")) + "Adapter")


def xfbench_range(version: str = __version__) -> str:
    """The xfbench versions a new plugin may depend on: this minor series while the major is 0, else this major."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return f"xfbench>={major}.{minor},<{major}.{minor + 1}" if major == 0 else f"xfbench>={major}.{minor},<{major + 1}"


def new_adapter(name: str, base: str = "none", parent: Path = Path(".")) -> Path:
    """Write the package for adapter `name` under `parent`; its folder. ScaffoldError for a bad or taken name."""
    if not NAME_RE.fullmatch(name):
        raise ScaffoldError(f"adapter name {name!r}: use lowercase letters, digits and single '-' between them, "
                            "starting with a letter (e.g. 'mxnet' or 'torch-fx')")
    if base not in BASES:
        raise ScaffoldError(f"--base {base!r}: choose one of {', '.join(BASES)}")
    working, broken = discover_all()
    if name in working or name in broken:
        raise ScaffoldError(f"an adapter named {name!r} is already registered (see `bench list frameworks`); "
                            "choose another name")
    n = Names.of(name)
    root = Path(parent) / n.distribution
    if root.exists():
        raise ScaffoldError(f"{root} already exists; remove it or choose another --dir")
    files = {
        "pyproject.toml": pyproject(n, base),
        "README.md": readme(n, base),
        f"src/{n.package}/__init__.py": init_module(n, base),
        f"src/{n.package}/adapter.py": adapter_module(n, base),
        "tests/test_conformance.py": TEST_MODULE.format(name=name),
    }
    try:
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    except OSError as e:
        raise ScaffoldError(f"cannot write {root}: {e}") from None
    return root


def pyproject(n: Names, base: str) -> str:
    deps = ", ".join(f'"{d}"' for d in (xfbench_range(), *_DEPENDENCIES[base]))
    return f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{n.distribution}"
version = "0.1.0"
description = "{_framework(n, base)} adapter for xfbench"
readme = "README.md"
requires-python = ">=3.10"
# xfbench's adapter API (xfbench.harness.api) changes only with ADAPTER_API; the range is the xfbench series
# that speaks ADAPTER_API {ADAPTER_API}, the version this package is written for (its AdapterInfo's `api`).
dependencies = [{deps}]

[project.optional-dependencies]
test = ["pytest>=8"]

# How xfbench finds the adapter: `bench list frameworks` reads this AdapterInfo without importing the framework.
[project.entry-points."xfbench.adapters"]
{n.adapter} = "{n.package}:ADAPTER"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''


def init_module(n: Names, base: str) -> str:
    requires = _tuple(_REQUIRES[base])
    distributions = _tuple(_DISTRIBUTIONS[base])
    return f'''"""The xfbench adapter {n.adapter!r}, registered in pyproject.toml's entry-point group `xfbench.adapters`.

Keep this module import-cheap: the bench parent reads ADAPTER without importing any framework; the class in
`adapter.py`, which imports it, is loaded only in worker processes.
"""
from xfbench.harness.api import AdapterInfo

ADAPTER = AdapterInfo(
    name="{n.adapter}",  # as in suites, `--frameworks` and reports
    framework="{_framework(n, base)}",  # the toolbox measured; a variant of it (another compile mode) shares it
    target="{n.package}.adapter:{n.cls}",
    requires={requires},  # import names that must be importable for the adapter to count as installed
    distributions={distributions},  # distributions whose versions the fairness manifest reports
    summary="TODO: one line on what runs (eager or compiled, which layers)",
    api={ADAPTER_API},  # the xfbench adapter API (xfbench.harness.api.ADAPTER_API) this package is written for
)
'''


def _tuple(items: tuple[str, ...]) -> str:
    return "(" + ", ".join(f'"{i}"' for i in items) + ("," if len(items) == 1 else "") + ")"


def _framework(n: Names, base: str) -> str:
    return n.adapter if base == "none" else base


# method -> (signature, docstring, what NotImplementedError says it must do)
_METHODS = {
    "build": ("self, spec: ModelSpec, optimizer: OptimizerSpec | None",
              "Create the model (and, when training, its optimizer) in training-ready form.",
              "build must create the model from spec.layers (Conv, Pool, Flatten, Dense, Embedding, Recurrent) and, "
              "when optimizer is given, the optimizer (docs/spec.md sections 1 and 3); raise Unsupported for what "
              "this adapter cannot run"),
    "parameter_count": ("self", "Trainable parameters as the framework counts them, less frozen duplicates.",
                        "parameter_count must return the model's trainable parameters, equal to spec.parameter_count()"),
    "load_weights": ("self, weights: dict[str, np.ndarray]",
                     "Load a canonical weight set (docs/spec.md section 2) and reset the optimizer state.",
                     "load_weights must load canonical weights (PyTorch names and layout) into the model, reject wrong "
                     "names or shapes with a ValueError, and reset the optimizer state"),
    "dump_weights": ("self", "The current weights in canonical names, layout and float dtype.",
                     "dump_weights must return the current weights in canonical names, layout and dtype"),
    "put_batch": ("self, x: np.ndarray, y: np.ndarray",
                  "Move one canonical batch (NCHW images or (B, T) tokens) to the device, in the fastest layout.",
                  "put_batch must move a canonical batch to the device in the framework's fastest layout and return "
                  "what the steps take"),
    "train_step": ("self, batch: Any", "Forward, loss, backward and optimizer update; may return before the device is done.",
                   "train_step must run forward, loss, backward and the optimizer update on the batch"),
    "infer_step": ("self, batch: Any", "Forward in inference mode (dropout off, no gradient); may return early.",
                   "infer_step must run the forward pass in inference mode (dropout off, no gradient)"),
    "sync": ("self", "Wait for all device work issued so far, the last parameter update included.",
             "sync must wait until all device work issued so far is done, the last parameter update included"),
    "forward": ("self, batch: Any", "Logits in canonical layout and the mean loss, from the function infer_step times.",
                "forward must return the logits (canonical layout, as NumPy) and the mean cross-entropy as a float, "
                "computed by the same function infer_step times"),
    "gradients": ("self, batch: Any", "Loss gradients at the current weights (dropout off), canonical names and layout.",
                  "gradients must return the loss gradients at the current weights in canonical names and layout, "
                  "from the code train_step runs (raise Unsupported if the adapter is inference-only)"),
    "settings": ("self", "The fairness manifest (docs/spec.md section 5.8); JSON-serialisable.",
                 "settings must return the fairness manifest: versions, threads, precision, dtype, compile, "
                 "data_layout, fp32_math and compile_scope (docs/spec.md section 5.8)"),
}
_RETURNS = {"build": "None", "parameter_count": "int", "load_weights": "None", "dump_weights": "dict[str, np.ndarray]",
            "put_batch": "Any", "train_step": "None", "infer_step": "None", "sync": "None",
            "forward": "tuple[np.ndarray, float]", "gradients": "dict[str, np.ndarray]", "settings": "dict[str, Any]"}
# base -> method -> the framework's way, one comment line each
_HINTS = {
    "torch": {
        "__init__": "torch.set_num_threads(threads); on cuda, raise Unsupported unless torch.cuda.is_available()",
        "build": "an nn.Module of nn.Conv2d, nn.MaxPool2d, nn.Linear, nn.Embedding, nn.LSTM(batch_first=True); torch.optim",
        "load_weights": "canonical is torch's own layout: param.data.copy_(torch.from_numpy(w)); zero and freeze LSTM bias_hh",
        "put_batch": "torch.from_numpy(x).to(device); NCHW is torch's layout already",
        "train_step": "loss.backward(); optimizer.step(); optimizer.zero_grad(set_to_none=True)",
        "infer_step": "model.eval() once, and the step under torch.inference_mode()",
        "sync": "torch.cuda.synchronize() on cuda; nothing on the CPU, where eager ops finish before returning",
        "forward": "logits.detach().cpu().numpy(), loss.item()",
        "gradients": "torch.autograd.grad(loss, params), or .grad after backward; dropout off (model.eval())",
        "settings": "torch.__version__, torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32 for fp32_math",
    },
    "tensorflow": {
        "__init__": "tf.config.threading.set_intra_op_parallelism_threads(threads) before any op; cuda needs "
                    "tf.config.list_physical_devices('GPU')",
        "build": "keras layers in a keras.Model; Keras's Adam and RMSprop need small subclasses to match torch.optim",
        "load_weights": "conv (O, I, kh, kw) -> (kh, kw, I, O); dense (out, in) -> (in, out); Keras GRU gates are z, r, h",
        "put_batch": "NCHW -> NHWC: tf.constant(x.transpose(0, 2, 3, 1)) on the device",
        "train_step": "a tf.function with tf.GradientTape and optimizer.apply_gradients",
        "infer_step": "a tf.function calling model(x, training=False)",
        "sync": "tf.test.experimental.sync_devices() on a GPU; on the CPU, .numpy() of the last step's output",
        "forward": "the tf.function infer_step runs, then .numpy(); logits back to canonical layout",
        "gradients": "tape.gradient in the code train_step runs, mapped back to canonical layout",
        "settings": "tf.__version__, keras.__version__, tf.config.experimental.is_tensor_float_32_execution_enabled()",
    },
    "jax": {
        "__init__": "fp64 needs jax.config.update('jax_enable_x64', True); on cuda, raise Unsupported without a GPU device",
        "build": "flax.linen modules, optax optimizers; jax.jit the train and infer steps once here",
        "load_weights": "conv (O, I, kh, kw) -> (kh, kw, I, O) for NHWC; dense (out, in) -> (in, out); reset opt state",
        "put_batch": "NCHW -> NHWC: jax.device_put(x.transpose(0, 2, 3, 1))",
        "train_step": "one jitted function returning the new params and optimizer state (donate_argnums)",
        "infer_step": "the jitted apply with deterministic=True; keep its output to sync on",
        "sync": "jax.block_until_ready on the new params, the optimizer state and the last output",
        "forward": "np.asarray of the jitted infer function's logits, back to canonical layout",
        "gradients": "jax.grad of the loss train_step differentiates, mapped back to canonical layout",
        "settings": "jax.__version__, jax.config.jax_default_matmul_precision for fp32_math",
    },
}


def adapter_module(n: Names, base: str) -> str:
    hints = _HINTS.get(base, {})

    def hint(method: str) -> str:
        if method not in hints:
            return ""
        lines = textwrap.wrap(f"{base}: {hints[method]}", 100, initial_indent="# ", subsequent_indent="#   ")
        return "".join(f"        {line}\n" for line in lines)

    methods = "".join(
        f"\n    def {m}({sig}) -> {_RETURNS[m]}:\n        \"\"\"{doc}\"\"\"\n{hint(m)}"
        f"        raise NotImplementedError(\n            {_string(must)})\n"
        for m, (sig, doc, must) in _METHODS.items())
    imports = "import numpy as np\n" + _IMPORTS[base]  # the framework at the top: this module runs in workers only
    return f'''"""The {n.adapter!r} adapter: {_framework(n, base)} running the xfbench spec models (docs/spec.md).

Imported only in worker processes (one framework per process). Each method below says what it must do;
`pytest tests/` runs the conformance kit, whose failures name the check to make pass next.
"""
from __future__ import annotations

from typing import Any

{imports}
from xfbench.harness.api import Adapter, ModelSpec, OptimizerSpec, Unsupported


class {n.cls}(Adapter):
    """{_framework(n, base)}, built from the spec's layers. TODO: say what runs (eager, compiled, which kernels)."""

    def __init__(self, *, device: str, precision: str, threads: int, seed: int, **options: Any):
        """Framework knobs before any model exists; raise Unsupported for what this adapter cannot run."""
        super().__init__(device=device, precision=precision, threads=threads, seed=seed, **options)
{hint("__init__")}        if device != "cpu":  # TODO: offer "cuda" once it works; an Unsupported case is skipped, not failed
            raise Unsupported(f"{n.adapter} runs on the CPU only, not {{device}}")
        if precision not in ("fp32", "fp64"):  # the kit checks float32 and, for gradients, float64
            raise Unsupported(f"{n.adapter} does not offer {{precision}}")
{methods}
    # Optional (defaults in xfbench.harness.api.Adapter): preload, peak_device_memory_bytes,
    # reset_peak_device_memory, and peak_gemm / peak_copy for the roofline of `bench peak`.
'''


def _string(text: str) -> str:
    """A Python string literal of `text`, as adjacent literals on lines of at most ~100 columns."""
    chunks = textwrap.wrap(text, 90, drop_whitespace=False, break_long_words=False)
    assert "".join(chunks) == text, text  # textwrap keeps every character when it drops no whitespace
    return "\n            ".join(f'"{c}"' if '"' not in c else repr(c) for c in chunks)


TEST_MODULE = '''"""The xfbench conformance kit, run on this adapter: `pytest tests/`; each failure names its check."""
from xfbench.harness.conformance import *  # noqa: F401,F403  (the checks and their pytest hook)

ADAPTER = "{name}"  # the registered name (pyproject.toml's entry point)
'''


def readme(n: Names, base: str) -> str:
    return f'''# {n.distribution}

The xfbench adapter `{n.adapter}` ({_framework(n, base)}), written from `bench new-adapter`'s skeleton.

```sh
pip install -e .                  # registers the adapter: it appears in `bench list frameworks`
bench list frameworks --check     # its class imports in a worker and implements every method
pytest tests/                     # the conformance kit: each failure names the check to make pass next
# once the kit passes: the same numbers as the NumPy reference, then every case of the smoke suite
bench validate --tiny --frameworks {n.adapter}
bench run smoke --frameworks {n.adapter}
```

`src/{n.package}/__init__.py` registers the adapter (keep it import-cheap); `src/{n.package}/adapter.py` is the
class to fill in. The contract: xfbench's docs/adding-an-adapter.md and docs/spec.md. This package is written
for xfbench adapter API {ADAPTER_API} (`api=` in its AdapterInfo; {xfbench_range()} in pyproject.toml).
'''
