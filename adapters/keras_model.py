"""The Keras 3 model, weight mapping and optimizers that every Keras-based adapter shares.

Backend-neutral: this module imports `keras` and never TensorFlow, JAX or torch, so the backend is whatever the
importing adapter chose (it sets KERAS_BACKEND before Keras's first import). `tensorflow_adapter` (TensorFlow's
own tf.function steps) and `keras_adapter` (keras-jax, keras-torch, keras-tensorflow: Keras's own training loop)
build the same model from it (docs/spec.md sections 2.3 and 3.2).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
from keras import layers, ops

from xfbench.harness.adapter import Unsupported
from xfbench.harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent
from xfbench.harness.optimizers import OptimizerSpec

# precision -> (Keras dtype policy, floatx); floatx sets the dtype of the optimizer's learning-rate variable.
POLICIES = {"fp32": ("float32", "float32"), "tf32": ("float32", "float32"),
            "fp64": ("float64", "float64"), "bf16": ("mixed_bfloat16", "float32")}


@contextlib.contextmanager
def keep_float64():
    """Keras's type promotion without its demotion of float64 results to float32, while the context is active.

    Keras 3 (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE, "to be aligned with JAX's default
    behavior") promotes float64 with float64 to float32 on every backend but TensorFlow, whatever jax_enable_x64
    says: Dense's ops.matmul of a float64 input and kernel returns float32 on torch and JAX, so a float64 model
    computes partly in float32 (gradients 2e-7 off torch's float64 ones on LeNet-5). Float32 and bfloat16 never
    meet that rule; float64 validation (docs/spec.md section 6) needs it off. Keras has no public switch: this
    sets the table's float64 entry (private API) and restores it after.
    """
    from keras.src.backend.common import dtypes  # noqa: PLC0415  private: no public switch exists

    table = dtypes.BIT64_TO_BIT32_DTYPE
    before = table.get("float64", "float32")
    table["float64"] = "float64"
    try:
        yield
    finally:
        table["float64"] = before


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


def keras_optimizer(o: OptimizerSpec) -> keras.optimizers.Optimizer:
    """The Keras optimizer with the canonical (torch.optim) math of `o` (docs/spec.md section 3.2)."""
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
    raise Unsupported(f"optimizer {o.name!r} has no Keras mapping (adapters/keras_model.py)")


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
class Slot:
    """Where one canonical tensor lives: a Keras variable (or part of it) and the layout conversions."""

    variable: Any  # keras.Variable
    index: Any = ()  # numpy index of the part holding it; () = the whole variable
    to_keras: Callable[[np.ndarray], np.ndarray] = _same
    to_canonical: Callable[[np.ndarray], np.ndarray] = _same


def _conv_slots(name: str, kl: layers.Conv2D) -> dict[str, Slot]:
    # Keras keeps a conv kernel (kh, kw, I, O) whatever the data format.
    weight = Slot(kl.kernel, (), lambda w: w.transpose(2, 3, 1, 0),  # (O, I, kh, kw) -> (kh, kw, I, O)
                  lambda k: k.transpose(3, 2, 0, 1))
    return {f"{name}.weight": weight, f"{name}.bias": Slot(kl.bias)}


def _dense_slots(name: str, kl: layers.Dense, flat_hwc: tuple[int, int, int] | None) -> dict[str, Slot]:
    """`flat_hwc`: the (H, W, C) map an NHWC Flatten before this layer read; None: the rows are canonical."""
    if flat_hwc is None or flat_hwc[:2] == (1, 1):
        weight = Slot(kl.kernel, (), _transpose, _transpose)
    else:
        # Keras flattens NHWC in (H, W, C) order, the canonical order is (C, H, W). Permuting this kernel's
        # rows once on load/dump costs nothing per step; a Permute layer before Flatten would copy the
        # activations (and their gradient) every step.
        h, w, c = flat_hwc
        weight = Slot(kl.kernel, (),
                      lambda a: a.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1),
                      lambda k: k.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(k.shape[1], -1))
    return {f"{name}.weight": weight, f"{name}.bias": Slot(kl.bias)}


def _recurrent_slots(name: str, kl: layers.RNN) -> dict[str, Slot]:
    cell = kl.cell
    if isinstance(kl, layers.LSTM):  # same gate order i, f, c(g), o and one bias
        return {f"{name}.weight_ih": Slot(cell.kernel, (), _transpose, _transpose),
                f"{name}.weight_hh": Slot(cell.recurrent_kernel, (), _transpose, _transpose),
                f"{name}.bias": Slot(cell.bias)}
    h = cell.units  # Keras GRU: gate order z, r, h; bias (2, 3H) = [input; recurrent]
    def gates_to_keras(w): return _swap_first_blocks(w).T
    def gates_to_canonical(k): return _swap_first_blocks(k.T)
    return {f"{name}.weight_ih": Slot(cell.kernel, (), gates_to_keras, gates_to_canonical),
            f"{name}.weight_hh": Slot(cell.recurrent_kernel, (), gates_to_keras, gates_to_canonical),
            f"{name}.bias_ih": Slot(cell.bias, 0, _swap_first_blocks, _swap_first_blocks),
            f"{name}.bias_hn": Slot(cell.bias, (1, slice(2 * h, 3 * h)))}


def held_at_zero(model: keras.Model) -> int:
    """Trainable entries the spec does not count: the GRU's recurrent r, z biases, held at zero (section 2.4)."""
    return sum(2 * kl.cell.units for kl in model.layers if isinstance(kl, layers.GRU))


# ---- the model: one small function per spec layer type, each returning Keras layers ----

def _conv(layer: Conv, data_format: str, init: dict[str, str]) -> list[layers.Layer]:
    # Explicit padding: Keras "same" pads asymmetrically where torch pads (p, p) (docs/spec.md section 1.2).
    pad = [layers.ZeroPadding2D(layer.padding, data_format=data_format)] if layer.padding else []
    return pad + [layers.Conv2D(layer.out_channels, layer.kernel, strides=layer.stride, padding="valid",
                                data_format=data_format, activation=layer.activation, name=layer.name,
                                **_pick(init, "kernel", "bias"))]


def _pool(layer: Pool, data_format: str) -> list[layers.Layer]:
    pool = layers.MaxPooling2D if layer.kind == "max" else layers.AveragePooling2D
    return [pool(layer.size, layer.stride, padding="valid", data_format=data_format)]


def _flatten(layer: Flatten, init: dict[str, str]) -> list[layers.Layer]:
    # Flatten in memory order whatever the model's data format: Keras's Flatten(data_format="channels_first")
    # would move the channels last first, a copy every step. NCHW memory order is already the canonical
    # (C, H, W); an NHWC model permutes the next dense kernel's rows instead (_dense_slots).
    return [layers.Flatten(data_format="channels_last")]


def _dense(layer: Dense, init: dict[str, str]) -> list[layers.Layer]:
    drop = [layers.Dropout(layer.dropout)] if layer.dropout else []  # seeded by keras.utils.set_random_seed
    return drop + [layers.Dense(layer.units, activation=layer.activation, name=layer.name,
                                **_pick(init, "kernel", "bias"))]


def _embedding(layer: Embedding, init: dict[str, str], dtype: str | None = None) -> list[layers.Layer]:
    return [layers.Embedding(layer.vocab, layer.dim, name=layer.name, dtype=dtype, **_pick(init, "embeddings"))]


def _recurrent(layer: Recurrent, init: dict[str, str], dtype: str | None = None,
               use_cudnn: bool | str = "auto") -> list[layers.Layer]:
    kw = {"return_sequences": True, "dtype": dtype, "use_cudnn": use_cudnn,
          **_pick(init, "kernel", "recurrent", "bias")}
    if layer.cell == "lstm":
        return [layers.LSTM(layer.hidden, name=f"lstm{i}", **kw) for i in range(layer.layers)]
    return [layers.GRU(layer.hidden, reset_after=True, name=f"gru{i}", bias_constraint=_HoldRecurrentRZBias(), **kw)
            for i in range(layer.layers)]


def _pick(init: dict[str, str], *kinds: str) -> dict[str, str]:
    """The layer's `<kind>_initializer` arguments, where an initializer is given."""
    return {f"{k}_initializer": init[k] for k in kinds if k in init}


_BUILDERS = {Conv: _conv, Pool: _pool, Flatten: _flatten, Dense: _dense,
             Embedding: _embedding, Recurrent: _recurrent}
DATA_FORMATS = ("channels_last", "channels_first")


def build_model(spec: ModelSpec, *, sequence_dtype: str | None = None, use_cudnn: bool | str = "auto",
                data_format: str = "channels_last",
                initializer: str | None = None) -> tuple[keras.Model, dict[str, Slot]]:
    """The Keras functional model of `spec` and where each canonical weight lives in it.

    `sequence_dtype` overrides the dtype policy of the embedding and recurrent layers (float32 under bf16,
    docs/spec.md section 5.8); `use_cudnn` is the recurrent layers' cuDNN switch; `data_format` the image
    layout, `channels_last` (NHWC, Keras's default; TensorFlow's CPU convolutions need it) or `channels_first`
    (NCHW, the canonical layout: torch's own, where Keras would otherwise permute around every convolution);
    `initializer` replaces Keras's default initializers of every weight (the canonical weights are loaded over
    them anyway): "zeros" spares JAX an XLA compilation of a random initializer per weight shape (~1 s each on
    2 cores), work that a case would otherwise time as set-up.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {', '.join(DATA_FORMATS)}, got {data_format!r}")
    init = dict.fromkeys(("kernel", "recurrent", "bias", "embeddings"), initializer) if initializer else {}
    options = {Conv: {"data_format": data_format, "init": init}, Pool: {"data_format": data_format},
               Flatten: {"init": init}, Dense: {"init": init}, Embedding: {"dtype": sequence_dtype, "init": init},
               Recurrent: {"dtype": sequence_dtype, "use_cudnn": use_cudnn, "init": init}}
    if spec.kind == "image":
        c, h, w = spec.input_shape
        inputs = keras.Input((h, w, c) if data_format == "channels_last" else (c, h, w), name="images")
    else:
        inputs = keras.Input(spec.input_shape, dtype="int32", name="tokens")
    x, slots, flat_hwc = inputs, {}, None
    for layer in spec.layers:
        for kl in _BUILDERS[type(layer)](layer, **options.get(type(layer), {})):
            if isinstance(kl, layers.Flatten) and data_format == "channels_last":
                flat_hwc = tuple(x.shape[1:])
            x = kl(x)
            if isinstance(kl, layers.Conv2D):
                slots.update(_conv_slots(kl.name, kl))
            elif isinstance(kl, layers.Dense):
                slots.update(_dense_slots(kl.name, kl, flat_hwc))
                flat_hwc = None
            elif isinstance(kl, layers.Embedding):
                slots[f"{kl.name}.weight"] = Slot(kl.embeddings)
            elif isinstance(kl, (layers.LSTM, layers.GRU)):
                slots.update(_recurrent_slots(kl.name, kl))
    return keras.Model(inputs, x, name=spec.name), slots


def load_canonical(variables: list[Any], slots: dict[str, Slot], weights: dict[str, np.ndarray]) -> None:
    """Assign canonical `weights` to the Keras `variables` through `slots`; parts no canonical tensor names
    (the GRU's recurrent r, z biases) are set to zero. Names are checked by the caller."""
    values = {id(v): np.zeros(v.shape, v.dtype) for v in variables}
    for name, slot in slots.items():
        target = values[id(slot.variable)][slot.index]
        value = slot.to_keras(np.asarray(weights[name]))
        if target.shape != value.shape:
            raise ValueError(f"{name}: canonical shape {np.shape(weights[name])} does not fit "
                             f"{slot.variable.path} {tuple(slot.variable.shape)}")
        values[id(slot.variable)][slot.index] = value
    for v in variables:
        v.assign(values[id(v)])


def to_canonical(variables: list[Any], slots: dict[str, Slot], arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Host arrays of `variables` (or of their gradients), in order, as canonical names and layouts."""
    by_var = {id(v): a for v, a in zip(variables, arrays)}
    return {name: np.array(s.to_canonical(by_var[id(s.variable)][s.index])) for name, s in slots.items()}
