import json
import math

import numpy as np
import pytest

from yume.actions import (
    ALL_ACTIONS,
    Action,
    Run,
    _euler_xyz,
    action_caption,
    action_from_keys,
    caption,
    group_constant_actions,
    load_script,
    parse_events,
    parse_script,
    poses_to_actions,
)


def test_joined_caption_15_is_the_release_string():
    got = caption(Action("W", "→"), "A fire-breathing dragon appeared.")
    assert got == (
        "First-person perspective. The camera pushes forward (W). The camera pans to the right (→). "
        "A fire-breathing dragon appeared."
    )


def test_joined_caption_15_with_stationary_and_speed_matches_release_caption_file():
    # Line 1 of the release's caption_re.txt, then the event.
    got = caption(Action("W", ""), "A ghost appeared.", speed=(4, 0, 0))
    assert got == (
        "First-person perspective. The camera pushes forward (W). The rotation direction of the camera remains "
        "stationary (·). Actual distance moved:4 at 100 meters per second. Angular change rate (turn speed):0. "
        "View rotation speed:0. A ghost appeared."
    )


def test_web_demo_form_leaves_out_stationary_sentences():
    assert caption(Action(), "A quiet street.", stationary=False) == "First-person perspective. A quiet street."
    assert caption(Action("", "↓←"), None, stationary=False) == (
        "First-person perspective. The camera tilts down and pans to the left (↓←)."
    )


def test_caption_10_concatenates_like_the_14b_training_data():
    got = caption(Action("W", ""), vocab="1.0", speed=(4.3697374288015297, 4.520279996588001, 4.14601429683874))
    assert got == (
        "This video depicts a city walk scene with a first-person view (FPV).Person moves forward (W).Camera remains "
        "still (·).Actual distance moved:4.36973742880153at 100 meters per second.Angular change rate (turn speed):"
        "4.520279996588001.View rotation speed:4.14601429683874."
    )


def test_action_captions_both_vocabularies():
    assert action_caption(Action("S+A", "↑→")) == (
        "First-person perspective. The camera pulls back and moves to the left (S+A). "
        "The camera tilts up and pans to the right (↑→)."
    )
    assert action_caption(Action(), "1.5") == (
        "First-person perspective. The camera's movement direction remains stationary (·). "
        "The rotation direction of the camera remains stationary (·)."
    )
    assert action_caption(Action("W+A", "←"), "1.0") == (
        "This video depicts a city walk scene with a first-person view (FPV).Person moves forward and left (W+A)."
        "Camera turns left (←)."
    )
    assert action_caption(Action(), "1.0").endswith("Person stands still (·).Camera remains still (·).")


@pytest.mark.parametrize("vocab", ["1.5", "1.0"])
@pytest.mark.parametrize("stationary", [True, False])
def test_81_unique_action_captions(vocab, stationary):
    assert len(ALL_ACTIONS) == 81 and len(set(ALL_ACTIONS)) == 81
    assert len({action_caption(a, vocab, stationary) for a in ALL_ACTIONS}) == 81


def test_unknown_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of 1.5, 1.0"):
        caption(Action(), vocab="2.0")


def test_str_and_parse_round_trip_all_actions():
    assert [str(a) for a in ALL_ACTIONS[:3]] == ["·", "→", "←"]
    assert str(Action("W+D", "↑←")) == "W+D+↑←"
    assert all(Action.parse(str(a)) == a for a in ALL_ACTIONS)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("W+D", Action("W+D", "")),
        ("d+w", Action("W+D", "")),
        ("W+→", Action("W", "→")),
        ("→+w", Action("W", "→")),
        ("s+left", Action("S", "←")),
        ("^>", Action("", "↑→")),
        ("up+right", Action("", "↑→")),
        ("→↑", Action("", "↑→")),
        ("A+v", Action("A", "↓")),
        ("W+A+↓←", Action("W+A", "↓←")),
        ("·", Action()),
        (".", Action()),
        ("-", Action()),
        ("None", Action()),
    ],
)
def test_parse_tokens_and_aliases(text, expected):
    assert Action.parse(text) == expected


def test_parse_errors_name_the_token_and_list_valid_ones():
    with pytest.raises(ValueError, match=r"unknown action part 'X' in 'W\+X'; valid: movement W A S D"):
        Action.parse("W+X")
    with pytest.raises(ValueError, match="opposite keys W and S"):
        Action.parse("W+S")
    with pytest.raises(ValueError, match="opposite keys ← and →"):
        Action.parse("←→")
    with pytest.raises(ValueError, match="move 'Q' is not one of"):
        Action("Q", "")


def test_parse_script_repeats_and_stationary():
    script = parse_script("W*3 W+D*2 →*2 . -")
    assert [str(a) for a in script] == ["W", "W", "W", "W+D", "W+D", "→", "→", "·", "·"]
    assert parse_script("W, S+left") == [Action("W"), Action("S", "←")]


@pytest.mark.parametrize(
    "text, message",
    [("W*0", "bad repeat count in 'W\\*0'"), ("W*x", "bad repeat count"), ("  ", "holds no actions"), ("W Q", "'Q'")],
)
def test_parse_script_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_script(text)


def test_load_script_reads_actions_and_events(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"action": "W+D"}, {"action": "→", "event": "A ghost appeared"}, "."]))
    assert load_script(path) == [(Action("W+D"), None), (Action("", "→"), "A ghost appeared"), (Action(), None)]


