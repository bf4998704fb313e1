"""The keyboard action vocabulary: parsing keys and scripts, action → caption text, camera poses → keyboard labels.

An action is one movement (WASD, or none) and one camera rotation (arrows, or none): 9 × 9 = 81 combinations.
Text forms accepted by `Action.parse` (case-insensitive, parts joined with "+", in any order):

- movement: ``W`` ``A`` ``S`` ``D`` and pairs such as ``W+A``;
- rotation: ``→ ← ↑ ↓`` and pairs such as ``↑→``; ASCII aliases ``right left up down`` or ``> < ^ v``
  (symbol aliases may be written together: ``^>`` = ``↑→``);
- combined: ``W+→``, ``W+D+↑→``, ``s+left``;
- standing still: ``·`` ``.`` ``-`` ``none``.

Opposite keys in one token (``W+S``, ``←+→``) are an error; held browser keys (`action_from_keys`) cancel instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

MOVES = ("", "W", "A", "S", "D", "W+A", "W+D", "S+A", "S+D")
ROTATIONS = ("", "→", "←", "↑", "↓", "↑→", "↑←", "↓→", "↓←")
STILL = "·"

_STILL_TOKENS = {"·", ".", "-", "none"}
_MOVE_KEYS = {"W", "A", "S", "D"}
_ARROW_ALIASES = {
    "→": "→", "←": "←", "↑": "↑", "↓": "↓",
    ">": "→", "<": "←", "^": "↑", "v": "↓",
    "right": "→", "left": "←", "up": "↑", "down": "↓",
}  # fmt: skip
_OPPOSITES = (("W", "S"), ("A", "D"), ("↑", "↓"), ("←", "→"))
_BROWSER_KEYS = {
    "w": "W", "a": "A", "s": "S", "d": "D",
    "keyw": "W", "keya": "A", "keys": "S", "keyd": "D",
    "arrowup": "↑", "arrowdown": "↓", "arrowleft": "←", "arrowright": "→",
}  # fmt: skip
_VALID_HELP = (
    "valid: movement W A S D (pairs like W+A), rotation → ← ↑ ↓ or right/left/up/down or > < ^ v "
    "(pairs like ↑→), combined with '+' (W+→, W+D+↑→), and · . - none for standing still"
)


@dataclass(frozen=True)
class Vocabulary:
    """The sentences one model generation was trained with; `separator` joins them into a caption."""

    name: str
    prefix: str
    moves: dict[str, str]  # move ("" = none) -> sentence
    rotations: dict[str, str]  # rotation ("" = none) -> sentence
    speed: str  # template with {distance} {turn} {view}
    separator: str


# Yume 1.5 (5B): the release's caption files join sentences with one space.
VOCAB_15 = Vocabulary(
    name="1.5",
    prefix="First-person perspective.",
    moves={
        "W": "The camera pushes forward (W).",
        "A": "The camera moves to the left (A).",
        "S": "The camera pulls back (S).",
        "D": "The camera moves to the right (D).",
        "W+A": "The camera pushes forward and moves to the left (W+A).",
        "W+D": "The camera pushes forward and moves to the right (W+D).",
        "S+D": "The camera pulls back and moves to the right (S+D).",
        "S+A": "The camera pulls back and moves to the left (S+A).",
        "": "The camera's movement direction remains stationary (·).",
    },
    rotations={
        "→": "The camera pans to the right (→).",
        "←": "The camera pans to the left (←).",
        "↑": "The camera tilts up (↑).",
        "↓": "The camera tilts down (↓).",
        "↑→": "The camera tilts up and pans to the right (↑→).",
        "↑←": "The camera tilts up and pans to the left (↑←).",
        "↓→": "The camera tilts down and pans to the right (↓→).",
        "↓←": "The camera tilts down and pans to the left (↓←).",
        "": "The rotation direction of the camera remains stationary (·).",
    },
    speed=(
        "Actual distance moved:{distance} at 100 meters per second. Angular change rate (turn speed):{turn}. "
        "View rotation speed:{view}."
    ),
    separator=" ",
)

# Yume 1.0 (14B): its training data and caption file concatenate the sentences with no separator at all.
VOCAB_10 = Vocabulary(
    name="1.0",
    prefix="This video depicts a city walk scene with a first-person view (FPV).",
    moves={
        "W": "Person moves forward (W).",
        "A": "Person moves left (A).",
        "S": "Person moves backward (S).",
        "D": "Person moves right (D).",
        "W+A": "Person moves forward and left (W+A).",
        "W+D": "Person moves forward and right (W+D).",
        "S+D": "Person moves backward and right (S+D).",
        "S+A": "Person moves backward and left (S+A).",
        "": "Person stands still (·).",
    },
    rotations={
        "→": "Camera turns right (→).",
        "←": "Camera turns left (←).",
        "↑": "Camera tilts up (↑).",
        "↓": "Camera tilts down (↓).",
        "↑→": "Camera tilts up and turns right (↑→).",
        "↑←": "Camera tilts up and turns left (↑←).",
        "↓→": "Camera tilts down and turns right (↓→).",
        "↓←": "Camera tilts down and turns left (↓←).",
        "": "Camera remains still (·).",
    },
    speed=(
        "Actual distance moved:{distance}at 100 meters per second.Angular change rate (turn speed):{turn}."
        "View rotation speed:{view}."
    ),
    separator="",
)

VOCABULARIES = {"1.5": VOCAB_15, "1.0": VOCAB_10}


def vocabulary(name: str | Vocabulary) -> Vocabulary:
    """Resolve "1.5" / "1.0" (or pass a Vocabulary through)."""
    if isinstance(name, Vocabulary):
        return name
    try:
        return VOCABULARIES[name]
    except KeyError:
        raise ValueError(f"unknown vocabulary {name!r}; choose one of {', '.join(VOCABULARIES)}") from None


@dataclass(frozen=True)
class Action:
    """One chunk's keyboard state: `move` in MOVES, `rotate` in ROTATIONS ("" = none)."""

    move: str = ""
    rotate: str = ""

    def __post_init__(self):
        if self.move not in MOVES:
            raise ValueError(f"move {self.move!r} is not one of {', '.join(repr(m) for m in MOVES)}")
        if self.rotate not in ROTATIONS:
            raise ValueError(f"rotate {self.rotate!r} is not one of {', '.join(repr(r) for r in ROTATIONS)}")

    @property
    def is_still(self) -> bool:
        return not self.move and not self.rotate

    def __str__(self) -> str:
        return "+".join(p for p in (self.move, self.rotate) if p) or STILL

    @classmethod
    def parse(cls, text: str) -> Action:
        """Parse one action token ("W+D", "W+→", "↑←", "s+left", "·"); see the module docstring."""
        token = text.strip()
        if token.lower() in _STILL_TOKENS:
            return cls()
        if not token:
            raise ValueError(f"empty action; {_VALID_HELP}")
        keys: set[str] = set()
        for part in token.split("+"):
            keys |= _parse_part(part.strip(), text)
        return _action_from_key_set(keys, text)


