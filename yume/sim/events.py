"""Events that text names and the rendered frames show (rain, snow, night, fog, a red balloon, street lights)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from yume.sim.camera import intrinsics
from yume.sim.world import World


@dataclass(frozen=True)
class Scene:
    """What an event needs to know about a clip: the world, camera-to-world poses [N, 4, 4] and the field of view."""

    world: World
    poses: np.ndarray
    fov_deg: float = 70.0


def ramp(num_frames: int, onset: int, duration: int) -> np.ndarray:
    """Event strength per frame [N] in [0, 1]: 0 before `onset`, rising linearly over `duration` frames, then 1."""
    t = (np.arange(num_frames) - onset + 1) / max(duration, 1)
    return np.clip(t, 0.0, 1.0).astype(np.float32)


def _rays(pose: np.ndarray, height: int, width: int, fov_deg: float) -> np.ndarray:
    """World-space unit ray directions [H, W, 3] through the pixel centres of a camera-to-world pose."""
    k = intrinsics(height, width, fov_deg)
    xs, ys = np.meshgrid((np.arange(width) - k[0, 2]) / k[0, 0], (np.arange(height) - k[1, 2]) / k[1, 1])
    d = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ pose[:3, :3].T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def street_depth(world: World, pose: np.ndarray, height: int, width: int, fov_deg: float = 70.0) -> np.ndarray:
    """Distance [H, W] in metres to the ground or the facade planes x = ±half_width; inf for the sky.

    Facades are taken as unbroken planes (gaps between buildings and roof lines are ignored): depth for haze.
    """
    d = _rays(pose, height, width, fov_deg)
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[..., 1] > 1e-6, -o[1] / d[..., 1], np.inf)
        plane = np.where(d[..., 0] > 0, world.half_width, -world.half_width)
        t_wall = np.where(np.abs(d[..., 0]) > 1e-6, (plane - o[0]) / d[..., 0], np.inf)
        wall_y = o[1] + t_wall * d[..., 1]
    facade_top = -float(np.median(np.concatenate(world.heights)))
    t_wall = np.where((t_wall > 0) & (wall_y >= facade_top), t_wall, np.inf)
    return np.minimum(t_ground, t_wall)


def _project(points: np.ndarray, pose: np.ndarray, height: int, width: int, fov_deg: float):
    """Pixel (u, v) [M, 2] and depth [M] of world points [M, 3] seen from a camera-to-world pose."""
    cam = (points - pose[:3, 3]) @ pose[:3, :3]  # world -> camera: R^T (p - o)
    k = intrinsics(height, width, fov_deg)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([k[0, 0] * cam[:, 0] / z + k[0, 2], k[1, 1] * cam[:, 1] / z + k[1, 2]], axis=-1)
    return uv, z, float(k[0, 0])


def _discs(img: np.ndarray, uv: np.ndarray, z: np.ndarray, radius_m: float, focal: float, paint) -> None:
    """Call paint(mask_weight [H, W], i) for each point in front of the camera, as a soft disc of radius_m metres."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for i in np.argsort(-z):  # far first, so near discs cover far ones
        if not z[i] > 0.3:
            continue
        r = max(radius_m * focal / z[i], 0.6)
        if uv[i, 0] < -r or uv[i, 0] > w + r or uv[i, 1] < -r or uv[i, 1] > h + r:
            continue
        dist = np.hypot(xx - uv[i, 0], yy - uv[i, 1])
        paint(np.clip(r + 0.5 - dist, 0.0, 1.0), i, dist / r)


