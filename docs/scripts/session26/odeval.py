# odeval.py CONFIG PAIRS DIT [DIT ...]: how far each DiT's 4-step sampler lands from the teacher's solutions.
# For every pair in the folder PAIRS (written by `yume train ode-pairs` with CONFIG's data and seed, e.g. pairs the
# run never trained on) and every exit step, the MSE between the student's x̂0 there and the teacher's solution, as
# the ode stage charges it; printed as the mean per exit step and over all, one row per DiT.
import sys

import numpy as np
import torch

from yume.data.cache import LatentCache
from yume.models.wan import YumeTransformer
from yume.train.config import load_config
from yume.train.ode import PairSet, ode_loss
from yume.train.self_forcing import few_step_sigmas

torch.set_grad_enabled(False)
cfg = load_config(sys.argv[1], ["stage=ode", f"ode.pairs={sys.argv[2]}"])
pairs = PairSet(sys.argv[2], LatentCache(cfg.data.cache), cfg.run.seed)
sf = cfg.self_forcing
sigmas = few_step_sigmas(sf.steps, sf.shift)
print(f"{len(pairs)} pairs of {pairs.meta['teacher']} (CFG {pairs.meta['guidance']}); MSE to its solutions, by exit step")
print("| DiT | " + " | ".join(f"exit {e}" for e in range(sf.steps)) + " | all |")
print("|---|" + "---|" * (sf.steps + 1))
for path in sys.argv[3:]:
    model = YumeTransformer.from_pretrained(path, dtype=torch.float32).eval()
    losses = np.zeros((len(pairs), sf.steps))
    for k in range(len(pairs)):
        pair = pairs.pair(k)
        for e in range(sf.steps):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                losses[k, e] = ode_loss(model, pair, sigmas, e, policy=cfg.model.history_policy, device="cpu").item()
    cells = " | ".join(f"{v:.4f}" for v in losses.mean(0))
    print(f"| {path} | {cells} | {losses.mean():.4f} |")
