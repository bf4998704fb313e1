"""Validation of the IF estimator on rendered clips whose camera motion is known."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import numpy as np

from yume.actions import MOVES, ROTATIONS, Action
from yume.eval.motion import MotionConfig, estimate_chunk, require_cv2
from yume.sim import Camera, World, render_clip
from yume.sim.camera import MOVE_SPEED, TURN_SPEED
from yume.sim.events import EVENTS, Scene, apply_event


def validate_if(
    combos: list[tuple[str, str]] | None = None,
    repeats: int = 1,
    height: int = 128,
    width: int = 128,
    frames: int = 16,
    seed: int = 0,
    motion: MotionConfig | None = None,
    move_speed: float = MOVE_SPEED,
    turn_speed: float = TURN_SPEED,
    event: str | None = None,
    wobble_px: float = 0.0,
    wobble_region: str = "all",
) -> dict:
    """Render one clip per (move, rotate) combination and repeat (all 81 by default), estimate, and tally.

    Each clip starts at a random place, heading and slight pitch in one of eight street worlds and holds its action
    for `frames` frames. `event` (a `yume.sim.events.EVENTS` name) draws that event ramping in from nothing at the
    first frame to full strength at the last, as it ramps in during a benchmark chunk. `wobble_px` > 0 then shimmers
    each frame's texture about the known camera (`wobble_texture`), as a generator's fast-moving ground does.
    Returns {"clips": [(move, rotate, est_move, est_rotate)], "seconds": float}.
    """
    if event is not None and event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
    if wobble_px < 0 or wobble_region not in WOBBLE_REGIONS:
        raise ValueError(f"wobble_px={wobble_px} must be >= 0 and wobble_region={wobble_region!r} one of "
                         f"{', '.join(WOBBLE_REGIONS)}")
    wobble_rng = np.random.default_rng(seed + 1_000_003)
    motion = motion or MotionConfig(fov_deg=70.0)
    combos = combos or list(itertools.product(MOVES, ROTATIONS))
    rng = np.random.default_rng(seed)
    worlds = [World(seed * 8 + i) for i in range(8)]
    clips = []
    t0 = time.perf_counter()
    for _ in range(repeats):
        for move, rotate in combos:
            world = worlds[int(rng.integers(len(worlds)))]
            cam = Camera(x=rng.uniform(-3, 3), z=rng.uniform(-50, 50), yaw=rng.uniform(-40, 40),
                         pitch=rng.uniform(-10, 10))
            video, poses = render_clip(world, [Action(move, rotate)], frames, height, width, camera=cam,
                                   fov_deg=70.0, move_speed=move_speed, turn_speed=turn_speed, supersample=1)
            if event is not None:
                video = apply_event(video, event, Scene(world, poses), np.linspace(0.0, 1.0, len(video)))
            if wobble_px > 0:
                video = wobble_texture(video, wobble_px, wobble_rng, wobble_region)
            est = estimate_chunk(video, motion)
            clips.append((move, rotate, est.move, est.rotate))
    return {"clips": clips, "seconds": time.perf_counter() - t0}


WOBBLE_REGIONS = ("all", "bottom")


def wobble_texture(frames: np.ndarray, amplitude_px: float, rng: np.random.Generator, region: str = "all",
                   smooth_px: float = 4.0) -> np.ndarray:
    """frames [T, H, W, 3] uint8 with each frame's texture shimmered about the camera, which is left as it was.

    Every frame is resampled through its own random smooth displacement field (white noise blurred over `smooth_px`,
    scaled to `amplitude_px` RMS, drawn anew each frame). A small generator renders a fast-moving, finely textured
    near ground this way (docs/sim-model.md, session 29: about 0.34 px RMS about the smooth track, the data's 0.17);
    `region="bottom"` confines it to the bottom third of the frame, ramped in over the 8 rows above, as there.
    """
    cv2 = require_cv2()
    if amplitude_px <= 0:
        return frames
    h, w = frames.shape[1:3]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.clip((ys - (2 * h / 3 - 8)) / 8, 0, 1) if region == "bottom" else np.ones_like(ys)
    out = []
    for f in frames:
        d = [cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), smooth_px) for _ in range(2)]
        scale = mask * (amplitude_px / np.sqrt(np.mean(d[0] ** 2 + d[1] ** 2)))
        out.append(cv2.remap(np.ascontiguousarray(f), xs + scale * d[0], ys + scale * d[1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def per_class(clips: list[tuple[str, str, str, str]]) -> dict[str, dict[str, float]]:
    """Accuracy per movement class and per rotation class (each axis scored on its own), and overall."""
    move = {m: float(np.mean([c[2] == m for c in clips if c[0] == m])) for m in MOVES if any(c[0] == m for c in clips)}
    rot = {r: float(np.mean([c[3] == r for c in clips if c[1] == r])) for r in ROTATIONS if any(c[1] == r for c in clips)}
    overall = {
        "movement": float(np.mean([c[2] == c[0] for c in clips])),
        "rotation": float(np.mean([c[3] == c[1] for c in clips])),
        "both": float(np.mean([c[2:] == c[:2] for c in clips])),
    }
    return {"movement": move, "rotation": rot, "overall": overall}


def format_validation(report: dict, top: int = 10) -> str:
    """Per-class accuracy tables and the most frequent confusions, as markdown."""
    clips = report["clips"]
    acc = per_class(clips)

    def name(x: str) -> str:
        return x or "·"

    lines = [f"{len(clips)} clips, {report['seconds']:.0f} s", "", "| movement | acc | | rotation | acc |",
             "|---|---|---|---|---|"]
    for m, r in itertools.zip_longest(acc["movement"].items(), acc["rotation"].items()):
        left = f"{name(m[0])} | {m[1]:.3f}" if m else " | "
        right = f"{name(r[0])} | {r[1]:.3f}" if r else " | "
        lines.append(f"| {left} | | {right} |")
    o = acc["overall"]
    lines += ["", f"overall: movement {o['movement']:.3f}, rotation {o['rotation']:.3f}, both {o['both']:.3f}", ""]
    confusions = Counter((f"{name(a)}→{name(c)}", "move") for a, _, c, _ in clips if a != c)
    confusions.update((f"{name(b)}→{name(d)}", "rotate") for _, b, _, d in clips if b != d)
    if confusions:
        lines.append("most frequent confusions (commanded→estimated): " + ", ".join(
            f"{k} [{axis}] ×{n}" for (k, axis), n in confusions.most_common(top)))
    return "\n".join(lines) + "\n"
