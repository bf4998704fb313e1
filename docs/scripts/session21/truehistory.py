# truehistory.py OUT WEIGHTS FIRST N [K | same]: is the walk lost to the history a model made itself? For the plain cases of
# `yume bench sim`'s worlds FIRST..FIRST+N-1, each chunk i is generated on the TRUE history (the case's rendered
# video up to the chunk, through the model's VAE, at the model's key speeds) instead of the chunks the model made
# before it, and scored as the benchmark scores it; OUT/results.json holds one "video" per (case, chunk): the true
# frames before the chunk, then the generated chunk, with only that chunk's row kept. With K, chunks 2-3 see only the
# last K latents of the true history (K=1: the chunk starts from the last true frame, as chunk 1 from the image).
# With "same", chunk 2 alone is made, on a true history that already holds chunk 2's action (the case re-rendered
# with that action from the start): the model continuing the motion it sees, which most v2v training batches ask.
import dataclasses
import json
import sys
from pathlib import Path

import torch

import yume.sim.bench as sim_bench
from yume.bench.sim import world_speeds, write_model_benchmark
from yume.eval.score import Chunk, load_benchmark, score_video
from yume.session import SessionConfig, WorldSession, to_uint8
from yume.world import WorldModel

out, weights, first, n_worlds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mode = sys.argv[5] if len(sys.argv) > 5 else None
same = mode == "same"
window = int(mode) if mode is not None and not same else None
torch.set_grad_enabled(False)
world = WorldModel.load("yume-sim-small", weights=weights, device="cpu")
speeds = world_speeds(world)
cases = [c for c in load_benchmark(write_model_benchmark(world, out, n_worlds, first)) if c.id.endswith("plain")]
rows, captured = [], {}


def keep(video):  # the whole rendered video, frame 0 (the start image) included
    captured["video"] = video
    return video


for case in cases:
    if same:  # chunk 2's action held from the start: the history shows the motion the chunk asks for
        case = dataclasses.replace(case, actions=[case.actions[1]] * len(case.actions))
    sim_bench.rendered_generator(keep, **speeds)(case)
    true = torch.from_numpy(captured["video"]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    z = world.vae.encode(true)  # [1, C, 1 + 3n, h, w]: one latent a frame (the stride-free VAE)
    n = case.frames_per_chunk
    for i, action in enumerate(case.actions):
        if (window is not None and i == 0) or (same and i != 1):
            continue  # chunk 1 starts from the image either way: the run without K has it
        cfg = SessionConfig(height=case.height, width=case.width, seed=case.seed)
        session = WorldSession(world, case.prompt, image=case.image, config=cfg)
        if i:
            start = 0 if window is None else max(0, 1 + i * n - window)
            session.history, session.index = z[:, :, start : 1 + i * n].to(world.device, world.dtype), i
        chunk = session.step(action)
        latents = torch.cat([z[:, :, : 1 + i * n].to(chunk.latents), chunk.latents], dim=2)
        frames = to_uint8(world.vae.decode(latents.float()))[1:]  # frame 0 dropped, as a session's chunks do
        res = score_video(frames, [Chunk(n, a) for a in case.actions[: i + 1]], name=f"{case.id}-chunk{i + 1}")
        res["chunks"] = [dict(res["chunks"][i], chunk=i + 1)]
        rows.append(res)
        print(res["name"], res["chunks"][0]["commanded"], res["chunks"][0]["estimated"], flush=True)
json.dump({"results": rows}, open(out / "results.json", "w"))
for i in range(3):
    ok = [r["chunks"][0]["move_ok"] for r in rows if r["chunks"][0]["chunk"] == i + 1]
    print(f"chunk {i + 1} on the true history: walked {sum(ok)} of {len(ok)}")
print(f"all: walked {sum(r['chunks'][0]['move_ok'] for r in rows)} of {len(rows)} "
      f"(turned {sum(r['chunks'][0]['rotate_ok'] for r in rows)})")
