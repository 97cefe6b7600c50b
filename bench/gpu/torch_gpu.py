"""torch_gpu.py - the PyTorch eager peers of oc-gpu-bench (bench/gpu/gpu-bench.c)
on the GPU, one JSON object per line, medians of CUDA-synchronized wall times:

  copy  [--mib 1024]                  device-to-device copy, GB/s counting bytes read and written
  odin  --arch wrn-16-4 [--batch 128] ODIN scoring step on a Wide ResNet (eval mode): forward,
                                      d log max softmax(f(x)/T) / dx, x' = x - eps sign(-grad),
                                      forward of x', max softmax (T = 1000, eps = 0.0014)
  train --arch wrn-28-10 [--batch 128] [--tf32 1]
                                      one training step: forward, cross-entropy, backward,
                                      SGD (lr 0.1, Nesterov momentum 0.9, weight decay 5e-4)

The model is bench/peer/wrn.py, the same network as oodc's models/wrn.c. TF32 is
allowed for matmuls and cuDNN convolutions when --tf32 1 (oodc's --tf32), and
cudnn.benchmark is on (fixed shapes: the strongest eager baseline)."""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer"))
from wrn import WideResNet  # noqa: E402


def median_ms(step, repeat, warmup=3):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def arch(spec):
    _, d, w = spec.split("-")
    return int(d), int(w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["copy", "odin", "train"])
    ap.add_argument("--arch", default="wrn-28-10")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--tf32", type=int, default=1)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
    torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    base = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}

    if a.cmd == "copy":
        n = a.mib << 20
        src = torch.ones(n, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        ms = median_ms(lambda: dst.copy_(src), a.steps)
        print(json.dumps({"bench": "copy", "peer": "torch", "mib": a.mib, "ms": ms,
                          "gbps": 2 * n / (ms * 1e-3) * 1e-9, **base}))
        return

    d, w = arch(a.arch)
    model = WideResNet(d, w, 10, 3).to(dev)
    x0 = torch.rand(a.batch, 3, 32, 32, generator=g).to(dev)

    if a.cmd == "odin":
        model.eval()
        T, eps = 1000.0, 0.0014

        def step():
            x = x0.clone().requires_grad_()
            s = F.log_softmax(model(x) / T, 1).max(1).values.sum()
            s.backward()
            xp = x.detach() - eps * torch.sign(-x.grad)
            with torch.no_grad():
                return F.softmax(model(xp) / T, 1).max(1).values

        ms = median_ms(step, a.steps)
        print(json.dumps({"bench": "odin", "peer": "torch", "arch": a.arch, "batch": a.batch, "ms": ms, **base}))
        return

    model.train()
    labels = torch.randint(0, 10, (a.batch,), generator=g).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x0), labels)
        loss.backward()
        opt.step()
        return loss

    ms = median_ms(step, a.steps)
    print(json.dumps({"bench": "train", "peer": "torch", "arch": a.arch, "batch": a.batch, "tf32": a.tf32,
                      "ms": ms, "images_per_s": a.batch / (ms * 1e-3), **base}))


if __name__ == "__main__":
    main()
