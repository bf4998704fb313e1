# blurstep.py CONFIG PAIRS VAE N: is the teacher's short step a reading of blur? For the first N pairs of PAIRS, the
# teacher's chunk (the pair's x0) and the data's own continuation of the same history are decoded as ode-verify
# decodes them; each is read by the benchmark's estimator as it is and after a Gaussian blur of its frames, and the
# sharpness of each (the mean absolute Laplacian of the grey frames) is printed beside the median parallax.
import sys

import cv2
import numpy as np
import torch

from yume.eval.motion import MotionConfig, estimate_chunk
from yume.train.ode import decode_window, open_pairs
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
vae, motion = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day
SIGMAS = (0.0, 0.7, 1.2)


def sharpness(frames):
    return float(np.mean([np.abs(cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean() for f in frames]))


def blur(frames, s):
    return frames if s == 0 else np.stack([cv2.GaussianBlur(f, (0, 0), s) for f in frames])


rows = {"teacher": [], "data": []}
for k in range(min(count, len(pairs))):
    pair = pairs.pair(k)
    for name, x in (("teacher", pair.x0), ("data", pair.data)):
        fr = decode_window(vae, x, pair.history)
        rows[name].append([sharpness(fr)] + [estimate_chunk(blur(fr, s), motion).parallax for s in SIGMAS])
print(f"{count} pairs of {folder}: median sharpness (mean |Laplacian|) and parallax (px a frame) after a blur of σ px")
print("| chunks | sharpness | " + " | ".join(f"parallax, σ {s}" for s in SIGMAS) + " |")
print("|---|---|" + "---|" * len(SIGMAS))
for name, r in rows.items():
    r = np.array(r)
    print(f"| {name} | {np.median(r[:, 0]):.2f} | " + " | ".join(f"{np.median(r[:, 1 + k]):.3f}" for k in range(len(SIGMAS))) + " |")
t, d = np.array(rows["teacher"]), np.array(rows["data"])
print(f"median teacher/data parallax ratio, both unblurred: {np.median(t[:, 1] / np.maximum(d[:, 1], 1e-6)):.3f}")
for k, s in enumerate(SIGMAS[1:], 2):
    print(f"median data(σ {s}) / data(σ 0) parallax: {np.median(d[:, k] / np.maximum(d[:, 1], 1e-6)):.3f}")
