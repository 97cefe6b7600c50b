"""torch_heads.py - the PyTorch eager peer of `oodc bench heads`.

Runs forward + backward of the same OOD heads as bench/heads.c on the CPU
(or --device cuda) and prints one JSON object per (head, batch) with the
median time in microseconds. Definitions must stay in step with bench/heads.c:

  ce    cross-entropy of logits [B,10] with labels, d/d logits
  bin   weighted sigmoid BCE (zeta = 0.05 on negative terms), sum over classes,
        mean over the batch, d/d logits
  mmce  weighted MMCE (Laplacian kernel, bandwidth 0.4) over the max-softmax
        confidences of logits [B,10], correctness from argmax == label,
        d/d logits (eager materializes the B x B kernel matrix)
  vib   KL(N(mu, softplus(rho)^2) || N(mu_p, softplus(rho_p)^2)), z = 64,
        summed over z, mean over the batch; d/d mu, rho, mu_p, rho_p
  viby  the same KL against 10 class priors, weighted by softmax(logits)
        (VIBY-I), mean over the batch; d/d mu, rho, priors, logits
  odin  ODIN step on an MLP 784-256-10 (T = 1000, eps = 0.0014): gradient of
        log max softmax(f(x)/T) w.r.t. x, x' = x - eps*sign(-grad), and the
        second forward's max softmax
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

Z = 64
K = 10


def mmce_w(conf, correct, bw=0.4):
    c = correct
    w = 1.0 - c
    m = c.sum() + 1e-5
    n = w.sum() + 1e-5
    v = c * (1 - conf) / m - w * conf / n
    k = torch.exp(-(conf[:, None] - conf[None, :]).abs() / bw)
    return torch.sqrt((v[:, None] * k * v[None, :]).sum() + 1e-10)


def kl(mq, sq, mp, sp):
    return (torch.log(sp) - torch.log(sq) + (sq * sq + (mq - mp) ** 2) / (2 * sp * sp) - 0.5).sum(-1)


def make(head, b, dev, g):
    r = lambda *s: torch.randn(*s, generator=g).to(dev)
    labels = torch.randint(0, K, (b,), generator=g).to(dev)
    if head in ("ce", "bin", "mmce"):
        logits = r(b, K).requires_grad_()
        def step():
            logits.grad = None
            if head == "ce":
                loss = F.cross_entropy(logits, labels)
            elif head == "bin":
                t = F.one_hot(labels, K).float()
                loss = (t * F.softplus(-logits) + 0.05 * (1 - t) * F.softplus(logits)).sum(1).mean()
            else:
                p = F.softmax(logits, 1)
                conf, pred = p.max(1)
                loss = mmce_w(conf, (pred == labels).float())
            loss.backward()
            return logits.grad
        return step
    if head in ("vib", "viby"):
        mu, rho = r(b, Z).requires_grad_(), r(b, Z).requires_grad_()
        pm, pr = r(K if head == "viby" else 1, Z).requires_grad_(), r(K if head == "viby" else 1, Z).requires_grad_()
        logits = r(b, K).requires_grad_()
        def step():
            for t in (mu, rho, pm, pr, logits):
                t.grad = None
            sq = F.softplus(rho)
            sp = F.softplus(pr)
            if head == "vib":
                loss = kl(mu, sq, pm[0], sp[0]).mean()
            else:
                kls = kl(mu[:, None, :], sq[:, None, :], pm[None], sp[None])  # [B,K]
                loss = (F.softmax(logits, 1) * kls).sum(1).mean()
            loss.backward()
            return mu.grad
        return step
    if head == "odin":
        w1, b1 = r(256, 784) * 0.05, r(256) * 0.01
        w2, b2 = r(K, 256) * 0.05, r(K) * 0.01
        x0 = torch.rand(b, 784, generator=g).to(dev)
        T, eps = 1000.0, 0.0014
        def f(x):
            return F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)
        def step():
            x = x0.clone().requires_grad_()
            ls = F.log_softmax(f(x) / T, 1).max(1).values.sum()
            ls.backward()
            xp = x.detach() - eps * torch.sign(-x.grad)
            return F.softmax(f(xp) / T, 1).max(1).values
        return step
    raise SystemExit(f"unknown head {head}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", default="ce,bin,mmce,vib,viby,odin")
    ap.add_argument("--batches", default="128,4096,65536")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mmce-max", type=int, default=16384,
                    help="largest B for mmce (eager needs B*B*4 bytes per kernel matrix)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for head in a.heads.split(","):
        for b in map(int, a.batches.split(",")):
            if head == "mmce" and b > a.mmce_max:
                print(json.dumps({"head": head, "batch": b, "torch_us": None,
                                  "note": f"skipped: B x B matrix of {b*b*4/2**30:.0f} GiB"}))
                continue
            g = torch.Generator().manual_seed(0)
            step = make(head, b, dev, g)
            for _ in range(2):
                step()
            sync()
            ts = []
            n = a.repeat if b < 65536 else max(3, a.repeat // 3)
            for _ in range(n):
                t0 = time.perf_counter()
                step()
                sync()
                ts.append((time.perf_counter() - t0) * 1e6)
            print(json.dumps({"head": head, "batch": b, "torch_us": statistics.median(ts),
                              "threads": a.threads, "device": a.device, "torch": torch.__version__}))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
