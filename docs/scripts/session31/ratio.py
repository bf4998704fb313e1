# ratio.py BENCH CASES: is what the estimator reads as a step in a `yume bench sim` folder's video structured motion
# (a translation, which the epipolar fit explains) or track noise (which no camera motion explains)? For each chunk
# of the first CASES videos, in the model's saved video, the true video through the model's VAE and the true video
# rendered, and for each of the estimator's frame pairs: the 80th-percentile residual of the rotation-only fit (the
# benchmark's parallax, px a frame) and of the best rotation + translation fit (distance to the epipolar line, px a
# frame). Noise alone leaves their ratio near 2 (two coordinates against one); a translation raises the first only.
import sys
from pathlib import Path

import numpy as np

from yume.bench.sim import vae_round_trip, world_speeds
from yume.eval import motion as M
from yume.eval.score import chunk_windows, load_benchmark
from yume.sim.bench import rendered_generator
from yume.video import read_video
from yume.world import WorldModel

bench, count = Path(sys.argv[1]), int(sys.argv[2])
world = WorldModel.load("yume-sim-small", device="cpu")
sources = {"the model": None, "through the VAE": rendered_generator(vae_round_trip(world), **world_speeds(world)),
           "rendered": rendered_generator(None, **world_speeds(world))}
cfg = M.MotionConfig()
dirs, rows = M.DIRECTIONS.reshape(-1, 3), []
for case in list(load_benchmark(bench / "bench" / "bench.json"))[:count]:
    for name, render in sources.items():
        frames = read_video(bench / "videos" / f"{case.id}.mp4")[0] if render is None else render(case)[0]
        windows = chunk_windows(len(frames), [case.frames_per_chunk] * len(case.actions))
        for action, (a, b) in zip(case.actions, windows):
            gray = M._gray(frames[a:b], cfg)
            k = M.intrinsics(*gray[0].shape, cfg.fov_deg)
            gap = min(cfg.pair_gap, len(gray) - 1)
            last = len(gray) - 1 - gap
            pairs = []
            for start in sorted(set(range(0, last + 1, cfg.pair_stride)) | {last}):
                p0, p1 = M._track(gray[start : start + gap + 1], cfg)
                if len(p0) < 8:
                    continue
                b0, b1 = M._bearings(p0, np.linalg.inv(k)), M._bearings(p1, np.linalg.inv(k))
                r, res = M.fit_rotation(b0, b1)
                turned = b0 @ r.T
                omega, cost = M.epipolar_fit(turned, b1, dirs, cfg.noise_px / k[0, 0])
                best = int(np.argmin(cost))
                n = np.cross(b1, dirs[best])
                epi = np.abs((np.cross(turned, n) @ omega[best] + (turned * n).sum(-1)) / (np.linalg.norm(n, axis=-1) + 1e-9))
                pairs.append((np.percentile(res, 80), np.percentile(epi, 80)))
            if pairs:
                rot, epi = np.median(np.array(pairs), 0) * k[0, 0] / gap
                rows.append((name, bool(action.move), rot, epi))
print(f"| {bench.name}, first {count} videos | chunks | rotation-only residual (parallax) | epipolar residual | "
      "ratio: median (10th-90th percentile) |")
print("|---|---|---|---|---|")
for name in sources:
    for step in (False, True):
        a = np.array([r[2:] for r in rows if r[0] == name and r[1] == step])
        ratio = a[:, 0] / a[:, 1]
        print(f"| {name}, {'a step asked' if step else 'no step asked'} | {len(a)} | {np.median(a[:, 0]):.3f} | "
              f"{np.median(a[:, 1]):.3f} | {np.median(ratio):.2f} ({np.percentile(ratio, 10):.2f}-"
              f"{np.percentile(ratio, 90):.2f}) |")
