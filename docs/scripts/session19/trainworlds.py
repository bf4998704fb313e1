# trainworlds.py OUT FIRST N [WEIGHTS] [--reference]: `yume bench sim` on worlds the DiT was trained on (seeds < 100000,
# which the CLI refuses), from a camera start the training clips did not use; with --reference, the true videos
# through the model's VAE instead. Tells a generalisation gap (train worlds >> held-out) from a model that cannot walk.
import sys

import torch

from yume.bench.cli import _by_move, _sideways
from yume.bench.sim import event_detector, reference_ifs, run_sim_bench
from yume.world import WorldModel

args = [a for a in sys.argv[1:] if not a.startswith("--")]
out, first, n = args[0], int(args[1]), int(args[2])
weights = args[3] if len(args) > 3 else None
torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", device="cpu", weights=weights)
det = event_detector(world)
if "--reference" in sys.argv:
    for name, r in reference_ifs(world, out, scenes=n, first_scene=first, detector=det).items():
        print(name, f"move {r['if_movement']:.3f} rot {r['if_rotation']:.3f}", _by_move(r["by_move"]), flush=True)
else:
    s = run_sim_bench(world, out, scenes=n, first_scene=first, detector=det)
    print(f"model move {s['if_movement']:.3f} rot {s['if_rotation']:.3f}", _by_move(s["if_by_move"]))
    print("sideways", _sideways(s["sideways_reads"]), "imaging", round(s["imaging_quality"], 3))
