"""History packing: which clean history latents become tokens, at which patch size, at which RoPE positions.

A *plan* is a list of `Segment`s, each a run of history frames embedded by a chain of patchify convs. The release
policy reproduces the table of Yume 1.0's Eq. 3 that the Yume-5B-720P weights were trained with; `full` keeps every
frame at the base 2×2 patch (the quadratic baseline). Plans depend only on the number of history frames, so they are
cheap to compute and easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yume.models.layers import grid_positions

BASE = "patch_embedding"
E4, E8, E16, E32, PRE4 = (
    "patch_embedding_2x",
    "patch_embedding_4x",
    "patch_embedding_8x",
    "patch_embedding_16x",
    "patch_embedding_2x_f",
)

# The release rule is defined up to this many history latents; longer histories are thinned to it.
RELEASE_MAX_FRAMES = 1366


@dataclass(frozen=True)
class Segment:
    """A run of history frames (indices into the history) embedded by `embeds` applied in order."""

    frames: tuple[int, ...]
    embeds: tuple[str, ...]


def _seg(frames, *embeds) -> list[Segment]:
    frames = tuple(frames)
    return [Segment(frames, embeds)] if frames else []


def release_plan(num_frames: int) -> list[Segment]:
    """The released packing policy (see release.md): older frames get coarser patches, the newest stay at 2×2.

    Past 1366 frames (where the release has no rule and crashes) the oldest part [1:-341] is thinned evenly to
    1024 frames, so the sequence has exactly the structure, token count and RoPE range of a 1366-frame history.
    """
    n = num_frames
    if n < 1:
        raise ValueError(f"history must have at least one latent frame, got {n}")
    if n > RELEASE_MAX_FRAMES:
        keep = _thin(n)
        return [Segment(tuple(keep[i] for i in s.frames), s.embeds) for s in release_plan(RELEASE_MAX_FRAMES)]
    r = range
    if n <= 6:
        middle = r(1, n - 1) if n > 2 else [n - 1]
        return _seg([0], BASE) + _seg(middle, E4) + _seg([n - 1], BASE)
    if n <= 22:
        return _seg([0], BASE) + _seg(r(1, n - 5), E8) + _seg(r(n - 5, n - 3), E4) + _seg(r(n - 3, n), BASE)
    tail = _seg(r(n - 21, n - 5), E8) + _seg(r(n - 5, n - 3), E4) + _seg(r(n - 3, n), BASE)
    if n <= 86:
        return _seg([0], BASE) + _seg(r(1, n - 21), E16) + tail
    if n <= 342:
        return _seg([0], E4) + _seg(r(1, n - 85), E32) + _seg(r(n - 85, n - 21), E16) + tail
    return (
        _seg([0], E4)
        + _seg(r(1, n - 341), PRE4, E32)
        + _seg(r(n - 341, n - 85), E32)
        + _seg(r(n - 85, n - 21), E16)
        + tail
    )


def _thin(n: int) -> list[int]:
    """1366 frame indices of an n-frame history: frame 0, 1024 evenly spread over [1, n-341), the newest 341."""
    old = torch.linspace(1, n - 342, RELEASE_MAX_FRAMES - 342, dtype=torch.float64).round().long().tolist()
    return [0] + old + list(range(n - 341, n))


def full_plan(num_frames: int) -> list[Segment]:
    """Every history frame at the base 2×2 patch: the uncompressed baseline whose cost grows with the history."""
    if num_frames < 1:
        raise ValueError(f"history must have at least one latent frame, got {num_frames}")
    return [Segment(tuple(range(num_frames)), (BASE,))]


def tscm_plan(num_frames: int) -> list[Segment]:
    """TSCM's temporal-spatial stream at its inference defaults (see `yume.models.tscm.TSCMPolicy`)."""
    from yume.models.tscm import TSCMPolicy  # tscm builds on this module

    return TSCMPolicy()(num_frames)


PLANS = {"release": release_plan, "full": full_plan, "tscm": tscm_plan}


def history_plan(policy, num_frames: int) -> list[Segment]:
    """The plan of a named policy, or of a callable `num_frames -> plan` (e.g. a `TSCMPolicy` with a generator)."""
    if callable(policy):
        return policy(num_frames)
    try:
        plan = PLANS[policy]
    except KeyError:
        raise ValueError(f"unknown history policy {policy!r}; choose one of {', '.join(PLANS)}") from None
    return plan(num_frames)


def _kernel(conv: torch.nn.Conv3d) -> tuple[int, int]:
    return conv.kernel_size[1], conv.kernel_size[2]


def _pad_to(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Zero-pad H and W at the bottom/right to multiples of the kernel (as the release does)."""
    ph, pw = -x.shape[-2] % kh, -x.shape[-1] % kw
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def segment_grid(seg: Segment, convs: dict, height: int, width: int) -> tuple[int, int]:
    """Token grid (h', w') of one history frame after the segment's chain of convs."""
    for name in seg.embeds:
        kh, kw = _kernel(convs[name])
        height, width = -(-height // kh), -(-width // kw)
    return height, width


def count_tokens(plan: list[Segment], convs: dict, height: int, width: int) -> int:
    """Number of history tokens a plan makes for latent frames of size height × width."""
    total = 0
    for seg in plan:
        h, w = segment_grid(seg, convs, height, width)
        total += len(seg.frames) * h * w
    return total


def plan_positions(plan: list[Segment], convs: dict, height: int, width: int, device=None) -> tuple[torch.Tensor, int]:
    """RoPE positions [L_h, 3] of a plan, and the frame index where the current chunk starts.

    Each segment's frame indices continue from the previous segment's frame count; rows and columns count the
    segment's own downsampled grid.
    """
    positions, offset = [], 0
    for seg in plan:
        h, w = segment_grid(seg, convs, height, width)
        positions.append(grid_positions(len(seg.frames), h, w, offset, device=device))
        offset += len(seg.frames)
    return torch.cat(positions), offset


def embed_plan(history: torch.Tensor, plan: list[Segment], convs: dict) -> torch.Tensor:
    """Tokens [B, L_h, dim] of the clean history latents [B, C, F_h, H, W] under a plan."""
    tokens = []
    for seg in plan:
        x = history[:, :, list(seg.frames)]
        for name in seg.embeds:
            conv = convs[name]
            x = conv(_pad_to(x.to(conv.weight.dtype), *_kernel(conv)))
        tokens.append(x.flatten(2).transpose(1, 2))
    return torch.cat(tokens, dim=1)


def interpolate_patch_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a patchify kernel [out, in, 1, k, k] to [out, in, 1, size, size] by trilinear interpolation.

    Scaled by (k/size)² so that a flat input gives the same response: the coarse patch averages more pixels.
    """
    k = weight.shape[-1]
    out = F.interpolate(weight.float(), size=(1, size, size), mode="trilinear", align_corners=False)
    return (out * (k / size) ** 2).to(weight.dtype)
