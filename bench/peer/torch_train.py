#!/usr/bin/python3
"""torch_train.py - the PyTorch peer of `oodc bench train`: the same Wide
ResNet (bench/peer/wrn.py, same names and initialization), the same training
step (cross-entropy, SGD with Nesterov momentum 0.9 and weight decay 5e-4 on
every parameter, BN in train mode) and the same forward-only pass (eval mode,
no autograd), on random inputs in [0, 1] and random labels.

Each repeat times `--steps` consecutive steps after `--warmup` untimed ones;
the result is the median over `--repeats` repeats, in images per second.
Prints one JSON object on the last line of stdout:
  {"torch": "1.13.0", "threads": 2, "train_images_per_s": [...],
   "forward_images_per_s": [...], "train_median": x, "forward_median": y}

Run by bench/train.c through popen; also usable by hand:
  /usr/bin/python3 bench/peer/torch_train.py --model wrn-16-4 --batch 128 --threads 2
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
    ap.add_argument("--model", default="wrn-16-4")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--in-ch", type=int, default=1)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-forward", action="store_true")
    a = ap.parse_args()
    _, d, w = a.model.split("-")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = WideResNet(int(d), int(w), a.classes, a.in_ch)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.rand(a.batch, a.in_ch, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch,))

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def forward():
        with torch.no_grad():
            return m(x).sum().item()

    def measure(fn):
        for _ in range(a.warmup):
            fn()
        out = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            for _ in range(a.steps):
                fn()
            out.append(a.batch * a.steps / (time.perf_counter() - t0))
        return out

    m.train()
    tr = measure(train_step)
    fw = []
    if not a.no_forward:
        m.eval()
        fw = measure(forward)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "train_images_per_s": tr, "forward_images_per_s": fw,
                      "train_median": statistics.median(tr),
                      "forward_median": statistics.median(fw) if fw else None}))


if __name__ == "__main__":
    main()
