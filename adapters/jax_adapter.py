"""JAX adapter: Flax linen modules (NHWC, explicit padding), Optax; train and infer steps each one jax.jit.

XLA reads XLA_FLAGS and XLA_PYTHON_CLIENT_PREALLOCATE when its backend starts, which jax does lazily on
first use (not at import), so `JaxAdapter.__init__` can still set them before touching any device.
"""
from __future__ import annotations

import importlib.metadata as md
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
try:  # only to tell whether XLA settings can still take effect; no public API says so
    from jax._src.xla_bridge import backends_are_initialized as _backend_started
except ImportError:  # pragma: no cover
    def _backend_started() -> bool:
        return True

from harness.adapter import Adapter, Unsupported
from harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent, feature_shapes
from harness.optimizers import OptimizerSpec
from harness.weights import check_weights, init_weights

_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid}
_GATES = {"lstm": "ifgo", "gru": "rzn"}  # canonical gate order along the 4H / 3H axis
_PARAM_DTYPES = {"fp32": jnp.float32, "tf32": jnp.float32, "bf16": jnp.float32, "fp64": jnp.float64}


# ---- the model: one small function per spec layer type, walked generically ----

def _activate(x, activation: str | None):
    return _ACTIVATIONS[activation](x) if activation else x


def _conv(net: "_Net", layer: Conv, x, train: bool):
    p = layer.padding  # explicit: nn.Conv would otherwise pad SAME
    x = nn.Conv(layer.out_channels, (layer.kernel, layer.kernel), strides=layer.stride,
                padding=((p, p), (p, p)), dtype=net.dtype, param_dtype=net.param_dtype, name=layer.name)(x)
    return _activate(x, layer.activation)


def _pool(net: "_Net", layer: Pool, x, train: bool):
    pool = nn.max_pool if layer.kind == "max" else nn.avg_pool
    return pool(x, (layer.size, layer.size), strides=(layer.stride, layer.stride), padding="VALID")


def _flatten(net: "_Net", layer: Flatten, x, train: bool):
    # (B, H, W, C) -> (B, H*W*C): the next dense kernel's rows are permuted from canonical (C, H, W)
    # order on load and back on dump, which costs nothing per step (a transpose here would).
    return x.reshape(x.shape[0], -1)


def _dense(net: "_Net", layer: Dense, x, train: bool):
    if layer.dropout:
        x = nn.Dropout(layer.dropout, deterministic=not train)(x)
    x = nn.Dense(layer.units, dtype=net.dtype, param_dtype=net.param_dtype, name=layer.name)(x)
    return _activate(x, layer.activation)


def _embedding(net: "_Net", layer: Embedding, x, train: bool):
    return nn.Embed(layer.vocab, layer.dim, dtype=net.dtype, param_dtype=net.param_dtype, name=layer.name)(x)


def _recurrent(net: "_Net", layer: Recurrent, x, train: bool):  # (B, T, in) -> (B, T, hidden)
    cell = nn.OptimizedLSTMCell if layer.cell == "lstm" else nn.GRUCell  # linen GRUCell has b_hn
    for i in range(layer.layers):  # nn.RNN scans the cell over time from a zero carry
        # parent=None: the cell belongs to its nn.RNN (params "<cell><i>/cell/..."), not to the net.
        x = nn.RNN(cell(layer.hidden, dtype=net.dtype, param_dtype=net.param_dtype, parent=None),
                   name=f"{layer.cell}{i}")(x)
    return x


_LAYERS: dict[type, Callable] = {Conv: _conv, Pool: _pool, Flatten: _flatten, Dense: _dense,
                                 Embedding: _embedding, Recurrent: _recurrent}


class _Net(nn.Module):
    spec: ModelSpec
    dtype: Any  # computation dtype (bfloat16 for bf16)
    param_dtype: Any

    @nn.compact
    def __call__(self, x, train: bool):  # (B, H, W, C) images or (B, T) tokens -> logits
        for layer in self.spec.layers:
            x = _LAYERS[type(layer)](self, layer, x, train)
        return x


# ---- canonical weights (PyTorch layout, docs/spec.md section 2) <-> the Flax params tree ----

def _flatten_chw(spec: ModelSpec) -> tuple[int, int, int] | None:
    """(C, H, W) of the activation that the image model flattens."""
    if spec.kind != "image":
        return None
    return next((chw for layer, chw, _ in feature_shapes(spec) if isinstance(layer, Flatten)), None)


