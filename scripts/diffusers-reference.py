"""Writes test/fixtures/diffusers-reference.json: what diffusers' own EulerDiscreteScheduler and
HeunDiscreteScheduler compute, step by step, for every configuration test/diffusers-parity.test.ts
checks scorefield's ports against.

Needs PyTorch and NumPy, and diffusers' sources (which import with torch alone), in a scratch
environment outside the repository:

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy huggingface_hub safetensors requests filelock regex importlib_metadata Pillow
    git clone https://github.com/huggingface/diffusers /tmp/diffusers
    DIFFUSERS_SRC=/tmp/diffusers/src /tmp/tv/bin/python scripts/diffusers-reference.py

The model outputs, the initial sample and the churn noise are exact functions of the element
index and the step (dyadic constants, one float32 rounding per operation), so the TypeScript test
forms the very same float32 values without PyTorch.

Each configuration runs twice. "raw" is diffusers as it is. "cr" is diffusers with every
float32 `** 0.5` correctly rounded: PyTorch's CPU sqrt (MKL's vector math, through which
`tensor ** 0.5` goes) is not correctly rounded on every CPU (1 ulp off for 15% of the
training sigmas on the AMD Zen 5 this was written on), and MKL's algorithm is closed and chosen
per CPU, so nothing outside PyTorch can reproduce it. Per run the file holds the timesteps,
the sigmas and the final sample (float32 bit patterns) and a SHA-256 over the bit patterns of
everything the loop produced: each step's scaled model input, prev_sample and
pred_original_sample.
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.environ.get("DIFFUSERS_SRC", "/tmp/dsrc/src"))
import diffusers.schedulers.scheduling_euler_discrete as euler_mod  # noqa: E402
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler  # noqa: E402
from diffusers.schedulers.scheduling_heun_discrete import HeunDiscreteScheduler  # noqa: E402

N_ELEM = 16  # one 1 x 1 x 4 x 4 latent


def bits(t):
    return np.asarray(t, dtype=np.float32).view(np.uint32).tolist()


def index_pattern(k, i, mod, shift, div):
    # exact in float32: small integers over a power of two
    return ((k * 7 + i * 3) % mod - shift) / div


def model_output(sample, i):
    c = torch.tensor([index_pattern(k, i, 11, 5, 8.0) for k in range(N_ELEM)], dtype=torch.float32)
    return sample * 0.5 + c


def initial(sigma0):
    x = torch.tensor([((k * 13) % 17 - 8) / 4.0 for k in range(N_ELEM)], dtype=torch.float32)
    return x * sigma0


class Noise:
    """The churn noise of step i, handed to diffusers in place of torch's generator."""

    def __init__(self):
        self.i = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        v = torch.tensor([((k * 5 + self.i) % 9 - 4) / 4.0 for k in range(N_ELEM)], dtype=torch.float32)
        return v.reshape(shape)


class CorrectlyRoundedSqrt:
    """Within the block, float32 `tensor ** 0.5` is the correctly rounded square root."""

    def __enter__(self):
        self.pow = torch.Tensor.__pow__

        def cr_pow(t, e):
            if isinstance(e, (int, float)) and e == 0.5 and t.dtype == torch.float32:
                return torch.from_numpy(np.asarray(np.sqrt(t.detach().numpy().astype(np.float64)), dtype=np.float32).reshape(t.shape))
            return self.pow(t, e)

        torch.Tensor.__pow__ = cr_pow
        return self

    def __exit__(self, *a):
        torch.Tensor.__pow__ = self.pow


def run(cls, config, steps, churn):
    s = cls(**config)
    s.set_timesteps(steps)
    h = hashlib.sha256()
    x = initial(s.init_noise_sigma)
    noise = Noise()
    euler_mod.randn_tensor = noise
    for i, t in enumerate(s.timesteps):
        inp = s.scale_model_input(x, t)
        out = model_output(inp, i)
        noise.i = i
        kw = {"s_churn": churn, "s_tmin": 0.0, "s_tmax": float("inf")} if churn else {}
        r = s.step(out, t, x, **kw)
        for a in (inp, r.prev_sample, r.pred_original_sample):
            h.update(np.asarray(a, dtype=np.float32).tobytes())
        x = r.prev_sample
    return {
        "timesteps": bits(s.timesteps),
        "sigmas": bits(s.sigmas),
        "initNoiseSigma": bits([float(s.init_noise_sigma)])[0],
        "final": bits(x),
        "hash": h.hexdigest(),
    }


def configs():
    betas = {
        "linear": {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
        "scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
    }
    spacings = {"linspace": {}, "leading": {"steps_offset": 1}, "trailing": {}}
    for name, cls in (("euler", EulerDiscreteScheduler), ("heun", HeunDiscreteScheduler)):
        for bname, b in betas.items():
            for pred in ("epsilon", "v_prediction", "sample"):
                for karras in (False, True):
                    for spacing, extra in spacings.items():
                        for steps in (10, 25, 50):
                            for churn in ((0.0, 3.0) if name == "euler" and steps == 25 else (0.0,)):
                                cfg = dict(b, prediction_type=pred, use_karras_sigmas=karras, timestep_spacing=spacing, **extra)
                                yield name, cls, cfg, steps, churn


def main():
    out = {"torch": torch.__version__, "numpy": np.__version__, "elements": N_ELEM, "cases": []}
    for name, cls, cfg, steps, churn in configs():
        raw = run(cls, cfg, steps, churn)
        with CorrectlyRoundedSqrt():
            cr = run(cls, cfg, steps, churn)
        out["cases"].append({"scheduler": name, "config": cfg, "steps": steps, "churn": churn, "raw": raw, "cr": cr})
    path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "diffusers-reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"{len(out['cases'])} cases -> {path}")


if __name__ == "__main__":
    main()
