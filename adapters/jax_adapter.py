"""JAX adapter: Flax linen modules (NHWC, explicit padding), Optax; train and infer steps each one jax.jit.

XLA reads XLA_FLAGS and XLA_PYTHON_CLIENT_PREALLOCATE when its backend starts, which jax does lazily on
first use (not at import), so `JaxAdapter.__init__` can still set them before touching any device.
"""
from __future__ import annotations

import collections
import importlib.metadata as md
import itertools
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

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

from xfbench.harness.adapter import Adapter, PeakKernel, Unsupported
from xfbench.harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent, feature_shapes
from xfbench.harness.optimizers import OptimizerSpec
from xfbench.harness.weights import check_weights

_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid}
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
    # float32 also under bf16: docs/spec.md section 5.8 keeps the embedding and recurrent layers in float32.
    return nn.Embed(layer.vocab, layer.dim, dtype=net.param_dtype, param_dtype=net.param_dtype, name=layer.name)(x)


class _Recurrent(nn.Module):
    """One LSTM or GRU layer over the whole sequence from a zero state, in canonical gate order.

    The input projection of all T steps is one matmul before the scan; `lax.scan` then carries only
    the recurrent matmul and the gates. This is what cuDNN, oneDNN and Keras do; `flax.linen`'s cells
    under `nn.RNN` project the input inside the scan, one small matmul per step, measured 1.3-1.9x slower
    to train on CPU (docs/fairness.md).
    """

    cell: str  # "lstm" | "gru"
    hidden: int
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):  # (B, T, in) -> (B, T, hidden)
        h, gates = self.hidden, 4 if self.cell == "lstm" else 3
        zeros = nn.initializers.zeros  # canonical weights are always loaded over these
        wi = self.param("wi", zeros, (x.shape[-1], gates * h), self.param_dtype)
        wh = self.param("wh", zeros, (h, gates * h), self.param_dtype).astype(self.dtype)
        if self.cell == "lstm":
            bias, b_hn = self.param("b", zeros, (gates * h,), self.param_dtype), None
        else:  # reset-after GRU: b_hn sits inside the reset gate's product
            bias = self.param("bi", zeros, (gates * h,), self.param_dtype)
            b_hn = self.param("bhn", zeros, (h,), self.param_dtype).astype(self.dtype)
        # (B, T, in) x (in, G*H) -> time-major (T, B, G*H), the layout lax.scan walks.
        xp = jnp.einsum("bti,ig->tbg", x.astype(self.dtype), wi.astype(self.dtype)) + bias.astype(self.dtype)

        def lstm_step(carry, xt):
            hp, c = carry
            i, f, g, o = jnp.split(xt + hp @ wh, 4, axis=-1)
            c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
            hn = nn.sigmoid(o) * jnp.tanh(c)
            return (hn, c), hn

        def gru_step(hp, xt):
            xr, xz, xn = jnp.split(xt, 3, axis=-1)
            hr, hz, hn = jnp.split(hp @ wh, 3, axis=-1)
            r, z = nn.sigmoid(xr + hr), nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * (hn + b_hn))
            hp = (1 - z) * n + z * hp
            return hp, hp

        zero = jnp.zeros((x.shape[0], h), self.dtype)
        step, carry = (lstm_step, (zero, zero)) if self.cell == "lstm" else (gru_step, zero)
        _, ys = jax.lax.scan(step, carry, xp)
        return ys.transpose(1, 0, 2)


def _recurrent(net: "_Net", layer: Recurrent, x, train: bool):  # (B, T, in) -> (B, T, hidden)
    for i in range(layer.layers):  # float32 also under bf16 (docs/spec.md section 5.8)
        x = _Recurrent(layer.cell, layer.hidden, net.param_dtype, net.param_dtype, name=f"{layer.cell}{i}")(x)
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
        elif isinstance(layer, Recurrent):  # canonical gate order: only the transposes differ
            for i in range(layer.layers):
                p = f"{layer.cell}{i}"
                cell = {"wi": w[f"{p}.weight_ih"].T, "wh": w[f"{p}.weight_hh"].T}
                if layer.cell == "lstm":
                    cell["b"] = w[f"{p}.bias"]
                else:
                    cell.update(bi=w[f"{p}.bias_ih"], bhn=w[f"{p}.bias_hn"])
                tree[p] = cell
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
                p = f"{layer.cell}{i}"
                cell = tree[p]
                out[f"{p}.weight_ih"], out[f"{p}.weight_hh"] = cell["wi"].T, cell["wh"].T
                if layer.cell == "lstm":
                    out[f"{p}.bias"] = cell["b"]
                else:
                    out[f"{p}.bias_ih"], out[f"{p}.bias_hn"] = cell["bi"], cell["bhn"]
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


