# pairbounds.py CONFIG PAIRS VAE N BOUND[xBANDS] ...: the IF estimator's jitter bound (and bands) on true videos at the
# benchmark's settings: the data's own continuation of each of the first N pairs' histories (decoded through VAE as
# ode-verify decodes it, so the camera moves exactly as the keys asked, 0.2 m a frame), clean and with each frame's
# texture shimmered (yume.eval.validate.wobble_texture: 0.3 and 0.6 px RMS in the bottom third, 0.3 px over the whole
# frame). Prints per condition and bound how often the chunk moves and turns as asked. Part of bounds.py's rule.
import sys

import numpy as np
import torch

from yume.eval.motion import MotionConfig, estimate_chunk
from yume.eval.validate import wobble_texture
from yume.train.ode import data_chunks, open_pairs
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bounds = [tuple(map(float, (b + "x1").split("x")[:2])) for b in sys.argv[5:]]
cfg, pairs, loader = open_pairs(config, folder)
vae = WanVAE.from_pretrained(vae_path)
chunks = data_chunks(vae, pairs, loader, count)
print(f"{len(chunks)} data chunks of the first {count} pairs of {folder}")
print("| condition | jitter bound (px) × bands | move as asked | turn as asked |")
print("|---|---|---|---|")
for name, amplitude, region in [("clean", 0.0, "all"), ("0.3b", 0.3, "bottom"), ("0.6b", 0.6, "bottom"),
                                ("0.3", 0.3, "all")]:
    rng = np.random.default_rng(0)
    frames = [wobble_texture(f, amplitude, rng, region) for _, f in chunks]
    for bound in bounds:
        reads = [(a, estimate_chunk(f, MotionConfig(jitter_px=bound[0], jitter_bands=int(bound[1])))) for (a, _), f in zip(chunks, frames)]
        print(f"| {name} | {bound[0]:g} × {int(bound[1])} | {np.mean([e.move == a.move for a, e in reads]):.3f} | "
              f"{np.mean([e.rotate == a.rotate for a, e in reads]):.3f} |", flush=True)
