#!/usr/bin/python3
"""torch_scorer.py - the PyTorch peer of `oodc bench scorer`: the same OOD
scorers on the same Wide ResNet (bench/peer/wrn.py, eval mode, parameters
frozen), in eager mode and, when it works, TorchScript, on random images in
[0, 1]:

  baseline+t  max softmax(f((x - mean) / std) / T)                 (T = 1000)
  odin        g = d/dx sum log max softmax(f(norm(x)) / T); x' = x + eps sign(g);
              max softmax(f(norm(x')) / T)                         (eps = 0.0014)

The normalization is part of the timed work, as in the compiled scorer.
Each measurement times --calls calls per repeat after --warmup untimed ones;
the figure is the median over --repeats repeats, in milliseconds per call.
Prints one JSON object per (mode, scorer, batch) line:
  {"torch": "1.13.0", "threads": 2, "mode": "eager", "scorer": "odin",
   "batch": 128, "ms": [...], "median_ms": x}
and notes (lines starting with '#') when TorchScript is unavailable.

Run by bench/scorer.c through popen; also usable by hand:
  /usr/bin/python3 bench/peer/torch_scorer.py --model wrn-10-2 --threads 2
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wrn import WideResNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="wrn-10-2")
    ap.add_argument("--in-ch", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batches", default="1,128")
    ap.add_argument("--scorers", default="baseline+t,odin")
    ap.add_argument("--T", type=float, default=1000.0)
    ap.add_argument("--eps", type=float, default=0.0014)
    ap.add_argument("--calls", type=int, default=0, help="calls per repeat (0: 20 at batch 1, 2 else)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-script", action="store_true")
    a = ap.parse_args()
    _, d, w = a.model.split("-")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = WideResNet(int(d), int(w), a.classes, a.in_ch).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    mean = torch.full((1, a.in_ch, 1, 1), 0.5)
    std = torch.full((1, a.in_ch, 1, 1), 0.25)
    T, eps = a.T, a.eps

    def baseline_t(model, x):
        with torch.inference_mode():
            return F.softmax(model((x - mean) / std) / T, dim=1).max(dim=1).values

    def odin(model, x):
        x = x.clone().requires_grad_(True)
        obj = F.log_softmax(model((x - mean) / std) / T, dim=1).max(dim=1).values.sum()
        (g,) = torch.autograd.grad(obj, x)
        with torch.no_grad():
            xp = x + eps * torch.sign(g)
            return F.softmax(model((xp - mean) / std) / T, dim=1).max(dim=1).values

    fns = {"baseline+t": baseline_t, "odin": odin}
    batches = [int(b) for b in a.batches.split(",") if b]
    scorers = [s for s in a.scorers.split(",") if s]
    for s in scorers:
        if s not in fns:
            sys.exit(f"unknown scorer {s}")

    models = [("eager", m)]
    if not a.no_script:
        try:
            ex = torch.rand(1, a.in_ch, a.size, a.size)
            traced = torch.jit.trace(m, ex)
            models.append(("torchscript", traced))
        except Exception as e:  # noqa: BLE001
            print(f"# torchscript unavailable: {e}", flush=True)

    for mode, model in models:
        for s in scorers:
            for b in batches:
                x = torch.rand(b, a.in_ch, a.size, a.size)
                calls = a.calls if a.calls > 0 else (20 if b == 1 else 2)
                for _ in range(a.warmup):
                    fns[s](model, x)
                ms = []
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        fns[s](model, x)
                    ms.append((time.perf_counter() - t0) * 1e3 / calls)
                print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                  "mode": mode, "scorer": s, "batch": b, "ms": ms,
                                  "median_ms": statistics.median(ms)}), flush=True)


if __name__ == "__main__":
    main()
