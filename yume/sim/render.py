"""Ray-cast rendering of the street world in numpy: ground, facades, sky with clouds, sun shadows, haze."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from yume.sim.camera import MOVE_SPEED, TURN_SPEED, Camera, intrinsics, step_camera
from yume.sim.world import Texture, World

HORIZON = np.array([0.80, 0.85, 0.90], np.float32)
ZENITH = np.array([0.30, 0.50, 0.85], np.float32)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Wrapped bilinear lookup of img [n, n, C] at metres (u along columns, v along rows) -> [len(u), C]."""
    n = img.shape[0]
    flat = img.reshape(n * n, -1)
    px, py = u * (n / period) - 0.5, v * (n / period) - 0.5
    x0, y0 = np.floor(px), np.floor(py)
    fx, fy = (px - x0)[:, None].astype(np.float32), (py - y0)[:, None].astype(np.float32)
    x0, y0 = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    x1, y1 = (x0 + 1) % n, (y0 + 1) % n
    y0, y1 = y0 * n, y1 * n
    top = flat[y0 + x0] * (1 - fx) + flat[y0 + x1] * fx
    bottom = flat[y1 + x0] * (1 - fx) + flat[y1 + x1] * fx
    return top * (1 - fy) + bottom * fy


def sample(tex: Texture, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Trilinear (mip-mapped) lookup: footprint is each sample's size on the surface in metres -> [len(u), C]."""
    texel = tex.period / tex.size
    last = len(tex.levels) - 1
    lod = np.clip(np.log2(np.maximum(footprint / texel, 1e-6)), 0.0, last)
    base = np.floor(lod).astype(np.int64)
    w = (lod - base)[:, None].astype(np.float32)
    out = np.empty((len(u), tex.levels[0].shape[2]), np.float32)
    for level in np.unique(base):
        m = base == level
        a = _bilinear(tex.levels[level], u[m], v[m], tex.period)
        if level < last:
            a = a * (1 - w[m]) + _bilinear(tex.levels[level + 1], u[m], v[m], tex.period) * w[m]
        out[m] = a
    return out


def _wall_hit(world: World, o: np.ndarray, d: np.ndarray):
    """First facade hit per ray: (t [N], side [N] 0 left / 1 right, segment [N]); t = inf where none."""
    n = len(d)
    side = (d[:, 0] > 0).astype(np.int64)
    plane = np.where(side == 1, world.half_width, -world.half_width)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (plane - o[0]) / d[:, 0]
    t = np.where(np.isfinite(t) & (t > 1e-4), t, np.inf)
    seg = np.zeros(n, np.int64)
    ok = np.isfinite(t)
    y = o[1] + np.where(ok, t, 0.0) * d[:, 1]
    z = o[2] + np.where(ok, t, 0.0) * d[:, 2]
    for s in (0, 1):
        m = ok & (side == s)
        bounds = world.bounds[s]
        k = np.searchsorted(bounds, z[m], side="right") - 1
        inside = (k >= 0) & (k < len(bounds) - 1)
        k = np.clip(k, 0, len(bounds) - 2)
        below_roof = -y[m] < world.heights[s][k]
        hit = inside & below_roof & (y[m] <= 0)
        seg[m] = k
        tm = t[m]
        tm[~hit] = np.inf
        t[m] = tm
    return t, side, seg


def _sun_shadow(world: World, p: np.ndarray) -> np.ndarray:
    """1 where a ground point p [N, 3] sees the sun, 0 where a facade blocks it."""
    s = np.asarray(world.sun, np.float64)
    s = s / np.linalg.norm(s)
    if abs(s[0]) < 1e-6 or s[1] >= 0:
        return np.ones(len(p), np.float32)
    side = 1 if s[0] > 0 else 0
    plane = world.half_width if side else -world.half_width
    t = (plane - p[:, 0]) / s[0]
    y, z = p[:, 1] + t * s[1], p[:, 2] + t * s[2]
    bounds = world.bounds[side]
    k = np.clip(np.searchsorted(bounds, z, side="right") - 1, 0, len(bounds) - 2)
    blocked = (t > 0) & (-y < world.heights[side][k]) & (z >= bounds[0]) & (z < bounds[-1])
    return np.where(blocked, 0.0, 1.0).astype(np.float32)


def _sky(world: World, o: np.ndarray, d: np.ndarray, pixel_angle: float) -> np.ndarray:
    up = np.clip(-d[:, 1], 0.0, 1.0)[:, None]
    col = HORIZON * (1 - up**0.6) + ZENITH * up**0.6
    m = d[:, 1] < -1e-3
    if m.any():
        t = (-world.cloud_height - o[1]) / d[m, 1]
        u, v = o[0] + t * d[m, 0], o[2] + t * d[m, 2]
        c = sample(world.textures["clouds"], u, v, t * pixel_angle / -d[m, 1])
        alpha = c[:, :1] * np.clip(-d[m, 1] * 6.0, 0.0, 1.0)[:, None]  # clouds thin out towards the horizon
        col[m] = col[m] * (1 - alpha) + c[:, 1:2] * alpha
    return col


@functools.lru_cache(maxsize=8)
def _camera_rays(height: int, width: int, fov_deg: float, ss: int) -> tuple[np.ndarray, float]:
    """Camera-frame ray directions [height*ss * width*ss, 3] through each sub-pixel centre, and the focal length."""
    k = intrinsics(height, width, fov_deg)
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    us = (np.arange(width)[:, None] + sub[None, :]).reshape(-1)  # [W*ss]
    vs = (np.arange(height)[:, None] + sub[None, :]).reshape(-1)  # [H*ss]
    xv, yv = np.meshgrid((us - k[0, 2]) / k[0, 0], (vs - k[1, 2]) / k[1, 1])
    dirs = np.stack([xv, yv, np.ones_like(xv)], axis=-1).reshape(-1, 3)
    dirs.setflags(write=False)
    return dirs, float(k[0, 0])


def render(world: World, camera: Camera, height: int, width: int, fov_deg: float = 70.0, supersample: int = 2):
    """One frame [height, width, 3] uint8 seen from `camera`; `supersample`^2 rays per pixel, box-averaged."""
    if height < 1 or width < 1 or supersample < 1:
        raise ValueError(f"height={height}, width={width}, supersample={supersample} must all be >= 1")
    dirs, f = _camera_rays(height, width, fov_deg, supersample)
    ss = supersample
    d = dirs @ camera.rotation().T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.array([camera.x, camera.y, camera.z])
    pixel_angle = 1.0 / (f * ss)

    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[:, 1] > 1e-6, -o[1] / d[:, 1], np.inf)
    t_wall, side, seg = _wall_hit(world, o, d)
    ground = np.isfinite(t_ground) & (t_ground <= t_wall)
    wall = np.isfinite(t_wall) & ~ground
    sky = ~(ground | wall)

    col = np.empty((len(d), 3), np.float32)
    t = np.where(ground, t_ground, t_wall)
    sun = np.asarray(world.sun) / np.linalg.norm(world.sun)
    if ground.any():
        p = o + t[ground, None] * d[ground]
        foot = t[ground] * pixel_angle / d[ground, 1]
        walk = np.abs(p[:, 0]) > world.half_width - world.sidewalk
        c = np.empty((len(p), 3), np.float32)
        c[~walk] = sample(world.textures["asphalt"], p[~walk, 0], p[~walk, 2], foot[~walk])
        c[walk] = sample(world.textures["paving"], p[walk, 0], p[walk, 2], foot[walk])
        light = 0.45 + 0.75 * max(-sun[1], 0.0) * _sun_shadow(world, p)
        col[ground] = c * light[:, None]
    if wall.any():
        p = o + t[wall, None] * d[wall]
        s, k_seg = side[wall], seg[wall]
        off, tint = np.empty(len(p)), np.empty((len(p), 3))
        for side_id in (0, 1):
            m = s == side_id
            off[m], tint[m] = world.offsets[side_id][k_seg[m]], world.tints[side_id][k_seg[m]]
        foot = t[wall] * pixel_angle / np.maximum(np.abs(d[wall, 0]), 0.02)
        c = sample(world.textures["facade"], p[:, 2] + off, -p[:, 1], foot) * tint
        normal_x = np.where(s == 1, -1.0, 1.0)
        light = 0.5 + 0.6 * np.clip(normal_x * sun[0], 0.0, 1.0)
        col[wall] = c * light[:, None]
    solid = ground | wall
    haze = np.exp(-t[solid] / world.fog_distance)[:, None]
    col[solid] = col[solid] * haze + HORIZON * (1 - haze)
    if sky.any():
        col[sky] = _sky(world, o, d[sky], pixel_angle)

    img = col.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    return (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def render_clip(
    world: World,
    actions: Sequence,
    frames_per_action: int,
    height: int,
    width: int,
    camera: Camera | None = None,
    fov_deg: float = 70.0,
    move_speed: float = MOVE_SPEED,
    turn_speed: float = TURN_SPEED,
    supersample: int = 2,
):
    """Frames [1 + len(actions) * frames_per_action, H, W, 3] uint8 and camera-to-world poses [N, 4, 4].

    Frame 0 is the start view; each action (anything with `.move` and `.rotate`, or a (move, rotate) pair) is held
    for `frames_per_action` frames, the camera stepping once before each rendered frame.
    """
    if frames_per_action < 1:
        raise ValueError(f"frames_per_action={frames_per_action} must be >= 1")
    cam = camera or Camera()
    frames, poses = [render(world, cam, height, width, fov_deg, supersample)], [cam.pose()]
    for action in actions:
        move, rotate = (action.move, action.rotate) if hasattr(action, "move") else action
        for _ in range(frames_per_action):
            cam = step_camera(cam, move, rotate, move_speed, turn_speed)
            frames.append(render(world, cam, height, width, fov_deg, supersample))
            poses.append(cam.pose())
    return np.stack(frames), np.stack(poses)