def _parse_part(part: str, text: str) -> set[str]:
    if part.upper() in _MOVE_KEYS:
        return {part.upper()}
    if part.lower() in _ARROW_ALIASES:
        return {_ARROW_ALIASES[part.lower()]}
    if part and all(ch in _ARROW_ALIASES for ch in part):  # "↑→", "^>"
        return {_ARROW_ALIASES[ch] for ch in part}
    raise ValueError(f"unknown action part {part!r} in {text!r}; {_VALID_HELP}")


def _action_from_key_set(keys: set[str], text: str) -> Action:
    for a, b in _OPPOSITES:
        if a in keys and b in keys:
            raise ValueError(f"action {text!r} holds opposite keys {a} and {b}; use one of them")
    move = "+".join(k for k in ("W", "S", "A", "D") if k in keys)
    rotate = "".join(k for k in ("↑", "↓", "→", "←") if k in keys)
    return Action(move, rotate)


def action_from_keys(held: set[str] | list[str]) -> Action:
    """Held browser keys (`KeyboardEvent.key` or `.code`: "w", "KeyW", "ArrowUp", ...) → Action.

    Opposite keys cancel (W+S → no movement, ←+→ → no pan); keys outside WASD/arrows are ignored.
    """
    keys = {_BROWSER_KEYS[k.lower()] for k in held if k.lower() in _BROWSER_KEYS}
    for a, b in _OPPOSITES:
        if a in keys and b in keys:
            keys -= {a, b}
    return _action_from_key_set(keys, "+".join(sorted(held)))


