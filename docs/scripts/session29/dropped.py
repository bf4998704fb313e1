# dropped.py CONFIG PAIRS VAE N: where the estimator drops the near ground's tracks. For the chunks of the first N
# pairs of PAIRS that ask for a step, the teacher's and the data's own chunk (decoded as ode-verify decodes them) are
# tracked over their first window as yume.eval.motion._track tracks them, and the corners found in the bottom third of
# the frame are counted after each of its filters in turn: Lucas-Kanade's status both ways, the forward-backward
# error, staying inside the frame, and the jitter bound (a track's RMS departure from a quadratic in time, at most
# max(jitter_px, the median of the tracks left)); with the median jitter of the bottom-third tracks the jitter bound
# judges.
import sys

import cv2
import numpy as np
import torch

from yume.eval.motion import MotionConfig, _gray, track_jitter
from yume.train.ode import asked_actions, decode_window, open_pairs
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
vae, m = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day
lk = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
counts, jitters = {"teacher": np.zeros(5, int), "data": np.zeros(5, int)}, {"teacher": [], "data": []}
for k, record in enumerate(pairs.records[:count]):
    if not any(a.move for a in asked_actions(loader, pairs.clips, record)):
        continue
    pair = pairs.pair(k)
    for name, x in (("teacher", pair.x0), ("data", pair.data)):
        gray = _gray(decode_window(vae, x, pair.history), m)[: m.pair_gap + 1]
        h, w = gray[0].shape
        p = cv2.goodFeaturesToTrack(gray[0], m.max_corners, 0.005, max(3.0, w / 60), blockSize=5).astype(np.float32)
        low = p.reshape(-1, 2)[:, 1] > 2 * h / 3
        status, fb_ok, path = np.ones(len(p), bool), np.ones(len(p), bool), [p.reshape(-1, 2)]
        for a, b in zip(gray[:-1], gray[1:]):
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(a, b, p, None, **lk)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, nxt, None, **lk)
            status &= (st.ravel() == 1) & (st2.ravel() == 1)
            fb_ok &= np.linalg.norm((back - p).reshape(-1, 2), axis=1) < m.fb_max_px
            p = nxt
            path.append(p.reshape(-1, 2))
        q = p.reshape(-1, 2)
        inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
        jitter = track_jitter(np.stack(path).astype(np.float64))
        alive = status & fb_ok & inside
        bound = max(m.jitter_px, float(np.median(jitter[alive]))) if alive.any() else m.jitter_px
        stages = [low, low & status, low & status & fb_ok, low & alive, low & alive & (jitter <= bound)]
        counts[name] += [int(s.sum()) for s in stages]
        jitters[name] += list(jitter[low & alive])
print(f"bottom-third corners of the chunks asking a step, of the first {count} pairs of {folder}")
print("| chunks | corners found | LK status both ways | forward-backward | inside the frame | jitter bound | "
      "median jitter before that bound (px) |")
print("|---|---|---|---|---|---|---|")
for name, c in counts.items():
    print(f"| {name} | " + " | ".join(str(v) for v in c) + f" | {np.median(jitters[name]):.3f} |")
