"""The control-panel strip drawn under each output frame: which keys were active, and the current event."""

from __future__ import annotations

import numpy as np

from yume.actions import Action

_BG, _KEY, _ACTIVE, _TEXT = (24, 24, 28), (70, 70, 78), (240, 190, 40), (235, 235, 235)


def strip_height(width: int) -> int:
    return max(24, (width // 10) // 2 * 2)


def control_strip(width: int, action: Action, event: str | None = None) -> np.ndarray:
    """uint8 [h, width, 3]: W/A/S/D keys on the left, the four arrows on the right, active ones lit, event text between."""
    from PIL import Image, ImageDraw

    h = strip_height(width)
    img = Image.new("RGB", (width, h), _BG)
    draw = ImageDraw.Draw(img)
    k = (h - 6) // 2  # key size: two rows of keys
    pressed = set(action.move.split("+")) | set(action.rotate)

    def key(x, y, label, active, arrow=None):
        draw.rectangle([x, y, x + k - 2, y + k - 2], fill=_ACTIVE if active else _KEY)
        if arrow is None:
            draw.text((x + k // 2 - 3, y + k // 2 - 6), label, fill=(0, 0, 0) if active else _TEXT)
            return
        cx, cy, r = x + (k - 2) / 2, y + (k - 2) / 2, (k - 2) / 3
        points = {
            "↑": [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)],
            "↓": [(cx, cy + r), (cx - r, cy - r), (cx + r, cy - r)],
            "←": [(cx - r, cy), (cx + r, cy - r), (cx + r, cy + r)],
            "→": [(cx + r, cy), (cx - r, cy - r), (cx - r, cy + r)],
        }[arrow]
        draw.polygon(points, fill=(0, 0, 0) if active else _TEXT)

    top, bottom, left = 3, 3 + k, 4
    key(left + k, top, "W", "W" in pressed)
    for i, name in enumerate("ASD"):
        key(left + i * k, bottom, name, name in pressed)
    right = width - 4 - 3 * k
    key(right + k, top, "", "↑" in pressed, "↑")
    for i, name in enumerate("←↓→"):
        key(right + i * k, bottom, "", name in pressed, name)
    if event:
        text_left, text_right = left + 3 * k + 8, right - 8
        max_chars = max(0, (text_right - text_left) // 6)
        shown = event if len(event) <= max_chars else event[: max(0, max_chars - 1)] + "…"
        draw.text((text_left, h // 2 - 6), shown, fill=_TEXT)
    return np.asarray(img)


def with_controls(frames: np.ndarray, action: Action, event: str | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] -> [T, H + strip, W, 3] with the control panel under each frame."""
    strip = control_strip(frames.shape[2], action, event)
    return np.concatenate([frames, np.broadcast_to(strip, (frames.shape[0], *strip.shape))], axis=1)
