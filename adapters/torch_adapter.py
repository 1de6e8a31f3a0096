"""PyTorch adapter: native layers (nn.Conv2d, nn.LSTM, nn.GRU), NCHW, torch.optim; optional torch.compile."""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from xfbench.harness.adapter import Adapter, PeakKernel, Unsupported
from xfbench.harness.models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent
from xfbench.harness.optimizers import OptimizerSpec
from xfbench.harness.weights import check_weights

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.float32, "fp64": torch.float64}
# torch.compile modes whose inductor graphs run as CUDA graphs on a GPU (torch._inductor.list_mode_options:
# "triton.cudagraphs"); "reduce-overhead" exists for nothing else.
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def _image_model(spec: ModelSpec) -> nn.Module:
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    channels = spec.input_shape[0]
    shapes = spec.weight_shapes()
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, Conv):
            mods[layer.name] = nn.Conv2d(channels, layer.out_channels, layer.kernel,
                                         stride=layer.stride, padding=layer.padding)
            channels = layer.out_channels
        elif isinstance(layer, Pool):
            pool = nn.MaxPool2d if layer.kind == "max" else nn.AvgPool2d
            mods[f"pool{i}"] = pool(layer.size, layer.stride)
        elif isinstance(layer, Flatten):
            mods["flatten"] = nn.Flatten()  # NCHW flattens in canonical (C, H, W) order
        elif isinstance(layer, Dense):
            if layer.dropout:
                mods[f"{layer.name}_dropout"] = nn.Dropout(layer.dropout)
            mods[layer.name] = nn.Linear(shapes[f"{layer.name}.weight"][1], layer.units)
        if getattr(layer, "activation", None):
            mods[f"{layer.name}_{layer.activation}"] = _ACTIVATIONS[layer.activation]()
    return nn.Sequential(mods)


class _TokenModel(nn.Module):
    """Embedding -> stacked LSTM/GRU (zero initial state) -> dense to the vocabulary at every step."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        emb, rec, out = spec.layers
        assert isinstance(emb, Embedding) and isinstance(rec, Recurrent) and isinstance(out, Dense)
        self.cell, self.hidden, self.num_layers = rec.cell, rec.hidden, rec.layers
        self.embed = nn.Embedding(emb.vocab, emb.dim)
        rnn = nn.LSTM if rec.cell == "lstm" else nn.GRU
        self.rnn = rnn(emb.dim, rec.hidden, rec.layers, batch_first=True)
        self.out = nn.Linear(rec.hidden, out.units)
        h = rec.hidden
        if rec.cell == "gru":
            # A buffer, so that `.to(device, dtype)` moves it with the model: a CPU tensor here would be
            # copied to the GPU in every backward, a blocking copy that syncs the stream mid-step.
            self.register_buffer("bias_hh_mask", torch.cat([torch.zeros(2 * h), torch.ones(h)]), persistent=False)
        for i in range(rec.layers):
            b_hh = getattr(self.rnn, f"bias_hh_l{i}")
            if rec.cell == "lstm":
                # One canonical bias per gate: bias_ih carries it, bias_hh is frozen at zero.
                b_hh.requires_grad_(False)
            else:
                # bias_hh = [0, 0, b_hn]: its r and z parts duplicate bias_ih and must never move.
                b_hh.register_hook(lambda g: g * self.bias_hh_mask)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        # Embedding and recurrent layers in float32 also under bf16 autocast (docs/spec.md section 5.8): CPU
        # autocast already keeps them there, CUDA autocast would run cuDNN's RNN in bfloat16.
        if torch.is_autocast_enabled(tokens.device.type):
            with torch.autocast(tokens.device.type, enabled=False):
                seq, _ = self.rnn(self.embed(tokens))
        else:  # fp32 and fp64: no autocast context at all
            seq, _ = self.rnn(self.embed(tokens))
        return self.out(seq)


class _Batches(Dataset):
    """A data set's canonical arrays, indexed by a whole batch of indices: one gather per batch.

    The DataLoader then runs with automatic batching off (`batch_size=None`, the sampler yields index arrays),
    its documented mode for bulk reads: one batch per worker task, where `batch_sampler` would call
    `__getitem__` once per example and stack them (4x the time per batch on digits at batch 64: 0.20
    against 0.05 ms). The conversions are put_batch's, done in the worker.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, x_dtype: torch.dtype, memory_format: torch.memory_format):
        self.x, self.y, self.x_dtype, self.memory_format = x, y, x_dtype, memory_format

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xb = torch.from_numpy(self.x[idx]).to(self.x_dtype).contiguous(memory_format=self.memory_format)
        return xb, torch.from_numpy(self.y[idx]).to(torch.long)


