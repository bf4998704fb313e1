"""The clip dataset format: a manifest of per-clip JSON files pointing at videos; reading, writing and checking it.

Layout (see docs/data.md)::

    root/manifest.jsonl        one {"id": ..., "meta": "clips/<id>.json"} per line
    root/clips/<id>.json       {"video", "fps", "caption", "event"?, "start"?, "stop"?, "poses"?, "actions"?, "action"?}
    root/clips/<id>.mp4

`actions[i]` is the action held from frame i to frame i + 1 (video frame indices, so len = frames - 1);
`action` is one action for the whole clip (what `yume data label` writes). `poses` are camera-to-world [N, 4, 4]
matrices in OpenCV axes, one per video frame. `start`/`stop` select frames [start, stop) of the video.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yume.actions import Action

MANIFEST = "manifest.jsonl"


@dataclass
class Clip:
    """One training clip: frames [start, stop) of `video` (stop None = to the end) and its text and motion labels."""

    id: str
    video: Path
    fps: float
    caption: str
    event: str | None = None
    start: int = 0
    stop: int | None = None
    poses: np.ndarray | None = None  # [N_video, 4, 4] camera-to-world
    actions: list[Action] | None = None  # per video-frame transition, len N_video - 1
    action: Action | None = None
    meta_path: Path | None = field(default=None, repr=False)

    def to_json(self, meta_dir: Path) -> dict:
        out: dict = {"video": _relative(self.video, meta_dir), "fps": self.fps, "caption": self.caption}
        if self.event:
            out["event"] = self.event
        if self.start:
            out["start"] = self.start
        if self.stop is not None:
            out["stop"] = self.stop
        if self.poses is not None:
            out["poses"] = np.asarray(self.poses).round(7).tolist()
        if self.actions is not None:
            out["actions"] = [str(a) for a in self.actions]
        if self.action is not None:
            out["action"] = str(self.action)
        return out

    def transition_actions(self, num_frames: int) -> list[Action | None]:
        """The action of each transition i -> i+1 inside the clip (len num_frames - 1); None where unlabelled."""
        n = max(num_frames - 1, 0)
        if self.action is not None:
            return [self.action] * n
        if self.actions is not None:
            part = self.actions[self.start : self.start + n]
            return part + [None] * (n - len(part))
        return [None] * n


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(Path(path).resolve())


class ClipError(ValueError):
    """A clip's JSON is unreadable or lacks what the format requires."""