def parse_script(text: str) -> list[Action]:
    """Parse a script like `W*3 W+D*2 →*2 .` into one Action per chunk (spaces or commas between tokens, *N repeats)."""
    actions: list[Action] = []
    for token in text.replace(",", " ").split():
        body, star, count = token.partition("*")
        if star:
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"bad repeat count in {token!r}: write ACTION*N with N a positive integer (e.g. W*3)")
            repeat = int(count)
        else:
            repeat = 1
        actions.extend([Action.parse(body)] * repeat)
    if not actions:
        raise ValueError(f"action script {text!r} holds no actions; write e.g. 'W*3 W+D*2 →*2 .'")
    return actions


def load_script(path: str | Path) -> list[tuple[Action, str | None]]:
    """A JSON list of `{"action": "W+D", "event": "A ghost appeared"}` (event optional) → [(Action, event)].

    An item may also be a bare action string.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"action script {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"action script {path} is not valid JSON: {e}") from None
    if not isinstance(items, list) or not items:
        raise ValueError(f'action script {path} must be a non-empty JSON list of {{"action": ..., "event": ...}}')
    script = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"action": item}
        if not isinstance(item, dict) or not isinstance(item.get("action"), str):
            raise ValueError(f'{path} item {i}: expected {{"action": "W+D", "event": "..."}}, got {item!r}')
        unknown = set(item) - {"action", "event"}
        if unknown:
            raise ValueError(f"{path} item {i}: unknown fields {sorted(unknown)}; allowed: action, event")
        event = item.get("event")
        if event is not None and not isinstance(event, str):
            raise ValueError(f"{path} item {i}: event must be a string, got {event!r}")
        try:
            action = Action.parse(item["action"])
        except ValueError as e:
            raise ValueError(f"{path} item {i}: {e}") from None
        script.append((action, event or None))
    return script


def parse_events(specs: list[str]) -> dict[int, str]:
    """["4:A ghost appeared"] → {4: "A ghost appeared"} (chunk index, 0-based)."""
    events: dict[int, str] = {}
    for spec in specs:
        index, colon, text = spec.partition(":")
        if not colon or not index.strip().isdigit() or not text.strip():
            raise ValueError(
                f"bad event {spec!r}: write CHUNK:TEXT with CHUNK a chunk index >= 0, e.g. '4:A ghost appeared'"
            )
        chunk = int(index)
        if chunk in events:
            raise ValueError(
                f"two events for chunk {chunk}: {events[chunk]!r} and {text.strip()!r}; give one per chunk"
            )
        events[chunk] = text.strip()
    return events


ALL_ACTIONS = tuple(Action(m, r) for m in MOVES for r in ROTATIONS)


def _number(x: float) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"speed values must be finite numbers, got {x!r}")
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def speed_caption(speed: tuple[float, float, float], vocab: str | Vocabulary = "1.5") -> str:
    """(distance, turn rate, view rotation speed) → the training captions' speed sentences."""
    if len(speed) != 3:
        raise ValueError(f"speed must be (distance, turn rate, view rotation speed), got {speed!r}")
    distance, turn, view = (_number(x) for x in speed)
    return vocabulary(vocab).speed.format(distance=distance, turn=turn, view=view)


