"""TensorFlow adapter: Keras 3 layers on TensorFlow, NHWC, train and infer steps as tf.function (optionally XLA)."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterable, Iterator

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

from xfbench.harness.adapter import Adapter, PeakKernel, Unsupported  # noqa: E402
from xfbench.harness.models import ModelSpec  # noqa: E402
from xfbench.harness.optimizers import OptimizerSpec  # noqa: E402
from xfbench.harness.weights import check_weights  # noqa: E402

# The Keras model, its weight mapping and the optimizers, shared with the keras-* adapters (keras_adapter.py).
from xfbench.adapters.keras_model import (POLICIES, build_model, held_at_zero, keras_optimizer,  # noqa: E402
                                          load_canonical, to_canonical)


def _index_rows(order: Iterable[np.ndarray]) -> tf.Tensor | tf.RaggedTensor:
    """The order's index arrays as rows of one tensor: (steps, batch) int64, ragged if batch sizes differ."""
    batches = [np.asarray(b, dtype=np.int64) for b in order]
    if len({len(b) for b in batches}) <= 1:
        return tf.constant(np.stack(batches) if batches else np.zeros((0, 0), np.int64))
    return tf.RaggedTensor.from_row_lengths(np.concatenate(batches), [len(b) for b in batches])


def _iterate(ds: tf.data.Dataset) -> Iterator[Any]:
    """The data set's elements; its iterator, and its threads, start at the first `next`."""
    yield from ds


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
        self.policy, self.floatx = POLICIES[precision]
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
            self.model, self._slots = build_model(spec, sequence_dtype="float32" if self.precision == "bf16" else None,
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
                self.opt = keras_optimizer(self.optimizer_spec)
                self.opt.build(self.variables)  # slots exist before tracing, never inside it
            self._train_fn = tf.function(self._train, jit_compile=self.jit_compile, autograph=False)

    def parameter_count(self) -> int:
        n = sum(int(np.prod(v.shape)) for v in self.variables)
        return n - held_at_zero(self.model)  # recurrent r, z biases held at zero

    # ---- canonical weights ----
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(weights, self._slots)
        # Parts of a variable no canonical tensor names (the GRU's recurrent r, z biases) stay zero.
        load_canonical(self.variables, self._slots, weights)
        self._reset_optimizer()

    def _to_canonical(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        return to_canonical(self.variables, self._slots, arrays)

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

    def input_pipeline(self, x: np.ndarray, y: np.ndarray, order: Iterable[np.ndarray],
                       workers: int = 0) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
        # put_batch's conversions: the dtype once for the whole array, the layout per batch in the map.
        # Parallelism: `workers` concurrent map calls (0: the map runs in prefetch's background thread), in a
        # private thread pool of `threads` threads, the intra-op cap, not TensorFlow's default of one thread per
        # schedulable core (GPU workers are not pinned). Prefetch: AUTOTUNE, the tf.data guide's idiom; the
        # worker count, which is what every framework shares, is fixed. Deterministic: batches in the order's order.
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        image = self.spec.kind == "image"
        with tf.device("/CPU:0"):  # the data set stays in host memory; batches move to the device
            xs = tf.constant(np.asarray(x, dtype=self.dtype if image else np.int32))
            ys = tf.constant(np.asarray(y, dtype=np.int32))
            rows = _index_rows(order)

        def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            xb = tf.gather(xs, idx)
            return (tf.transpose(xb, [0, 2, 3, 1]) if image else xb), tf.gather(ys, idx)  # NCHW -> NHWC

        ds = tf.data.Dataset.from_tensor_slices(rows).map(gather, num_parallel_calls=workers or None)
        options = tf.data.Options()
        options.deterministic = True
        options.threading.private_threadpool_size = self.threads
        ds = ds.with_options(options)
        ds = (ds.apply(tf.data.experimental.prefetch_to_device(self.tf_device)) if self.device == "cuda"
              else ds.prefetch(tf.data.AUTOTUNE))
        return _iterate(ds)

    def pipeline_description(self, workers: int) -> str:
        prefetch = f"prefetch_to_device({self.tf_device})" if self.device == "cuda" else "prefetch(AUTOTUNE)"
        layout = ", NCHW->NHWC" if getattr(self, "spec", None) and self.spec.kind == "image" else ""
        return (f"tf.data: from_tensor_slices(order).map(gather{layout}, num_parallel_calls={workers or None})"
                f".{prefetch}, private_threadpool_size={self.threads}")

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
