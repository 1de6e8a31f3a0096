"""Keras 3 on any backend: the model of keras_model.py, trained the way a Keras user trains it.

Training is `model.compile(optimizer, loss=SparseCategoricalCrossentropy(from_logits=True), jit_compile="auto")`
and `model.train_on_batch`: Keras's own train step, compiled as Keras resolves "auto" for the backend (XLA on
JAX, on TensorFlow only where a GPU exists, eager on torch). Inference is the backend's compiled call the way
Keras's own predict step runs it, without predict_on_batch's copy of every logit to the host: `jax.jit` of
`model.stateless_call`, `tf.function` around `model(x, training=False)`, or eager `model(x)` under
`torch.no_grad()`. The few backend-specific pieces (knobs and seeds, device, image layout, inference, gradients,
sync, settings) are one small table, `_BACKENDS`; everything else is Keras's own API, the same on every backend.

Not imported directly: `keras_jax`, `keras_torch` and `keras_tensorflow` set KERAS_BACKEND (and the backend's
environment) before Keras's first import and expose `KerasAdapter` for their backend. Keras holds one backend
per process, so an adapter asked for another backend than the one Keras was imported with is Unsupported.
"""
from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import random
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from xfbench.adapters.keras_model import (POLICIES, build_model, held_at_zero, keep_float64, keras_optimizer,
                                          load_canonical, to_canonical)
from xfbench.harness.adapter import Adapter, Unsupported
from xfbench.harness.models import ModelSpec
from xfbench.harness.optimizers import OptimizerSpec
from xfbench.harness.weights import check_weights

TRAINING_API = "model.train_on_batch"
# train_on_batch returns the loss as a Python float (Keras's pythonify_logs): the host waits for every step.
HOST_SYNC = "train_on_batch converts the loss to NumPy: one device-to-host read (and wait) per train step"


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


# ---- the per-backend pieces ----

@dataclass(frozen=True)
class _Backend:
    """What differs between Keras's backends, as functions of the adapter."""

    configure: Callable[["KerasAdapter"], None]  # threads, device, precision switches; before any model exists
    seed: Callable[[int], None]  # Python, NumPy and the backend's generators; Keras's dropout seeds follow Python's
    device: Callable[["KerasAdapter"], str]  # the keras.device(...) of the case
    data_format: str  # images: keras_model's data_format
    infer: Callable[["KerasAdapter"], Callable[[Any], Any]]  # x -> logits, compiled as Keras's predict step
    gradients: Callable[["KerasAdapter"], Callable[[Any, Any], list]]  # (x, y) -> [dloss/dw], dropout off
    hold: Callable[["KerasAdapter", Any], Any]  # an infer step's logits -> what `sync` waits for
    sync: Callable[["KerasAdapter"], None]
    settings: Callable[["KerasAdapter"], dict[str, Any]]
    inference_api: str
    optimizer: Callable[[Any], None] = lambda opt: None  # adjusts a new optimizer to this backend


def _loss_value(adapter: "KerasAdapter", x, y):
    """The compiled loss of the train step (Model.compute_loss: the loss given to compile), dropout off."""
    return adapter.model.compute_loss(x=x, y=y, y_pred=adapter.model(x, training=False), training=False)


# -- JAX --

def _jax_configure(a: "KerasAdapter") -> None:
    import jax
    try:  # only to tell whether XLA settings can still take effect; no public API says so
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:  # pragma: no cover
        def backends_are_initialized() -> bool:
            return True
    a.xla_settings_applied = not backends_are_initialized()
    if a.device == "cpu" and a.xla_settings_applied:
        jax.config.update("jax_platforms", "cpu")  # a CPU case never starts a GPU runtime
    # x64 is process-wide in jax; set before any array exists so that float64 stays float64.
    jax.config.update("jax_enable_x64", a.precision == "fp64")
    platform = "gpu" if a.device == "cuda" else "cpu"
    try:
        a.jax_device = jax.devices(platform)[0]
    except RuntimeError as e:
        raise Unsupported(f"jax has no {platform} backend here: {e}") from None
    if a.device == "cuda":  # fp32 means IEEE fp32; XLA GPU would otherwise use TF32 (as the jax adapter)
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if a.precision == "tf32" else "highest")
    jax.config.update("jax_default_device", a.jax_device)


