"""NumPy reference adapter: the spec's forward pass written out plainly, for clarity, not speed.

It is the independent oracle of `bench validate` (every framework is compared with it) and the worked
example of docs/adding-an-adapter.md. Inference only: it has no gradients and no optimizers. Weights
are kept exactly as canonical (PyTorch layout), inputs as canonical NCHW / (B, T) token arrays.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from xfbench.harness.adapter import Adapter, PeakKernel, Unsupported
from xfbench.harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent
from xfbench.harness.optimizers import OptimizerSpec
from xfbench.harness.weights import check_weights

_DTYPES = {"fp32": np.float32, "fp64": np.float64}
INFERENCE_ONLY = "the numpy reference adapter is inference-only"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow for large -x


_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh, "sigmoid": sigmoid}


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """(B, C, H, W) * (O, C, k, k) -> (B, O, H', W'): cross-correlation, as every framework computes it."""
    p = padding
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    k = w.shape[-1]
    patches = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (B, C, H', W', k, k)
    return np.einsum("bchwij,ocij->bohw", patches, w, optimize=True) + b[None, :, None, None]


def pool2d(x: np.ndarray, kind: str, size: int, stride: int) -> np.ndarray:
    """Max or average over size x size windows, no padding (VALID)."""
    windows = sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(-2, -1)) if kind == "max" else windows.mean(axis=(-2, -1))


def lstm_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, T, in) -> (B, T, H); gates i, f, g, o; zero initial state."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden), x.dtype)
    c = np.zeros((batch, hidden), x.dtype)
    out = np.empty((batch, steps, hidden), x.dtype)
    for t in range(steps):
        gates = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out


def gru_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hn: np.ndarray) -> np.ndarray:
    """(B, T, in) -> (B, T, H); reset-after form, gates r, z, n; zero initial state."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden), x.dtype)
    out = np.empty((batch, steps, hidden), x.dtype)
    for t in range(steps):
        xr, xz, xn = np.split(x[:, t] @ w_ih.T + b_ih, 3, axis=1)
        hr, hz, hn = np.split(h @ w_hh.T, 3, axis=1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = np.tanh(xn + r * (hn + b_hn))
        h = (1 - z) * n + z * h
        out[:, t] = h
    return out


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean softmax cross-entropy over every position; logits (..., classes), integer targets (...)."""
    flat = logits.reshape(-1, logits.shape[-1])
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(flat)), targets.reshape(-1)].mean())


class NumpyAdapter(Adapter):
    """Forward of every spec model from canonical weights; inference mode only."""

    def __init__(self, *, device: str, precision: str, threads: int, seed: int):
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)
        if device != "cpu":
            raise Unsupported("the numpy reference adapter runs on the CPU only")
        if precision not in _DTYPES:
            raise Unsupported(f"precision {precision!r} is not offered by the numpy reference adapter")
        self.dtype = _DTYPES[precision]

    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        if optimizer is not None:
            raise Unsupported(INFERENCE_ONLY)
        self.spec = spec
        self.shapes = spec.weight_shapes()
        self.w = {k: np.zeros(s, self.dtype) for k, s in self.shapes.items()}

    def parameter_count(self) -> int:
        return sum(v.size for v in self.w.values())

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(weights, self.shapes, self.shapes)
        self.w = {k: np.array(v, dtype=self.dtype) for k, v in weights.items()}

    def dump_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.w.items()}

    def put_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, self.dtype) if self.spec.kind == "image" else np.asarray(x, np.int64)
        return x, np.asarray(y, np.int64)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The spec's layers in order; (B, C, H, W) -> (B, classes) or (B, T) -> (B, T, vocab)."""
        w = self.w
        for layer in self.spec.layers:
            if isinstance(layer, Conv):
                x = conv2d(x, w[f"{layer.name}.weight"], w[f"{layer.name}.bias"], layer.stride, layer.padding)
            elif isinstance(layer, Pool):
                x = pool2d(x, layer.kind, layer.size, layer.stride)
            elif isinstance(layer, Flatten):
                x = x.reshape(len(x), -1)  # NCHW flattens in canonical (C, H, W) order
            elif isinstance(layer, Dense):  # dropout: identity in inference mode
                x = x @ w[f"{layer.name}.weight"].T + w[f"{layer.name}.bias"]
            elif isinstance(layer, Embedding):
                x = w[f"{layer.name}.weight"][x]  # (B, T) -> (B, T, embed)
            elif isinstance(layer, Recurrent):
                for i in range(layer.layers):
                    p = f"{layer.cell}{i}"
                    if layer.cell == "lstm":
                        x = lstm_layer(x, w[f"{p}.weight_ih"], w[f"{p}.weight_hh"], w[f"{p}.bias"])
                    else:
                        x = gru_layer(x, w[f"{p}.weight_ih"], w[f"{p}.weight_hh"], w[f"{p}.bias_ih"],
                                      w[f"{p}.bias_hn"])
            if getattr(layer, "activation", None):
                x = _ACTIVATIONS[layer.activation](x)
        return x

    def forward(self, batch: Any) -> tuple[np.ndarray, float]:
        x, y = batch
        logits = self.logits(x)
        return logits, cross_entropy(logits, y)

    def infer_step(self, batch: Any) -> None:
        self.logits(batch[0])

    def train_step(self, batch: Any) -> None:
        raise Unsupported(INFERENCE_ONLY)

    def gradients(self, batch: Any) -> dict[str, np.ndarray]:
        raise Unsupported(INFERENCE_ONLY)

    def sync(self) -> None:
        """Nothing to wait for: every NumPy call has finished when it returns."""

    # The roofline (xfbench.harness.measure.peak): the BLAS numpy links (OpenBLAS in the wheels) and a plain memcpy.
    def peak_gemm(self, a: np.ndarray, b: np.ndarray) -> PeakKernel:
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        return PeakKernel(run=lambda: np.matmul(a, b, out=out), result=out.copy, what="np.matmul(a, b, out=c)")

    def peak_copy(self, x: np.ndarray) -> PeakKernel:
        src = np.asarray(x, np.float32)
        dst = np.empty_like(src)
        return PeakKernel(run=lambda: np.copyto(dst, src), result=dst.copy, what="np.copyto into a kept buffer")

    def settings(self) -> dict[str, Any]:
        return {"versions": {"numpy": np.__version__}, "threads": self.threads, "precision": self.precision,
                "dtype": np.dtype(self.dtype).name, "compile": "none (eager NumPy, written for clarity)",
                "data_layout": "NCHW" if self.spec.kind == "image" else "(B, T) int64",
                "compile_scope": "none (eager)", "fp32_math": "ieee", "reference": True,
                **({"recurrent_impl": "NumPy loop over time steps"} if self.spec.kind == "sequence" else {})}
