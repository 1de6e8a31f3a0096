"""ONNX Runtime adapter (inference only): an ONNX graph built from the spec with `onnx.helper`, run by an
`onnxruntime.InferenceSession` on the CPU or the CUDA execution provider.

The graph is written from `spec.layers` and the canonical weights alone (no other framework exports it).
Canonical layouts are PyTorch's, and ONNX's are the same for convolutions (O, I, kh, kw), dense layers (Gemm
with transB=1 reads (out, in) as it is) and NCHW flattening; only the recurrent gates are reordered
(docs/spec.md section 2.3):

- LSTM: ONNX gate order i, o, f, c against the canonical i, f, g, o; B = [Wb; Rb] with the one canonical
  bias in Wb and Rb = 0 (as torch's frozen `bias_hh`, section 2.4).
- GRU: ONNX gate order z, r, h against the canonical r, z, n; `linear_before_reset=1` is the reset-after
  form; Wb = the canonical `bias_ih` reordered, Rb = [0, 0, b_hn].

Token models run time-major (layout 0, which every execution provider supports): the (B, T) int64 token ids
are transposed in the graph (a few bytes) so that the embedding lookup yields (T, B, E) directly, each stacked
layer is one LSTM/GRU op, and the last hidden sequence is transposed back to (B, T, H) before the output layer.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from xfbench.harness.adapter import Adapter, PeakKernel, Unsupported
from xfbench.harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent
from xfbench.harness.optimizers import OptimizerSpec
from xfbench.harness.weights import check_weights

# Opset 21 and IR version 10: what onnx 1.16 writes and onnxruntime 1.18 reads, the oldest versions the
# `onnxruntime` extra allows; every op used here has had its current form since opset 14 or earlier.
OPSET = 21
IR_VERSION = 10
_DTYPES = {"fp32": np.float32, "tf32": np.float32, "fp64": np.float64}
_ONNX_DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
INFERENCE_ONLY = "onnxruntime is inference-only here: an InferenceSession has no gradients or optimizers"
# Ops without a float64 kernel in ONNX Runtime's CPU execution provider (verified with onnxruntime 1.32: Conv and
# AveragePool have none registered, LSTM and GRU fail at run time with "does not support double yet";
# tests/test_onnxruntime_adapter.py re-checks the list against the installed version). Every spec model uses one
# of them, so fp64 is Unsupported for each, with the op named.
NO_FP64_KERNEL = {"Conv", "AveragePool", "LSTM", "GRU"}

INPUT, OUTPUT = "input", "logits"
_PROTOBUF_LIMIT = 2**31 - 2**24  # a serialized ModelProto must stay under 2 GiB; 16 MiB left for the graph


# ---- the ONNX graph of a spec model ----

def _lstm_to_onnx(w: np.ndarray) -> np.ndarray:
    """Rows of the canonical gates i, f, g, o -> ONNX's i, o, f, c (c is the canonical g)."""
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g])


def _lstm_from_onnx(w: np.ndarray) -> np.ndarray:
    i, o, f, g = np.split(w, 4, axis=0)
    return np.concatenate([i, f, g, o])


def _swap_first_two(w: np.ndarray) -> np.ndarray:
    """GRU rows r, z, n <-> z, r, h (the mapping is its own inverse)."""
    a, b, c = np.split(w, 3, axis=0)
    return np.concatenate([b, a, c])


