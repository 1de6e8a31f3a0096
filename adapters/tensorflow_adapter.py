"""TensorFlow adapter: Keras 3 layers on TensorFlow, NHWC, train and infer steps as tf.function (optionally XLA)."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

os.environ["KERAS_BACKEND"] = "tensorflow"  # Keras 3 reads its backend once, at its first import
# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 (VNNI, BF16, AMX) features;
# elsewhere it runs Eigen kernels, and on a 2-core AVX2 machine those trained AlexNet 3.2x and the LSTM 2.3x
# slower (a transposed dense backward matmul: 222 ms against 22 ms). torch uses oneDNN on every x86 CPU, so
# the expert setting is on; a value the user set is kept, and the manifest records it (docs/fairness.md).
_TF_IMPORTED_BEFORE = "tensorflow" in sys.modules  # then TensorFlow has read the variable already
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

from xfbench.harness.adapter import Adapter, PeakKernel, Unsupported  # noqa: E402
from xfbench.harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent  # noqa: E402
from xfbench.harness.optimizers import OptimizerSpec  # noqa: E402
from xfbench.harness.weights import check_weights  # noqa: E402

# precision -> (Keras dtype policy, floatx); floatx sets the dtype of the optimizer's learning-rate variable.
_POLICIES = {"fp32": ("float32", "float32"), "tf32": ("float32", "float32"),
             "fp64": ("float64", "float64"), "bf16": ("mixed_bfloat16", "float32")}


# ---- optimizers with torch.optim math that native Keras does not offer ----

class _TorchAdam(keras.optimizers.Adam):
    """torch.optim.Adam: bias-corrected m-hat and v-hat, eps added outside the square root."""

    def update_step(self, gradient, variable, learning_rate):
        dt = variable.dtype
        lr, g = ops.cast(learning_rate, dt), ops.cast(gradient, dt)
        # Python floats must not round through float32 in float64 mode.
        b1, b2, eps = (ops.convert_to_tensor(v, dtype=dt) for v in (self.beta_1, self.beta_2, self.epsilon))
        step = ops.cast(self.iterations + 1, dt)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (g - m) * (1 - b1))
        self.assign(v, v * b2 + g * g * (1 - b2))
        denom = ops.sqrt(v) / ops.sqrt(1 - b2 ** step) + eps
        self.assign_sub(variable, (lr / (1 - b1 ** step)) * m / denom)


class _TorchRMSprop(keras.optimizers.RMSprop):
    """torch.optim.RMSprop (no momentum, not centered): eps added outside the square root."""

    def update_step(self, gradient, variable, learning_rate):
        dt = variable.dtype
        lr, g = ops.cast(learning_rate, dt), ops.cast(gradient, dt)
        rho, eps = (ops.convert_to_tensor(v, dtype=dt) for v in (self.rho, self.epsilon))
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(v, v * rho + g * g * (1 - rho))
        self.assign_sub(variable, lr * g / (ops.sqrt(v) + eps))


def _keras_optimizer(o: OptimizerSpec) -> keras.optimizers.Optimizer:
    p = o.params
    # np.float64 is a float to Keras's checks, and its ops.cast keeps all 53 bits where a Python float
    # would round through float32 (SGD momentum, Adagrad's initial accumulator).
    f = np.float64
    if o.name == "sgd":
        return keras.optimizers.SGD(p["lr"])
    if o.name == "momentum":
        return keras.optimizers.SGD(p["lr"], momentum=f(p["momentum"]), nesterov=p["nesterov"])
    if o.name == "adagrad":
        return keras.optimizers.Adagrad(p["lr"], initial_accumulator_value=f(p["initial_accumulator"]),
                                        epsilon=p["eps"])
    if o.name == "adadelta":
        return keras.optimizers.Adadelta(p["lr"], rho=p["rho"], epsilon=p["eps"])
    if o.name == "rmsprop":
        return _TorchRMSprop(p["lr"], rho=p["rho"], epsilon=p["eps"], name="rmsprop")
    if o.name == "adam":
        return _TorchAdam(p["lr"], beta_1=p["beta1"], beta_2=p["beta2"], epsilon=p["eps"], name="adam")
    raise Unsupported(f"optimizer {o.name!r} is not implemented by the tensorflow adapter")


class _HoldRecurrentRZBias(keras.constraints.Constraint):
    """Keeps a Keras GRU bias (2, 3H) = [input; recurrent] at bias[1, :2H] = 0.

    The recurrent z and r biases duplicate the input ones (docs/spec.md section 2); the optimizer applies this
    after every update, so no optimizer moves them, whatever its state holds.
    """

    def __call__(self, w):
        h = w.shape[1] // 3
        keep = np.ones(w.shape)
        keep[1, :2 * h] = 0.0
        return w * ops.convert_to_tensor(keep, dtype=w.dtype)


# ---- canonical <-> Keras weight layouts ----

def _same(a: np.ndarray) -> np.ndarray:
    return a


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T


def _swap_first_blocks(a: np.ndarray) -> np.ndarray:
    """Gate order r, z, n <-> z, r, h along axis 0 (its own inverse)."""
    h = a.shape[0] // 3
    return np.concatenate([a[h:2 * h], a[:h], a[2 * h:]])


@dataclass(frozen=True)
class _Slot:
    """Where one canonical tensor lives: a Keras variable (or part of it) and the layout conversions."""

    variable: Any  # keras.Variable
    index: Any = ()  # numpy index of the part holding it; () = the whole variable
    to_keras: Callable[[np.ndarray], np.ndarray] = _same
    to_canonical: Callable[[np.ndarray], np.ndarray] = _same


def _conv_slots(name: str, kl: layers.Conv2D) -> dict[str, _Slot]:
    weight = _Slot(kl.kernel, (), lambda w: w.transpose(2, 3, 1, 0),  # (O, I, kh, kw) -> (kh, kw, I, O)
                   lambda k: k.transpose(3, 2, 0, 1))
    return {f"{name}.weight": weight, f"{name}.bias": _Slot(kl.bias)}


def _dense_slots(name: str, kl: layers.Dense, flat_hwc: tuple[int, int, int] | None) -> dict[str, _Slot]:
    if flat_hwc is None or flat_hwc[:2] == (1, 1):
        weight = _Slot(kl.kernel, (), _transpose, _transpose)
    else:
        # Keras flattens NHWC in (H, W, C) order, the canonical order is (C, H, W). Permuting this kernel's
        # rows once on load/dump costs nothing per step; a Permute layer before Flatten would copy the
        # activations (and their gradient) every step.
        h, w, c = flat_hwc
        weight = _Slot(kl.kernel, (),
                       lambda a: a.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1),
                       lambda k: k.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(k.shape[1], -1))
    return {f"{name}.weight": weight, f"{name}.bias": _Slot(kl.bias)}


def _recurrent_slots(name: str, kl: layers.RNN) -> dict[str, _Slot]:
    cell = kl.cell
    if isinstance(kl, layers.LSTM):  # same gate order i, f, c(g), o and one bias
        return {f"{name}.weight_ih": _Slot(cell.kernel, (), _transpose, _transpose),
                f"{name}.weight_hh": _Slot(cell.recurrent_kernel, (), _transpose, _transpose),
                f"{name}.bias": _Slot(cell.bias)}
    h = cell.units  # Keras GRU: gate order z, r, h; bias (2, 3H) = [input; recurrent]
    def gates_to_keras(w): return _swap_first_blocks(w).T
    def gates_to_canonical(k): return _swap_first_blocks(k.T)
    return {f"{name}.weight_ih": _Slot(cell.kernel, (), gates_to_keras, gates_to_canonical),
            f"{name}.weight_hh": _Slot(cell.recurrent_kernel, (), gates_to_keras, gates_to_canonical),
            f"{name}.bias_ih": _Slot(cell.bias, 0, _swap_first_blocks, _swap_first_blocks),
            f"{name}.bias_hn": _Slot(cell.bias, (1, slice(2 * h, 3 * h)))}


# ---- the model: one small function per spec layer type, each returning Keras layers ----

def _conv(layer: Conv) -> list[layers.Layer]:
    # Explicit padding: Keras "same" pads asymmetrically where torch pads (p, p) (docs/spec.md section 1.2).
    pad = [layers.ZeroPadding2D(layer.padding)] if layer.padding else []
    return pad + [layers.Conv2D(layer.out_channels, layer.kernel, strides=layer.stride, padding="valid",
                                activation=layer.activation, name=layer.name)]


def _pool(layer: Pool) -> list[layers.Layer]:
    pool = layers.MaxPooling2D if layer.kind == "max" else layers.AveragePooling2D
    return [pool(layer.size, layer.stride, padding="valid")]


def _dense(layer: Dense) -> list[layers.Layer]:
    drop = [layers.Dropout(layer.dropout)] if layer.dropout else []  # seeded by keras.utils.set_random_seed
    return drop + [layers.Dense(layer.units, activation=layer.activation, name=layer.name)]


def _embedding(layer: Embedding, dtype: str | None = None) -> list[layers.Layer]:
    return [layers.Embedding(layer.vocab, layer.dim, name=layer.name, dtype=dtype)]


def _recurrent(layer: Recurrent, dtype: str | None = None, use_cudnn: bool | str = "auto") -> list[layers.Layer]:
    if layer.cell == "lstm":
        return [layers.LSTM(layer.hidden, return_sequences=True, name=f"lstm{i}", dtype=dtype, use_cudnn=use_cudnn)
                for i in range(layer.layers)]
    return [layers.GRU(layer.hidden, return_sequences=True, reset_after=True, name=f"gru{i}", dtype=dtype,
                       use_cudnn=use_cudnn, bias_constraint=_HoldRecurrentRZBias()) for i in range(layer.layers)]


_BUILDERS = {Conv: _conv, Pool: _pool, Flatten: lambda layer: [layers.Flatten()], Dense: _dense,
             Embedding: _embedding, Recurrent: _recurrent}


def _build_model(spec: ModelSpec, *, sequence_dtype: str | None = None,
                 use_cudnn: bool | str = "auto") -> tuple[keras.Model, dict[str, _Slot]]:
    """The Keras functional model of `spec` and where each canonical weight lives in it.

    `sequence_dtype` overrides the dtype policy of the embedding and recurrent layers (float32 under bf16,
    docs/spec.md section 5.8); `use_cudnn` is the recurrent layers' cuDNN switch.
    """
    options = {Embedding: {"dtype": sequence_dtype}, Recurrent: {"dtype": sequence_dtype, "use_cudnn": use_cudnn}}
    if spec.kind == "image":
        c, h, w = spec.input_shape
        inputs = keras.Input((h, w, c), name="images")  # NHWC
    else:
        inputs = keras.Input(spec.input_shape, dtype="int32", name="tokens")
    x, slots, flat_hwc = inputs, {}, None
    for layer in spec.layers:
        for kl in _BUILDERS[type(layer)](layer, **options.get(type(layer), {})):
            if isinstance(kl, layers.Flatten):
                flat_hwc = tuple(x.shape[1:])
            x = kl(x)
            if isinstance(kl, layers.Conv2D):
                slots.update(_conv_slots(kl.name, kl))
            elif isinstance(kl, layers.Dense):
                slots.update(_dense_slots(kl.name, kl, flat_hwc))
                flat_hwc = None
            elif isinstance(kl, layers.Embedding):
                slots[f"{kl.name}.weight"] = _Slot(kl.embeddings)
            elif isinstance(kl, (layers.LSTM, layers.GRU)):
                slots.update(_recurrent_slots(kl.name, kl))
    return keras.Model(inputs, x, name=spec.name), slots


class TensorFlowAdapter(Adapter):
    def __init__(self, *, device: str, precision: str, threads: int, seed: int, jit_compile: bool = False):
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)
        if keras.backend.backend() != "tensorflow":
            raise Unsupported(f"Keras was imported with the {keras.backend.backend()} backend")
        gpus = tf.config.list_physical_devices("GPU")
        if device == "cuda" and not gpus:
            raise Unsupported("TensorFlow sees no GPU on this machine")
        if precision == "tf32" and device != "cuda":
            raise Unsupported("tf32 is a GPU precision; use fp32 on CPU")
        # Runtime knobs are fixed once TensorFlow's context exists (a second adapter in one process).
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            # inter-op = threads beat 1 and 0 (TF's default) for lenet5 and lstm training on 2 cores.
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        with contextlib.suppress(RuntimeError):
            if device == "cuda":
                for gpu in gpus:
                    tf.config.experimental.set_memory_growth(gpu, True)
            elif gpus:
                tf.config.set_visible_devices([], "GPU")
        if device == "cuda":
            tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
        keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow; Keras seed generators (dropout)
        self.jit_compile = jit_compile
        # XLA cannot compile cuDNN's RNN op (CudnnRNNV3), which Keras picks on a GPU (Keras's own fit turns XLA
        # off for such a model). Under jit_compile the recurrent layers run Keras's RNN loop instead, recorded
        # as `recurrent_impl`; on a CPU Keras never picks cuDNN, so this changes nothing there.
        self.use_cudnn: bool | str = False if jit_compile else "auto"
        self.tf_device = "/GPU:0" if device == "cuda" else "/CPU:0"
        self.policy, self.floatx = _POLICIES[precision]
        self._last: tf.Tensor | None = None  # a scalar of the latest step's result, read by sync on CPU

    @contextlib.contextmanager
    def _scope(self):
        """Device and Keras dtype policy for building and tracing; the global policy is restored after."""
        policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
        keras.config.set_floatx(self.floatx)
        keras.config.set_dtype_policy(self.policy)
        try:
            with tf.device(self.tf_device):
                yield
        finally:
            keras.config.set_floatx(floatx)
            keras.config.set_dtype_policy(policy)

    # ---- building ----
    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        self.spec = spec
        with self._scope():
            self.model, self._slots = _build_model(spec, sequence_dtype="float32" if self.precision == "bf16" else None,
                                                   use_cudnn=self.use_cudnn)
        self.variables = self.model.trainable_variables
        self.dtype = self.variables[0].dtype  # float64 in fp64, float32 otherwise (bf16 computes in bf16)
        self.optimizer_spec = optimizer
        fn = tf.function(jit_compile=self.jit_compile, autograph=False)
        self._infer_fn = fn(self._infer)
        self._gradients_fn = fn(self._gradients)
        self._reset_optimizer()

    def _reset_optimizer(self) -> None:
        self.opt, self._train_fn = None, None
        if self.optimizer_spec:
            with self._scope():
                self.opt = _keras_optimizer(self.optimizer_spec)
                self.opt.build(self.variables)  # slots exist before tracing, never inside it
            self._train_fn = tf.function(self._train, jit_compile=self.jit_compile, autograph=False)

    def parameter_count(self) -> int:
        n = sum(int(np.prod(v.shape)) for v in self.variables)
        gru = [kl for kl in self.model.layers if isinstance(kl, layers.GRU)]
        return n - sum(2 * kl.cell.units for kl in gru)  # recurrent r, z biases held at zero

    # ---- canonical weights ----
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(weights, self._slots)
        # Parts of a variable no canonical tensor names (the GRU's recurrent r, z biases) stay zero.
        values = {id(v): np.zeros(v.shape, v.dtype) for v in self.variables}
        for name, slot in self._slots.items():
            target = values[id(slot.variable)][slot.index]
            value = slot.to_keras(np.asarray(weights[name]))
            if target.shape != value.shape:
                raise ValueError(f"{name}: canonical shape {np.shape(weights[name])} does not fit "
                                 f"{slot.variable.path} {tuple(slot.variable.shape)}")
            values[id(slot.variable)][slot.index] = value
        for v in self.variables:
            v.assign(values[id(v)])
        self._reset_optimizer()

    def _to_canonical(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        by_var = {id(v): a for v, a in zip(self.variables, arrays)}
        return {name: np.array(s.to_canonical(by_var[id(s.variable)][s.index]))
                for name, s in self._slots.items()}

    def dump_weights(self) -> dict[str, np.ndarray]:
        return self._to_canonical([v.numpy() for v in self.variables])

    # ---- data and steps ----
    def put_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        if self.spec.kind == "image":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=self.dtype)  # NCHW -> NHWC
        else:
            x = np.asarray(x, dtype=np.int32)
        with tf.device(self.tf_device):
            return tf.identity(tf.constant(x)), tf.identity(tf.constant(np.asarray(y, dtype=np.int32)))

    def _loss(self, logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        logits = tf.reshape(logits, [-1, logits.shape[-1]])
        if logits.dtype == tf.bfloat16:
            logits = tf.cast(logits, tf.float32)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.reshape(y, [-1]), logits))

    # The three bodies below run only while tf.function traces them.
    def _train(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with self._scope():
            with tf.GradientTape() as tape:
                loss = self._loss(self.model(x, training=True), y)
            # Dense embedding gradient, as torch's default: sparse updates change Adam/RMSprop math.
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.variables)]
            self.opt.apply_gradients(zip(grads, self.variables))
            # Read after the update (automatic control dependencies order it): sync waits on it.
            return tf.reshape(self.variables[-1].value, [-1])[0]

    def _infer(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with self._scope():
            logits = self.model(x, training=False)
            # The full logits stay an output so XLA cannot prune the computation down to one element.
            return logits, tf.reshape(logits, [-1])[0]

    def _gradients(self, x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
        with self._scope():
            with tf.GradientTape() as tape:
                loss = self._loss(self.model(x, training=False), y)  # dropout off
            return [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.variables)]

    def train_step(self, batch) -> None:
        self._last = self._train_fn(*batch)

    def infer_step(self, batch) -> None:
        self._last = self._infer_fn(batch[0])[1]

    def sync(self) -> None:
        if self.device == "cuda":
            tf.test.experimental.sync_devices()
        elif self._last is not None:
            self._last.numpy()  # a value of the last step's update (train) or logits (infer)

    def forward(self, batch) -> tuple[np.ndarray, float]:
        x, y = batch
        logits, _ = self._infer_fn(x)
        return np.asarray(logits.numpy(), dtype=self.dtype), float(self._loss(logits, y))  # bf16 -> fp32

    def gradients(self, batch) -> dict[str, np.ndarray]:
        return self._to_canonical([g.numpy() for g in self._gradients_fn(*batch)])

    # ---- the roofline (xfbench.harness.measure.peak) ----
    def _on_device(self, a: np.ndarray) -> tf.Tensor:
        with tf.device(self.tf_device):
            return tf.identity(tf.constant(np.asarray(a, np.float32)))

    def _hold(self, out: tf.Tensor) -> None:
        """Keep the newest output; on CPU `sync` reads one element of it (`.numpy()` of the whole output
        would copy it: 0.5 s for 256 MiB). On a GPU `sync` waits for the device and reads nothing."""
        self._peak_out = out
        self._last = out[(0,) * len(out.shape)] if self.device != "cuda" else None

    def peak_gemm(self, a: np.ndarray, b: np.ndarray) -> PeakKernel:
        # float32 whatever the case's precision; on a GPU the constructor turned TF32 off unless "tf32".
        # One tf.function, XLA-compiled under jit_compile as the adapter's steps are; tf.linalg.matmul runs
        # oneDNN's (CPU) or cuBLAS's (GPU) GEMM either way.
        ad, bd = self._on_device(a), self._on_device(b)
        matmul = tf.function(lambda: tf.linalg.matmul(ad, bd), jit_compile=self.jit_compile, autograph=False)

        def run() -> None:
            with tf.device(self.tf_device):
                self._hold(matmul())

        return PeakKernel(run=run, result=lambda: self._peak_out.numpy(),
                          what="tf.function(tf.linalg.matmul" + (", jit_compile=True)" if self.jit_compile else ")"))

    def peak_copy(self, x: np.ndarray) -> PeakKernel:
        # TensorFlow has no `out=`: DeepCopy (eager, one op) writes a fresh buffer per call, which is what a copy
        # costs in TensorFlow. tf.identity only aliases its input, and grappler turns `x * 1.0` in a tf.function
        # into an identity (64 GB/s on a machine that copies at 19).
        xd = self._on_device(x)

        def run() -> None:
            with tf.device(self.tf_device):
                self._hold(tf.raw_ops.DeepCopy(x=xd))

        return PeakKernel(run=run, result=lambda: self._peak_out.numpy(), what="tf.raw_ops.DeepCopy (eager)")

    def peak_device_memory_bytes(self) -> int | None:
        if self.device != "cuda":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "interop_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "precision": self.precision,
            "dtype": str(self.dtype),
            "compute_dtype": self.model.compute_dtype,
            "autocast": "keras mixed_bfloat16 policy" if self.precision == "bf16" else None,
            "compile": "tf.function(jit_compile=True)" if self.jit_compile else "tf.function",
            # docs/spec.md 5.8: one tf.function per step (forward, loss, backward, update; or the forward),
            # XLA-compiled, or a TensorFlow graph of library kernels without fusion.
            "compile_scope": "whole step, compiled" if self.jit_compile else "whole step, graph",
            "data_layout": "NHWC" if self.spec.kind == "image" else "(B, T) int32",
            "optimizer_impl": "keras.optimizers; Adam, RMSprop subclassed to torch.optim math",
            "onednn": "unknown: TensorFlow was imported before the adapter" if _TF_IMPORTED_BEFORE else
                      {"1": "on", "0": "off"}.get(os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""), "TensorFlow's default"),
        }
        if self.device == "cuda":
            info = tf.sysconfig.get_build_info()
            s["versions"].update(cuda=info.get("cuda_version"), cudnn=info.get("cudnn_version"))
            gpu = tf.config.list_physical_devices("GPU")[0]
            s["gpu"] = tf.config.experimental.get_device_details(gpu).get("device_name")
            s["tensor_float_32"] = tf.config.experimental.tensor_float_32_execution_enabled()
            s["memory_growth"] = tf.config.experimental.get_memory_growth(gpu)
            s["allocator_preallocation"] = "BFC allocator, memory growth on (no preallocation)"
        if self.spec.kind == "sequence":
            cudnn = self.device == "cuda" and self.use_cudnn == "auto"
            s["recurrent_impl"] = ("keras.layers.LSTM/GRU on cuDNN (CudnnRNNV3)" if cudnn else
                                   "keras.layers.LSTM/GRU, Keras's RNN loop (tf.while_loop over the cell)")
            s["use_cudnn"] = self.use_cudnn
        # The shared key (docs/spec.md 5.8); TF's TF32 switch is on by default but means nothing on a CPU.
        s["fp32_math"] = "tf32" if s.get("tensor_float_32") else "ieee"
        return s
