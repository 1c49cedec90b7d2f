"""NumPy contender for bench/estimator.ts, driven call by call so that both sides are timed in
alternation under the same machine load. One JSON request per line on stdin, one JSON answer
per line on stdout:

  {"op": "load", "path": "...", "n": N, "d": d}           references (raw float32, row-major)
  {"op": "queries", "path": "...", "b": B}                 queries (raw float32, B x d)
  {"op": "run", "sigma": s, "warm": w}                    -> {"seconds": t}  one timed estimate
                                                             (after an untimed one when w)
  {"op": "settle"}                                         -> {"waitedMs": t, "settled": bool}
                                                             returns once this process has
                                                             used < 1 ms of CPU in 20 ms

OpenBLAS's worker threads keep spinning after a call (measured on the development VM: about
130 ms of a full core after one sgemm), so a fixed pause after NumPy's turn is not enough:
scorefield's next calls would share the cores with them. "settle" waits, by the process's own
CPU clock (all its threads), until they are parked.

The estimator is the straightforward NumPy program (B x N matrix through BLAS sgemm): logits
from X @ Y.T and the squared norms, max-subtracted exp, normalised weights, W @ Y.
"""
import json
import sys
import time

import numpy as np


def estimate(X, Y, yy, sigma):
    S = X @ Y.T
    L = (2.0 * S - yy[None, :]) / np.float32(2.0 * sigma * sigma)
    L -= L.max(axis=1, keepdims=True)
    P = np.exp(L)
    P /= P.sum(axis=1, keepdims=True)
    return P @ Y


def main():
    Y = X = yy = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "load":
            Y = np.fromfile(req["path"], dtype=np.float32).reshape(req["n"], req["d"])
            yy = (Y * Y).sum(axis=1)
            out = {"ok": True, "numpy": np.__version__}
        elif op == "queries":
            X = np.fromfile(req["path"], dtype=np.float32).reshape(req["b"], Y.shape[1])
            out = {"ok": True}
        elif op == "run":
            if req.get("warm"):
                estimate(X, Y, yy, req["sigma"])  # untimed, so the timed call is not cold
            t0 = time.perf_counter()
            estimate(X, Y, yy, req["sigma"])
            out = {"seconds": time.perf_counter() - t0}
        elif op == "settle":
            t0 = time.perf_counter()
            prev, quiet = time.process_time(), 0
            while quiet < 2 and time.perf_counter() - t0 < 2.0:
                time.sleep(0.01)
                now = time.process_time()
                quiet = quiet + 1 if now - prev < 0.0005 else 0
                prev = now
            out = {"waitedMs": (time.perf_counter() - t0) * 1e3, "settled": quiet >= 2}
        else:
            raise ValueError(op)
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
