# tracks.py CONFIG PAIRS VAE N: is the teacher's short step a short step, or fewer near-field tracks? For the first N
# pairs of PAIRS, the teacher's chunk and the data's own continuation of the same history (decoded as ode-verify
# decodes them) are tracked as the benchmark's estimator tracks them (yume.eval.motion: corners of a window's first
# frame followed through pair_gap frames; jumpy and forward-backward-inconsistent tracks dropped), on the chunk's
# first window. Prints, for chunks that ask for a step, the median number of corners found and of tracks kept (all,
# and in the bottom third of the frame: the ground nearest the camera, which moves most), the median track length
# (px a frame) in the bottom third and in the top two thirds, and the median dense optical flow (Farneback) between
# the window's first two frames in each part, tracked or not.
import sys

import numpy as np
import torch

from yume.eval.motion import MotionConfig, _gray, _track
from yume.train.ode import asked_actions, decode_window, open_pairs
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
vae, motion = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day


def stats(frames):
    gray = _gray(frames, motion)
    gap = motion.pair_gap
    import cv2

    found = cv2.goodFeaturesToTrack(gray[0], motion.max_corners, 0.005, max(3.0, gray[0].shape[1] / 60), blockSize=5)
    p0, p1 = _track(gray[: gap + 1], motion)
    h = gray[0].shape[0]
    low = p0[:, 1] > 2 * h / 3
    found_low = 0 if found is None else int((found.reshape(-1, 2)[:, 1] > 2 * h / 3).sum())
    length = np.linalg.norm(p1 - p0, axis=1) / gap
    # dense flow (Farneback) between the window's first two frames: how far the ground moves, tracked or not
    flow = cv2.calcOpticalFlowFarneback(gray[0], gray[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
    speed = np.linalg.norm(flow, axis=2)
    return [0 if found is None else len(found), found_low, len(p0), int(low.sum()),
            np.median(length[low]) if low.any() else np.nan, np.median(length[~low]) if (~low).any() else np.nan,
            np.median(speed[2 * h // 3 :]), np.median(speed[: 2 * h // 3])]


rows = {"teacher": [], "data": []}
for k, record in enumerate(pairs.records[:count]):
    if not any(a.move for a in asked_actions(loader, pairs.clips, record)):
        continue
    pair = pairs.pair(k)
    for name, x in (("teacher", pair.x0), ("data", pair.data)):
        rows[name].append(stats(decode_window(vae, x, pair.history)))
n = len(rows["data"])
print(f"{n} chunks asking a step, of the first {count} pairs of {folder}; first window of each chunk")
print("| chunks | corners found (bottom third) | tracks kept (bottom third) | track length, bottom third / top two thirds "
      "(px a frame) | dense flow, bottom third / top two thirds (px a frame) |")
print("|---|---|---|---|---|")
for name, r in rows.items():
    m = np.nanmedian(np.array(r, dtype=float), axis=0)
    print(f"| {name} | {m[0]:.0f} ({m[1]:.0f}) | {m[2]:.0f} ({m[3]:.0f}) | {m[4]:.2f} / {m[5]:.2f} | {m[6]:.2f} / {m[7]:.2f} |")
