# sigmaprobe.py CONFIG PAIRS VAE N SIGMA [SIGMA ...]: at which noise level does the teacher lose the data's step?
# For the first N pairs of PAIRS, the data's own continuation of each pair's history is noised to σ with the pair's
# noise (x_σ = (1 − σ) x + σ ε), the teacher (TEACHER=DIT, else the pairs' teacher) predicts x̂₀ = x_σ − σ v from it
# once, guided as its sampler is (CFG self_forcing.guidance against the empty caption), and x̂₀ is decoded and read as
# `yume train ode-verify` reads a chunk (GUIDANCE=G in the environment guides with G instead). Prints per σ the median of x̂₀'s parallax over the data's, where a step is
# asked, and how often x̂₀ moves as asked: a model that knows the scene's geometry keeps the ratio near 1 until σ is
# high enough that the data's chunk is no longer visible in x_σ.
import os
import sys

import numpy as np
import torch

from yume.actions import Action
from yume.eval.motion import MotionConfig
from yume.train.dmd import x0_from_velocity
from yume.train.loop import build_model
from yume.train.ode import asked_actions, open_pairs, read_chunks
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
vae, motion = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day
teacher_path = os.environ.get("TEACHER") or pairs.meta["teacher"]
teacher = build_model(cfg, torch.device("cpu"), teacher_path).requires_grad_(False).eval()
policy, guidance = cfg.model.history_policy, float(os.environ.get("GUIDANCE", cfg.self_forcing.guidance))
records = pairs.records[:count]
asked = [asked_actions(loader, pairs.clips, r) for r in records]
loaded = [pairs.pair(k) for k in range(len(records))]  # read from the cache once, for every σ
data = [read_chunks(vae, pair.data, pair.history, asked[k], motion) for k, pair in enumerate(loaded)]
print(f"{len(records)} pairs of {folder}; teacher {teacher_path}, CFG {guidance}")
print("| σ | x̂₀ moves as asked | x̂₀'s step / the data's, median (chunks asked a step) |")
print("|---|---|---|")
for s in map(float, sys.argv[5:]):
    rows = []
    for k, pair in enumerate(loaded):
        sigma = torch.full((pair.data.shape[0],), s)
        x = (1 - s) * pair.data + s * pair.noise
        uncond = [loader.cache.empty] * len(pair.context)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = teacher(x, sigma, pair.context, pair.history, policy=policy).float()
            if guidance != 1.0:
                v_u = teacher(x, sigma, uncond, pair.history, policy=policy).float()
                v = v_u + guidance * (v - v_u)
        x0 = x0_from_velocity(x, v, sigma)
        for r, d in zip(read_chunks(vae, x0, pair.history, asked[k], motion), data[k]):
            rows.append({**r, "data_parallax": d["parallax"]})
    step = [r["parallax"] / max(r["data_parallax"], 1e-6) for r in rows if Action.parse(r["asked"]).move]
    print(f"| {s} | {np.mean([r['move_ok'] for r in rows]):.2f} | {np.median(step):.3f} ({len(step)}) |", flush=True)
