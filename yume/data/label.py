"""Pose trajectories -> keyboard labels -> constant-action clips, with the release's labelling rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from yume.actions import Action, group_constant_actions, poses_to_actions
from yume.data.clips import Clip, ClipError, parse_clip, read_manifest, write_manifest


def transition_labels(poses, stride: int = 1, trans_thr: float = 1e-4, rot_thr: float = 1e-3) -> list[Action]:
    """One Action per frame transition i -> i+1 (len N - 1 for N poses, cut to whole strides).

    `poses_to_actions` labels every stride-th pose pair; each label holds for the `stride` transitions it spans.
    """
    labels = poses_to_actions(poses, stride=stride, trans_thr=trans_thr, rot_thr=rot_thr)
    return [a for a in labels for _ in range(stride)]


def split_clip(
    clip: Clip, stride: int = 1, trans_thr: float = 1e-4, rot_thr: float = 1e-3, min_frames: int = 33
) -> list[Clip]:
    """Constant-action sub-clips of a clip with poses: frames [a, b] share one action, b - a + 1 >= min_frames.

    Sub-clips point into the same video with start/stop; ids are "<id>_<start>".
    """
    if clip.poses is None:
        raise ClipError(f"clip {clip.id} has no poses to label; add camera-to-world 'poses' to its JSON")
    if min_frames < 2:
        raise ValueError(f"min_frames must be >= 2 (a clip needs one transition), got {min_frames}")
    stop = len(clip.poses) if clip.stop is None else min(clip.stop, len(clip.poses))
    poses = clip.poses[clip.start : stop]
    if len(poses) < stride + 1:
        return []
    labels = transition_labels(poses, stride, trans_thr, rot_thr)
    out = []
    for run in group_constant_actions(labels, min_len=min_frames - 1):
        # Transitions [run.start, run.stop) join frames run.start .. run.stop inclusive.
        start = clip.start + run.start
        out.append(
            replace(clip, id=f"{clip.id}_{start}", start=start, stop=clip.start + run.stop + 1, poses=None, actions=None,
                    action=run.action)
        )  # fmt: skip
    return out


def label_dataset(
    src: str | Path,
    dst: str | Path,
    *,
    stride: int = 1,
    trans_thr: float = 1e-4,
    rot_thr: float = 1e-3,
    min_frames: int = 33,
) -> tuple[list[Clip], dict[str, str]]:
    """Split every posed clip of `src` into constant-action clips written as a new dataset at `dst`.

    Returns (new clips, {clip id: why it was skipped}); the videos stay where they are.
    """
    clips, skipped = [], {}
    for clip_id, meta in read_manifest(src):
        try:
            clip = parse_clip(clip_id, meta)
            parts = split_clip(clip, stride, trans_thr, rot_thr, min_frames)
        except ClipError as e:
            skipped[clip_id] = str(e)
            continue
        if not parts:
            skipped[clip_id] = f"no constant-action run of at least {min_frames} frames"
        clips.extend(parts)
    write_manifest(dst, clips)
    return clips, skipped
