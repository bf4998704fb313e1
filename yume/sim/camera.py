"""The first-person camera: pose, intrinsics, and how one keyboard action moves it for one frame."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

# How far a held key moves the camera each frame: the built-in world's speeds (0.1 m is 1.6 m/s at 16 fps), which
# `yume data synth`, the sim benchmark and the evaluation's checks render at unless told otherwise.
MOVE_SPEED = 0.1  # metres a frame
TURN_SPEED = 1.5  # degrees a frame

# Key -> (right, forward) unit steps in the camera's horizontal frame; diagonals are normalised below.
MOVE_STEPS = {
    "": (0.0, 0.0),
    "W": (0.0, 1.0),
    "S": (0.0, -1.0),
    "A": (-1.0, 0.0),
    "D": (1.0, 0.0),
    "W+A": (-1.0, 1.0),
    "W+D": (1.0, 1.0),
    "S+A": (-1.0, -1.0),
    "S+D": (1.0, -1.0),
}
# Arrow -> (yaw, pitch) signs; yaw > 0 turns right, pitch > 0 looks up.
ROTATE_STEPS = {
    "": (0.0, 0.0),
    "→": (1.0, 0.0),
    "←": (-1.0, 0.0),
    "↑": (0.0, 1.0),
    "↓": (0.0, -1.0),
    "↑→": (1.0, 1.0),
    "↑←": (-1.0, 1.0),
    "↓→": (1.0, -1.0),
    "↓←": (-1.0, -1.0),
}
MAX_PITCH_DEG = 75.0


@dataclass(frozen=True)
class Camera:
    """Position in world metres (OpenCV axes: x right, y down, z forward; ground at y = 0) and heading in degrees."""

    x: float = 0.0
    y: float = -1.6
    z: float = 0.0
    yaw: float = 0.0  # degrees, > 0 turned right (towards +x)
    pitch: float = 0.0  # degrees, > 0 looking up (towards -y)

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation [3, 3]: yaw about the world's vertical axis, then pitch about the camera's x."""
        a, b = math.radians(self.yaw), math.radians(self.pitch)
        r_yaw = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        r_pitch = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
        return r_yaw @ r_pitch

    def pose(self) -> np.ndarray:
        """Camera-to-world transform [4, 4] (OpenCV camera axes)."""
        out = np.eye(4)
        out[:3, :3] = self.rotation()
        out[:3, 3] = (self.x, self.y, self.z)
        return out


def intrinsics(height: int, width: int, fov_deg: float = 70.0) -> np.ndarray:
    """Pinhole K [3, 3] for a horizontal field of view, principal point at the image centre (pixel centres integer)."""
    if not 1.0 < fov_deg < 179.0:
        raise ValueError(f"fov_deg={fov_deg} must be between 1 and 179 degrees")
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def step_camera(camera: Camera, move: str, rotate: str, move_speed: float = MOVE_SPEED,
                turn_speed: float = TURN_SPEED) -> Camera:  # fmt: skip
    """The camera after one frame of holding `move` (e.g. "W+A") and `rotate` (e.g. "↑→").

    Movement follows the heading on the ground (pitch does not lift the camera); a diagonal moves `move_speed` metres
    in total, not per axis. Each arrow turns `turn_speed` degrees; pitch stops at +-MAX_PITCH_DEG.
    """
    if move not in MOVE_STEPS:
        raise ValueError(f"unknown movement {move!r}; expected one of {sorted(MOVE_STEPS)}")
    if rotate not in ROTATE_STEPS:
        raise ValueError(f"unknown rotation {rotate!r}; expected one of {sorted(ROTATE_STEPS)}")
    right, forward = MOVE_STEPS[move]
    norm = math.hypot(right, forward) or 1.0
    right, forward = right * move_speed / norm, forward * move_speed / norm
    a = math.radians(camera.yaw)
    # Heading vectors on the ground plane: forward = (sin a, 0, cos a), right = (cos a, 0, -sin a).
    dx = forward * math.sin(a) + right * math.cos(a)
    dz = forward * math.cos(a) - right * math.sin(a)
    d_yaw, d_pitch = ROTATE_STEPS[rotate]
    pitch = min(max(camera.pitch + d_pitch * turn_speed, -MAX_PITCH_DEG), MAX_PITCH_DEG)
    return replace(camera, x=camera.x + dx, z=camera.z + dz, yaw=camera.yaw + d_yaw * turn_speed, pitch=pitch)
