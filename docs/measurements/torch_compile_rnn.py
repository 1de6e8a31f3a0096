"""torch.compile on the spec's recurrent models: Dynamo's default (the RNN eager) or allow_rnn (docs/fairness.md).

    python docs/measurements/torch_compile_rnn.py lstm full 0    # default: RNN modules run eagerly
    python docs/measurements/torch_compile_rnn.py lstm full 1    # torch._dynamo.config.allow_rnn = True

Prints the first (compiling) step and the mean of 10 train steps, eager and compiled, in seconds.
"""
import time, sys, torch
torch._dynamo.config.allow_rnn = sys.argv[3] == "1"
from xfbench.adapters.torch_adapter import TorchAdapter, _compile_counters
from xfbench.harness.models import build_spec, TINY_SIZES
from xfbench.harness.optimizers import build_optimizer
from xfbench.harness.weights import init_weights, make_inputs
model = sys.argv[1]; tiny = sys.argv[2] == "tiny"
spec = build_spec(model, **(TINY_SIZES[model] if tiny else {}))
for compile in (False, True):
    a = TorchAdapter(device="cpu", precision="fp32", threads=2, seed=0, compile=compile)
    a.build(spec, build_optimizer("sgd"))
    a.load_weights(init_weights(spec, 0))
    b = a.put_batch(*make_inputs(spec, 8, 0))
    t = time.time(); a.train_step(b); print(compile, "first train", round(time.time() - t, 2))
    for _ in range(3): a.train_step(b)
    t = time.time(); 
    for _ in range(10): a.train_step(b)
    print(compile, "train step", (time.time() - t)/10)
    if compile: print(a.settings()["compiled"])
