#!/usr/bin/python3
"""fit-exp-poly.py - the coefficients of the f32 exp polynomial in
codegen/llvm-emit.c (vexp): exp(r) = 1 + r P(r) on |r| <= ln2/2 (the
Cody-Waite reduced argument, with a little slack), P of degree 5, fitted
for relative error by iteratively reweighted least squares (Lawson's
algorithm, which converges to the minimax fit) on Chebyshev nodes, then
rounded to f32. Prints the coefficients (lowest degree first) and the
fit's max relative error; the f32 evaluation's error (<= 1 ulp) is checked
by tests/codegen/test-llvm.c and test-llvm-speed.c.

Run: /usr/bin/python3 tests/codegen/fit-exp-poly.py
"""
import numpy as np

L = np.log(2) / 2 * 1.0005
DEG = 5

x = np.cos(np.linspace(0, np.pi, 4001)) * L
A = np.stack([x ** (1 + k) for k in range(DEG + 1)], 1)  # exp(r) - 1 = r P(r)
b = np.exp(x) - 1
scale = np.exp(x)  # relative error
w = np.ones_like(x)
for _ in range(200):
    W = np.sqrt(w) / scale
    c, *_ = np.linalg.lstsq(A * W[:, None], b * W, rcond=None)
    e = np.abs(A @ c - b) / scale
    w = w * e
    w /= w.sum()
c32 = [float(np.float32(v)) for v in c]
err = np.max(np.abs(A @ np.array(c32) - b) / scale)
print("P coefficients (r^0 .. r^%d):" % DEG, c32)
print("max relative error with f32 coefficients: %.3g (%.3f ulp)" % (err, err / 2.0 ** -24))
