# teachersteps.py CONFIG PAIRS VAE N STEPS:SHIFT:GUIDANCE[:A] [...]: how far the teacher steps, sampled other ways.
# For the first N pairs of the folder PAIRS (written by `yume train ode-pairs` with CONFIG's data, seed and teacher),
# the teacher's guided Euler ODE (yume.train.ode.teacher_solution) is solved again from each pair's own noise, history
# and captions with each recipe given (16:3:3 is the one the pairs were written with), its chunk decoded with VAE and
# read as `yume train ode-verify` reads it (yume.train.ode.read_chunks), beside the data's own continuation of the same
# history. Prints per recipe how often the chunk moves / turns / follows as asked, and the median ratio of its step to
# the data's (parallax / data parallax) where a step is asked: all such chunks, and those that follow their keys.
# TEACHER=DIT in the environment solves with that DiT instead of the pairs' teacher (e.g. a continuation of it).
# A fourth field A adds action-contrast guidance against the same caption with the step taken out (the rotation kept):
# v = v_empty + CFG (v_c - v_empty) + A (v_c - v_nomove), a third pass a step where a step is asked.
import os
import sys

import numpy as np
import torch

from yume.actions import ALL_ACTIONS, Action
from yume.eval.motion import MotionConfig
from yume.sampling import get_schedule
from yume.train.loop import build_model
from yume.train.ode import asked_actions, follows, open_pairs, read_chunks, teacher_solution
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
records = pairs.records[:count]
vae, motion = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day
teacher_path = os.environ.get("TEACHER") or pairs.meta["teacher"]
teacher = build_model(cfg, torch.device("cpu"), teacher_path).requires_grad_(False).eval()
policy = cfg.model.history_policy


asked = [asked_actions(loader, pairs.clips, record) for record in records]
data = []  # the data's own continuation of each pair's history, read as the teacher's chunks are
for k in range(len(records)):
    pair = pairs.pair(k)
    data.append(read_chunks(vae, pair.data, pair.history, asked[k], motion))

print(f"{len(records)} pairs of {folder} (written by {pairs.meta['teacher']}; solved here by {teacher_path})")
print("| recipe (steps : shift : CFG) | samples | move as asked | turn as asked | follow their keys "
      "| step / data's step, median (chunks asked a step) | … of those that follow |")
print("|---|---|---|---|---|---|---|")
for recipe in sys.argv[5:]:
    steps, shift, guidance, contrast = (recipe.split(":") + ["0"])[:4]
    sigmas = get_schedule(int(steps), float(shift))
    rows = []
    for k, record in enumerate(records):
        pair = pairs.pair(k)
        uncond = [loader.cache.empty] * len(pair.context)
        nomove = [loader.cache.decomposed(pairs.clips[c], ALL_ACTIONS.index(Action(rotate=a.rotate)))
                  for c, a in zip(record["clip_ids"], asked[k])]  # fmt: skip
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if float(contrast) and any(a.move for a in asked[k]):
                x = pair.noise
                for i in range(len(sigmas) - 1):
                    sigma = sigmas[i].expand(x.shape[0])
                    v_c, v_u, v_n = (teacher(x, sigma, c, pair.history, policy=policy) for c in (pair.context, uncond, nomove))
                    v = v_u + float(guidance) * (v_c - v_u) + float(contrast) * (v_c - v_n)
                    x = x + (sigmas[i + 1] - sigmas[i]) * v.float()
                x0 = x
            else:
                x0 = teacher_solution(teacher, pair.noise, pair.context, uncond, pair.history, sigmas, policy=policy,
                                      guidance=float(guidance))  # fmt: skip
        for v, d in zip(read_chunks(vae, x0.float(), pair.history, asked[k], motion), data[k]):
            rows.append({**v, "data_parallax": d["parallax"]})
    n = len(rows)
    stepping = [r for r in rows if Action.parse(r["asked"]).move]
    ratio = [r["parallax"] / max(r["data_parallax"], 1e-6) for r in stepping]
    kept = [r["parallax"] / max(r["data_parallax"], 1e-6) for r in stepping if follows(r)]
    print(f"| {recipe} | {n} | {sum(r['move_ok'] for r in rows) / n:.2f} | {sum(r['rotate_ok'] for r in rows) / n:.2f} "
          f"| {sum(follows(r) for r in rows) / n:.2f} | {np.median(ratio):.3f} ({len(ratio)}) "
          f"| {np.median(kept) if kept else float('nan'):.3f} ({len(kept)}) |", flush=True)
