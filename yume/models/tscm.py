"""TSCM (paper Sec. 3, Fig. 3a): temporal sampling + distance-rated patchify of the history, and the linear memory.

Two streams compress the clean history latents, so a chunk costs the same however long the video has run:

* temporal-spatial: `TSCMPolicy` keeps 1 of every `stride` history latents (plus the newest `recent` and frame 0)
  and patchifies each kept frame at (1,2,2), (1,4,4), (1,8,8) or (1,16,16) by its distance, counted in kept frames,
  from the chunk. These tokens join the chunk in self-attention. Kernels the model lacks are interpolated from the
  base patchify kernel (`with_interpolated_kernels`), so the stream adds no parameters.
* channel: `memory_tokens` patchifies windows of 8 latents at (8,4,4) to `memory_dim` (96) channels; every block's
  `MemoryBranch` lets the chunk read them through linear attention (φ = ReLU), after cross-attention.

RoPE positions of the kept frames count kept frames (0, 1, 2, …), as the release does for its segments, so the
chunk's frame position is at most `max_frames` for any history length and stays inside the range the released
weights were trained on; the real latent distance is carried by the patch rate instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from yume.models.history import BASE, E4, E8, E16, Segment, interpolate_patch_kernel
from yume.models.layers import LayerNorm, init_linear

# Patch rate by distance band: (1,2,2) = `patch_embedding`, then `_2x` (1,4,4), `_4x` (1,8,8), `_8x` (1,16,16).
RATE_EMBEDS = (BASE, E4, E8, E16)
RATE_KERNELS = {E4: 4, E8: 8, E16: 16}

MEMORY_KERNEL = (8, 4, 4)  # latent frames × rows × columns per memory token
MEMORY_WINDOWS = 16  # memory tokens come from at most this many 8-latent windows (220 tokens each at 704×1280)


@dataclass(frozen=True)
class TSCMPolicy:
    """The temporal-spatial stream: which history latents are kept and at which patch rate.

    stride:     keep 1 of every `stride` older latents (8 latents = 32 pixel frames, the paper's 1 in 32)
    recent:     the newest `recent` latents are always kept, whatever the stride
    thresholds: largest distance (in kept frames, 0 = newest) for (1,2,2), (1,4,4), (1,8,8); beyond: (1,16,16)
    max_frames: cap on kept frames; the (1,16,16) band is thinned evenly to fit (frame 0 and its newest stay)
    keep_first: always keep history frame 0 (the start image / first chunk, the anchor of the world)
    generator:  draws the sampling offset in [0, stride) per call (training); None = offset 0 (inference)
    """

    stride: int = 8
    recent: int = 3
    thresholds: tuple[int, int, int] = (2, 6, 23)
    max_frames: int = 64
    keep_first: bool = True
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.stride < 1 or self.recent < 1:
            raise ValueError(f"TSCM stride and recent must be >= 1, got stride={self.stride}, recent={self.recent}")
        t = tuple(self.thresholds)
        if len(t) != 3 or t[0] < 0 or any(b <= a for a, b in zip(t, t[1:])):
            raise ValueError(f"TSCM thresholds must be 3 increasing distances >= 0 (e.g. (2, 6, 23)), got {t}")
        if self.max_frames < t[-1] + 2:
            raise ValueError(f"TSCM max_frames={self.max_frames} must exceed the last threshold {t[-1]} by at least 2")

    def frames(self, num_frames: int) -> list[int]:
        """Kept history frame indices, ascending; the newest `recent` are always among them."""
        n = num_frames
        if n < 1:
            raise ValueError(f"history must have at least one latent frame, got {n}")
        offset = 0
        if self.generator is not None:
            offset = int(torch.randint(self.stride, (1,), generator=self.generator))
        recent = list(range(max(0, n - self.recent), n))
        older = list(range(n - self.recent - 1 - offset, -1, -self.stride))[::-1]
        if self.keep_first and n - self.recent > 0 and (not older or older[0] != 0):
            older = [0, *older]
        kept = older + recent
        far = len(kept) - (self.thresholds[-1] + 1)  # frames in the (1,16,16) band
        room = self.max_frames - (self.thresholds[-1] + 1)
        if far > room:
            pick = torch.linspace(0, far - 1, room, dtype=torch.float64).round().long().tolist()
            kept = [kept[i] for i in pick] + kept[far:]
        return kept

    def plan(self, num_frames: int) -> list[Segment]:
        """Segments oldest → newest, one per patch rate, over the kept frames (see `yume.models.history`)."""
        kept = self.frames(num_frames)
        bands: dict[str, list[int]] = {}
        for distance, frame in enumerate(reversed(kept)):
            band = sum(distance > t for t in self.thresholds)
            bands.setdefault(RATE_EMBEDS[band], []).append(frame)
        return [Segment(tuple(sorted(bands[e])), (e,)) for e in reversed(RATE_EMBEDS) if e in bands]

    __call__ = plan


class InterpolatedPatch(nn.Module):
    """A coarse patchify conv whose kernel is the base kernel resized on the fly: no parameters of its own."""

    def __init__(self, base: nn.Conv3d, size: int):
        super().__init__()
        self.base, self.size = base, size
        self.kernel_size = (1, size, size)

    @property
    def weight(self) -> torch.Tensor:
        return interpolate_patch_kernel(self.base.weight, self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight, self.base.bias, stride=self.kernel_size)


def with_interpolated_kernels(convs: dict) -> dict:
    """`convs` plus the (1,4,4)/(1,8,8)/(1,16,16) embeddings it lacks, interpolated from `patch_embedding`."""
    out = dict(convs)
    for name, size in RATE_KERNELS.items():
        if name not in out:
            out[name] = InterpolatedPatch(convs[BASE], size)
    return out


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Linear attention with φ = ReLU in O(L·D²): out_i = Σ_j φ(q_i)·φ(k_j) v_j / (Σ_j φ(q_i)·φ(k_j) + eps).

    q: [B, Lq, H, D], k/v: [B, Lk, H, D] -> [B, Lq, H, D] in q's dtype. The key-value state and the normaliser are
    accumulated in float32 (float64 stays float64) as means over keys, so neither grows with Lk; the ratio is the
    same as with sums, and eps only guards queries that see no key (φ(q)·φ(k) = 0 for all k).
    """
    acc = torch.promote_types(q.dtype, torch.float32)
    qf, kf, vf = F.relu(q.to(acc)), F.relu(k.to(acc)), v.to(acc)
    n = k.shape[1]
    kv = torch.einsum("blhd,blhe->bhde", kf, vf) / n  # [B, H, D, D]
    z = kf.mean(dim=1)  # [B, H, D]
    num = torch.einsum("bqhd,bhde->bqhe", qf, kv)
    den = torch.einsum("bqhd,bhd->bqh", qf, z)[..., None] + eps / n
    return (num / den).to(q.dtype)


class MemoryBranch(nn.Module):
    """Fig. 3a's linear-attention branch: chunk tokens → FC down → linear attention over [chunk ; memory] → FC up.

    Keys: `down` (dim → m), `q`, `k`, `v` (m → m, one head of width m; the paper's figure leaves the projections
    unstated and a kernel-φ attention needs its own query/key maps), `up` (m → dim, zero at init so the branch starts
    as the identity). The input is LayerNorm-ed (no affine, no parameters) since the residual stream is unnormalised.
    """

    def __init__(self, dim: int, memory_dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.down = nn.Linear(dim, memory_dim)
        self.q, self.k, self.v = (nn.Linear(memory_dim, memory_dim) for _ in range(3))
        self.up = nn.Linear(memory_dim, dim)

    @torch.no_grad()
    def init_weights(self) -> None:
        for m in (self.down, self.q, self.k, self.v):
            init_linear(m)
        # Zero FC up: a release checkpoint with the branch switched on computes exactly the release model.
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """x: chunk tokens [B, Lc, dim] (float32 residual), memory: [B, Lm, m] -> update [B, Lc, dim] float32."""
        dtype = self.down.weight.dtype
        h = self.down(self.norm(x).to(dtype))  # [B, Lc, m]
        z = torch.cat([h, memory.to(dtype)], dim=1)  # [B, Lc + Lm, m]
        q, k, v = self.q(h)[:, :, None], self.k(z)[:, :, None], self.v(z)[:, :, None]
        return self.up(linear_attention(q, k, v).flatten(2)).float()


class Memory(NamedTuple):
    """What every block's memory branch reads: the channel-stream tokens, and how many trailing tokens are the chunk."""

    tokens: torch.Tensor  # [B, L_m, memory_dim]
    num_chunk_tokens: int


def memory_windows(num_frames: int, max_windows: int = MEMORY_WINDOWS) -> list[int]:
    """Indices of the 8-latent windows (0 = oldest, counted back from the newest latent) that become memory tokens.

    All windows up to `max_windows`; beyond, that many spread evenly from the oldest to the newest, which is kept.
    """
    n = -(-num_frames // MEMORY_KERNEL[0])
    if n <= max_windows:
        return list(range(n))
    return torch.linspace(0, n - 1, max_windows, dtype=torch.float64).round().long().tolist()


def memory_tokens(history: torch.Tensor, conv: nn.Conv3d, max_windows: int = MEMORY_WINDOWS) -> torch.Tensor:
    """The channel stream: clean history [B, C, F_h, H, W] -> tokens [B, windows·⌈H/4⌉·⌈W/4⌉, m].

    Windows of 8 latents end at the newest latent; the oldest one is zero-padded at its start when F_h is not a
    multiple of 8. H and W are zero-padded at the bottom/right to multiples of 4, as the history patchify does.
    """
    kt, kh, kw = conv.kernel_size
    f = history.shape[2]
    frames = torch.tensor([w * kt + i - (-f % kt) for w in memory_windows(f, max_windows) for i in range(kt)])
    x = history[:, :, frames.clamp(min=0).tolist()].to(conv.weight.dtype)  # only the kept windows are copied
    x = x * (frames >= 0).to(device=x.device, dtype=x.dtype)[:, None, None]  # frames before the first are zeros
    x = F.pad(x, (0, -x.shape[-1] % kw, 0, -x.shape[-2] % kh))
    return conv(x).flatten(2).transpose(1, 2)


def make_memory_embedding(in_dim: int, memory_dim: int) -> nn.Conv3d:
    return nn.Conv3d(in_dim, memory_dim, kernel_size=MEMORY_KERNEL, stride=MEMORY_KERNEL)


@torch.no_grad()
def enable_memory(model, dim: int = 96):
    """Switch TSCM's memory branch on for a loaded model (e.g. the release checkpoint), on its device and dtype.

    Adds `memory_embedding` and `blocks.N.memory` (FC up zero, so outputs are unchanged until trained) and sets
    `model.config.memory_dim`, so `save_pretrained` writes the branch and `from_pretrained` reads it back.
    """
    if dim < 1:
        raise ValueError(f"memory dim must be >= 1, got {dim}")
    if model.config.memory_dim:
        raise ValueError(f"the memory branch is already on (memory_dim={model.config.memory_dim})")
    ref = model.patch_embedding.weight
    model.config = model.config.replace(memory_dim=dim)
    with torch.device(ref.device):
        model.memory_embedding = make_memory_embedding(model.config.in_dim, dim)
        for block in model.blocks:
            block.memory = MemoryBranch(model.config.dim, dim, model.config.eps)
    model.init_memory()
    model.memory_embedding.to(ref.dtype)
    for block in model.blocks:
        block.memory.to(ref.dtype)
    return model