def _compile_counters() -> tuple[int, dict[str, int]]:
    """(graphs Dynamo has compiled in this process, graph-break reasons -> count)."""
    from torch._dynamo.utils import counters  # no public API reports graph counts after the fact
    return int(counters["stats"]["unique_graphs"]), {str(k): int(v) for k, v in counters["graph_break"].items()}


def _cudagraph_skips() -> int:
    """Graphs inductor compiled for CUDA graphs but ran without them (mutated inputs, CPU ops; reasons in the log)."""
    from torch._dynamo.utils import counters
    return int(counters["inductor"]["cudagraph_skips"])


def _first_lines(breaks: dict[str, int]) -> list[str]:
    return [reason.strip().splitlines()[0] for reason in breaks]


class TorchAdapter(Adapter):
    def __init__(self, *, device: str, precision: str, threads: int, seed: int, compile: bool = False,
                 compile_mode: str = "default", channels_last: bool = False):
        super().__init__(device=device, precision=precision, threads=threads, seed=seed)
        if device == "cuda" and not torch.cuda.is_available():
            raise Unsupported("CUDA is not available to torch on this machine")
        if precision == "tf32" and device != "cuda":
            raise Unsupported("tf32 is a GPU precision; use fp32 on CPU")
        if compile and compile_mode == "reduce-overhead" and device != "cuda":
            raise Unsupported("torch.compile(mode=\"reduce-overhead\") records CUDA graphs, which need CUDA; "
                              "on a CPU it is torch-compile")
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
            torch.set_num_interop_threads(1)
        if device == "cuda":
            fp32 = "tf32" if precision == "tf32" else "ieee"
            torch.backends.cuda.matmul.fp32_precision = fp32
            torch.backends.cudnn.conv.fp32_precision = fp32
            torch.backends.cudnn.rnn.fp32_precision = fp32
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(seed)
        self.compile, self.compile_mode = compile, compile_mode
        # CUDA graph trees replay a step's recorded kernels with one launch; each step must be marked as a new
        # iteration (`_new_step`), or a step's reads of the previous one's outputs would be refused as overwritten.
        self.cuda_graphs = compile and compile_mode in _CUDA_GRAPH_MODES and device == "cuda"
        # NHWC strides for image models (torch.channels_last): what TensorFlow and Flax run by default, and
        # oneDNN's and cuDNN's preferred layout for convolutions. Off by default: NCHW is torch's own default,
        # and on 2 CPU cores channels_last was faster in one case of four, significantly in one of two runs
        # (docs/fairness.md, "Data layout"); the `torch-channels-last` adapter measures it beside `torch`.
        self.channels_last = channels_last
        self.dtype = _DTYPES[precision]
        self.dev = torch.device(device)
        self._is_training: tuple[bool, bool] | None = None  # (model.training, dropout on)

    @classmethod
    def preload(cls) -> None:
        import torch._dynamo  # noqa: F401  torch.optim's first optimizer imports it (~2 s, 800 modules)

    # ---- building ----
    def build(self, spec: ModelSpec, optimizer: OptimizerSpec | None) -> None:
        self.spec = spec
        model = _image_model(spec) if spec.kind == "image" else _TokenModel(spec)
        self.model = model.to(self.dev, self.dtype)
        if self.channels_last and spec.kind == "image":
            self.model = self.model.to(memory_format=torch.channels_last)  # conv weights in (O, kh, kw, I) strides
        self.optimizer_spec = optimizer
        self.opt = self._make_optimizer() if optimizer else None
        # The functions `bench run` times; `forward` and `gradients` run the same ones (docs/spec.md 6.1).
        # torch.compile: the whole train step is compiled, as jax.jit and tf.function compile theirs. Dynamo
        # breaks the graph at `loss.backward()`, so a step is two compiled graphs: forward and loss (their
        # backward compiled by AOTAutograd) and the optimizer update; both are compiled explicitly here.
        self._backward, self._update, self._infer = self._backward_fn, self._update_fn, self._infer_fn
        if self.compile:
            self._backward = torch.compile(self._backward_fn, mode=self.compile_mode)
            self._update = torch.compile(self._update_fn, mode=self.compile_mode)
            self._infer = torch.compile(self._infer_fn, mode=self.compile_mode)
        self._checked_compile = False

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o, p = self.optimizer_spec, self.optimizer_spec.params
        params = [q for q in self.model.parameters() if q.requires_grad]
        if o.name == "sgd":
            return torch.optim.SGD(params, lr=p["lr"])
        if o.name == "momentum":
            return torch.optim.SGD(params, lr=p["lr"], momentum=p["momentum"], nesterov=p["nesterov"])
        if o.name == "adagrad":
            return torch.optim.Adagrad(params, lr=p["lr"], initial_accumulator_value=p["initial_accumulator"],
                                       eps=p["eps"])
        if o.name == "adadelta":
            return torch.optim.Adadelta(params, lr=p["lr"], rho=p["rho"], eps=p["eps"])
        if o.name == "rmsprop":
            return torch.optim.RMSprop(params, lr=p["lr"], alpha=p["rho"], eps=p["eps"])
        if o.name == "adam":
            return torch.optim.Adam(params, lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"])
        raise Unsupported(f"optimizer {o.name!r} is not implemented by the torch adapter")

    def parameter_count(self) -> int:
        n = sum(q.numel() for q in self.model.parameters() if q.requires_grad)
        if isinstance(self.model, _TokenModel) and self.model.cell == "gru":
            n -= 2 * self.model.hidden * self.model.num_layers  # r, z parts of bias_hh held at zero
        return n

    # ---- canonical weights ----
    def _canonical_params(self) -> dict[str, tuple[torch.Tensor, slice | None]]:
        """Canonical name -> (torch parameter, slice of it that holds the canonical tensor)."""
        if not isinstance(self.model, _TokenModel):
            return {k: (v, None) for k, v in self.model.named_parameters()}
        m, h = self.model, self.model.hidden
        out = {"embed.weight": (m.embed.weight, None), "out.weight": (m.out.weight, None),
               "out.bias": (m.out.bias, None)}
        for i in range(m.num_layers):
            p = f"{m.cell}{i}"
            out[f"{p}.weight_ih"] = (getattr(m.rnn, f"weight_ih_l{i}"), None)
            out[f"{p}.weight_hh"] = (getattr(m.rnn, f"weight_hh_l{i}"), None)
            if m.cell == "lstm":
                out[f"{p}.bias"] = (getattr(m.rnn, f"bias_ih_l{i}"), None)
            else:
                out[f"{p}.bias_ih"] = (getattr(m.rnn, f"bias_ih_l{i}"), None)
                out[f"{p}.bias_hn"] = (getattr(m.rnn, f"bias_hh_l{i}"), slice(2 * h, 3 * h))
        return out

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        params = self._canonical_params()
        check_weights(weights, params)
        with torch.no_grad():
            if isinstance(self.model, _TokenModel):  # bias_hh is zero but for the GRU's b_hn
                for i in range(self.model.num_layers):
                    getattr(self.model.rnn, f"bias_hh_l{i}").zero_()
            for name, (q, sl) in params.items():
                value = torch.as_tensor(np.asarray(weights[name]), dtype=self.dtype, device=self.dev)
                target = q if sl is None else q[sl]
                if target.shape != value.shape:
                    raise ValueError(f"{name}: canonical shape {tuple(value.shape)}, model has {tuple(target.shape)}")
                target.copy_(value)
        if self.optimizer_spec:
            self.opt = self._make_optimizer()

    def dump_weights(self) -> dict[str, np.ndarray]:
        return {name: (q if sl is None else q[sl]).detach().cpu().numpy().copy()
                for name, (q, sl) in self._canonical_params().items()}

    # ---- data and steps ----
    def put_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.kind == "image":
            xt = torch.as_tensor(x, device=self.dev, dtype=self.dtype)  # canonical NCHW is torch's own
            if self.channels_last:  # the same NCHW shape, NHWC in memory
                return xt.contiguous(memory_format=torch.channels_last), torch.as_tensor(y, device=self.dev,
                                                                                          dtype=torch.long)
        else:
            xt = torch.as_tensor(x, device=self.dev, dtype=torch.long)
        return xt.contiguous(), torch.as_tensor(y, device=self.dev, dtype=torch.long)

    def input_pipeline(self, x: np.ndarray, y: np.ndarray, order: Iterable[np.ndarray],
                       workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The order is the sampler, so batches come in exactly its order (in_order=True, the default, also
        # with workers). No persistent_workers: a run is one pass over its order, so workers start once anyway.
        image = self.spec.kind == "image"
        fmt = torch.channels_last if image and self.channels_last else torch.contiguous_format
        loader = DataLoader(_Batches(x, y, self.dtype if image else torch.long, fmt), sampler=order,
                            batch_size=None, num_workers=workers, pin_memory=self.dev.type == "cuda")
        return self._on_device(loader, fmt)

    def _on_device(self, loader: DataLoader, fmt: torch.memory_format) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loader's batches on the device; from pinned memory the copy is asynchronous, in stream order."""
        for xb, yb in loader:  # closing this generator drops the loader's iterator, which stops its workers
            # `to` keeps the strides; `contiguous` (free when they are right already) makes sure of put_batch's.
            yield (xb.to(self.dev, non_blocking=True).contiguous(memory_format=fmt),
                   yb.to(self.dev, non_blocking=True))

    def pipeline_description(self, workers: int) -> str:
        return (f"torch.utils.data.DataLoader(sampler=order, batch_size=None, num_workers={workers}, "
                f"pin_memory={self.dev.type == 'cuda'}): one gather per batch")

    def _set_training(self, training: bool, dropout: bool | None = None) -> None:
        """Training mode (cuDNN's RNN backward requires it), with dropout on unless `dropout` is False."""
        mode = (training, training if dropout is None else dropout)
        if self._is_training != mode:
            self.model.train(training)
            if not mode[1]:
                for m in self.model.modules():
                    if isinstance(m, nn.Dropout):
                        m.eval()
            self._is_training = mode

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float() if self.precision == "bf16"
                               else logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def _backward_fn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward (into gradients set to None before); the loss, detached."""
        with self._autocast():
            loss = self._loss(self.model(x), y)
        loss.backward()
        return loss.detach()

    def _update_fn(self) -> None:
        self.opt.step()

    def _infer_fn(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model(x)

    def _check_compiled(self) -> None:
        """After the first step: what torch.compile compiled; a case where it compiled nothing is skipped."""
        if not self.compile or self._checked_compile:
            return
        self._checked_compile = True
        graphs, breaks = _compile_counters()
        if graphs == 0:
            why = "; ".join(_first_lines(breaks)) or "no graph captured"
            raise Unsupported(f"torch.compile compiled nothing for {self.spec.name}: {why[:200]}")

    def _new_step(self) -> None:
        """Under CUDA graphs: a new iteration begins, so the previous one's graph outputs may be overwritten.

        The heuristic (a new iteration at each compiled call with no backward pending) would do for these
        steps; the explicit mark also covers `forward`, `gradients` and a validation curve mixing both.
        """
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def train_step(self, batch) -> None:
        self._new_step()
        self._set_training(True)
        self.opt.zero_grad(set_to_none=True)  # outside the compiled function: Dynamo will not trace it
        self._backward(*batch)
        self._update()
        self._check_compiled()

    def infer_step(self, batch) -> None:
        self._new_step()
        self._set_training(False)
        with torch.inference_mode():
            self._infer(batch[0])
        self._check_compiled()

    def sync(self) -> None:
        # On CPU every op above has finished when it returns; CUDA work is asynchronous.
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def forward(self, batch) -> tuple[np.ndarray, float]:
        x, y = batch
        self._new_step()
        self._set_training(False)
        with torch.inference_mode():
            logits = self._infer(x)  # the timed inference function itself
            loss = self._loss(logits, y)
        return logits.to(self.dtype).cpu().numpy(), float(loss)

    def gradients(self, batch) -> dict[str, np.ndarray]:
        self._new_step()
        self._set_training(True, dropout=False)  # training mode, dropout off: the spec's gradient check
        self.model.zero_grad(set_to_none=True)
        self._backward(*batch)  # the train step's own (compiled) forward and backward
        return {name: (q.grad if sl is None else q.grad[sl]).detach().cpu().numpy().copy()
                for name, (q, sl) in self._canonical_params().items()}

    def peak_device_memory_bytes(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if self.dev.type == "cuda" else None

    def reset_peak_device_memory(self) -> bool:
        if self.dev.type != "cuda":
            return False
        torch.cuda.reset_peak_memory_stats()
        return True

    # ---- the roofline (xfbench.harness.measure.peak) ----
    def peak_gemm(self, a: np.ndarray, b: np.ndarray) -> PeakKernel:
        # float32 whatever the case's precision; on CUDA the constructor set fp32 (IEEE) matmuls unless "tf32".
        at, bt = (torch.as_tensor(v, dtype=torch.float32, device=self.dev) for v in (a, b))
        out = torch.empty((a.shape[0], b.shape[1]), dtype=torch.float32, device=self.dev)
        # torch.compile adds nothing to a lone matmul (inductor calls the same BLAS), so both adapters run it eagerly.
        return PeakKernel(run=lambda: torch.mm(at, bt, out=out), result=lambda: out.cpu().numpy().copy(),
                          what="torch.mm(a, b, out=c)")

    def peak_copy(self, x: np.ndarray) -> PeakKernel:
        src = torch.as_tensor(x, dtype=torch.float32, device=self.dev)
        dst = torch.empty_like(src)  # written in place: `clone` would time the allocator's page faults too
        return PeakKernel(run=lambda: dst.copy_(src), result=lambda: dst.cpu().numpy().copy(),
                          what="Tensor.copy_ into a kept buffer")

    def _recurrent_impl(self) -> str:
        cls = type(self.model.rnn).__name__
        if self.dev.type == "cuda":
            kernel = "cuDNN"
        elif cls == "LSTM" and torch.backends.mkldnn.is_available():
            kernel = "oneDNN fused LSTM (mkldnn_rnn_layer)"
        else:
            kernel = "ATen CPU loop, input projection hoisted"
        # Dynamo does not trace RNN modules; its experimental `allow_rnn` unrolls them: the full-size LSTM took
        # 258 s to compile and trained 1.5x slower than eager (docs/fairness.md). So the RNN runs eagerly
        # between the compiled embedding and the compiled output layer, loss and optimizer.
        eager = ", eager between compiled graphs: Dynamo does not trace RNN modules" if self.compile else ""
        return f"torch.nn.{cls} ({kernel}){eager}"

    def _cuda_graphs_setting(self) -> str:
        """The manifest's `cuda_graphs` on a GPU: off, on, or on with some graphs left out by inductor."""
        if not self.cuda_graphs:
            return "off"
        skipped = _cudagraph_skips()
        how = f"CUDA graph trees, torch.compile(mode={self.compile_mode})"
        return f"on ({how})" if not skipped else \
            f"partly ({how}): {skipped} compiled graph(s) ran without them; the worker's log says why"

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "versions": {"torch": torch.__version__},
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "precision": self.precision,
            "dtype": str(self.dtype).removeprefix("torch."),
            "autocast": "bfloat16" if self.precision == "bf16" else None,
            "compile": f"torch.compile(mode={self.compile_mode}, backend=inductor, fullgraph=False)" if self.compile
                       else "eager",
            # docs/spec.md 5.8. Train: forward and loss with their backward (AOTAutograd), then the optimizer
            # update: two graphs, since Dynamo breaks at loss.backward(). Infer: the forward.
            "compile_scope": "none (eager)" if not self.compile else
                             "whole step, compiled around an eager RNN" if isinstance(self.model, _TokenModel) else
                             "whole step, compiled",
            "data_layout": ("NCHW, channels_last strides (NHWC in memory)" if self.channels_last else "NCHW")
                           if self.spec.kind == "image" else "(B, T) int64, batch_first",
            "optimizer_impl": "torch.optim defaults (foreach on CUDA, for-loop on CPU)",
            "mkldnn": torch.backends.mkldnn.is_available(),
        }
        if self.compile:
            graphs, breaks = _compile_counters()
            s["compiled"] = {"graphs": graphs, "graph_breaks": sum(breaks.values()),
                             "break_reasons": sorted(set(_first_lines(breaks)))}
        if isinstance(self.model, _TokenModel):
            s["recurrent_impl"] = self._recurrent_impl()
        if self.dev.type == "cuda":
            s["versions"].update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
            s["gpu"] = torch.cuda.get_device_name()
            s["fp32_precision"] = {
                "cuda.matmul": torch.backends.cuda.matmul.fp32_precision,
                "cudnn.conv": torch.backends.cudnn.conv.fp32_precision,
                "cudnn.rnn": torch.backends.cudnn.rnn.fp32_precision,
            }
            s["cudnn_benchmark"] = torch.backends.cudnn.benchmark
            s["cuda_graphs"] = self._cuda_graphs_setting()
            s["allocator_preallocation"] = "caching allocator, grows on demand"
        # The shared key (docs/spec.md 5.8): may float32 matmuls and convolutions use TF32 here?
        s["fp32_math"] = "tf32" if "tf32" in s.get("fp32_precision", {}).values() else "ieee"
        return s
