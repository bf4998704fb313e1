# refspeed.py OUT FIRST N SPEED: refchunks.py's true videos of `yume bench sim`'s cases (worlds FIRST..FIRST+N-1)
# through the shipped VAE, scored chunk by chunk (OUT/results.json), with the camera walking SPEED metres a frame:
# what a model trained on `yume data synth --move-speed SPEED` could show at best on the same cases.
import sys
from pathlib import Path

import torch

import yume.sim.bench as sim_bench
from yume.bench.sim import vae_round_trip, write_model_benchmark
from yume.eval.motion import MotionConfig
from yume.eval.score import load_benchmark, run_cases, write_reports
from yume.world import WorldModel

out, first, n, speed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", device="cpu")
cases = load_benchmark(write_model_benchmark(world, out, n, first))
render = sim_bench.rendered_generator(vae_round_trip(world), move_speed=speed)
res = run_cases(cases, render, MotionConfig(jitter_bands=1))  # the estimator of its day
write_reports(res, out / "results.json", out / "results.md")
