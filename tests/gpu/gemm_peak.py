"""Practical GEMM peak of the GPU with one framework: `python tests/gpu/gemm_peak.py torch|jax [N]`.

Square N x N matmuls (default 8192) in fp32 with IEEE math, fp32 with TF32 allowed, and bf16; three
warm-up products, then the median of 10 timed ones, each timed with a full device sync. Prints one
line per precision in TFLOP/s, for the GPU check's env.txt (the denominator of "share of peak").
"""
from __future__ import annotations

import statistics
import sys
import time


def _time(run, sync, reps: int = 10) -> float:
    for _ in range(3):
        run()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_peak(n: int) -> dict[str, float]:
    import torch

    out = {}
    for name, dtype, fp32 in (("fp32", torch.float32, "ieee"), ("tf32", torch.float32, "tf32"),
                              ("bf16", torch.bfloat16, "ieee")):
        torch.backends.cuda.matmul.fp32_precision = fp32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        out[name] = 2 * n**3 / _time(lambda: a @ b, torch.cuda.synchronize) / 1e12
    return out


def jax_peak(n: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    out = {}
    key = jax.random.PRNGKey(0)
    for name, dtype, precision in (("fp32", jnp.float32, "highest"), ("tf32", jnp.float32, "default"),
                                   ("bf16", jnp.bfloat16, "default")):
        a = jax.random.normal(key, (n, n), dtype)
        b = jax.random.normal(key, (n, n), dtype)
        f = jax.jit(lambda x, y, p=precision: jnp.matmul(x, y, precision=p))
        box = []
        out[name] = 2 * n**3 / _time(lambda: box.append(f(a, b)), lambda: (box[-1].block_until_ready(), box.clear()))
        out[name] /= 1e12
    return out


if __name__ == "__main__":
    fw, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    peaks = torch_peak(n) if fw == "torch" else jax_peak(n)
    print(f"gemm peak {fw} n={n}: " + ", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in peaks.items()))
