# fovsweep.py BENCH_OUT...: re-estimates the chunks of `yume bench sim` outputs (the model's videos, and the true
# videos through the model's VAE) with the estimator assuming other fields of view. If the model's turns were drawn
# with another lens than the world's 70 deg, its turns' rotation-only residual (read as a step) would fall at that one.
import json
import sys
from pathlib import Path

import numpy as np
import torch

from yume.bench.sim import vae_round_trip
from yume.eval.motion import MotionConfig, estimate_chunk
from yume.eval.score import load_benchmark
from yume.sim.bench import rendered_generator
from yume.video import read_video
from yume.world import WorldModel

FOVS = (50.0, 60.0, 70.0, 80.0, 95.0)
torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", device="cpu")
truth = rendered_generator(vae_round_trip(world))
rows = []  # (source, kind, fov, parallax, move_ok)
for out in map(Path, sys.argv[1:]):
    cases = {c.id: c for c in load_benchmark(out / "bench" / "bench.json")}
    for case in json.load(open(out / "results.json"))["results"]:
        if not case["name"].endswith("plain"):
            continue
        c = cases[case["name"]]
        video, _ = read_video(out / "videos" / f"{case['name']}.mp4")
        true, sizes = truth(c)
        for i, ch in enumerate(case["chunks"]):
            cmd = ch["commanded"]
            move = "+".join(k for k in cmd.split("+") if k in "WASD")
            turns = any(k in cmd for k in "←→↑↓")
            if not turns:
                continue
            kind = "step+turn" if move else "turn"
            s = sum(sizes[:i])
            for src, v in (("model", video), ("true", true)):
                for fov in FOVS:
                    est = estimate_chunk(v[max(s - 1, 0) : s + sizes[i]], MotionConfig(fov_deg=fov, jitter_bands=1))
                    rows.append((src, kind, fov, est.parallax, est.move == move))
for src in ("model", "true"):
    for kind in ("turn", "step+turn"):
        line = []
        for fov in FOVS:
            a = np.array([(r[3], r[4]) for r in rows if r[:3] == (src, kind, fov)], float)
            line.append(f"fov {fov:.0f}: parallax {np.median(a[:, 0]):.2f} move {a[:, 1].mean():.2f}")
        print(f"{src} {kind} ({len(a)}): " + " | ".join(line), flush=True)
