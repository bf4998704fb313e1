# wobble.py CONFIG PAIRS VAE N AMPLITUDE [AMPLITUDE ...]: does the benchmark's estimator read a texture wobble as a
# short step? For the first N pairs of PAIRS, the data's own continuation of each pair's history (decoded as
# ode-verify decodes it, so its camera moves exactly as the keys asked) is read again after each frame is warped by
# its own random smooth displacement field (white noise blurred over 4 px, scaled to AMPLITUDE px RMS, drawn anew
# each frame): the camera is unchanged, only the texture wobbles about it, as the teacher's ground does (tracks.py).
# An amplitude ending in "b" (e.g. 0.4b) wobbles only the bottom third of the frame (the near ground, as the teacher's
# wobbles more than the rest), ramped in over the 8 rows above it.
# Prints, per amplitude, how often the chunk moves and turns as asked and its median parallax where a step is asked.
import sys

import numpy as np
import torch

from yume.eval.motion import MotionConfig, estimate_chunk
from yume.eval.validate import wobble_texture
from yume.train.ode import data_chunks, open_pairs
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
vae, motion = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day (one bound)
chunks = data_chunks(vae, pairs, loader, count)
print(f"{len(chunks)} data chunks of the first {count} pairs of {folder}, each frame's texture wobbled about the camera")
print("| wobble (px RMS) | move as asked | turn as asked | median parallax where a step is asked (px a frame) |")
print("|---|---|---|---|")
for amplitude in sys.argv[5:]:
    rng = np.random.default_rng(0)
    size, region = float(amplitude.rstrip("b")), "bottom" if amplitude.endswith("b") else "all"
    reads = [(a, estimate_chunk(wobble_texture(f, size, rng, region), motion)) for a, f in chunks]
    step = [e.parallax for a, e in reads if a.move]
    print(f"| {amplitude} | {np.mean([e.move == a.move for a, e in reads]):.2f} | "
          f"{np.mean([e.rotate == a.rotate for a, e in reads]):.2f} | {np.median(step):.3f} |", flush=True)
