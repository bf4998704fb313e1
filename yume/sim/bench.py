"""A held-out benchmark of the street world for `yume eval run`, and the event-following check of its videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from yume.actions import ALL_ACTIONS
from yume.sim.camera import MOVE_SPEED, TURN_SPEED, Camera
from yume.sim.captions import scene_caption
from yume.sim.detect import NONE, EventDetector
from yume.sim.events import EVENTS, Scene, apply_event, event_from_text, event_text
from yume.sim.render import render, render_clip
from yume.sim.world import World

HELD_OUT_SEED = 100_000  # training data uses world seeds below this


def require_held_out(flag: str, seed: int) -> None:
    """A benchmark's first world must not be a training world: ValueError naming the option otherwise."""
    if seed < HELD_OUT_SEED:
        raise ValueError(f"{flag} {seed}: worlds below {HELD_OUT_SEED} are the training data's (`yume data synth` "
                         f"seeds); choose {HELD_OUT_SEED} or more")  # fmt: skip


def _start(seed: int) -> tuple[World, Camera]:
    rng = np.random.default_rng([seed, 2])
    return World(seed=seed), Camera(x=rng.uniform(-2.0, 2.0), z=rng.uniform(-300.0, 300.0), yaw=rng.uniform(-20, 20))


def write_benchmark(out: str | Path, num_scenes: int = 12, *, first_seed: int = HELD_OUT_SEED, chunks: int = 3,
                    height: int = 128, width: int = 128, frames_per_chunk: int = 32) -> Path:  # fmt: skip
    """out/bench.json + out/start/<seed>.png: per held-out world, one case without and one with an event.

    Every case starts from a rendered image of an unseen world with its scene caption; actions are drawn from the
    81 with pitch kept within reach; the event case asks for one of the six events (in turn) from chunk 1 on.
    """
    out = Path(out)
    (out / "start").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    names, cases = list(EVENTS), []
    for i in range(num_scenes):
        seed = first_seed + i
        world, camera = _start(seed)
        Image.fromarray(render(world, camera, height, width, supersample=2)).save(out / "start" / f"{seed}.png")
        rng = np.random.default_rng([seed, 3])
        for kind in ("plain", "event"):
            actions = [ALL_ACTIONS[j] for j in rng.integers(len(ALL_ACTIONS), size=chunks)]
            case = {"id": f"{seed}-{kind}", "prompt": scene_caption(world, camera.z), "image": f"start/{seed}.png",
                    "actions": [str(a) for a in actions], "seed": i}  # fmt: skip
            if kind == "event":
                case["events"] = {"1": event_text(names[i % len(names)])}
            cases.append(case)
    bench = {"defaults": {"height": height, "width": width, "frames_per_chunk": frames_per_chunk}, "cases": cases}
    path = out / "bench.json"
    path.write_text(json.dumps(bench, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def rendered_generator(transform=None, *, move_speed: float = MOVE_SPEED, turn_speed: float = TURN_SPEED):
    """A `generate(case)` for `yume.eval.score.run_cases` that renders what a case asks for instead of generating it.

    Each case of `write_benchmark` starts in a known world at a known camera, so its true video can be rendered: the
    actions held for `frames_per_chunk` frames each, the event from its chunk on. `transform(frames) -> frames` (a
    VAE round trip of frames [1 + sk, ...], s its temporal stride) gives what a model with that VAE could show at
    best: the scorer's ceiling for it. Frame 0 (the start image) is dropped, as the session's chunks do not repeat
    it. A held key walks the camera `move_speed` metres and turns it `turn_speed` degrees a frame (the world a model
    was trained on: `WorldModel.info`'s, else `yume data synth`'s defaults).
    """
    from yume.actions import Action

    def generate(case) -> tuple[np.ndarray, list[int]]:
        seed = int(case.id.split("-")[0])
        world, camera = _start(seed)
        n = case.frames_per_chunk
        video, poses = render_clip(world, [Action.parse(str(a)) for a in case.actions], n, case.height, case.width,
                                   camera=camera, supersample=2, move_speed=move_speed, turn_speed=turn_speed)  # fmt: skip
        for i, text in sorted(case.events.items()):
            name = event_from_text(text)
            if name is not None:
                video = apply_event(video, name, Scene(world, poses), event_strength(len(video), 1 + i * n))
        if transform is not None:
            video = transform(video)
        return video[1:], [n] * len(case.actions)

    return generate


def rendered_examples(num_worlds: int = 6, *, first_seed: int = HELD_OUT_SEED + 500, height: int = 128,
                      width: int = 128, chunk_frames: int = 8,
                      transform=None, move_speed: float = MOVE_SPEED,
                      turn_speed: float = TURN_SPEED) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:  # fmt: skip
    """label -> (before, after) frame stacks [chunk_frames, H, W, 3] of rendered walks, as the benchmark asks them.

    Each walk is a start frame and three chunks of one held action: "none" leaves it plain, each event comes in from
    chunk 1 as `rendered_generator` draws it; `before` is chunk 0, `after` chunk 2 — the frames `event_following`
    compares. `transform(frames) -> frames` (a VAE round trip of the whole walk) puts them in a model's domain.
    """
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    n = chunk_frames
    for i in range(num_worlds):
        world, camera = _start(first_seed + i)
        action = ALL_ACTIONS[np.random.default_rng(first_seed + i).integers(len(ALL_ACTIONS))]
        clip, poses = render_clip(world, [action], 3 * n, height, width, camera=camera, supersample=1,
                                  move_speed=move_speed, turn_speed=turn_speed)  # fmt: skip
        strength = event_strength(len(clip), 1 + n)
        variants = {NONE: clip} | {e: apply_event(clip, e, Scene(world, poses), strength) for e in EVENTS}
        for name, video in variants.items():
            video = transform(video) if transform else video
            out.setdefault(name, []).append((video[1 : 1 + n], video[1 + 2 * n :]))
    return out


def event_strength(num_frames: int, onset: int) -> np.ndarray:
    """An event's strength per frame when it is asked for from frame `onset` on: ramping in over 12 frames."""
    return np.clip((np.arange(num_frames) - onset) / 12.0, 0.0, 1.0)


def event_case(case_id: str, asked: str | None, video: np.ndarray, chunk_frames: list[int],
               detector: EventDetector) -> dict:  # fmt: skip
    """The event a video's last chunk asked for (None: none) and the one `detector` sees appear since its first."""
    before, after = video[: chunk_frames[0]], video[len(video) - chunk_frames[-1] :]
    return {"id": case_id, "asked": asked or NONE, "detected": detector.predict(before, after)}


def event_rates(rows: list[dict], detector: EventDetector) -> dict:
    """{"cases", "event_hit_rate" (event cases whose event is detected), "false_event_rate" (plain cases where an
    event is detected), "events_hidden" (events the detector cannot see in this domain: their cases are not scored)}; a
    rate is None when there are no such cases."""
    events = [r for r in rows if r["asked"] not in (NONE, *detector.hidden)]
    plain = [r for r in rows if r["asked"] == NONE]
    return {
        "cases": rows,
        "events_hidden": sorted(detector.hidden),
        "event_hit_rate": float(np.mean([r["asked"] == r["detected"] for r in events])) if events else None,
        "false_event_rate": float(np.mean([r["detected"] != NONE for r in plain])) if plain else None,
    }


def event_following(videos: str | Path, detector: EventDetector) -> dict:
    """Per video written by `yume eval run --videos`: the event its last chunk asked for vs the one the detector sees
    appear between its first and last chunks (`event_rates`)."""
    from yume.video import read_video

    rows = []
    for sidecar in sorted(Path(videos).glob("*.json")):
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        frames, _ = read_video(sidecar.with_suffix(".mp4"))
        asked = event_from_text(meta["chunks"][-1].get("event"))
        rows.append(event_case(sidecar.stem, asked, frames, [c["frames"] for c in meta["chunks"]], detector))
    return event_rates(rows, detector)
