"""A procedural first-person street world rendered in numpy, driven by the keyboard actions."""

from yume.sim.camera import MOVE_STEPS, ROTATE_STEPS, Camera, intrinsics, step_camera
from yume.sim.render import render, render_clip
from yume.sim.world import World

__all__ = ["MOVE_STEPS", "ROTATE_STEPS", "Camera", "World", "intrinsics", "render", "render_clip", "step_camera"]