def _jax_infer(a: "KerasAdapter") -> Callable[[Any], Any]:
    import jax

    model = a.model
    # Keras's own JAX predict step: a jax.jit of the stateless call on the variables' current values.
    call = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(trainable, non_trainable, x,
                                                                            training=False)[0])
    return lambda x: call([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables], x)


def _jax_gradients(a: "KerasAdapter") -> Callable[[Any, Any], list]:
    import jax

    model = a.model
    # Keras's JAX train step differentiates model.compute_loss_and_updates (stateless_call, then the compiled
    # loss); the same function, with training=False (dropout off).
    grad = jax.jit(jax.grad(lambda tv, ntv, mv, x, y: model.compute_loss_and_updates(tv, ntv, mv, x, y, None,
                                                                                      training=False),
                            has_aux=True))
    return lambda x, y: grad([v.value for v in model.trainable_variables],
                             [v.value for v in model.non_trainable_variables],
                             [v.value for v in model.metrics_variables], x, y)[0]


def _jax_hold(a: "KerasAdapter", logits):
    # Independent steps: wait for the previous step while this one runs, so that at most two outputs are alive
    # and every step has finished by `sync` (as the jax adapter does).
    if a.pending is not None:
        a.pending.block_until_ready()
    return logits


def _jax_sync(a: "KerasAdapter") -> None:
    import jax

    state = [v.value for v in a.model.variables]
    if a.model.optimizer is not None:
        state += [v.value for v in a.model.optimizer.variables]
    jax.block_until_ready((state, a.pending))


def _jax_settings(a: "KerasAdapter") -> dict[str, Any]:
    import jax

    s: dict[str, Any] = {
        "versions": {"jax": jax.__version__, "jaxlib": _version("jaxlib")},
        # XLA:CPU sizes its intra-op pool from the CPU affinity (the worker pins it), not from a setting.
        "threads": len(os.sched_getaffinity(0)) if a.device == "cpu" else a.threads,
        "threads_requested": a.threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "xla_flags_applied": a.xla_settings_applied,  # False: a jax backend started before this adapter
        "matmul_precision": jax.config.jax_default_matmul_precision or "default",
        "x64": bool(jax.config.jax_enable_x64),
        "allocator_preallocation": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
        "device": a.jax_device.device_kind,
    }
    if a.device == "cuda":
        s["gpu"] = a.jax_device.device_kind
        s["versions"]["gpu_runtime"] = a.jax_device.client.platform_version
    s["fp32_math"] = "tf32" if a.device == "cuda" and s["matmul_precision"] != "highest" else "ieee"
    if a.spec.kind == "sequence":
        if a.spec_cell() == "gru":  # keras/src/backend/jax/rnn.py: gru, on every device
            s["recurrent_impl"] = ("keras.layers.GRU: Keras's JAX GRU, lax.scan over the time steps with the input "
                                   "projection hoisted (one matmul)")
        elif a.device == "cuda":
            s["recurrent_impl"] = "keras.layers.LSTM: cuDNN through jax.experimental.rnn.lstm"
        else:
            s["recurrent_impl"] = ("keras.layers.LSTM: Keras's generic RNN loop, lax.scan over LSTMCell "
                                   "(input projection inside the scan, one small matmul per time step)")
    return s


# -- torch --

