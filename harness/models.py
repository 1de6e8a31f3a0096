"""Framework-neutral model specs (docs/spec.md section 1): layers as data, counts derived analytically."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

from .errors import XfbenchError


class SpecError(XfbenchError, ValueError):
    """A model name or hyper-parameter that the spec does not allow."""


# ---- layers: plain data that every adapter translates into its own native layer ----

@dataclass(frozen=True)
class Conv:
    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0  # explicit, symmetric, in pixels: never "same"
    activation: str | None = None


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" | "avg"
    size: int
    stride: int


@dataclass(frozen=True)
class Flatten:
    """Flatten in canonical (C, H, W) order."""


@dataclass(frozen=True)
class Dense:
    name: str
    units: int
    activation: str | None = None
    dropout: float = 0.0  # applied to the input, training mode only


@dataclass(frozen=True)
class Embedding:
    name: str
    vocab: int
    dim: int


@dataclass(frozen=True)
class Recurrent:
    """`layers` stacked recurrent layers over the whole sequence, zero initial state."""

    cell: str  # "lstm" | "gru" (reset-after form)
    hidden: int
    layers: int

    @property
    def gates(self) -> int:
        return 4 if self.cell == "lstm" else 3


Layer = Union[Conv, Pool, Flatten, Dense, Embedding, Recurrent]


@dataclass(frozen=True)
class ModelSpec:
    """One model at concrete hyper-parameters; `kind` is "image" or "sequence"."""

    name: str
    kind: str
    input_shape: tuple[int, ...]  # image: (C, H, W); sequence: (T,)
    classes: int  # image classes, or vocabulary size for token models
    layers: tuple[Layer, ...]
    hparams: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def seq_len(self) -> int | None:
        return self.input_shape[0] if self.kind == "sequence" else None

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical (PyTorch-layout) weight names and shapes, docs/spec.md section 2."""
        return _walk(self)[0]

    def parameter_count(self) -> int:
        total = 0
        for shape in self.weight_shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def forward_flops(self) -> int:
        """Forward FLOPs per sample: 2 per multiply-add of conv, dense and recurrent matmuls."""
        return _walk(self)[1]

    def train_flops(self) -> int:
        return 3 * self.forward_flops()


def output_hw(layer: Conv | Pool, h: int, w: int) -> tuple[int, int]:
    """Height and width after a conv (explicit symmetric padding) or a pool (no padding)."""
    pad, k = (layer.padding, layer.kernel) if isinstance(layer, Conv) else (0, layer.size)
    return (h + 2 * pad - k) // layer.stride + 1, (w + 2 * pad - k) // layer.stride + 1


def feature_shapes(spec: ModelSpec) -> Iterator[tuple[Layer, tuple[int, int, int], tuple[int, int, int]]]:
    """For each layer of an image model up to its Flatten: (layer, (C, H, W) in, (C, H, W) out)."""
    c, h, w = spec.input_shape
    for layer in spec.layers:
        if isinstance(layer, (Conv, Pool)):
            oh, ow = output_hw(layer, h, w)
            oc = layer.out_channels if isinstance(layer, Conv) else c
            yield layer, (c, h, w), (oc, oh, ow)
            c, h, w = oc, oh, ow
        else:
            yield layer, (c, h, w), (c, h, w)
            if isinstance(layer, Flatten):
                return


