"""Scene captions of a street world: a sentence from the buildings near a spot and the sun's height."""

from __future__ import annotations

import numpy as np

from yume.sim.world import World


def scene_caption(world: World, z: float = 0.0, reach: float = 40.0) -> str:
    """e.g. "A first-person walk along a city street between tall buildings with warm facades, in low sunlight."

    Heights and colours are those of the buildings within `reach` metres of z; the sun's elevation names the light.
    """
    heights, tints = [], []
    for side in range(2):
        mid = 0.5 * (world.bounds[side][:-1] + world.bounds[side][1:])
        near = np.abs(mid - z) < reach
        heights.append(world.heights[side][near])
        tints.append(world.tints[side][near])
    h = float(np.median(np.concatenate(heights)))
    tint = np.concatenate(tints).mean(axis=0)
    height = "low" if h < 16 else "tall" if h > 23 else "mid-rise"
    colour = "warm" if tint[0] > tint[2] + 0.05 else "cool" if tint[2] > tint[0] + 0.05 else "grey"
    sun = np.asarray(world.sun, float)
    elevation = np.degrees(np.arcsin(-sun[1] / np.linalg.norm(sun)))
    light = "in low sunlight" if elevation < 35 else "under a high sun"
    return f"A first-person walk along a city street between {height} buildings with {colour} facades, {light}."
