# jitter.py CONFIG PAIRS VAE N JITTER [JITTER ...]: the estimator with a looser jitter bound (MotionConfig.jitter_px,
# the least RMS departure from a quadratic in time at which a track is dropped; the benchmark's is 0.05 px), on the
# teacher's chunks and the data's own continuation of the same histories (the first N pairs of PAIRS, decoded as
# ode-verify decodes them). Prints per bound how often each moves and turns as asked and its median parallax where a
# step is asked. A diagnosis of the estimator, not a new benchmark: no model is scored with it.
import sys

import numpy as np
import torch

from yume.actions import Action
from yume.eval.motion import MotionConfig
from yume.train.ode import asked_actions, open_pairs, read_chunks
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
vae = WanVAE.from_pretrained(vae_path)
print("| jitter bound (px) | chunks | move as asked | turn as asked | median parallax where a step is asked (px a frame) |")
print("|---|---|---|---|---|")
for bound in map(float, sys.argv[5:]):
    reads = {"teacher": [], "data": []}
    for k, record in enumerate(pairs.records[:count]):
        asked = asked_actions(loader, pairs.clips, record)
        pair = pairs.pair(k)
        for name, x in (("teacher", pair.x0), ("data", pair.data)):
            reads[name] += read_chunks(vae, x, pair.history, asked, MotionConfig(jitter_px=bound, jitter_bands=1))
    for name, rows in reads.items():
        step = [r["parallax"] for r in rows if Action.parse(r["asked"]).move]
        print(f"| {bound} | {name} | {np.mean([r['move_ok'] for r in rows]):.2f} | "
              f"{np.mean([r['rotate_ok'] for r in rows]):.2f} | {np.median(step):.3f} |", flush=True)
