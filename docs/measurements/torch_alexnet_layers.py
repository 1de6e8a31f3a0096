"""torch's forward+backward of each AlexNet layer alone at batch 2 (docs/fairness.md); median seconds as JSON.

    python docs/measurements/torch_alexnet_layers.py
"""
import time, json, numpy as np, torch
torch.set_num_threads(2)
from xfbench.harness.models import feature_shapes, build_spec, Conv
def bench(fn, n=8):
    fn(); fn(); ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
out = {}
for layer, (c, h, w), _ in feature_shapes(build_spec("alexnet")):
    if not isinstance(layer, Conv): continue
    x = torch.randn(2, c, h, w, requires_grad=True)
    k = torch.nn.Parameter(torch.randn(layer.out_channels, c, layer.kernel, layer.kernel) * 0.01)
    def f(x=x, k=k, s=layer.stride, p=layer.padding):
        y = torch.nn.functional.conv2d(x, k, stride=s, padding=p); y.sum().backward()
    def g(x=x, k=k, s=layer.stride, p=layer.padding):
        with torch.no_grad(): torch.nn.functional.conv2d(x, k, stride=s, padding=p)
    out[f"{layer.name} fwd+bwd"] = bench(f); out[f"{layer.name} fwd"] = bench(g)
for name, n_in, units in (("fc6", 9216, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)):
    x = torch.randn(2, n_in, requires_grad=True); w = torch.nn.Parameter(torch.randn(units, n_in) * 0.01)
    def f(x=x, w=w): (x @ w.T).sum().backward()
    out[f"{name} fwd+bwd"] = bench(f)
print(json.dumps({"torch": out}, indent=1))