def command_buffers(xla_flags: str) -> str:
    """XLA:GPU's command buffers (CUDA graphs of a jitted step's kernels) as XLA_FLAGS leaves them.

    XLA turns them on by default (fusions, cuBLAS, cuDNN and custom calls, in graphs of at least 5 ops;
    loops are not captured); `--xla_gpu_enable_command_buffer=` (empty) turns them off, a list picks the kinds.
    """
    found = re.findall(r"--xla_gpu_enable_command_buffer=(\S*)", xla_flags)
    if not found:
        return "XLA default (on)"
    return f"off (XLA_FLAGS: --xla_gpu_enable_command_buffer={found[-1]})" if found[-1] in ("", "''", '""') else \
        f"XLA_FLAGS: --xla_gpu_enable_command_buffer={found[-1]}"


def cuda_versions(client: Any) -> dict[str, str]:
    """The GPU backend's CUDA and cuDNN for the manifest's `versions`; each absent where unknown.

    jax has no public API for them (jax-ml/jax#32729): CUDA is the client's `cuda_version` where this jaxlib
    has it, else the "cuda NNNNN" in its `platform_version`; beside the CUDA plugin's version, cuDNN is the
    version of the nvidia-cudnn wheel that `jax[cudaNN]` installs (none with `jax[cudaNN_local]`).
    """
    out: dict[str, str] = {}
    number = getattr(client, "cuda_version", None)
    if not isinstance(number, int):
        found = re.search(r"cuda (\d+)", str(getattr(client, "platform_version", "")))
        number = int(found.group(1)) if found else None
    if number:
        out["cuda"] = f"{number // 1000}.{number % 1000 // 10}"  # 12080 -> "12.8", as torch.version.cuda
    for major in [number // 1000] if number else [13, 12]:
        try:
            out[f"jax-cuda{major}-plugin"] = md.version(f"jax-cuda{major}-plugin")
        except md.PackageNotFoundError:
            continue
        try:
            out["cudnn"] = md.version(f"nvidia-cudnn-cu{major}")
        except md.PackageNotFoundError:
            pass
        break
    return out


def _done(fn: Callable[..., Any], *args: Any) -> Future:
    """`fn(*args)` run now, as a finished Future: the prefetch loop without workers."""
    future: Future = Future()
    future.set_result(fn(*args))
    return future


# What one jax.jit call covers (docs/spec.md section 5.8): forward, loss, backward and optimizer update in
# training, the forward in inference.
COMPILE_SCOPE = "whole step, compiled"


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
        self._inflight: jax.Array | None = None  # the output of the newest infer step or roofline kernel
        self.last_loss: jax.Array | None = None  # of the newest train step
        self.params = self.opt_state = self.key = None  # `sync` before `build` (the roofline) waits for nothing here

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
        # The tree Flax expects (shapes only, nothing computed or allocated): canonical weights must map
        # onto it. No parameters exist until `load_weights`, so a case holds one copy of its weights.
        self.param_shapes = jax.eval_shape(
            lambda x: self.net.init(jax.random.key(0), x, train=False)["params"], example)
        self.params = self.opt_state = None
        self.key = jax.device_put(jax.random.key(self.seed), self.dev)  # dropout; advanced in the step
        # The functions `bench run` times; `forward` and `gradients` run the same ones (docs/spec.md 6.1).
        self._train = jax.jit(self._train_fn, donate_argnums=(0, 1, 2))
        self._infer = jax.jit(lambda params, x: self.net.apply({"params": params}, x, train=False))
        self._loss = jax.jit(_loss)
        self._gradients = jax.jit(jax.grad(self._loss_fn))

    def _init_opt_state(self):
        if not self.tx:
            return None
        # Committed to the device like the step's outputs, so the step's dispatch cache sees one signature.
        return jax.device_put(jax.jit(self.tx.init)(self.params), self.dev)

    def _loss_fn(self, params, x, y, rngs=None):
        """The training loss; `rngs` given: dropout on (a train step), else off (the gradient check)."""
        return _loss(self.net.apply({"params": params}, x, train=rngs is not None, rngs=rngs or {}), y)

    def _train_fn(self, params, opt_state, key, x, y):
        """One step: forward, loss, backward, update. Params, opt state and dropout key are donated."""
        rngs = {}
        if self.has_dropout:  # advance the key on the device; nothing per step on the host
            key, dropout_key = jax.random.split(key)
            rngs = {"dropout": dropout_key}
        loss, grads = jax.value_and_grad(self._loss_fn)(params, x, y, rngs)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss

    def parameter_count(self) -> int:
        # Exact: one bias per LSTM gate; the GRU's b_ir, b_iz, b_in and b_hn.
        return sum(int(leaf.size) for leaf in jax.tree.leaves(self.param_shapes))

    # ---- canonical weights ----
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        shapes = self.spec.weight_shapes()
        check_weights(weights, shapes, shapes)
        host = {k: np.asarray(v, dtype=self.param_dtype) for k, v in weights.items()}
        tree = _to_native(self.spec, host)
        native = jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), tree)
        if native != jax.tree.map(lambda a: (a.shape, a.dtype), self.param_shapes):
            raise ValueError("canonical weights do not map onto this model's Flax parameter tree")
        self.params = self.opt_state = None  # the old copy goes before the new one arrives
        self.params = jax.device_put(tree, self.dev)
        self.opt_state = self._init_opt_state()

    def _loaded(self):
        if self.params is None:
            raise RuntimeError("no weights: call load_weights before any step")
        return self.params

    def dump_weights(self) -> dict[str, np.ndarray]:
        return _to_canonical(self.spec, jax.device_get(self._loaded()))

    # ---- data and steps ----
    def _host_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A canonical batch in this adapter's layout and dtypes, still in host memory."""
        if self.spec.kind == "image":
            x = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=self.param_dtype)  # NCHW -> NHWC
        else:
            x = np.asarray(x, dtype=np.int32)
        return x, np.asarray(y, dtype=np.int32)

    def put_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        xd, yd = jax.device_put(self._host_batch(x, y), self.dev)
        return jax.block_until_ready((xd, yd))

    def input_pipeline(self, x: np.ndarray, y: np.ndarray, order: Iterable[np.ndarray],
                       workers: int = 0) -> Iterator[tuple[jax.Array, jax.Array]]:
        # A NumPy iterator with device prefetch (the pattern of flax.jax_utils.prefetch_to_device): `device_put`
        # returns before the copy is done, so keeping `max(2, workers)` batches put ahead overlaps their
        # transfer with the steps. With workers, the gather, layout and dtype (NumPy, which releases the GIL
        # while it copies) and the put run on that many threads, their results taken in the order's order.
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        return self._prefetch(x, y, iter(order), workers)

    def _prefetch(self, x: np.ndarray, y: np.ndarray, order: Iterator[np.ndarray],
                  workers: int) -> Iterator[tuple[jax.Array, jax.Array]]:
        def put(idx: np.ndarray) -> tuple[jax.Array, jax.Array]:
            return jax.device_put(self._host_batch(x[idx], y[idx]), self.dev)

        pool = ThreadPoolExecutor(workers, thread_name_prefix="xfbench-input") if workers else None
        start = pool.submit if pool else _done
        queue = collections.deque(start(put, idx) for idx in itertools.islice(order, max(2, workers)))
        try:
            while queue:
                batch = queue.popleft().result()
                queue.extend(start(put, idx) for idx in itertools.islice(order, 1))  # the next one, before the step
                yield batch
        finally:  # exhausted or closed early: no thread outlives the pipeline
            if pool:
                pool.shutdown(cancel_futures=True)

    def pipeline_description(self, workers: int) -> str:
        where = f"on {workers} threads (ThreadPoolExecutor)" if workers else "in the training thread"
        return f"NumPy gather {where}, jax.device_put {max(2, workers)} batches ahead"

    def train_step(self, batch) -> None:
        self.params, self.opt_state, self.key, self.last_loss = self._train(
            self._loaded(), self.opt_state, self.key, *batch)  # each step consumes the last one's outputs

    def infer_step(self, batch) -> None:
        out = self._infer(self._loaded(), batch[0])
        # Independent steps: wait for the previous one while this one runs, so that at most two outputs are
        # alive (as in torch and TensorFlow) and every step has finished by `sync`, whatever order the
        # device runs them in.
        if self._inflight is not None:
            self._inflight.block_until_ready()
        self._inflight = out

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.opt_state, self.key, self.last_loss, self._inflight))
        self._inflight = None

    def forward(self, batch) -> tuple[np.ndarray, float]:
        x, y = batch
        logits = self._infer(self._loaded(), x)  # the timed inference function itself
        return np.asarray(logits).astype(self.param_dtype, copy=False), float(self._loss(logits, y))

    def gradients(self, batch) -> dict[str, np.ndarray]:
        # The train step's own loss function, dropout off; the step check runs the timed step itself.
        return _to_canonical(self.spec, jax.device_get(self._gradients(self._loaded(), *batch)))

    # ---- the roofline (xfbench.harness.measure.peak) ----
    def _hold(self, out: jax.Array) -> None:
        """Keep the newest output for `sync`, after waiting for the one before (as `infer_step` does)."""
        if self._inflight is not None:
            self._inflight.block_until_ready()
        self._inflight = out

    def peak_gemm(self, a: np.ndarray, b: np.ndarray) -> PeakKernel:
        # float32 whatever the case's precision; on a GPU the constructor set "highest" (IEEE) matmul precision.
        ad, bd = jax.device_put((np.asarray(a, np.float32), np.asarray(b, np.float32)), self.dev)
        matmul = jax.jit(jnp.matmul)
        return PeakKernel(run=lambda: self._hold(matmul(ad, bd)), result=lambda: np.asarray(matmul(ad, bd)),
                          what="jax.jit(jnp.matmul)")

    def peak_copy(self, x: np.ndarray) -> PeakKernel:
        # `dst.at[:].set(src)` with `dst` donated compiles to one XLA copy into dst's own buffer, jax's in-place
        # idiom. Without donation every call writes a fresh buffer (jit(jnp.copy), `x * 1.0`) and times the
        # allocator's page faults too: 2.3 against 11.6 GB/s for 256 MiB on a 2-core CPU.
        copy = jax.jit(lambda src, dst: dst.at[:].set(src), donate_argnums=1)
        src = jax.device_put(np.asarray(x, np.float32), self.dev)
        state = {"dst": jnp.zeros_like(src)}

        def run() -> None:
            state["dst"] = copy(src, state["dst"])  # each copy consumes (donates) the last one's buffer
            self._inflight = state["dst"]

        return PeakKernel(run=run, result=lambda: np.asarray(state["dst"]),
                          what="jax.jit(dst.at[:].set(src)), dst donated")

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
            # XLA:CPU sizes its intra-op pool from the CPU affinity (the worker pins it), not from a setting.
            "threads": len(os.sched_getaffinity(0)) if self.dev.platform == "cpu" else self.threads,
            "threads_requested": self.threads,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "xla_flags_applied": self.xla_flags_applied,  # False: a backend started before this adapter
            "precision": self.precision,
            "dtype": jnp.dtype(self.param_dtype).name,
            "compute_dtype": jnp.dtype(self.compute_dtype).name,
            "matmul_precision": jax.config.jax_default_matmul_precision or "default",
            "x64": bool(jax.config.jax_enable_x64),
            "compile": "jax.jit",
            "compile_scope": COMPILE_SCOPE,
            "donation": "params, optimizer state, dropout key",
            "data_layout": "NHWC" if self.spec.kind == "image" else "(B, T) int32, batch-major",
            "optimizer_impl": "optax",
            "allocator_preallocation": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
        }
        if self.spec.kind == "sequence":
            s["recurrent_impl"] = "lax.scan over the cell, input projection hoisted out of the scan (one matmul)"
        # The shared key (docs/spec.md 5.8): below "highest", XLA:GPU may run float32 dots as TF32.
        s["fp32_math"] = "tf32" if self.dev.platform == "gpu" and s["matmul_precision"] != "highest" else "ieee"
        if self.dev.platform == "gpu":
            s["gpu"] = self.dev.device_kind
            s["versions"]["gpu_runtime"] = self.dev.client.platform_version  # CUDA / cuDNN as XLA sees them
            s["versions"].update(cuda_versions(self.dev.client))  # cuda, cudnn: the keys torch and TensorFlow report
            s["command_buffers"] = command_buffers(os.environ.get("XLA_FLAGS", ""))  # docs/gpu.md
        return s
