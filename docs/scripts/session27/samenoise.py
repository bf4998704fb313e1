# samenoise.py CONFIG PAIRS VAE N DIT [DIT ...]: does the student walk where its teacher walked, from the same noise?
# For the first N pairs of the folder PAIRS (written by `yume train ode-pairs` with CONFIG's data and seed), each
# DiT's 4-step sampler is run from the pair's noise, history and captions, its chunk decoded with VAE and read by the
# benchmark's estimator as `yume train ode-verify` reads the teacher's (yume.train.ode.read_chunks).
# Prints, per DiT, how often its chunk moves / turns / follows as asked, how often it follows where the teacher's
# chunk from the same noise followed, and the median parallax (px a frame) of its chunks that ask for a step, beside
# the teacher's of the same chunks. The teacher's row reads its solutions again, as ode-verify did.
import sys

import numpy as np
import torch

from yume.eval.motion import MotionConfig
from yume.models.wan import YumeTransformer
from yume.train.ode import asked_actions, follows, open_pairs, read_chunks
from yume.train.self_forcing import few_step_sigmas, rollout
from yume.vae import WanVAE

torch.set_grad_enabled(False)
config, folder, vae_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg, pairs, loader = open_pairs(config, folder)
records = pairs.records[:count]
vae, motion = WanVAE.from_pretrained(vae_path), MotionConfig(jitter_bands=1)  # the estimator of its day
sigmas = few_step_sigmas(cfg.self_forcing.steps, cfg.self_forcing.shift)


def asked(record: dict) -> list:
    return asked_actions(loader, pairs.clips, record)


teacher = {}
for k, record in enumerate(records):
    pair = pairs.pair(k)
    teacher[str(record["index"])] = read_chunks(vae, pair.x0, pair.history, asked(record), motion)


def row(name: str, verdicts: list[list[dict]]) -> str:
    flat = [v for vs in verdicts for v in vs]
    taught = [v for r, vs in zip(records, verdicts) for t, v in zip(teacher[str(r["index"])], vs) if follows(t)]
    steps = [v["parallax"] for v in flat if v["asked"][0] in "WASD"]
    n = len(flat)
    return (f"| {name} | {n} | {sum(v['move_ok'] for v in flat) / n:.2f} | {sum(v['rotate_ok'] for v in flat) / n:.2f}"
            f" | {sum(follows(v) for v in flat) / n:.2f} | {sum(follows(v) for v in taught)} of {len(taught)}"
            f" | {np.median(steps):.3f} |")


print(f"{len(records)} pairs of {folder} (teacher {pairs.meta['teacher']}, CFG {pairs.meta['guidance']})")
print("| chunks of | samples | move as asked | turn as asked | follow their keys | follow where the teacher followed "
      "| median parallax where a step is asked (px a frame) |")
print("|---|---|---|---|---|---|---|")
print(row("the teacher (its 16-step guided solution)", [teacher[str(r["index"])] for r in records]), flush=True)
for path in sys.argv[5:]:
    model = YumeTransformer.from_pretrained(path, dtype=torch.float32).eval()
    verdicts = []
    for k, record in enumerate(records):
        pair = pairs.pair(k)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = rollout(model, [pair.noise], [pair.context], pair.history, sigmas, [len(sigmas) - 2],
                          policy=cfg.model.history_policy)  # fmt: skip
        verdicts.append(read_chunks(vae, out.chunks[0].float(), pair.history, asked(record), motion))
    print(row(path, verdicts), flush=True)
