# rotprofile.py BENCH_OUT...: for the chunks of `yume bench sim` outputs that ask to turn without a step (yaw or
# pitch alone), the dense flow (frame 0 -> 4 of the chunk) across the picture, against the same chunk of the true
# video through the model's VAE. A true turn moves the edges faster than the centre (1 + (x/f)^2: 1.49x at 35 deg of
# a 70 deg view); a picture slid as a whole does not. Prints the median edge/centre ratio and the
# flow's spread over the middle of the picture relative to its mean (a slide would be near 0).
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from yume.bench.sim import vae_round_trip
from yume.eval.score import load_benchmark
from yume.sim.bench import rendered_generator
from yume.video import read_video
from yume.world import WorldModel

torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", device="cpu")
truth = rendered_generator(vae_round_trip(world))


def profile(a, b, axis):
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    comp = flow[..., 0] if axis == "yaw" else flow[..., 1]
    prof = np.median(comp[32:96, :], axis=0) if axis == "yaw" else np.median(comp[:, 32:96], axis=1)
    centre, edge = np.median(prof[52:76]), np.median(np.r_[prof[8:20], prof[108:120]])
    # a slide's flow is the same everywhere: the spread of the component across the middle band, relative
    spread = float(np.std(comp[32:96, 32:96]) / (abs(np.mean(comp[32:96, 32:96])) + 1e-6))
    return edge / centre if abs(centre) > 0.3 else float("nan"), spread


rows = {"model": [], "true": []}
for out in map(Path, sys.argv[1:]):
    cases = {c.id: c for c in load_benchmark(out / "bench" / "bench.json")}
    for case in json.load(open(out / "results.json"))["results"]:
        c = cases[case["name"]]
        video, _ = read_video(out / "videos" / f"{case['name']}.mp4")
        true, sizes = truth(c)
        for i, ch in enumerate(case["chunks"]):
            cmd = ch["commanded"]
            if any(k in cmd for k in "WASD") or cmd in ("", "none"):
                continue
            axis = "yaw" if cmd in ("←", "→") else "pitch" if cmd in ("↑", "↓") else None
            if axis is None:
                continue
            s = sum(sizes[:i])
            for name, v in (("model", video), ("true", true)):
                rows[name].append((axis, *profile(v[s], v[s + 4], axis)))
for name, r in rows.items():
    for axis in ("yaw", "pitch"):
        a = np.array([x[1:] for x in r if x[0] == axis], float)
        if len(a):
            print(f"{name} {axis}: {len(a)} chunks, edge/centre flow {np.nanmedian(a[:, 0]):.2f}, "
                  f"relative spread {np.nanmedian(a[:, 1]):.2f}")
