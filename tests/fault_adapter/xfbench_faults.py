"""A test-only adapter (numpy, no framework) that misbehaves on request, to prove the runner survives it.

XFBENCH_FAULT is a comma-separated list of FAULT or FAULT@BATCH (only cases of that batch size):
  segfault   SIGSEGV in native code            oom-kill  SIGKILL, as the kernel's OOM killer does
  hang       sleeps for an hour, with a child  oom       a real host allocation that fails (MemoryError)
  flood      8 MiB on stderr, then goes on     gpu-oom   a framework-style "CUDA out of memory" error
  garbage    replaces its record with garbage  raise     a plain exception
  exit       exits with code 3, no record     markup    an exception whose text is rich markup
  hog        holds 300 MiB, then sleeps
Faults fire at the first train or infer step, after setup. With XFBENCH_FAULT_PIDS set, `hang` writes
"<worker pid> <child pid>" there, so a test can check that both are gone.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

from xfbench.harness.adapter import Adapter, AdapterInfo

FAULTY = AdapterInfo(name="faulty", framework="faulty", target="xfbench_faults:FaultyAdapter",
                     requires=("numpy",), summary="test only: crashes, hangs, floods or lies on request")
# The same adapter under other names, for the Ray executor's node checks (tests/test_ray_executor.py): one whose
# version is its distribution's (which a test installs at different versions), one only the parent registers.
FAULTY_PINNED = AdapterInfo(name="faulty-pinned", framework="faulty", target="xfbench_faults:FaultyAdapter",
                            requires=("numpy",), distributions=("xfbench-ray-test",), summary="test only")
FAULTY_LONELY = AdapterInfo(name="faulty-lonely", framework="faulty", target="xfbench_faults:FaultyAdapter",
                            requires=("numpy",), summary="test only")


class OutOfMemoryError(RuntimeError):
    """Named like torch.OutOfMemoryError: the worker must classify it by name and message alone."""


def _faults(batch_size: int) -> set[str]:
    out = set()
    for item in filter(None, os.environ.get("XFBENCH_FAULT", "").split(",")):
        fault, _, batch = item.strip().partition("@")
        if not batch or int(batch) == batch_size:
            out.add(fault)
    return out


class FaultyAdapter(Adapter):
    def build(self, spec, optimizer) -> None:
        self.spec, self.weights = spec, {}

    def parameter_count(self) -> int:
        return self.spec.parameter_count()

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = dict(weights)

    def dump_weights(self) -> dict[str, np.ndarray]:
        return dict(self.weights)

    def put_batch(self, x: np.ndarray, y: np.ndarray) -> Any:
        self.faults = _faults(len(x))
        return x, y

    def _step(self, batch: Any) -> None:
        if self.faults:
            self._misbehave(self.faults)
        float(np.square(batch[0]).sum())

    train_step = infer_step = _step

    def _misbehave(self, faults: set[str]) -> None:
        self.faults = set()  # fire once
        sys.stderr.write(f"faulty adapter: injecting {sorted(faults)}\n")
        sys.stderr.flush()
        if "flood" in faults:
            line = "x" * 1023 + "\n"
            for _ in range(8 * 1024):
                sys.stderr.write(line)
            sys.stderr.write("a last line of one endless " + "y" * 100_000 + "\n")
            sys.stderr.flush()
        if "garbage" in faults:
            print("{this is not a record")
            atexit.register(lambda: open(sys.argv[2], "w").write("{this is not a record"))
        if "segfault" in faults:
            ctypes.string_at(0)
        if "oom-kill" in faults:
            os.kill(os.getpid(), signal.SIGKILL)
        if "oom" in faults:
            np.ones(2**60, dtype=np.uint8)  # fails at once: nothing is actually allocated
        if "gpu-oom" in faults:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total)")
        if "raise" in faults:
            raise RuntimeError("injected fault: raise")
        if "markup" in faults:  # rich would read this as markup: "[/bold]" closes a tag never opened
            raise RuntimeError("injected fault: [/bold] closes nothing, [red]opens[/red], [[cases]]")
        if "exit" in faults:
            os._exit(3)
        if "hog" in faults:
            held = b"x" * (300 << 20)
            time.sleep(60 + len(held) % 2)
        if "hang" in faults:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            if os.environ.get("XFBENCH_FAULT_PIDS"):
                with open(os.environ["XFBENCH_FAULT_PIDS"], "w") as f:
                    f.write(f"{os.getpid()} {child.pid}\n")
            time.sleep(3600)

    def sync(self) -> None:
        pass

    def forward(self, batch: Any) -> tuple[np.ndarray, float]:
        return np.zeros((len(batch[0]), self.spec.classes), np.float32), 0.0

    def gradients(self, batch: Any) -> dict[str, np.ndarray]:
        return {k: np.zeros_like(v) for k, v in self.weights.items()}

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "versions": {"numpy": np.__version__}}