def parse_clip(clip_id: str, meta_path: Path) -> Clip:
    """Read and validate one clip JSON; raises ClipError naming the field that is wrong."""
    try:
        d = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipError(f"clip JSON {meta_path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClipError(f"clip JSON {meta_path} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ClipError(f"clip JSON {meta_path} must hold an object, got {type(d).__name__}")
    missing = [k for k in ("video", "fps", "caption") if k not in d]
    if missing:
        raise ClipError(f"missing fields {missing} (required: video, fps, caption)")
    if not isinstance(d["fps"], (int, float)) or d["fps"] <= 0:
        raise ClipError(f"fps must be a positive number, got {d['fps']!r}")
    if not isinstance(d["caption"], str):
        raise ClipError(f"caption must be a string, got {d['caption']!r}")
    start, stop = d.get("start", 0), d.get("stop")
    if not isinstance(start, int) or start < 0 or (stop is not None and (not isinstance(stop, int) or stop <= start)):
        raise ClipError(f"start={start!r}, stop={stop!r}: need integers with 0 <= start < stop")
    poses = None
    if d.get("poses") is not None:
        poses = np.asarray(d["poses"], dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ClipError(f"poses must be [N, 4, 4] camera-to-world matrices, got shape {poses.shape}")
    try:
        actions = [Action.parse(a) for a in d["actions"]] if d.get("actions") is not None else None
        action = Action.parse(d["action"]) if d.get("action") is not None else None
    except (ValueError, AttributeError) as e:
        raise ClipError(f"bad action label: {e}") from None
    return Clip(
        id=clip_id,
        video=(meta_path.parent / d["video"]),
        fps=float(d["fps"]),
        caption=d["caption"],
        event=d.get("event") or None,
        start=start,
        stop=stop,
        poses=poses,
        actions=actions,
        action=action,
        meta_path=meta_path,
    )


def read_manifest(root: str | Path) -> list[tuple[str, Path]]:
    """(clip id, clip JSON path) for every line of root/manifest.jsonl."""
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {root}: a dataset is a folder with {MANIFEST} (see docs/data.md)")
    entries, seen = [], set()
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            clip_id, meta = str(item["id"]), item["meta"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f'{manifest} line {n}: expected {{"id": ..., "meta": "clips/<id>.json"}}, got {line!r}') from None
        if clip_id in seen:
            raise ValueError(f"{manifest} line {n}: clip id {clip_id!r} appears twice; ids must be unique")
        seen.add(clip_id)
        entries.append((clip_id, root / meta))
    return entries


def iter_clips(root: str | Path) -> Iterator[Clip]:
    """Every clip of a dataset; a bad clip raises ClipError (use `check_dataset` to list them all)."""
    for clip_id, meta in read_manifest(root):
        try:
            yield parse_clip(clip_id, meta)
        except ClipError as e:
            raise ClipError(f"clip {clip_id}: {e}") from None


def write_manifest(root: str | Path, clips: list[Clip]) -> Path:
    """Write every clip's JSON under root/clips/ and the manifest listing them."""
    root = Path(root)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    lines = []
    for clip in clips:
        meta = root / "clips" / f"{clip.id}.json"
        meta.write_text(json.dumps(clip.to_json(meta.parent), ensure_ascii=False), encoding="utf-8")
        lines.append(json.dumps({"id": clip.id, "meta": f"clips/{clip.id}.json"}, ensure_ascii=False))
    manifest = root / MANIFEST
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """uint8 frames [T, H, W, 3] -> H.264 mp4 (near-lossless, crf 10); H and W must be even for yuv420p."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} must be even for H.264 (yuv420p)")
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_clip(
    root: str | Path,
    clip_id: str,
    frames: np.ndarray,
    fps: float,
    caption: str,
    *,
    event: str | None = None,
    poses: np.ndarray | None = None,
    actions: list[Action] | None = None,
) -> Clip:
    """Write one clip's video as root/clips/<id>.mp4 and return its Clip (pass the list to `write_manifest`)."""
    root = Path(root)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    video = root / "clips" / f"{clip_id}.mp4"
    write_video(video, frames, fps)
    return Clip(clip_id, video, float(fps), caption, event, poses=poses, actions=actions)


def video_info(path: str | Path) -> tuple[int, float, int, int]:
    """(decoded frame count, stream fps, height, width) of a video, decoding every frame so damage shows."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        count = 0
        for _ in container.decode(stream):
            count += 1
        return count, fps, stream.height, stream.width


def read_frames(path: str | Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    """uint8 frames [T, H, W, 3] of video frames [start, stop)."""
    import av

    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if stop is not None and i >= stop:
                break
            if i >= start:
                out.append(frame.to_ndarray(format="rgb24"))
    if not out:
        raise ValueError(f"{path}: no frames in [{start}, {stop})")
    return np.stack(out)


@dataclass
class CheckReport:
    """Result of `check_dataset`: problems per clip id (empty list = good)."""

    problems: dict[str, list[str]]

    @property
    def bad(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.problems.items() if v}

    def summary(self) -> str:
        return f"{len(self.problems)} clips, {len(self.bad)} bad"


def check_clip(clip: Clip, *, fps: float | None = None, min_frames: int = 1) -> list[str]:
    """Every problem of one parsed clip: unreadable video, fps mismatch, too short, poses/actions not matching."""
    problems = []
    if fps is not None and abs(clip.fps - fps) > 1e-3:
        problems.append(f"fps {clip.fps:g} in the JSON, expected {fps:g}")
    if not clip.video.is_file():
        return problems + [f"video {clip.video} does not exist"]
    try:
        count, video_fps, height, width = video_info(clip.video)
    except Exception as e:  # noqa: BLE001 - any decoder failure means the clip is unreadable
        return problems + [f"video {clip.video.name} is unreadable: {type(e).__name__}: {e}"]
    if count == 0:
        return problems + [f"video {clip.video.name} has no decodable frames"]
    if video_fps and abs(video_fps - clip.fps) > 0.01 * clip.fps:
        problems.append(f"video stream runs at {video_fps:g} fps but the JSON says {clip.fps:g}")
    stop = count if clip.stop is None else clip.stop
    if stop > count:
        problems.append(f"stop={stop} is past the video's {count} frames")
    length = min(stop, count) - clip.start
    if length < min_frames:
        problems.append(f"too short: {length} frames, need at least {min_frames}")
    if clip.poses is not None and len(clip.poses) != count:
        problems.append(f"{len(clip.poses)} poses for {count} video frames; give one camera-to-world matrix per frame")
    if clip.actions is not None and len(clip.actions) not in (count - 1, count):
        problems.append(f"{len(clip.actions)} actions for {count} video frames; give one per transition ({count - 1})")
    return problems


def check_dataset(root: str | Path, *, fps: float | None = None, min_frames: int = 1, on_clip=None) -> CheckReport:
    """Check every clip of the manifest and keep going past bad ones; `on_clip(id, problems)` sees each result."""
    problems: dict[str, list[str]] = {}
    for clip_id, meta in read_manifest(root):
        try:
            found = check_clip(parse_clip(clip_id, meta), fps=fps, min_frames=min_frames)
        except ClipError as e:
            found = [str(e)]
        problems[clip_id] = found
        if on_clip is not None:
            on_clip(clip_id, found)
    return CheckReport(problems)