def _to_native(spec: ModelSpec, w: dict[str, np.ndarray]) -> dict[str, Any]:
    """Canonical weights (or gradients: every map is a permutation) -> Flax params tree."""
    tree: dict[str, Any] = {}
    chw, flat_dense = _flatten_chw(spec), None
    for layer in spec.layers:
        if isinstance(layer, Flatten):
            flat_dense = True
        elif isinstance(layer, Conv):
            tree[layer.name] = {"kernel": w[f"{layer.name}.weight"].transpose(2, 3, 1, 0),
                                "bias": w[f"{layer.name}.bias"]}
        elif isinstance(layer, Dense):
            k = w[f"{layer.name}.weight"]
            if flat_dense and chw:  # rows in (C, H, W) order -> (H, W, C) order
                k = k.reshape(-1, *chw).transpose(0, 2, 3, 1).reshape(k.shape[0], -1)
            flat_dense = False
            tree[layer.name] = {"kernel": k.T, "bias": w[f"{layer.name}.bias"]}
        elif isinstance(layer, Embedding):
            tree[layer.name] = {"embedding": w[f"{layer.name}.weight"]}
        elif isinstance(layer, Recurrent):
            h = layer.hidden
            for i in range(layer.layers):
                p = f"{layer.cell}{i}"
                cell: dict[str, Any] = {}
                for g, gate in enumerate(_GATES[layer.cell]):
                    rows = slice(g * h, (g + 1) * h)
                    cell[f"i{gate}"] = {"kernel": w[f"{p}.weight_ih"][rows].T}
                    cell[f"h{gate}"] = {"kernel": w[f"{p}.weight_hh"][rows].T}
                    if layer.cell == "lstm":  # OptimizedLSTMCell: the one bias sits on the h-dense
                        cell[f"h{gate}"]["bias"] = w[f"{p}.bias"][rows]
                    else:  # GRUCell: biases on ir, iz, in and hn; none on hr, hz
                        cell[f"i{gate}"]["bias"] = w[f"{p}.bias_ih"][rows]
                if layer.cell == "gru":
                    cell["hn"]["bias"] = w[f"{p}.bias_hn"]
                tree[p] = {"cell": cell}
    return tree