def _walk(spec: ModelSpec) -> tuple[dict[str, tuple[int, ...]], int]:
    """Propagate shapes through the layers; return canonical weight shapes and forward FLOPs."""
    shapes: dict[str, tuple[int, ...]] = {}
    flops = 0
    if spec.kind == "image":
        flat: int | None = None
        convs = {id(layer): (cin, cout) for layer, cin, cout in feature_shapes(spec)}
        for layer in spec.layers:
            if isinstance(layer, Conv):
                (c, _, _), (oc, h, w) = convs[id(layer)]
                shapes[f"{layer.name}.weight"] = (oc, c, layer.kernel, layer.kernel)
                shapes[f"{layer.name}.bias"] = (oc,)
                flops += 2 * c * layer.kernel * layer.kernel * oc * h * w
            elif isinstance(layer, Pool):
                _, (_, h, w) = convs[id(layer)]
            elif isinstance(layer, Flatten):
                _, (c, h, w) = convs[id(layer)]
                flat = c * h * w
            elif isinstance(layer, Dense):
                if flat is None:
                    raise SpecError(f"{spec.name}: a dense layer before the Flatten")
                shapes[f"{layer.name}.weight"] = (layer.units, flat)
                shapes[f"{layer.name}.bias"] = (layer.units,)
                flops += 2 * flat * layer.units
                flat = layer.units
            else:
                raise SpecError(f"layer {layer!r} does not fit an image model")
            if h <= 0 or w <= 0:
                raise SpecError(f"{spec.name}: the input {spec.input_shape} is too small for {layer!r}")
        return shapes, flops

    (seq_len,) = spec.input_shape
    width = 0
    for layer in spec.layers:
        if isinstance(layer, Embedding):
            shapes[f"{layer.name}.weight"] = (layer.vocab, layer.dim)
            width = layer.dim
        elif isinstance(layer, Recurrent):
            g, hid = layer.gates, layer.hidden
            for i in range(layer.layers):
                p = f"{layer.cell}{i}"
                shapes[f"{p}.weight_ih"] = (g * hid, width)
                shapes[f"{p}.weight_hh"] = (g * hid, hid)
                if layer.cell == "lstm":
                    shapes[f"{p}.bias"] = (g * hid,)
                else:
                    shapes[f"{p}.bias_ih"] = (g * hid,)
                    shapes[f"{p}.bias_hn"] = (hid,)
                flops += 2 * seq_len * g * hid * (width + hid)
                width = hid
        elif isinstance(layer, Dense):
            shapes[f"{layer.name}.weight"] = (layer.units, width)
            shapes[f"{layer.name}.bias"] = (layer.units,)
            flops += 2 * seq_len * width * layer.units
            width = layer.units
        else:
            raise SpecError(f"layer {layer!r} does not fit a sequence model")
    return shapes, flops


# ---- the catalogue: builders with named, validated hyper-parameters ----

@dataclass(frozen=True)
class ModelDef:
    name: str
    summary: str
    defaults: dict[str, Any]
    choices: dict[str, tuple[Any, ...]]
    builder: Callable[..., ModelSpec]


def _lenet5(name: str, activation: str, pool: str, classes: int) -> ModelSpec:
    a = activation
    layers = (
        Conv("c1", 6, 5, activation=a), Pool(pool, 2, 2),
        Conv("c3", 16, 5, activation=a), Pool(pool, 2, 2),
        Conv("c5", 120, 5, activation=a), Flatten(),
        Dense("f6", 84, activation=a), Dense("out", classes),
    )
    hp = {"activation": activation, "pool": pool, "classes": classes}
    return ModelSpec(name, "image", (1, 32, 32), classes, layers, hp)


def _alexnet(name: str, image_size: int, classes: int, dropout: float, width: float) -> ModelSpec:
    ch = [max(1, round(c * width)) for c in (64, 192, 384, 256, 256, 4096)]
    layers = (
        Conv("conv1", ch[0], 11, stride=4, padding=2, activation="relu"), Pool("max", 3, 2),
        Conv("conv2", ch[1], 5, padding=2, activation="relu"), Pool("max", 3, 2),
        Conv("conv3", ch[2], 3, padding=1, activation="relu"),
        Conv("conv4", ch[3], 3, padding=1, activation="relu"),
        Conv("conv5", ch[4], 3, padding=1, activation="relu"), Pool("max", 3, 2),
        Flatten(),
        Dense("fc6", ch[5], activation="relu", dropout=dropout),
        Dense("fc7", ch[5], activation="relu", dropout=dropout),
        Dense("fc8", classes),
    )
    hp = {"image_size": image_size, "classes": classes, "dropout": dropout, "width": width}
    return ModelSpec(name, "image", (3, image_size, image_size), classes, layers, hp)


def _recurrent(cell: str):
    def build(name: str, vocab: int, embed: int, hidden: int, layers: int, seq_len: int) -> ModelSpec:
        spec_layers = (Embedding("embed", vocab, embed), Recurrent(cell, hidden, layers), Dense("out", vocab))
        hp = {"vocab": vocab, "embed": embed, "hidden": hidden, "layers": layers, "seq_len": seq_len}
        return ModelSpec(name, "sequence", (seq_len,), vocab, spec_layers, hp)
    return build