def onnx_initializers(spec: ModelSpec, weights: dict[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    """The graph's initializers from canonical weights: the same names and arrays where ONNX's layout is the
    canonical one; per recurrent layer `{p}.W`, `{p}.R`, `{p}.B` in ONNX's gate order and shapes."""
    out: dict[str, np.ndarray] = {}
    recurrent = {f"{layer.cell}{i}": layer.cell for layer in spec.layers if isinstance(layer, Recurrent)
                 for i in range(layer.layers)}
    for name, value in weights.items():
        if name.partition(".")[0] not in recurrent:
            out[name] = np.ascontiguousarray(value, dtype)
    for p, cell in recurrent.items():
        w_ih, w_hh = weights[f"{p}.weight_ih"], weights[f"{p}.weight_hh"]
        if cell == "lstm":
            wb = _lstm_to_onnx(weights[f"{p}.bias"])
            w, r, rb = _lstm_to_onnx(w_ih), _lstm_to_onnx(w_hh), np.zeros_like(wb)
        else:
            w, r, wb = _swap_first_two(w_ih), _swap_first_two(w_hh), _swap_first_two(weights[f"{p}.bias_ih"])
            b_hn = weights[f"{p}.bias_hn"]
            rb = np.concatenate([np.zeros(2 * len(b_hn), b_hn.dtype), b_hn])
        out[f"{p}.W"] = np.ascontiguousarray(w[None], dtype)  # (num_directions=1, G*H, in)
        out[f"{p}.R"] = np.ascontiguousarray(r[None], dtype)
        out[f"{p}.B"] = np.ascontiguousarray(np.concatenate([wb, rb])[None], dtype)  # (1, 2*G*H)
    return out


def canonical_weights(spec: ModelSpec, init: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of `onnx_initializers`: canonical names, layouts and gate orders."""
    out: dict[str, np.ndarray] = {}
    for name in spec.weight_shapes():
        if name in init:
            out[name] = init[name].copy()
    for layer in spec.layers:
        if not isinstance(layer, Recurrent):
            continue
        g, h = layer.gates, layer.hidden
        for i in range(layer.layers):
            p = f"{layer.cell}{i}"
            w, r, b = init[f"{p}.W"][0], init[f"{p}.R"][0], init[f"{p}.B"][0]
            if layer.cell == "lstm":
                out[f"{p}.weight_ih"], out[f"{p}.weight_hh"] = _lstm_from_onnx(w), _lstm_from_onnx(r)
                out[f"{p}.bias"] = _lstm_from_onnx(b[: g * h])
            else:
                out[f"{p}.weight_ih"], out[f"{p}.weight_hh"] = _swap_first_two(w), _swap_first_two(r)
                out[f"{p}.bias_ih"], out[f"{p}.bias_hn"] = _swap_first_two(b[: g * h]), b[g * h + 2 * h:].copy()
    return out


class _Graph:
    """Nodes appended in order; each node's one output is named after it."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.consts: list[onnx.TensorProto] = []

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.consts.append(numpy_helper.from_array(value, name))
        return name


def onnx_model(spec: ModelSpec, weights: dict[str, np.ndarray], dtype: Any = np.float32) -> onnx.ModelProto:
    """The ONNX model of `spec` with the canonical `weights` as initializers, in `dtype`; input `input`
    ((batch, C, H, W) `dtype`, or (batch, T) int64 token ids), output `logits` ((batch, classes) or
    (batch, T, vocab)). Dropout is left out: the graph is the inference-mode forward."""
    return _model(spec, onnx_initializers(spec, weights, dtype), dtype)


def _model(spec: ModelSpec, init: dict[str, np.ndarray], dtype: Any) -> onnx.ModelProto:
    """`onnx_model` from the initializers `onnx_initializers` made."""
    dtype = np.dtype(dtype)
    elem = _ONNX_DTYPES[dtype]
    g = _Graph()
    if spec.kind == "image":
        x = INPUT
        graph_input = helper.make_tensor_value_info(INPUT, elem, ["batch", *spec.input_shape])
        out_shape: list[Any] = ["batch", spec.classes]
    else:
        graph_input = helper.make_tensor_value_info(INPUT, TensorProto.INT64, ["batch", spec.seq_len])
        out_shape = ["batch", spec.seq_len, spec.classes]
        x = g.op("Transpose", [INPUT], "tokens_time_major", perm=[1, 0])  # (B, T) -> (T, B)
    time_major = False  # a token model's activations are (T, B, ...) from the embedding to the last RNN layer
    for n, layer in enumerate(spec.layers):
        if isinstance(layer, Conv):
            p = layer.padding
            x = g.op("Conv", [x, f"{layer.name}.weight", f"{layer.name}.bias"], layer.name,
                     kernel_shape=[layer.kernel, layer.kernel], strides=[layer.stride, layer.stride],
                     pads=[p, p, p, p])
        elif isinstance(layer, Pool):  # VALID: no padding, floor
            x = g.op("MaxPool" if layer.kind == "max" else "AveragePool", [x], f"pool{n}",
                     kernel_shape=[layer.size, layer.size], strides=[layer.stride, layer.stride])
        elif isinstance(layer, Flatten):
            x = g.op("Flatten", [x], "flatten", axis=1)  # NCHW flattens in canonical (C, H, W) order
        elif isinstance(layer, Embedding):
            x = g.op("Gather", [f"{layer.name}.weight", x], layer.name, axis=0)  # (T, B) -> (T, B, E)
            time_major = True
        elif isinstance(layer, Recurrent):
            op = "LSTM" if layer.cell == "lstm" else "GRU"
            extra = {} if layer.cell == "lstm" else {"linear_before_reset": 1}  # the reset-after GRU
            axis1 = g.const("squeeze_axis_1", np.array([1], np.int64))
            for i in range(layer.layers):
                p = f"{layer.cell}{i}"
                y = g.op(op, [x, f"{p}.W", f"{p}.R", f"{p}.B"], p, hidden_size=layer.hidden, layout=0, **extra)
                x = g.op("Squeeze", [y, axis1], f"{p}_y")  # (T, 1, B, H) -> (T, B, H)
        elif isinstance(layer, Dense):  # its dropout is the identity in inference
            w, b = f"{layer.name}.weight", f"{layer.name}.bias"
            if time_major:  # the output layer at every step: (T, B, H) -> (B*T, H) -> (B, T, vocab)
                x = g.op("Transpose", [x], "batch_major", perm=[1, 0, 2])
                x = g.op("Reshape", [x, g.const("rows_shape", np.array([-1, init[w].shape[1]], np.int64))],
                         "rows")
                x = g.op("Gemm", [x, w, b], layer.name, transB=1)
                x = g.op("Reshape", [x, g.const("logits_shape", np.array([-1, spec.seq_len, layer.units],
                                                                         np.int64))], OUTPUT)
                time_major = False
            else:
                x = g.op("Gemm", [x, w, b], layer.name, transB=1)  # W (out, in) as it is
        if getattr(layer, "activation", None):
            x = g.op(_ACTIVATIONS[layer.activation], [x], f"{getattr(layer, 'name', n)}_{layer.activation}")
    if x != OUTPUT:
        g.nodes[-1].output[0] = OUTPUT
    graph = helper.make_graph(g.nodes, spec.name, [graph_input],
                              [helper.make_tensor_value_info(OUTPUT, elem, out_shape)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in init.items()] + g.consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="xfbench")


def ops_of(spec: ModelSpec) -> set[str]:
    """The ONNX op types of `spec`'s graph, without building it."""
    ops = set()
    for layer in spec.layers:
        if isinstance(layer, Conv):
            ops.add("Conv")
        elif isinstance(layer, Pool):
            ops.add("MaxPool" if layer.kind == "max" else "AveragePool")
        elif isinstance(layer, Flatten):
            ops.add("Flatten")
        elif isinstance(layer, Dense):
            ops.add("Gemm")
        elif isinstance(layer, Embedding):
            ops |= {"Transpose", "Gather"}
        elif isinstance(layer, Recurrent):
            ops |= {"LSTM" if layer.cell == "lstm" else "GRU", "Squeeze", "Transpose", "Reshape"}
        if getattr(layer, "activation", None):
            ops.add(_ACTIVATIONS[layer.activation])
    return ops


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean softmax cross-entropy over every position (docs/spec.md section 3.1), in NumPy, in the logits' dtype (as the NumPy reference)."""
    flat = np.asarray(logits).reshape(-1, logits.shape[-1])
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(flat)), np.asarray(targets).reshape(-1)].mean())


