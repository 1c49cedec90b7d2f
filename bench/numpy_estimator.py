"""NumPy reference timing for bench/estimator.ts: the same estimator (posterior mean over a
reference set, stable softmax) written the straightforward NumPy way, materialising the
B x N matrix. Prints one JSON object per shape. Usage: numpy_estimator.py d N B sigma reps"""
import json
import sys
import time

import numpy as np


def estimate(X, Y, yy, sigma):
    S = X @ Y.T                                   # B x N, BLAS sgemm
    L = (2.0 * S - yy[None, :]) / (2.0 * sigma * sigma)
    L -= L.max(axis=1, keepdims=True)
    P = np.exp(L)
    P /= P.sum(axis=1, keepdims=True)
    return P @ Y                                  # B x d


def main():
    d, n, b, sigma, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    rng = np.random.default_rng(0)
    Y = rng.uniform(-1, 1, size=(n, d)).astype(np.float32)
    X = (Y[rng.integers(0, n, size=b)] + sigma * rng.standard_normal((b, d))).astype(np.float32)
    yy = (Y * Y).sum(axis=1)
    estimate(X, Y, yy, sigma)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        estimate(X, Y, yy, sigma)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"d": d, "N": n, "B": b, "seconds": times[len(times) // 2], "numpy": np.__version__}))


if __name__ == "__main__":
    main()