def _to_canonical(spec: ModelSpec, tree: dict[str, Any]) -> dict[str, np.ndarray]:
    """Flax params tree (host numpy) -> canonical names and layout; the inverse of `_to_native`."""
    out: dict[str, np.ndarray] = {}
    chw, flat_dense = _flatten_chw(spec), None
    for layer in spec.layers:
        if isinstance(layer, Flatten):
            flat_dense = True
        elif isinstance(layer, Conv):
            out[f"{layer.name}.weight"] = tree[layer.name]["kernel"].transpose(3, 2, 0, 1)
            out[f"{layer.name}.bias"] = tree[layer.name]["bias"]
        elif isinstance(layer, Dense):
            k = tree[layer.name]["kernel"].T
            if flat_dense and chw:
                c, h, w = chw
                k = k.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(k.shape[0], -1)
            flat_dense = False
            out[f"{layer.name}.weight"] = k
            out[f"{layer.name}.bias"] = tree[layer.name]["bias"]
        elif isinstance(layer, Embedding):
            out[f"{layer.name}.weight"] = tree[layer.name]["embedding"]
        elif isinstance(layer, Recurrent):
            for i in range(layer.layers):
                p, gates = f"{layer.cell}{i}", _GATES[layer.cell]
                cell = tree[p]["cell"]
                out[f"{p}.weight_ih"] = np.concatenate([cell[f"i{g}"]["kernel"].T for g in gates])
                out[f"{p}.weight_hh"] = np.concatenate([cell[f"h{g}"]["kernel"].T for g in gates])
                if layer.cell == "lstm":
                    out[f"{p}.bias"] = np.concatenate([cell[f"h{g}"]["bias"] for g in gates])
                else:
                    out[f"{p}.bias_ih"] = np.concatenate([cell[f"i{g}"]["bias"] for g in gates])
                    out[f"{p}.bias_hn"] = cell["hn"]["bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _optax(o: OptimizerSpec) -> optax.GradientTransformation:
    """The canonical optimizer (torch.optim math) as Optax, with the settings of docs/spec.md section 3."""
    p = o.params
    if o.name == "sgd":
        return optax.sgd(p["lr"])
    if o.name == "momentum":
        return optax.sgd(p["lr"], momentum=p["momentum"], nesterov=p["nesterov"])
    if o.name == "adagrad":
        return optax.adagrad(p["lr"], initial_accumulator_value=p["initial_accumulator"], eps=p["eps"])
    if o.name == "adadelta":  # learning_rate must be given: Optax's default (None) ascends
        return optax.adadelta(learning_rate=p["lr"], rho=p["rho"], eps=p["eps"])
    if o.name == "rmsprop":
        return optax.rmsprop(p["lr"], decay=p["rho"], eps=p["eps"], eps_in_sqrt=False)
    if o.name == "adam":
        return optax.adam(p["lr"], b1=p["beta1"], b2=p["beta2"], eps=p["eps"])
    raise Unsupported(f"optimizer {o.name!r} is not implemented by the jax adapter")


def _loss(logits, y):
    """Mean softmax cross-entropy over all positions; logits (..., classes), y (...)."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(jnp.promote_types(logits.dtype, jnp.float32))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y.reshape(-1)).mean()


def _configure_xla(device: str) -> None:
    """Settings XLA reads once, at backend start; the worker constructs us before anything else runs.

    No XLA_FLAGS are needed on CPU: the worker's CPU affinity sizes XLA's thread pool, and with
    the defaults both pinned cores stay ~90% busy for all four models; none of the CPU flags of
    jaxlib 0.10 (multi_thread_eigen, use_xnnpack, use_onednn, xnn fusion types) did better.
    A flag set by the caller in XLA_FLAGS is kept and reported.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if device == "cpu" and not _backend_started():
        jax.config.update("jax_platforms", "cpu")  # a CPU case never starts a GPU runtime


class JaxAdapter(Adapter):
    def __init__(self, *, device: str, precision: str, threads: int, seed: int):
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)
        if precision not in _PARAM_DTYPES:
            raise Unsupported(f"precision {precision!r} is not offered by the jax adapter")
        self.xla_flags_applied = not _backend_started()
        _configure_xla(device)
        # x64 is process-wide in jax; set it before any array exists so fp64 arrays stay fp64.
        jax.config.update("jax_enable_x64", precision == "fp64")
        platform = "gpu" if device == "cuda" else device
        try:
            self.dev = jax.devices(platform)[0]
        except RuntimeError as e:
            raise Unsupported(f"jax has no {platform} backend here: {e}") from None
        if precision == "tf32" and self.dev.platform != "gpu":
            raise Unsupported("tf32 is a GPU precision; use fp32 on CPU")
        if self.dev.platform == "gpu":  # fp32 means IEEE fp32; XLA GPU would otherwise use TF32
            matmul = "tensorfloat32" if precision == "tf32" else "highest"
            jax.config.update("jax_default_matmul_precision", matmul)
        jax.config.update("jax_default_device", self.dev)
        self.param_dtype = _PARAM_DTYPES[precision]
        self.compute_dtype = jnp.bfloat16 if precision == "bf16" else self.param_dtype
        self._pending: list[Any] = []  # outputs of infer steps issued since the last sync
        self.last_loss: jax.Array | None = None  # of the newest train step

    # ---- building ----
    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        self.spec = spec
        self.net = _Net(spec, self.compute_dtype, self.param_dtype)
        self.has_dropout = any(getattr(layer, "dropout", 0) for layer in spec.layers)
        self.optimizer_spec = optimizer
        self.tx = _optax(optimizer) if optimizer else None
        if spec.kind == "image":
            c, h, w = spec.input_shape
            example = jax.ShapeDtypeStruct((1, h, w, c), self.param_dtype)
        else:
            example = jax.ShapeDtypeStruct((1, spec.seq_len), jnp.int32)
        # The tree Flax expects (shapes only, nothing computed); canonical weights must map onto it.
        self.param_shapes = jax.eval_shape(
            lambda x: self.net.init(jax.random.key(0), x, train=False)["params"], example)
        # Canonical initial weights (torch's uniform scheme), not Flax's initialisers: those are a
        # jax.random program that XLA:CPU takes seconds to compile, and the suite loads its own anyway.
        self.load_weights(init_weights(spec, self.seed))
        self.key = jax.device_put(jax.random.key(self.seed), self.dev)  # dropout; advanced in the step
        self._train = jax.jit(self._train_fn, donate_argnums=(0, 1, 2))
        self._infer = jax.jit(lambda params, x: self.net.apply({"params": params}, x, train=False))
        self._forward = jax.jit(self._eval_loss)  # equivalence checks only: dropout off
        self._gradients = jax.jit(jax.value_and_grad(self._eval_loss, has_aux=True))

    def _init_opt_state(self):
        if not self.tx:
            return None
        # Committed to the device like the step's outputs, so the step's dispatch cache sees one signature.
        return jax.device_put(jax.jit(self.tx.init)(self.params), self.dev)

    def _train_fn(self, params, opt_state, key, x, y):
        """One step: forward, loss, backward, update. Params, opt state and dropout key are donated."""
        if self.has_dropout:  # advance the key on the device; nothing per step on the host
            key, dropout_key = jax.random.split(key)
            rngs = {"dropout": dropout_key}
        else:
            rngs = {}

        def loss_fn(p):
            return _loss(self.net.apply({"params": p}, x, train=True, rngs=rngs), y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss

    def _eval_loss(self, params, x, y):
        logits = self.net.apply({"params": params}, x, train=False)
        return _loss(logits, y), logits

    def parameter_count(self) -> int:
        # Exact: OptimizedLSTMCell has one bias per gate, linen GRUCell exactly b_ir, b_iz, b_in, b_hn.
        return sum(int(leaf.size) for leaf in jax.tree.leaves(self.params))

    # ---- canonical weights ----
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        shapes = self.spec.weight_shapes()
        check_weights(weights, shapes, shapes)
        host = {k: np.asarray(v, dtype=self.param_dtype) for k, v in weights.items()}
        tree = _to_native(self.spec, host)
        native = jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), tree)
        if native != jax.tree.map(lambda a: (a.shape, a.dtype), self.param_shapes):
            raise ValueError("canonical weights do not map onto this model's Flax parameter tree")
        self.params = jax.device_put(tree, self.dev)
        self.opt_state = self._init_opt_state()

    def dump_weights(self) -> dict[str, np.ndarray]:
        return _to_canonical(self.spec, jax.device_get(self.params))

    # ---- data and steps ----
    def put_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        if self.spec.kind == "image":
            x = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=self.param_dtype)  # NCHW -> NHWC
        else:
            x = np.asarray(x, dtype=np.int32)
        xd, yd = jax.device_put((x, np.asarray(y, dtype=np.int32)), self.dev)
        return jax.block_until_ready((xd, yd))

    def train_step(self, batch) -> None:
        self.params, self.opt_state, self.key, self.last_loss = self._train(
            self.params, self.opt_state, self.key, *batch)  # each step consumes the last one's outputs

    def infer_step(self, batch) -> None:
        self._pending.append(self._infer(self.params, batch[0]))  # independent steps: wait on each

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.opt_state, self.key, self.last_loss, self._pending))
        self._pending = []

    def forward(self, batch) -> tuple[np.ndarray, float]:
        x, y = batch
        loss, logits = self._forward(self.params, x, y)
        return np.asarray(logits).astype(self.param_dtype, copy=False), float(loss)

    def gradients(self, batch) -> dict[str, np.ndarray]:
        _, grads = self._gradients(self.params, *batch)
        return _to_canonical(self.spec, jax.device_get(grads))

    def peak_device_memory_bytes(self) -> int | None:
        if self.dev.platform != "gpu":
            return None
        stats = self.dev.memory_stats() or {}
        return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None

    def settings(self) -> dict[str, Any]:
        versions = {"jax": jax.__version__}
        for dist in ("jaxlib", "flax", "optax"):
            try:
                versions[dist] = md.version(dist)
            except md.PackageNotFoundError:
                continue
        s: dict[str, Any] = {
            "versions": versions,
            "backend": self.dev.platform,
            "device": self.dev.device_kind,
            "threads": self.threads,
            "cpu_affinity": len(os.sched_getaffinity(0)),  # what sizes XLA's CPU thread pool
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "xla_flags_applied": self.xla_flags_applied,  # False: a backend started before this adapter
            "precision": self.precision,
            "dtype": jnp.dtype(self.param_dtype).name,
            "compute_dtype": jnp.dtype(self.compute_dtype).name,
            "matmul_precision": jax.config.jax_default_matmul_precision or "default",
            "x64": bool(jax.config.jax_enable_x64),
            "compile": "jax.jit",
            "donation": "params, optimizer state, dropout key",
            "data_layout": "NHWC" if self.spec.kind == "image" else "(B, T) int32, batch-major",
            "optimizer_impl": "optax",
            "allocator_preallocation": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
        }
        if self.spec.kind == "sequence":
            s["recurrent"] = "flax.linen.RNN (lax.scan) over OptimizedLSTMCell / linen GRUCell"
        # The shared key (docs/spec.md 5.8): below "highest", XLA:GPU may run float32 dots as TF32.
        s["fp32_math"] = "tf32" if self.dev.platform == "gpu" and s["matmul_precision"] != "highest" else "ieee"
        if self.dev.platform == "gpu":
            s["gpu"] = self.dev.device_kind
            s["versions"]["gpu_runtime"] = self.dev.client.platform_version  # CUDA / cuDNN as XLA sees them
        return s