def _torch_configure(a: "KerasAdapter") -> None:
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        raise Unsupported("CUDA is not available to torch on this machine")
    torch.set_num_threads(a.threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(1)
    if a.device == "cuda":  # as the torch adapter: fp32 is IEEE (cuDNN defaults to TF32)
        fp32 = "tf32" if a.precision == "tf32" else "ieee"
        torch.backends.cuda.matmul.fp32_precision = fp32
        torch.backends.cudnn.conv.fp32_precision = fp32
        torch.backends.cudnn.rnn.fp32_precision = fp32
        torch.backends.cudnn.benchmark = True


def _torch_infer(a: "KerasAdapter") -> Callable[[Any], Any]:
    import torch

    model = a.model

    def infer(x):
        with torch.no_grad():  # Keras's own torch predict step
            return model(x, training=False)
    return infer


def _torch_gradients(a: "KerasAdapter") -> Callable[[Any, Any], list]:
    import torch

    model = a.model

    def gradients(x, y):
        loss = _loss_value(a, x, y)
        return list(torch.autograd.grad(loss, [v.value for v in model.trainable_variables]))
    return gradients


def _torch_sync(a: "KerasAdapter") -> None:
    import torch

    if a.device == "cuda":  # on a CPU every op has finished when it returns
        torch.cuda.synchronize()


def _torch_settings(a: "KerasAdapter") -> dict[str, Any]:
    import torch

    s: dict[str, Any] = {
        "versions": {"torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if a.device == "cuda":
        s["versions"].update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        s["gpu"] = torch.cuda.get_device_name()
        s["fp32_precision"] = {"cuda.matmul": torch.backends.cuda.matmul.fp32_precision,
                               "cudnn.conv": torch.backends.cudnn.conv.fp32_precision,
                               "cudnn.rnn": torch.backends.cudnn.rnn.fp32_precision}
        s["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    s["fp32_math"] = "tf32" if "tf32" in s.get("fp32_precision", {}).values() else "ieee"
    if a.spec.kind == "sequence":  # keras/src/backend/torch/rnn.py
        cls = "LSTM" if a.spec_cell() == "lstm" else "GRU"
        s["recurrent_impl"] = (f"keras.layers.{cls}: cuDNN through torch._VF" if a.device == "cuda" else
                               f"keras.layers.{cls}: Keras's torch fallback, a Python loop over the time steps "
                               "with the input projection hoisted (one matmul)")
    return s


# -- TensorFlow --

def _tf_configure(a: "KerasAdapter") -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if a.device == "cuda" and not gpus:
        raise Unsupported("TensorFlow sees no GPU on this machine")
    # As the tensorflow adapter; runtime knobs are fixed once TensorFlow's context exists.
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    with contextlib.suppress(RuntimeError):
        if a.device == "cuda":
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
        elif gpus:
            tf.config.set_visible_devices([], "GPU")
    if a.device == "cuda":
        tf.config.experimental.enable_tensor_float_32_execution(a.precision == "tf32")


def _tf_infer(a: "KerasAdapter") -> Callable[[Any], Any]:
    import tensorflow as tf

    model = a.model
    # Keras's own TensorFlow predict step: tf.function, XLA-compiled when jit_compile resolved to True.
    return tf.function(lambda x: model(x, training=False), jit_compile=model.jit_compile, reduce_retracing=True,
                       autograph=False)


def _tf_gradients(a: "KerasAdapter") -> Callable[[Any, Any], list]:
    import tensorflow as tf

    model = a.model

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = _loss_value(a, x, y)
        # Dense, as the train step applies them (the embedding's gradient is IndexedSlices).
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    return tf.function(gradients, jit_compile=model.jit_compile, autograph=False)


def _tf_dense_gradients(opt) -> None:
    """Keras's TensorFlow train step hands the embedding's gradient to the optimizer as IndexedSlices, one row per
    token occurrence; Keras's sparse-aware ops then square each occurrence apart (Adagrad, Adadelta), and the
    torch.optim subclasses cannot take them at all. The canonical math (docs/spec.md section 3.2) is on the
    dense gradient, as torch's and the tensorflow adapter's: densified before the update."""
    import tensorflow as tf

    apply = opt.apply

    def dense_apply(grads, trainable_variables=None):
        return apply([tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads],
                     trainable_variables)
    opt.apply = dense_apply


def _tf_hold(a: "KerasAdapter", logits):
    # On a CPU `sync` reads one element: .numpy() of the whole output would copy it.
    return None if a.device == "cuda" else logits[(0,) * len(logits.shape)]


def _tf_sync(a: "KerasAdapter") -> None:
    import tensorflow as tf

    if a.device == "cuda":
        tf.test.experimental.sync_devices()
    elif a.pending is not None:
        a.pending.numpy()
    # After a train step nothing is pending: train_on_batch has read the loss (HOST_SYNC).


def _tf_settings(a: "KerasAdapter") -> dict[str, Any]:
    import tensorflow as tf

    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")
    s: dict[str, Any] = {
        "versions": {"tensorflow": tf.__version__},
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "interop_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn": "unknown: TensorFlow was imported before the adapter" if a.tf_imported_before else
                  {"1": "on", "0": "off"}.get(onednn, "TensorFlow's default"),
    }
    if a.device == "cuda":
        info = tf.sysconfig.get_build_info()
        s["versions"].update(cuda=info.get("cuda_version"), cudnn=info.get("cudnn_version"))
        gpu = tf.config.list_physical_devices("GPU")[0]
        s["gpu"] = tf.config.experimental.get_device_details(gpu).get("device_name")
        s["tensor_float_32"] = tf.config.experimental.tensor_float_32_execution_enabled()
        s["memory_growth"] = tf.config.experimental.get_memory_growth(gpu)
    s["fp32_math"] = "tf32" if s.get("tensor_float_32") else "ieee"
    if a.spec.kind == "sequence":
        # keras/src/backend/tensorflow/rnn.py: cuDNN where a GPU is visible (and then no XLA), else the loop.
        cudnn = a.device == "cuda" and not a.model.jit_compile
        s["recurrent_impl"] = ("keras.layers.LSTM/GRU on cuDNN (CudnnRNNV3)" if cudnn else
                               "keras.layers.LSTM/GRU, Keras's RNN loop (tf.while_loop over the cell)")
    return s


def _seed_python_numpy(seed: int) -> None:
    # What keras.utils.set_random_seed does, but that also imports TensorFlow on every backend (to seed tf.data).
    # A Dropout layer without a seed draws its SeedGenerator's seed from Python's `random`.
    random.seed(seed)
    np.random.seed(seed)


def _seed_torch(seed: int) -> None:
    import torch

    _seed_python_numpy(seed)
    torch.manual_seed(seed)


_nothing = contextlib.nullcontext


def _no_hold(a: "KerasAdapter", logits):
    return None


_BACKENDS = {
    "jax": _Backend(
        configure=_jax_configure, seed=_seed_python_numpy, device=lambda a: "gpu:0" if a.device == "cuda" else "cpu:0",
        data_format="channels_last", infer=_jax_infer, gradients=_jax_gradients, hold=_jax_hold, sync=_jax_sync,
        settings=_jax_settings,
        inference_api="jax.jit(model.stateless_call(trainable, non_trainable, x, training=False))"),
    # Keras on torch permutes NHWC to NCHW around every convolution and pool; a Keras-on-torch expert sets
    # channels_first (the canonical layout, and torch's own).
    "torch": _Backend(
        configure=_torch_configure, seed=_seed_torch, device=lambda a: "cuda:0" if a.device == "cuda" else "cpu",
        data_format="channels_first", infer=_torch_infer, gradients=_torch_gradients, hold=_no_hold,
        sync=_torch_sync, settings=_torch_settings,
        inference_api="model(x, training=False) under torch.no_grad(), eager"),
    # TensorFlow's CPU convolutions run channels_last only.
    "tensorflow": _Backend(
        configure=_tf_configure, seed=keras.utils.set_random_seed,
        device=lambda a: "/GPU:0" if a.device == "cuda" else "/CPU:0", data_format="channels_last",
        infer=_tf_infer, gradients=_tf_gradients, hold=_tf_hold, sync=_tf_sync, settings=_tf_settings,
        inference_api="tf.function(model(x, training=False), jit_compile=model.jit_compile)",
        optimizer=_tf_dense_gradients),
}


class KerasAdapter(Adapter):
    """Keras 3 on the backend named by BACKEND (set by the target module: keras_jax, keras_torch, ...)."""

    BACKEND = ""  # "jax", "torch" or "tensorflow"
    tf_imported_before = False  # keras_tensorflow: TensorFlow was imported before TF_ENABLE_ONEDNN_OPTS was set

    def __init__(self, *, device: str, precision: str, threads: int, seed: int):
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)
        if keras.backend.backend() != self.BACKEND:
            raise Unsupported(f"Keras was imported with the {keras.backend.backend()} backend in this process; "
                              f"keras-{self.BACKEND} needs a process of its own")
        if precision not in POLICIES:
            raise Unsupported(f"precision {precision!r} is not offered by keras-{self.BACKEND}")
        if precision == "tf32" and device != "cuda":
            raise Unsupported("tf32 is a GPU precision; use fp32 on CPU")
        self.backend = _BACKENDS[self.BACKEND]
        self.backend.configure(self)
        self.keras_device = self.backend.device(self)
        self.policy, self.floatx = POLICIES[precision]
        self.backend.seed(seed)
        self.pending: Any = None  # what `sync` waits for: the newest infer step's output (or part of it)

    @contextlib.contextmanager
    def _scope(self):
        """Device and Keras dtype policy and floatx; the global policy is restored after.

        Every build, step and trace runs inside: on an eager backend (torch), Python numbers in the optimizer's
        math become tensors of floatx at run time, which must be float64 in fp64; and in fp64 Keras must not demote
        float64 results to float32 (keras_model.keep_float64).
        """
        policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
        keras.config.set_floatx(self.floatx)
        keras.config.set_dtype_policy(self.policy)
        try:
            with keras.device(self.keras_device), keep_float64() if self.precision == "fp64" else _nothing():
                yield
        finally:
            keras.config.set_floatx(floatx)
            keras.config.set_dtype_policy(policy)

    def spec_cell(self) -> str:
        return next(layer.cell for layer in self.spec.layers if hasattr(layer, "cell"))

    # ---- building ----
    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        self.spec = spec
        self.data_format = self.backend.data_format if spec.kind == "image" else None
        with self._scope():
            self.model, self._slots = build_model(
                spec, sequence_dtype="float32" if self.precision == "bf16" else None,
                data_format=self.data_format or "channels_last", initializer="zeros")
        self.variables = self.model.trainable_variables
        self.dtype = np.dtype(self.variables[0].dtype)  # float64 in fp64, float32 otherwise (bf16 computes in bf16)
        self.optimizer_spec = optimizer
        self._compile()
        # The functions `bench run` times; `forward` and `gradients` run the same ones (docs/spec.md 6.1). They
        # read the variables' current values at every call, so they outlive a recompile (load_weights).
        self._infer = self.backend.infer(self)
        self._gradients = self.backend.gradients(self)

    def _compile(self) -> None:
        """model.compile with a fresh optimizer (none for inference); the compiled functions follow it."""
        self.model.optimizer = None  # the old optimizer state goes before the new one is built
        with self._scope():
            opt = keras_optimizer(self.optimizer_spec) if self.optimizer_spec else None
            if opt is not None:
                opt.build(self.variables)  # its state exists before any step, in the policy's dtype
                self.backend.optimizer(opt)
            # The loss in the parameters' dtype (Keras would cast the logits to float32 in fp64); under bf16,
            # float32 from the bfloat16 logits (docs/spec.md section 5.8).
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=self.floatx)
            self.model.compile(optimizer=opt, loss=loss, jit_compile="auto")
        # What "auto" resolved to for this backend and machine (Keras: XLA on JAX, and on TensorFlow only where a
        # GPU exists; eager on torch).
        self.jit_compile = bool(self.model.jit_compile)

    def parameter_count(self) -> int:
        n = sum(int(np.prod(v.shape)) for v in self.variables)
        return n - held_at_zero(self.model)  # the GRU's recurrent r, z biases held at zero

    # ---- canonical weights ----
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(weights, self._slots)
        with self._scope():
            load_canonical(self.variables, self._slots, weights)  # assigned in place: one copy of the weights
        self._compile()  # recompiled with a fresh optimizer: load_weights resets its state

    def dump_weights(self) -> dict[str, np.ndarray]:
        return to_canonical(self.variables, self._slots, [ops.convert_to_numpy(v.value) for v in self.variables])

    # ---- data and steps ----
    def put_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        if self.spec.kind == "image":
            if self.data_format == "channels_last":
                x = x.transpose(0, 2, 3, 1)  # canonical NCHW -> NHWC
            x = np.ascontiguousarray(x, dtype=self.dtype)
        else:
            x = np.asarray(x, dtype=np.int32)
        with self._scope():
            batch = ops.convert_to_tensor(x), ops.convert_to_tensor(np.asarray(y, dtype=np.int32))
        self.pending = batch[1]
        self.backend.sync(self)  # on the device before any timing
        self.pending = None
        return batch

    def train_step(self, batch) -> None:
        with self._scope():
            self.model.train_on_batch(*batch)

    def infer_step(self, batch) -> None:
        with self._scope():
            logits = self._infer(batch[0])
        self.pending = self.backend.hold(self, logits)

    def sync(self) -> None:
        self.backend.sync(self)
        self.pending = None

    def forward(self, batch) -> tuple[np.ndarray, float]:
        x, y = batch
        with self._scope():
            logits = self._infer(x)  # the timed inference function itself
            loss = self.model.compute_loss(y=y, y_pred=logits)  # the compiled loss; bf16 logits -> float32
        return (np.asarray(ops.convert_to_numpy(logits)).astype(self.dtype, copy=False),
                float(ops.convert_to_numpy(loss)))

    def gradients(self, batch) -> dict[str, np.ndarray]:
        with self._scope():
            grads = self._gradients(*batch)
        return to_canonical(self.variables, self._slots, [np.asarray(ops.convert_to_numpy(g)) for g in grads])

    # ---- the manifest ----
    def settings(self) -> dict[str, Any]:
        s = self.backend.settings(self)
        s["versions"] = {"keras": keras.__version__, **{k: v for k, v in s["versions"].items() if v is not None}}
        compiled = {"jax": "jax.jit (XLA)", "tensorflow": "tf.function(jit_compile=True) (XLA)" if self.jit_compile
                    else "tf.function (graph)", "torch": "torch.compile" if self.jit_compile else "eager"}
        s.update({
            "backend": self.BACKEND,
            "precision": self.precision,
            "dtype": self.dtype.name,
            "compute_dtype": self.model.compute_dtype,
            "autocast": "keras mixed_bfloat16 policy, embedding and recurrent layers float32"
                        if self.precision == "bf16" else None,
            "jit_compile": self.jit_compile,
            "compile": f"model.compile(jit_compile='auto') -> jit_compile={self.jit_compile}: "
                       f"{compiled[self.BACKEND]}",
            # docs/spec.md 5.8: train_on_batch runs Keras's whole train step (forward, loss, backward, update) in
            # one function, and the inference function covers the forward.
            "compile_scope": ("whole step, compiled" if self.jit_compile else
                              "whole step, graph" if self.BACKEND == "tensorflow" else "none (eager)"),
            "training_api": TRAINING_API,
            "inference_api": self.backend.inference_api,
            "host_sync_per_step": HOST_SYNC,
            "data_layout": {"channels_last": "NHWC (channels_last)", "channels_first": "NCHW (channels_first)"}[
                self.data_format] if self.data_format else "(B, T) int32",
            "optimizer_impl": f"keras.optimizers ({self.BACKEND} backend); Adam, RMSprop subclassed to torch.optim "
                              "math",
        })
        if self.precision == "fp64":
            s["float64_promotion"] = ("Keras's demotion of float64 results to float32 switched off while the adapter "
                                      "runs (keras_model.keep_float64)")
        if self.spec.kind != "sequence":
            s.pop("recurrent_impl", None)
        return s
