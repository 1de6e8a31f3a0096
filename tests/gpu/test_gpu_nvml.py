"""NVML's process list on a real GPU (xfbench.harness.measure.gpu_contention): a process holding a CUDA context is
seen by others and does not see itself. Needs torch on CUDA; without `nvidia-ml-py` (`pip install -e .[gpu]`)
it checks only that the answer is None.
"""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from xfbench.harness.measure.gpu_contention import other_gpu_processes

pytestmark = pytest.mark.gpu

# A child that takes a CUDA context, says what it sees itself, then waits to be read (a line on stdin).
CHILD = textwrap.dedent("""
    import sys, torch
    from xfbench.harness.measure.gpu_contention import other_gpu_processes
    torch.ones(1, device="cuda")
    torch.cuda.synchronize()
    print(repr(other_gpu_processes(0, holding_context=True)), flush=True)
    sys.stdin.readline()
""")


def test_a_cuda_process_is_seen_by_others_and_not_by_itself(torch_cuda):
    before = other_gpu_processes(0)
    if importlib.util.find_spec("pynvml") is None:  # not installed (the GPU check installs offline): no answer
        assert before is None
        return
    assert before is not None, "NVML is installed but gives no answer on this GPU"
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        own_view = ast.literal_eval(child.stdout.readline())
        during = other_gpu_processes(0)
    finally:
        child.communicate("\n", timeout=60)
    # The child is on the GPU now: by its pid, or (in a container whose pids are the host's) as one more process.
    assert child.pid in [p[0] for p in during] or len(during) > len(before), (before, during)
    assert child.pid not in [p[0] for p in own_view] and len(own_view) <= len(before) + 1, (before, own_view)
