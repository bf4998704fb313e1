# refchunks.py OUT FIRST N [WEIGHTS]: the true videos of `yume bench sim`'s cases (worlds FIRST..FIRST+N-1) through
# the model's VAE, scored chunk by chunk like a model's (OUT/results.json), to set beside a model's results.json.
import sys
from pathlib import Path

import torch

from yume.bench.sim import vae_round_trip, write_model_benchmark
from yume.eval.motion import MotionConfig
from yume.eval.score import load_benchmark, run_cases, write_reports
from yume.sim.bench import rendered_generator
from yume.world import WorldModel

out, first, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", device="cpu", weights=sys.argv[4] if len(sys.argv) > 4 else None)
cases = load_benchmark(write_model_benchmark(world, out, n, first))
res = run_cases(cases, rendered_generator(vae_round_trip(world)), MotionConfig(jitter_bands=1))
write_reports(res, out / "results.json", out / "results.md")