def night(frames: np.ndarray, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """Darken towards a blue night; the sky darkest."""
    out = frames.copy()
    for i, s in enumerate(strength):
        if s <= 0:
            continue
        sky = ~np.isfinite(street_depth(scene.world, scene.poses[i], *frames.shape[1:3], scene.fov_deg))
        dim = np.where(sky, 0.12, 0.3)[..., None] * np.array([0.8, 0.9, 1.3], np.float32)
        out[i] = frames[i] * (1 - s + s * dim)
    return out


def fog(frames: np.ndarray, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """Thick grey fog: transmittance exp(-depth / 12 m) at full strength."""
    out = frames.copy()
    grey = np.array([0.72, 0.74, 0.76], np.float32)
    for i, s in enumerate(strength):
        if s <= 0:
            continue
        depth = street_depth(scene.world, scene.poses[i], *frames.shape[1:3], scene.fov_deg)
        keep = np.exp(-depth / (12.0 / s))[..., None].astype(np.float32)
        out[i] = frames[i] * keep + grey * (1 - keep)
    return out


def _precipitation(frames, scene, strength, *, count, length, colour, dim, speed, seed):
    """Falling particles drawn in screen space, each moving `speed` px/frame down (and a little sideways)."""
    n, h, w, _ = frames.shape
    rng = np.random.default_rng(seed)
    start = rng.random((count, 2)) * [w, h]
    drift = rng.uniform(0.6, 1.4, count)
    out = frames * (1 - (1 - dim) * strength[:, None, None, None])
    for i, s in enumerate(strength):
        if s <= 0:
            continue
        visible = rng.random(count) < s
        for j in range(length):
            x = (start[:, 0] + i * speed * 0.15 * drift + j * 0.3) % w
            y = (start[:, 1] + (i * speed + j) * drift) % h
            xi, yi = x[visible].astype(int), y[visible].astype(int)
            out[i, yi, xi] = out[i, yi, xi] * 0.3 + colour * 0.7
    return out


def rain(frames: np.ndarray, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """Grey light and streaks of rain."""
    h = frames.shape[1]
    return _precipitation(frames, scene, strength, count=h * 2, length=max(h // 16, 3), colour=0.8, dim=0.7,
                          speed=h / 6, seed=1)  # fmt: skip


def snow(frames: np.ndarray, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """White ground and slowly falling flakes."""
    out = frames.copy()
    for i, s in enumerate(strength):
        depth = street_depth(scene.world, scene.poses[i], *frames.shape[1:3], scene.fov_deg)
        d = _rays(scene.poses[i], *frames.shape[1:3], scene.fov_deg)
        x = scene.poses[i][0, 3] + depth * d[..., 0]
        ground = np.isfinite(depth) & (d[..., 1] > 0) & (np.abs(x) < scene.world.half_width - 0.05)
        out[i][ground] = frames[i][ground] * (1 - 0.7 * s) + 0.92 * 0.7 * s
    h = frames.shape[1]
    return _precipitation(out, scene, strength, count=h, length=2, colour=1.0, dim=0.92, speed=h / 40, seed=2)


def street_lights(frames: np.ndarray, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """Dusk, then warm lamps on posts every 12 m along both kerbs light up, each with a pool of light."""
    out = night(frames, scene, 0.7 * strength)
    x = scene.world.half_width - scene.world.sidewalk + 0.3
    z0 = np.round(scene.poses[0][2, 3] / 12.0) * 12.0
    zs = z0 + 12.0 * np.arange(-4, 12)
    lamps = np.array([(sx, -4.5, z) for sx in (-x, x) for z in zs])
    warm = np.array([1.0, 0.85, 0.45], np.float32)
    for i, s in enumerate(strength):
        if s <= 0:
            continue
        uv, z, focal = _project(lamps, scene.poses[i], *frames.shape[1:3], scene.fov_deg)

        def paint(weight, _j, rel, img=out[i], s=s):
            glow = np.clip(1.6 - rel, 0.0, 1.0)[..., None] * 0.5 * s  # halo around the bulb
            img[:] = img * (1 - glow) + warm * glow
            img[:] = img * (1 - weight[..., None] * s) + warm * weight[..., None] * s

        _discs(out[i], uv, z, 0.35, focal, paint)
    return out


def balloon(frames: np.ndarray, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """A red balloon floating over the street ahead of the start position, shaded as a sphere, rising slowly."""
    out = frames.copy()
    p0 = scene.poses[0]
    ahead = p0[:3, 2] * np.array([1.0, 0.0, 1.0])
    ahead = ahead / max(np.linalg.norm(ahead), 1e-6)
    centre = p0[:3, 3] + 9.0 * ahead
    red = np.array([0.85, 0.08, 0.08], np.float32)
    for i, s in enumerate(strength):
        if s <= 0:
            continue
        pos = centre + np.array([0.0, -0.6 - 0.02 * i, 0.0])  # 0.6 m above eye level, rising 2 cm a frame
        uv, z, focal = _project(pos[None], scene.poses[i], *frames.shape[1:3], scene.fov_deg)

        def paint(weight, _j, rel, img=out[i], s=s):
            shade = (1.15 - 0.55 * np.clip(rel, 0, 1))[..., None]  # brighter centre: a lit sphere
            w = weight[..., None] * s
            img[:] = img * (1 - w) + np.clip(red * shade, 0, 1) * w

        _discs(out[i], uv, z, 0.6, focal, paint)
    return out


# Event name -> (the text captions use, the effect).
EVENTS: dict[str, tuple[str, Callable]] = {
    "rain": ("It starts to rain.", rain),
    "snow": ("Snow begins to fall.", snow),
    "night": ("Night falls.", night),
    "fog": ("Thick fog rolls in.", fog),
    "balloon": ("A red balloon appears.", balloon),
    "street_lights": ("The street lights turn on.", street_lights),
}


def event_text(name: str) -> str:
    """The caption text of an event, e.g. "Night falls." for "night"."""
    try:
        return EVENTS[name][0]
    except KeyError:
        raise ValueError(f"unknown event {name!r}; choose one of {', '.join(EVENTS)}") from None


def event_from_text(text: str | None) -> str | None:
    """The event a caption asks for (its text contains an event's text, case-insensitively), or None."""
    low = (text or "").lower()
    for name, (phrase, _) in EVENTS.items():
        if phrase.lower().rstrip(".") in low:
            return name
    return None


def apply_event(frames: np.ndarray, name: str, scene: Scene, strength: np.ndarray) -> np.ndarray:
    """frames [N, H, W, 3] uint8 with the event drawn at per-frame `strength` [N] -> uint8 frames of the same shape."""
    event_text(name)
    if len(strength) != len(frames) or len(scene.poses) != len(frames):
        raise ValueError(
            f"{len(frames)} frames need as many strengths and poses, got {len(strength)} and {len(scene.poses)}"
        )
    effect = EVENTS[name][1]
    out = effect(frames.astype(np.float32) / 255.0, scene, np.asarray(strength, np.float32))
    return (np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
