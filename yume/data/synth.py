"""`yume data synth`: a posed, captioned clip dataset rendered by the procedural street world (`yume.sim`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yume.actions import ALL_ACTIONS, Action
from yume.data.clips import Clip, write_clip, write_manifest
from yume.sim import Camera, World, render_clip, step_camera
from yume.sim.camera import MOVE_SPEED, TURN_SPEED
from yume.sim.captions import scene_caption
from yume.sim.events import EVENTS, Scene, apply_event, event_text, ramp

KERB = 4.0  # the camera stays within |x| < KERB metres of the street's centre line
MAX_PITCH = 70.0  # degrees, inside the camera's 75° stop so that every pitch step shows in the poses


def _segment_ok(camera: Camera, action: Action, frames: int, move_speed: float = MOVE_SPEED,
                turn_speed: float = TURN_SPEED) -> tuple[bool, Camera]:  # fmt: skip
    for _ in range(frames):
        camera = step_camera(camera, action.move, action.rotate, move_speed, turn_speed)
    return abs(camera.x) < KERB and abs(camera.pitch) < MAX_PITCH, camera


def random_actions(rng: np.random.Generator, camera: Camera, segments: int, frames: int, move_speed: float = MOVE_SPEED,
                   turn_speed: float = TURN_SPEED) -> list[Action]:  # fmt: skip
    """`segments` actions drawn from all 81, each held `frames` frames, redrawn while one would leave the street."""
    out = []
    for _ in range(segments):
        for _try in range(100):
            action = ALL_ACTIONS[rng.integers(len(ALL_ACTIONS))]
            ok, moved = _segment_ok(camera, action, frames, move_speed, turn_speed)
            if ok:
                break
        else:
            action, moved = ALL_ACTIONS[0], camera
        out.append(action)
        camera = moved
    return out


def synth_clip(
    seed: int,
    *,
    height: int = 128,
    width: int = 128,
    segments: int = 2,
    frames_per_segment: int = 40,
    event: str | None = None,
    event_onset: int = 0,
    supersample: int = 1,
    move_speed: float = MOVE_SPEED,
    turn_speed: float = TURN_SPEED,
):
    """One clip of world `seed`: (frames [N, H, W, 3] uint8, poses [N, 4, 4], actions per transition, caption).

    N = 1 + segments * frames_per_segment; the camera starts at a random spot, heading roughly along the street, and
    a held key moves it `move_speed` metres and `turn_speed` degrees a frame.
    """
    rng = np.random.default_rng(seed)
    # Sun from the side, low (~25°) or high (~55°), so scenes differ in light as well as in buildings.
    elevation = np.radians(rng.choice([25.0, 55.0]) + rng.uniform(-5.0, 5.0))
    side = rng.choice([-1.0, 1.0])
    world = World(seed=seed, sun=(side * 0.8 * np.cos(elevation), -np.sin(elevation), 0.6 * np.cos(elevation)))
    camera = Camera(x=rng.uniform(-2.0, 2.0), z=rng.uniform(-300.0, 300.0), yaw=rng.uniform(-30.0, 30.0))
    actions = random_actions(rng, camera, segments, frames_per_segment, move_speed, turn_speed)
    frames, poses = render_clip(world, actions, frames_per_segment, height, width, camera=camera,
                                supersample=supersample, move_speed=move_speed, turn_speed=turn_speed)  # fmt: skip
    if event is not None:
        frames = apply_event(frames, event, Scene(world, poses), ramp(len(frames), event_onset, 12))
    per_transition = [a for a in actions for _ in range(frames_per_segment)]
    return frames, poses, per_transition, scene_caption(world, camera.z)


def synth_one(root: str | Path, seed: int, options: dict) -> Clip:
    """Render and write the clip of world `seed` (its event drawn from the seed alone, so any worker agrees)."""
    segments, frames_per_segment = options["segments"], options["frames_per_segment"]
    rng = np.random.default_rng([seed, 1])
    n = 1 + segments * frames_per_segment
    names = list(EVENTS)
    event = names[rng.integers(len(names))] if rng.random() < options["event_prob"] else None
    onsets = options["event_onsets"]
    onset = int(rng.integers(0, n // 3 + 1)) if onsets is None else int(onsets[rng.integers(len(onsets))])
    frames, poses, actions, caption = synth_clip(
        seed, height=options["height"], width=options["width"], segments=segments,
        frames_per_segment=frames_per_segment, event=event, event_onset=onset,
        supersample=options["supersample"], move_speed=options["move_speed"],
        turn_speed=options["turn_speed"],
    )  # fmt: skip
    return write_clip(root, f"sim_{seed:05d}", frames, options["fps"], caption,
                      event=event_text(event) if event else None, poses=poses, actions=actions)  # fmt: skip


def _synth_in_worker(args) -> Clip:
    return synth_one(*args)


def synth_dataset(
    root: str | Path,
    num_clips: int,
    *,
    first_seed: int = 0,
    height: int = 128,
    width: int = 128,
    fps: float = 16.0,
    segments: int = 2,
    frames_per_segment: int = 40,
    event_prob: float = 0.5,
    event_onsets: tuple[int, ...] | None = None,
    supersample: int = 1,
    move_speed: float = MOVE_SPEED,
    turn_speed: float = TURN_SPEED,
    workers: int = 1,
    on_clip=None,
) -> list[Clip]:
    """Render `num_clips` clips (world seeds first_seed, first_seed + 1, ...) into a dataset at `root`.

    Each clip carries poses, per-transition actions, a scene caption and, with probability `event_prob`, one event
    (uniform over `yume.sim.events.EVENTS`) that starts within the first third of the clip, or at one of the frames
    `event_onsets` (drawn uniformly: e.g. the first frames of inference's chunks, where the benchmark asks for an
    event; its text stands in the clip's caption from frame 0 either way). `workers` > 1 renders
    in that many processes; every clip depends on its seed alone, so the dataset is the same. A held key moves the
    camera `move_speed` metres and turns it `turn_speed` degrees a frame (the defaults are the built-in model's).
    """
    if num_clips < 1:
        raise ValueError(f"num_clips={num_clips} must be >= 1")
    if not 0.0 <= event_prob <= 1.0:
        raise ValueError(f"event_prob={event_prob} must be in [0, 1]")
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    frames = 1 + segments * frames_per_segment
    if event_onsets is not None and not (event_onsets and all(0 <= f < frames for f in event_onsets)):
        raise ValueError(f"event_onsets={event_onsets} must be frames of the clip, in [0, {frames - 1}] "
                         f"({segments} segments of {frames_per_segment} frames after the first)")  # fmt: skip
    if not (0.0 < move_speed <= 1.0 and 0.0 < turn_speed <= 10.0):
        raise ValueError(f"move_speed={move_speed} (metres a frame) must be in (0, 1] and turn_speed={turn_speed} "
                         "(degrees a frame) in (0, 10]")  # fmt: skip
    options = dict(height=height, width=width, fps=fps, segments=segments, frames_per_segment=frames_per_segment,
                   event_prob=event_prob, event_onsets=None if event_onsets is None else tuple(event_onsets),
                   supersample=supersample, move_speed=move_speed,
                   turn_speed=turn_speed)  # fmt: skip
    jobs = [(root, first_seed + i, options) for i in range(num_clips)]
    clips = []
    if workers == 1:
        results = map(_synth_in_worker, jobs)
        pool = None
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent may hold torch threads that a fork would copy mid-use.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_synth_in_worker, jobs, chunksize=4)
    try:
        for clip in results:
            clips.append(clip)
            if on_clip is not None:
                on_clip(clip)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    write_manifest(root, clips)
    return clips
