"""A minimal hand-written PyTorch LeNet-5 training loop (batch 64, SGD), timed like a tutorial would."""
import argparse
import os
import statistics
import time

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seconds", type=float, default=10.0)
args = parser.parse_args()
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
os.environ["OMP_NUM_THREADS"] = str(args.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(args.threads)
model = nn.Sequential(
    nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
    nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
    nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 1, 32, 32), torch.randint(0, 10, (64,))


def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


for _ in range(50):
    step()
k, times, start = 20, [], time.perf_counter()
while time.perf_counter() - start < args.seconds:
    t0 = time.perf_counter()
    for _ in range(k):
        step()
    times.append((time.perf_counter() - t0) / k)
print(f"hand-written torch lenet5 train b=64: {64 / statistics.median(times):.1f} samples/s "
      f"(median of {len(times)} samples of {k} steps)")