# ---- the adapter ----

@dataclass
class _Batch:
    """One batch on the device: the input and a kept output buffer, bound once per session (IO binding)."""

    x: Any  # ort.OrtValue on the device
    out: Any  # ort.OrtValue on the device, written by every step
    y: np.ndarray  # targets, for the loss that `forward` computes in NumPy
    keep: Any = field(default=None, repr=False)  # the host array a CPU OrtValue borrows its memory from
    session: Any = None
    binding: Any = field(default=None, repr=False)


class OnnxRuntimeAdapter(Adapter):
    """The spec's forward as one ONNX graph in an InferenceSession; weights are initializers."""

    def __init__(self, *, device: str, precision: str, threads: int, seed: int):
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)
        if device not in ("cpu", "cuda"):
            raise Unsupported(f"the onnxruntime adapter runs on cpu or cuda, not {device!r}")
        if precision == "bf16":
            raise Unsupported("bf16 is not offered by the onnxruntime adapter: the spec's mixed precision (bfloat16 "
                              "convolutions and dense layers, float32 recurrent layers; docs/spec.md 5.8) would need "
                              "a hand-cast graph, and ONNX Runtime's CPU execution provider has no bfloat16 Conv or "
                              "Gemm kernels")
        if precision not in _DTYPES:
            raise Unsupported(f"precision {precision!r} is not offered by the onnxruntime adapter")
        if precision == "tf32" and device != "cuda":
            raise Unsupported("tf32 is a GPU precision; use fp32 on CPU")
        if precision == "fp64" and device != "cpu":
            raise Unsupported("fp64 is offered on the CPU execution provider only (checked there, op by op)")
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Unsupported("onnxruntime has no CUDAExecutionProvider here (the `onnxruntime` wheel is CPU-only; "
                                  "install onnxruntime-gpu): available: " + ", ".join(ort.get_available_providers()))
            # use_tf32: 1 lets cuDNN and cuBLAS run float32 as TF32 (ORT's default); fp32 means IEEE.
            self.providers: list[Any] = [("CUDAExecutionProvider", {"device_id": 0,
                                                                    "use_tf32": 1 if precision == "tf32" else 0}),
                                         "CPUExecutionProvider"]
            self.ort_device = "cuda"
        else:
            self.providers = ["CPUExecutionProvider"]
            self.ort_device = "cpu"
        self.dtype = np.dtype(_DTYPES[precision])
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = threads  # as torch.set_num_threads(threads)
        self.options.inter_op_num_threads = 1
        self.options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session: ort.InferenceSession | None = None
        self.spec: ModelSpec | None = None
        self._spill: Any = None  # the loaded weights, in an unlinked temporary file (load_weights says why)
        self._last_binding: Any = None  # of the latest step, for sync()
        self._peak_sessions: list[Any] = []

    # ---- building ----
    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        if optimizer is not None:
            raise Unsupported(INFERENCE_ONLY)
        if self.dtype == np.float64 and ops_of(spec) & NO_FP64_KERNEL:
            missing = ", ".join(sorted(ops_of(spec) & NO_FP64_KERNEL))
            raise Unsupported(f"fp64: ONNX Runtime's CPU execution provider has no float64 kernel for {missing} "
                              f"({spec.name})")
        if spec.parameter_count() * self.dtype.itemsize >= _PROTOBUF_LIMIT:
            raise Unsupported(f"{spec.name}: {spec.parameter_count():,} parameters exceed the 2 GiB a protobuf "
                              "ModelProto can hold (ONNX external data is not implemented here)")
        self.spec = spec
        self.shapes = spec.weight_shapes()
        self.session = None

    def parameter_count(self) -> int:
        # The canonical tensors; ONNX's recurrent biases held at zero (the LSTM's Rb, the GRU's r and z parts
        # of Rb) are constants of the graph, not parameters (docs/spec.md section 2.4).
        return self.spec.parameter_count()

    def _session(self, model: bytes) -> ort.InferenceSession:
        session = ort.InferenceSession(model, sess_options=self.options, providers=self.providers)
        if self.ort_device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
            # ORT falls back to the CPU silently when the CUDA provider cannot load (missing CUDA or cuDNN).
            raise Unsupported("onnxruntime could not start its CUDAExecutionProvider (CUDA or cuDNN libraries "
                              f"missing?); the session has {session.get_providers()}")
        return session

    # ---- canonical weights ----
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(weights, self.shapes, self.shapes)
        self.session = None  # the old session and its copy of the weights go first
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        init = onnx_initializers(self.spec, weights, self.dtype)
        # The session holds the only resident copy of the weights (ORT repacks them and frees what it no longer
        # needs). `dump_weights` reads back the arrays the graph was built from, spilled here to an unlinked
        # temporary file: an in-memory copy would add the whole model's size to this adapter's memory figures
        # (AlexNet, measured: 282 MB resident over the interpreter's with the spill, 522 MB with an in-memory
        # copy; docs/spec.md 5.7, "one copy").
        self._spill = tempfile.TemporaryFile(prefix="xfbench-onnxruntime-")
        np.savez(self._spill, **init)
        self._spill.flush()
        model = _model(self.spec, init, self.dtype).SerializeToString()
        del init
        self.session = self._session(model)

    def dump_weights(self) -> dict[str, np.ndarray]:
        if self._spill is None:
            raise RuntimeError("no weights loaded")
        self._spill.seek(0)
        with np.load(self._spill, allow_pickle=False) as spilled:
            init = {k: spilled[k] for k in spilled.files}
        return canonical_weights(self.spec, init)

    # ---- data and steps ----
    def put_batch(self, x: np.ndarray, y: np.ndarray) -> _Batch:
        if self.spec.kind == "image":
            x = np.ascontiguousarray(x, self.dtype)  # canonical NCHW is ONNX's own
            out_shape = [len(x), self.spec.classes]
        else:
            x = np.ascontiguousarray(x, np.int64)
            out_shape = [len(x), self.spec.seq_len, self.spec.classes]
        xv = ort.OrtValue.ortvalue_from_numpy(x, self.ort_device, 0)  # on CPU: wraps x's memory, no copy
        out = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, self.dtype.type, self.ort_device, 0)
        return _Batch(xv, out, np.asarray(y, np.int64), keep=x)

    def _binding(self, batch: _Batch) -> Any:
        if batch.session is not self.session:  # first step of this batch in this session
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(INPUT, batch.x)
            binding.bind_ortvalue_output(OUTPUT, batch.out)  # written in place: no allocation or copy per step
            batch.session, batch.binding = self.session, binding
        return batch.binding

    def infer_step(self, batch: _Batch) -> None:
        binding = self._binding(batch)
        self.session.run_with_iobinding(binding)
        self._last_binding = binding

    def train_step(self, batch: Any) -> None:
        raise Unsupported(INFERENCE_ONLY)

    def gradients(self, batch: Any) -> dict[str, np.ndarray]:
        raise Unsupported(INFERENCE_ONLY)

    def sync(self) -> None:
        # The CPU execution provider computes within run(): every step has finished when it returns. On CUDA,
        # run_with_iobinding synchronises the provider's stream before it returns (ORT's default, which the
        # run options leave on); synchronize_outputs waits for the bound outputs of the last step all the same.
        if self.ort_device == "cuda" and self._last_binding is not None:
            self._last_binding.synchronize_outputs()

    def forward(self, batch: _Batch) -> tuple[np.ndarray, float]:
        self.infer_step(batch)  # the timed function itself
        self.sync()
        logits = batch.out.numpy()
        return logits.astype(self.dtype, copy=False), cross_entropy(logits, batch.y)

    # ---- the roofline (xfbench.harness.measure.peak) ----
    def _one_op(self, op: str, inputs: dict[str, np.ndarray], out_shape: list[int]) -> tuple[Any, Any, Any]:
        """A session of one op over `inputs` (float32, on the device), its output bound to a kept buffer."""
        names = list(inputs)
        graph = helper.make_graph(
            [helper.make_node(op, names, ["y"])], f"peak_{op.lower()}",
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
        session = self._session(model.SerializeToString())
        binding = session.io_binding()
        inputs = {k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()}  # CPU OrtValues borrow these
        values = {k: ort.OrtValue.ortvalue_from_numpy(v, self.ort_device, 0) for k, v in inputs.items()}
        for k, v in values.items():
            binding.bind_ortvalue_input(k, v)
        out = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, self.ort_device, 0)
        binding.bind_ortvalue_output("y", out)
        self._peak_sessions.append((session, binding, values, out, inputs))  # alive while the kernel is timed
        self._last_binding = binding
        return session, binding, out

    def peak_gemm(self, a: np.ndarray, b: np.ndarray) -> PeakKernel:
        # float32 whatever the case's precision; on CUDA use_tf32 is 0 unless the precision is "tf32".
        session, binding, out = self._one_op("MatMul", {"a": a, "b": b}, [a.shape[0], b.shape[1]])
        return PeakKernel(run=lambda: session.run_with_iobinding(binding), result=lambda: out.numpy().copy(),
                          what="ONNX MatMul in an InferenceSession, output bound to a kept buffer")

    def peak_copy(self, x: np.ndarray) -> PeakKernel:
        # Identity whose output is bound to a buffer of its own: it cannot alias its input, so it copies.
        session, binding, out = self._one_op("Identity", {"x": x}, list(x.shape))
        return PeakKernel(run=lambda: session.run_with_iobinding(binding), result=lambda: out.numpy().copy(),
                          what="ONNX Identity, output bound to a kept buffer (a copy)")

    def settings(self) -> dict[str, Any]:
        session = self.session
        providers = session.get_providers() if session is not None else [
            p if isinstance(p, str) else p[0] for p in self.providers]
        s: dict[str, Any] = {
            "versions": {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "opset": str(OPSET)},
            "threads": self.options.intra_op_num_threads,
            "interop_threads": self.options.inter_op_num_threads,
            "precision": self.precision,
            "dtype": self.dtype.name,
            "compile": "onnxruntime.InferenceSession, ORT_ENABLE_ALL",
            # The forward is one graph that ORT optimises (fusions, layout transforms) before the first step.
            "compile_scope": "forward only, compiled",
            "data_layout": "NCHW" if self.spec is None or self.spec.kind == "image" else
                           "(B, T) int64, transposed to time-major in the graph",
            "fp32_math": "tf32" if self.precision == "tf32" else "ieee",
            "execution_providers": providers,
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "execution_mode": "ORT_SEQUENTIAL",
            "io_binding": "input placed by put_batch, logits bound to a kept buffer",
            # ORT's default: idle pool threads spin briefly before they sleep (session.intra_op.allow_spinning).
            "intra_op_spinning": "on (ORT default)",
            "memory": "CPU arena and memory patterns on (ORT defaults)",
            "weights_for_dump": "spilled to an unlinked temporary file at load_weights, not resident",
        }
        if self.spec is not None and self.spec.kind == "sequence":
            cell = next(layer.cell for layer in self.spec.layers if isinstance(layer, Recurrent))
            kernel = "cuDNN" if self.ort_device == "cuda" else "ORT's DeepCPU kernel"
            s["recurrent_impl"] = f"ONNX {cell.upper()} op, one per layer ({kernel}), time-major"
        if self.ort_device == "cuda":
            s["provider_options"] = (session.get_provider_options() if session is not None else
                                     {"CUDAExecutionProvider": dict(self.providers[0][1])})
            s["cuda_device_id"] = 0  # ORT does not name the GPU; the run's host record does (nvidia-smi)
        return s
