import math

import numpy as np
import pytest

from yume.actions import Action, poses_to_actions
from yume.sim import Camera, World, intrinsics, render, render_clip, step_camera


@pytest.fixture(scope="module")
def world():
    return World(seed=3)


def test_render_is_uint8_deterministic_and_depends_on_seed(world):
    a = render(world, Camera(), 48, 64, supersample=1)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render(World(seed=3), Camera(), 48, 64, supersample=1))
    assert not np.array_equal(a, render(World(seed=4), Camera(), 48, 64, supersample=1))
    assert a.std() > 20  # textured, not a flat colour


def test_looking_up_sees_sky_and_down_sees_ground(world):
    sky = render(world, Camera(pitch=75), 32, 32, supersample=1).astype(float)
    ground = render(world, Camera(pitch=-75), 32, 32, supersample=1).astype(float)
    assert sky[..., 2].mean() > sky[..., 0].mean() + 20  # blue
    assert ground.mean() < sky.mean()


def test_step_camera_moves_along_heading():
    cam = step_camera(Camera(), "W", "", move_speed=0.5)
    assert (cam.x, cam.z) == pytest.approx((0.0, 0.5))
    cam = step_camera(Camera(yaw=90.0), "W", "", move_speed=0.5)
    assert (cam.x, cam.z) == pytest.approx((0.5, 0.0))
    cam = step_camera(Camera(), "W+D", "↑←", move_speed=1.0, turn_speed=2.0)
    assert math.hypot(cam.x, cam.z) == pytest.approx(1.0) and cam.x > 0
    assert (cam.yaw, cam.pitch) == (-2.0, 2.0)
    assert step_camera(Camera(pitch=74.0), "", "↑", turn_speed=5.0).pitch == 75.0


def test_step_camera_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown movement 'Q'"):
        step_camera(Camera(), "Q", "")


def test_intrinsics_fov():
    k = intrinsics(100, 200, fov_deg=90.0)
    assert k[0, 0] == pytest.approx(100.0) and k[0, 2] == pytest.approx(99.5)
    with pytest.raises(ValueError, match="fov_deg=0"):
        intrinsics(10, 10, fov_deg=0)


@pytest.mark.parametrize("action", ["W", "S+A", "→", "↓←", "D+↑", "W+D+↑→"])
def test_render_clip_poses_label_back_to_the_commanded_action(world, action):
    a = Action.parse(action)
    frames, poses = render_clip(world, [a], 3, 8, 8, camera=Camera(yaw=30.0, pitch=5.0), supersample=1)
    assert frames.shape == (4, 8, 8, 3) and poses.shape == (4, 4, 4)
    assert poses_to_actions(poses) == [a] * 3
