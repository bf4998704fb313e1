"""A procedural street: building layout along the street and the textures, all made from one seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def periodic_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise [size, size] in [0, 1] that tiles: a random cells x cells grid, smoothstep-interpolated."""
    grid = rng.random((cells, cells))
    coord = np.arange(size) * cells / size
    i0 = np.floor(coord).astype(int)
    f = coord - i0
    f = f * f * (3 - 2 * f)
    i1 = (i0 + 1) % cells
    rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]  # [size, cells]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]


def fbm(rng: np.random.Generator, size: int, base_cells: int, octaves: int) -> np.ndarray:
    """Fractal noise [size, size] in [0, 1] that tiles: octaves of periodic value noise, halving amplitude."""
    out = np.zeros((size, size))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = min(base_cells * 2**o, size)
        out += amp * periodic_noise(rng, size, cells)
        total += amp
        amp *= 0.5
    return out / total


def mip_pyramid(tex: np.ndarray) -> list[np.ndarray]:
    """Box-filtered mip levels of a square power-of-two texture [N, N, 3], down to 4 x 4."""
    levels = [tex.astype(np.float32)]
    while levels[-1].shape[0] > 4:
        t = levels[-1]
        levels.append(0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]))
    return levels


@dataclass
class Texture:
    """A tiling texture covering `period` metres per repeat, stored as a mip pyramid of float RGB in [0, 1]."""

    levels: list[np.ndarray]
    period: float

    @property
    def size(self) -> int:
        return self.levels[0].shape[0]


def _asphalt(rng: np.random.Generator, n: int, period: float) -> np.ndarray:
    grain = fbm(rng, n, 8, 6)
    patches = fbm(rng, n, 32, 3)  # stains and patches, so the road has texture to track
    tex = np.repeat((0.16 + 0.3 * grain + 0.15 * (patches > 0.6))[..., None], 3, axis=2) * np.array([1.0, 1.0, 1.05])
    # The centre line sits at u = 0 (x = 0 in the world): a dashed white stripe, 3 m on, 3 m off.
    u = (np.arange(n) + 0.5) * period / n
    u = np.minimum(u, period - u)
    v = (np.arange(n) + 0.5) * period / n
    dash = (u[None, :] < 0.08) & ((v[:, None] % 6.0) < 3.0)
    tex[dash] = 0.85 + 0.1 * grain[dash, None]
    return tex


def _paving(rng: np.random.Generator, n: int, period: float) -> np.ndarray:
    grain = fbm(rng, n, 16, 5)
    tile = 0.75  # metres
    c = (np.arange(n) + 0.5) * period / n
    line = ((c % tile) < 0.04)[None, :] | ((c % tile) < 0.04)[:, None]
    cell = (np.floor(c / tile)[None, :] * 7 + np.floor(c / tile)[:, None] * 13) % 5 / 5.0
    base = 0.5 + 0.12 * cell + 0.2 * grain
    base[line] *= 0.55
    return base[..., None] * np.array([0.95, 0.9, 0.85])


def _facade(rng: np.random.Generator, n: int, period: float) -> np.ndarray:
    """Plaster with a grid of windows in 3.2 m bays and floors (period must be a multiple of 3.2 m)."""
    grain = fbm(rng, n, 8, 6)
    c = (np.arange(n) + 0.5) * period / n
    bay = floor = c % 3.2
    in_win = ((bay > 0.9) & (bay < 2.3))[None, :] & ((floor > 0.9) & (floor < 2.5))[:, None]
    frame = ((bay > 0.8) & (bay < 2.4))[None, :] & ((floor > 0.8) & (floor < 2.6))[:, None] & ~in_win
    ledge = ((floor > 0.0) & (floor < 0.15))[:, None] & np.ones((1, n), bool)
    tex = (0.55 + 0.35 * grain)[..., None] * np.array([1.0, 0.93, 0.82])
    glass = fbm(rng, n, 4, 4)
    tex[in_win] = (0.12 + 0.45 * glass[in_win])[:, None] * np.array([0.6, 0.75, 1.0])
    tex[frame] = 0.25
    tex[ledge] *= 0.7
    return tex


def _clouds(rng: np.random.Generator, n: int) -> np.ndarray:
    cover = fbm(rng, n, 4, 6)
    alpha = np.clip((cover - 0.45) * 3.0, 0.0, 1.0)
    shade = 0.8 + 0.2 * fbm(rng, n, 16, 4)
    return np.stack([alpha, shade, shade], axis=-1)  # channel 0: opacity, 1-2: brightness


@dataclass
class World:
    """A straight street along +z between two rows of buildings, fully determined by `seed`.

    World axes follow OpenCV: x right, y down, z forward; the ground is the plane y = 0, so a standing camera has y < 0.
    """

    seed: int = 0
    half_width: float = 7.0  # the facades stand at x = +-half_width (metres)
    sidewalk: float = 2.5  # metres of paving in front of each facade
    length: float = 2000.0  # buildings cover z in [-length/2, length/2]
    cloud_height: float = 80.0
    fog_distance: float = 180.0  # haze: transmittance exp(-t / fog_distance)
    sun: tuple[float, float, float] = (0.5, -0.75, 0.45)
    # Per side (0: left at -x, 1: right at +x): segment start z [n+1], heights [n], tints [n, 3], texture offsets [n].
    bounds: list[np.ndarray] = field(init=False, repr=False)
    heights: list[np.ndarray] = field(init=False, repr=False)
    tints: list[np.ndarray] = field(init=False, repr=False)
    offsets: list[np.ndarray] = field(init=False, repr=False)
    textures: dict[str, Texture] = field(init=False, repr=False)

    def __post_init__(self):
        if self.half_width <= self.sidewalk:
            raise ValueError(f"half_width={self.half_width} must exceed sidewalk={self.sidewalk}")
        rng = np.random.default_rng(self.seed)
        self.bounds, self.heights, self.tints, self.offsets = [], [], [], []
        for _side in range(2):
            lengths = rng.uniform(8.0, 22.0, size=int(self.length / 8.0) + 1)
            starts = -self.length / 2 + np.concatenate([[0.0], np.cumsum(lengths)])
            starts = starts[: np.searchsorted(starts, self.length / 2) + 1]
            k = len(starts) - 1
            self.bounds.append(starts)
            self.heights.append(rng.uniform(7.0, 32.0, size=k))
            self.tints.append(rng.uniform(0.55, 1.15, size=(k, 3)) * rng.uniform(0.8, 1.2, size=(k, 1)))
            self.offsets.append(rng.uniform(0.0, 19.2, size=k))
        self.textures = {
            "asphalt": Texture(mip_pyramid(_asphalt(rng, 512, 16.0)), 16.0),
            "paving": Texture(mip_pyramid(_paving(rng, 256, 6.0)), 6.0),
            "facade": Texture(mip_pyramid(_facade(rng, 512, 19.2)), 19.2),
            "clouds": Texture(mip_pyramid(_clouds(rng, 256)), 600.0),
        }
