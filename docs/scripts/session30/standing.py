# standing.py BENCH [WEIGHTS]: the chunks of a `yume bench sim` folder whose keys ask for no step (turning or standing)
# — how the estimator reads the model's saved video there, the true video rendered, and the true video through the
# model's VAE (the benchmark's --reference pair): how many read as standing, and their median parallax (px a frame;
# above MotionConfig.parallax_px_per_frame = 0.125 a chunk reads as a step) and yaw rate against the asked one.
import sys
from pathlib import Path

import numpy as np

from yume.bench.sim import vae_round_trip, world_speeds
from yume.eval.motion import MotionConfig, estimate_chunk
from yume.eval.score import chunk_windows, load_benchmark
from yume.sim.bench import rendered_generator
from yume.video import read_video
from yume.world import WorldModel

bench = Path(sys.argv[1])
world = WorldModel.load("yume-sim-small", device="cpu", weights=sys.argv[2] if len(sys.argv) > 2 else None)
sources = {"the model": None, "rendered": rendered_generator(None, **world_speeds(world)),
           "through the VAE": rendered_generator(vae_round_trip(world), **world_speeds(world))}
reads = {k: [] for k in sources}
for case in load_benchmark(bench / "bench" / "bench.json"):
    if all(a.move for a in case.actions):
        continue
    for name, render in sources.items():
        frames = read_video(bench / "videos" / f"{case.id}.mp4")[0] if render is None else render(case)[0]
        windows = chunk_windows(len(frames), [case.frames_per_chunk] * len(case.actions))
        for action, (a, b) in zip(case.actions, windows):
            if not action.move:
                est = estimate_chunk(frames[a:b], MotionConfig())
                reads[name].append((est.move == "", est.parallax, abs(est.yaw), action.rotate))
print(f"| {bench.name}: chunks asking no step | chunks | read as standing | median parallax (px a frame) | "
      "median parallax, turning / not | median |yaw| where a turn is asked (deg a frame) |")
print("|---|---|---|---|---|---|")
for name, rows in reads.items():
    turning = [r[1] for r in rows if r[3]]
    still = [r[1] for r in rows if not r[3]]
    yaw = [r[2] for r in rows if "←" in r[3] or "→" in r[3]]
    print(f"| {name} | {len(rows)} | {sum(r[0] for r in rows)} | {np.median([r[1] for r in rows]):.3f} | "
          f"{np.median(turning) if turning else float('nan'):.3f} / {np.median(still) if still else float('nan'):.3f} | "
          f"{np.median(yaw) if yaw else float('nan'):.2f} |", flush=True)