def action_caption(action: Action, vocab: str | Vocabulary = "1.5", stationary: bool = True) -> str:
    """The action part of a caption: prefix + movement sentence + rotation sentence.

    stationary=False leaves out the "remains stationary"/"still" sentences, as the release's web demo does.
    """
    v = vocabulary(vocab)
    parts = [v.prefix]
    if action.move or stationary:
        parts.append(v.moves[action.move])
    if action.rotate or stationary:
        parts.append(v.rotations[action.rotate])
    return v.separator.join(parts)


def caption(
    action: Action,
    event_text: str | None = None,
    vocab: str | Vocabulary = "1.5",
    stationary: bool = True,
    speed: tuple[float, float, float] | None = None,
) -> str:
    """The joined prompt the release encodes: action sentences [+ speed sentences] + event/scene text.

    1.5 joins every sentence with one space (its caption files); 1.0 concatenates with none (its training data).
    """
    v = vocabulary(vocab)
    parts = [action_caption(action, v, stationary)]
    if speed is not None:
        parts.append(speed_caption(speed, v))
    if event_text and event_text.strip():
        parts.append(event_text.strip())
    return v.separator.join(parts)


class Run(NamedTuple):
    """Frames [start, stop) that share one action."""

    start: int
    stop: int
    action: Action


def _euler_xyz(r) -> tuple[float, float, float]:
    """Angles (a, b, c) with R = Rz(c) @ Ry(b) @ Rx(a): scipy's extrinsic "xyz" convention."""
    sin_b = max(-1.0, min(1.0, -float(r[2][0])))
    b = math.asin(sin_b)
    if math.cos(b) > 1e-7:
        a = math.atan2(float(r[2][1]), float(r[2][2]))
        c = math.atan2(float(r[1][0]), float(r[0][0]))
    else:  # gimbal lock: only a - c (b = +90°) or a + c (b = -90°) is defined; put it all in a, as scipy does
        a = math.atan2(-float(r[1][2]), float(r[1][1]))
        c = 0.0
    return a, b, c


def poses_to_actions(c2w, stride: int = 1, trans_thr: float = 1e-4, rot_thr: float = 1e-3) -> list[Action]:
    """Camera-to-world poses [N, 4, 4] (OpenCV axes: x right, y down, z forward) → one Action per step.

    The release's labelling: every `stride`-th pose; for each consecutive pair T_rel = inv(T_cur) @ T_next;
    translation z > thr → W, < -thr → S, x > thr → D, < -thr → A (y ignored); Euler "xyz" angles of R_rel:
    angle[1] > thr → →, < -thr → ←; angle[0] > thr → ↑, < -thr → ↓. Both thresholds scale with `stride`.
    """
    import numpy as np

    poses = np.asarray(c2w, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) < 2:
        raise ValueError(f"c2w must be at least 2 camera-to-world matrices of shape [N, 4, 4], got {poses.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    poses = poses[::stride]
    trans_thr, rot_thr = trans_thr * stride, rot_thr * stride
    actions = []
    for cur, nxt in zip(poses[:-1], poses[1:]):
        rel = np.linalg.inv(cur) @ nxt
        x, _, z = rel[:3, 3]
        pitch, yaw, _ = _euler_xyz(rel[:3, :3])
        keys = set()
        keys |= {"W"} if z > trans_thr else {"S"} if z < -trans_thr else set()
        keys |= {"D"} if x > trans_thr else {"A"} if x < -trans_thr else set()
        keys |= {"→"} if yaw > rot_thr else {"←"} if yaw < -rot_thr else set()
        keys |= {"↑"} if pitch > rot_thr else {"↓"} if pitch < -rot_thr else set()
        actions.append(_action_from_key_set(keys, "pose labels"))
    return actions


def group_constant_actions(labels: list[Action], min_len: int = 1) -> list[Run]:
    """Split per-frame labels into maximal constant runs, keeping those at least `min_len` long."""
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    runs = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if i - start >= min_len:
                runs.append(Run(start, i, labels[start]))
            start = i
    return runs