def test_load_script_errors_name_the_item(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"action": "W"}, {"action": "W+Z"}]))
    with pytest.raises(ValueError, match="item 1: unknown action part 'Z'"):
        load_script(path)
    path.write_text(json.dumps([{"act": "W"}]))
    with pytest.raises(ValueError, match="item 0: expected"):
        load_script(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_script(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_script(tmp_path / "missing.json")


def test_parse_events():
    assert parse_events(["4:A ghost appeared", "0: Rain starts "]) == {4: "A ghost appeared", 0: "Rain starts"}
    for bad in ["A ghost", "x:A ghost", "-1:A ghost", "3:"]:
        with pytest.raises(ValueError, match="write CHUNK:TEXT"):
            parse_events([bad])
    with pytest.raises(ValueError, match="two events for chunk 2"):
        parse_events(["2:a", "2:b"])


def test_action_from_browser_keys_with_cancellation():
    assert action_from_keys({"w", "d"}) == Action("W+D")
    assert action_from_keys({"KeyS", "ArrowLeft"}) == Action("S", "←")
    assert action_from_keys({"w", "s", "a"}) == Action("A")
    assert action_from_keys({"ArrowLeft", "ArrowRight", "ArrowUp"}) == Action("", "↑")
    assert action_from_keys({"W", "Shift", "ArrowDown", "ArrowRight"}) == Action("W", "↓→")
    assert action_from_keys(set()) == Action()


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _trajectory(n, step_rot=None, step_move=(0.0, 0.0, 0.0), start_rot=None):
    """Camera-to-world poses where each step moves/rotates in the current camera's own frame."""
    step_rot = np.eye(3) if step_rot is None else step_rot
    pose = np.eye(4)
    pose[:3, :3] = np.eye(3) if start_rot is None else start_rot
    poses = [pose.copy()]
    for _ in range(n - 1):
        delta = np.eye(4)
        delta[:3, :3] = step_rot
        delta[:3, 3] = step_move
        pose = pose @ delta
        poses.append(pose.copy())
    return np.stack(poses)


def test_forward_move_is_w_even_when_the_camera_faces_sideways():
    assert poses_to_actions(_trajectory(5, step_move=(0, 0, 0.05))) == [Action("W")] * 4
    facing_right = _rot("y", math.pi / 2)
    assert poses_to_actions(_trajectory(5, step_move=(0, 0, 0.05), start_rot=facing_right)) == [Action("W")] * 4
    assert poses_to_actions(_trajectory(3, step_move=(-0.05, 0.3, -0.05))) == [Action("S+A")] * 2  # y ignored


def test_yaw_right_is_pan_right_and_tilt_up_is_up():
    # OpenCV axes: +y rotation turns the forward axis z towards +x (right); +x rotation turns z towards -y (up).
    turn_right = _rot("y", 0.02)
    assert (turn_right @ [0, 0, 1])[0] > 0
    assert poses_to_actions(_trajectory(4, step_rot=turn_right)) == [Action("", "→")] * 3
    tilt_up = _rot("x", 0.02)
    assert (tilt_up @ [0, 0, 1])[1] < 0
    assert poses_to_actions(_trajectory(4, step_rot=tilt_up)) == [Action("", "↑")] * 3
    both = _rot("y", -0.02) @ _rot("x", -0.02)
    assert poses_to_actions(_trajectory(3, step_rot=both, step_move=(0, 0, 0.1))) == [Action("W", "↓←")] * 2
    assert poses_to_actions(_trajectory(3)) == [Action()] * 2


def test_stride_scales_thresholds_and_subsamples():
    # Thresholds scale with stride: 0.6e-4/frame stays still at both strides (1.2e-4 < 2e-4).
    slow = _trajectory(9, step_move=(0, 0, 0.6e-4))
    assert poses_to_actions(slow) == [Action()] * 8
    assert poses_to_actions(slow, stride=2) == [Action()] * 4
    faster = _trajectory(9, step_move=(0, 0, 1.5e-4))
    assert poses_to_actions(faster, stride=2) == [Action("W")] * 4  # 3e-4 > 2e-4
    with pytest.raises(ValueError, match="shape \\[N, 4, 4\\]"):
        poses_to_actions(np.eye(4)[None])


def test_euler_matches_scipy_extrinsic_xyz():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    rng = np.random.default_rng(0)
    for _ in range(200):
        r = rotation.random(random_state=int(rng.integers(1 << 30)))
        np.testing.assert_allclose(_euler_xyz(r.as_matrix()), r.as_euler("xyz"), atol=1e-9)


def test_euler_by_definition():
    a, b, c = 0.3, -0.4, 0.5
    matrix = _rot("z", c) @ _rot("y", b) @ _rot("x", a)
    np.testing.assert_allclose(_euler_xyz(matrix), (a, b, c), atol=1e-12)


def test_group_constant_actions():
    w, r = Action("W"), Action("", "→")
    labels = [w, w, w, r, r, w]
    assert group_constant_actions(labels) == [Run(0, 3, w), Run(3, 5, r), Run(5, 6, w)]
    assert group_constant_actions(labels, min_len=2) == [Run(0, 3, w), Run(3, 5, r)]
    assert group_constant_actions([], 1) == []
