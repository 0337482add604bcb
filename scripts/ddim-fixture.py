#!/usr/bin/env python3
"""Writes Tests/ModelsTests/Fixtures/ddim-diffusers.json: diffusers' DDIMScheduler (PyPI
`diffusers`, on PyTorch) for the configuration our latent diffusion models use (1000 steps,
"squaredcos_cap_v2", v-prediction, set_alpha_to_one, steps_offset 0): its alphas_cumprod, its
timesteps for several step counts and spacings, and single step() updates on fixed inputs.
DiffusionScheduleTests compares DiffusionSchedule with it. Run once; the output is committed:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install diffusers torch
    /tmp/ref/bin/python scripts/ddim-fixture.py
"""
import json
import math
import os

import diffusers
import torch
from diffusers import DDIMScheduler

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelsTests", "Fixtures", "ddim-diffusers.json")


def scheduler(spacing):
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type="v_prediction", set_alpha_to_one=True, steps_offset=0,
                         clip_sample=False, timestep_spacing=spacing)


def main():
    fixture = {"diffusers_version": diffusers.__version__, "torch_version": torch.__version__,
               "alphas_cumprod": scheduler("leading").alphas_cumprod.double().tolist(),
               "timesteps": [], "steps": []}
    for spacing, n in [("leading", 50), ("trailing", 50), ("trailing", 8), ("trailing", 4), ("trailing", 2), ("trailing", 1)]:
        s = scheduler(spacing)
        s.set_timesteps(n)
        fixture["timesteps"].append({"spacing": spacing, "steps": n, "timesteps": [int(t) for t in s.timesteps]})
    # Fixed inputs: 12 values of x_t and of the model's v.
    x = torch.tensor([math.sin(0.7 * i + 0.3) * 1.3 for i in range(12)], dtype=torch.float32)
    v = torch.tensor([math.cos(1.1 * i - 0.2) * 0.9 for i in range(12)], dtype=torch.float32)
    for spacing, n in [("leading", 50), ("trailing", 8), ("trailing", 1)]:
        s = scheduler(spacing)
        s.set_timesteps(n)
        for t in [s.timesteps[0], s.timesteps[len(s.timesteps) // 2], s.timesteps[-1]]:
            out = s.step(v, t, x, eta=0.0)
            fixture["steps"].append({"spacing": spacing, "steps": n, "t": int(t), "x": x.tolist(), "v": v.tolist(),
                                     "prev_sample": out.prev_sample.tolist(),
                                     "pred_original_sample": out.pred_original_sample.tolist()})
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