_TOKEN_DEFAULTS = {"vocab": 10000, "embed": 512, "hidden": 512, "layers": 2, "seq_len": 35}

MODELS: dict[str, ModelDef] = {
    m.name: m for m in (
        ModelDef("lenet5", "LeNet-5 (LeCun 1998 sizes), 1x32x32 -> 10",
                 {"activation": "relu", "pool": "max", "classes": 10},
                 {"activation": ("relu", "tanh", "sigmoid"), "pool": ("max", "avg")}, _lenet5),
        ModelDef("lenet5-classic", "LeNet-5 with tanh and average pooling",
                 {"activation": "tanh", "pool": "avg", "classes": 10},
                 {"activation": ("relu", "tanh", "sigmoid"), "pool": ("max", "avg")}, _lenet5),
        ModelDef("alexnet", "AlexNet (torchvision single tower), 3x224x224 -> 1000",
                 {"image_size": 224, "classes": 1000, "dropout": 0.5, "width": 1.0}, {}, _alexnet),
        ModelDef("lstm", "2-layer LSTM token language model, loss at every step",
                 dict(_TOKEN_DEFAULTS), {}, _recurrent("lstm")),
        ModelDef("gru", "2-layer GRU (reset-after) token language model, loss at every step",
                 dict(_TOKEN_DEFAULTS), {}, _recurrent("gru")),
    )
}

# Tiny hyper-parameters: every model in a fraction of a second, for tests, the conformance kit and
# `bench validate --tiny`. AlexNet at 96 px flattens a 2x2 map, so fc6's (C, H, W) order is exercised.
TINY_SIZES: dict[str, dict[str, Any]] = {
    "lenet5": {}, "lenet5-classic": {},
    "alexnet": {"image_size": 96, "width": 0.125, "classes": 10},
    "lstm": {"vocab": 50, "embed": 8, "hidden": 4, "layers": 2, "seq_len": 5},
    "gru": {"vocab": 50, "embed": 8, "hidden": 4, "layers": 2, "seq_len": 5},
}

# Upper bound on one model's parameters: refuses absurd sizes before anything is allocated.
MAX_PARAMETERS = 2_000_000_000


def build_spec(name: str, **overrides: Any) -> ModelSpec:
    """The spec of model `name` with its defaults updated by `overrides`, validated."""
    if name not in MODELS:
        raise SpecError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    mdef = MODELS[name]
    params = dict(mdef.defaults)
    for key, value in overrides.items():
        if key not in params:
            raise SpecError(f"model {name!r} has no hyper-parameter {key!r}; "
                            f"it takes {', '.join(params)}")
        default = params[key]
        if isinstance(default, bool) or type(value) is bool:
            ok = type(value) is type(default)
        elif isinstance(default, int):
            ok = type(value) is int
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            hint = ""
            if type(value) is float and type(default) is int and value.is_integer():
                try:  # `hidden = 1e9` in TOML is a float: say so, and what the integer would cost
                    build_spec(name, **{**overrides, key: int(value)})
                    hint = f"; write {int(value)}"
                except SpecError as e:
                    hint = f"; and as an integer: {e}"
            raise SpecError(f"model {name!r}: {key} must be {type(default).__name__}, got {value!r}{hint}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"model {name!r}: {key} must be a finite number, got {value!r}")
        if key in mdef.choices and value not in mdef.choices[key]:
            raise SpecError(f"model {name!r}: {key}={value!r} is not one of {', '.join(map(str, mdef.choices[key]))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bad_dropout = key == "dropout" and not 0.0 <= value < 1.0
            if bad_dropout or (key != "dropout" and value <= 0):
                raise SpecError(f"model {name!r}: {key}={value!r} is out of range")
        params[key] = value
    spec = mdef.builder(name, **params)
    count = spec.parameter_count()
    if count > MAX_PARAMETERS:
        raise SpecError(f"model {name!r} with {overrides} has {count:,} parameters "
                        f"(~{count * 4 // 2**30:,} GiB in fp32); lower the sizes")
    return spec
