# smoothdec.py OUT FIRST N KIND [WEIGHTS]: `yume bench sim` with the chunk latents low-passed in time before the VAE decodes them
# (a diagnostic: does the walk's noise live in frame-to-frame latent jitter?). The DiT's history keeps the raw latents.
# KIND: c121 (x[t-1] + 2x[t] + x[t+1]) / 4, the previous chunk's last latent on the left, the edge repeated on the right
import sys

import torch

from yume.bench.cli import _by_move, _sideways
from yume.bench.sim import event_detector, run_sim_bench
from yume.session import WorldSession
from yume.world import WorldModel

out, first, n, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
orig = WorldSession._decode


def _decode(self, latents, on_frames):
    h = self.history  # already holds this chunk at its end
    prev = h[:, :, -latents.shape[2] - 1 : -latents.shape[2]] if h.shape[2] > latents.shape[2] else latents[:, :, :1]
    x = torch.cat([prev, latents, latents[:, :, -1:]], dim=2).float()
    if kind == "c121":
        y = (x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]) / 4
    else:
        raise SystemExit(f"unknown kind {kind}")
    return orig(self, y.to(latents.dtype), on_frames)


WorldSession._decode = _decode
torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", device="cpu", weights=sys.argv[5] if len(sys.argv) > 5 else None)
s = run_sim_bench(world, out, scenes=n, first_scene=first, detector=event_detector(world))
print(f"model move {s['if_movement']:.3f} rot {s['if_rotation']:.3f}", _by_move(s["if_by_move"]))
print("sideways", _sideways(s["sideways_reads"]), "imaging", round(s["imaging_quality"], 3))
