"""`yume bench walk`: long walks of a street-world model from held-out starts, scored window by window.

The benchmark of `yume bench sim` is 3 chunks a video; a world is meant to go on for as long as the user likes. Here
each walk starts from a rendered frame of an unseen world and holds a fixed cycle of 12 actions (every move and turn
kind, offset by the world's seed) for N chunks. Each window of chunks is scored on its own: IF of its camera motion,
the aesthetic proxy (colour drift shows as it climbs), and the wall time a chunk took (constant if the history stays
bounded).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from yume.actions import Action
from yume.world import WorldModel

WALK_CYCLE = ("W", "W+→", "A", "←", "D", "S+A", "W+D", "↑", "W", "↓", "S", "→")
FIRST_WALK_WORLD = 100_300  # held out: above the training seeds, apart from the benchmark's 100000-100111
WALK_PROMPT = "A first-person walk along a city street."


def walk_actions(seed: int, chunks: int) -> list[Action]:
    """The actions of the walk in world `seed`: WALK_CYCLE from position seed mod 12."""
    return [Action.parse(WALK_CYCLE[(i + seed) % len(WALK_CYCLE)]) for i in range(chunks)]


def check_walks(walks: int, chunks: int, window: int, first_world: int) -> None:
    """ValueError naming the problem: walks and chunks at least 1, the window within the chunks, held-out worlds."""
    from yume.sim.bench import require_held_out

    require_held_out("--first-world", first_world)
    if walks < 1 or chunks < 1 or not 1 <= window <= chunks:
        raise ValueError(f"--walks {walks} --chunks {chunks} --window {window}: walks and chunks must be at least 1, "
                         "and the window between 1 and the chunks")  # fmt: skip


def long_walks(world: WorldModel, *, walks: int = 3, chunks: int = 40, window: int = 10,
               first_world: int = FIRST_WALK_WORLD, steps: int | None = None, guidance: float | None = None,
               shift: float | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Walk `walks` worlds (seeds first_world, first_world + 1, ...) for `chunks` chunks each and score every
    `window` chunks.

    Returns {"walks", "chunks", "window", "first_world", "windows": [{"first", "last", "chunks", "movement",
    "rotation", "aesthetic", "imaging", "seconds_per_chunk"}], "all": {"movement", "rotation", "chunks"}}: IF is
    pooled over the walks' chunks in the window; the proxies are means over walks; time per chunk is the wall time of
    `WorldSession.step` (text, denoise, decode), the first chunk of each walk left out (it warms up).
    """
    from tqdm.auto import tqdm

    from yume.eval.score import Chunk, score_video
    from yume.session import SessionConfig, WorldSession
    from yume.sim import Camera, World, render

    check_walks(walks, chunks, window, first_world)
    h, w = world.default_resolution
    config = SessionConfig(steps=steps, guidance=guidance, shift=shift)
    starts = range(0, chunks, window)
    sums = [{"move": 0, "rot": 0, "n": 0, "aesthetic": [], "imaging": [], "seconds": []} for _ in starts]
    bar = tqdm(total=walks * chunks, desc="walk", unit="chunk", disable=not progress)
    for seed in range(first_world, first_world + walks):
        start = render(World(seed=seed), Camera(), h, w)
        image = torch.from_numpy(start).permute(2, 0, 1)[None].float() / 127.5 - 1
        session = WorldSession(world, WALK_PROMPT, image=image, config=config)
        actions = walk_actions(seed, chunks)
        frames, seconds = [start[None]], []
        for action in actions:
            t0 = time.perf_counter()
            frames.append(session.step(action).frames)
            seconds.append(time.perf_counter() - t0)
            bar.update(1)
        video, per = np.concatenate(frames), frames[1].shape[0]
        for s, first in zip(sums, starts):
            last = min(first + window, chunks)
            r = score_video(video[first * per : last * per + 1], [Chunk(per, a) for a in actions[first:last]])
            s["move"] += sum(c["move_ok"] for c in r["chunks"])
            s["rot"] += sum(c["rotate_ok"] for c in r["chunks"])
            s["n"] += last - first
            s["aesthetic"].append(r["metrics"]["aesthetic_quality"]["score"])
            s["imaging"].append(r["metrics"]["imaging_quality"]["score"])
            s["seconds"] += seconds[max(first, 1) : last]
    bar.close()
    rows = []
    for s, first in zip(sums, starts):
        rows.append({"first": first + 1, "last": min(first + window, chunks), "chunks": s["n"],
                     "movement": s["move"] / s["n"], "rotation": s["rot"] / s["n"],
                     "aesthetic": float(np.mean(s["aesthetic"])), "imaging": float(np.mean(s["imaging"])),
                     "seconds_per_chunk": float(np.mean(s["seconds"])) if s["seconds"] else None})  # fmt: skip
    n = sum(s["n"] for s in sums)
    pooled = {"movement": sum(s["move"] for s in sums) / n, "rotation": sum(s["rot"] for s in sums) / n, "chunks": n}
    return {"walks": walks, "chunks": chunks, "window": window, "first_world": first_world, "windows": rows,
            "all": pooled}  # fmt: skip


def walk_table(report: dict) -> str:
    """The report of `long_walks` as a markdown table, one row a window, then the pooled IF."""
    lines = ["| chunks | IF move | IF rot | aesthetic proxy | imaging proxy | s / chunk |", "|---|---|---|---|---|---|"]
    for r in report["windows"]:
        span = f"{r['first']}-{r['last']}" if r["last"] > r["first"] else str(r["first"])
        secs = "-" if r["seconds_per_chunk"] is None else f"{r['seconds_per_chunk']:.2f}"
        lines.append(f"| {span} | {r['movement']:.3f} | {r['rotation']:.3f} | {r['aesthetic']:.3f} | "
                     f"{r['imaging']:.3f} | {secs} |")  # fmt: skip
    a = report["all"]
    lines.append(f"| all {a['chunks']} | {a['movement']:.3f} | {a['rotation']:.3f} | | | |")
    return "\n".join(lines) + "\n"
