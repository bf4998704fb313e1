"""Small reusable pieces of the Wan DiT: norms, 3-D RoPE, attention, timestep embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Wan's RMSNorm (over the whole width, i.e. across heads), computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm that always computes in float32 and returns float32 (the adaLN maths stays fp32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


def timestep_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t = 1000·σ (Wan's unit for time), [cos | sin], in float32.

    This is the only place where σ ∈ [0, 1] becomes Wan's t ∈ [0, 1000].
    """
    half = dim // 2
    t = sigma.double() * 1000.0
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Head-dim parts for (frame, height, width): (44, 42, 42) for head dim 128."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles for integer 3-D positions, computed for any position (no table, no 1024 cap).

    positions: [L, 3] (frame, row, column) -> angles [L, head_dim // 2] in float64.
    """
    parts = rope_split(head_dim)
    angles = []
    for axis, d in enumerate(parts):
        inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=positions.device) / d)
        angles.append(positions[:, axis].double()[:, None] * inv)
    return torch.cat(angles, dim=1)


def grid_positions(f: int, h: int, w: int, frame_offset: int = 0, device=None) -> torch.Tensor:
    """Positions [f*h*w, 3] of a token grid in (frame, row, column) raster order."""
    fi, hi, wi = torch.meshgrid(
        torch.arange(frame_offset, frame_offset + f, device=device),
        torch.arange(h, device=device),
        torch.arange(w, device=device),
        indexing="ij",
    )
    return torch.stack([fi, hi, wi], dim=-1).reshape(-1, 3)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x [B, L, H, D] by angles given as cos/sin [L, D/2] (Wan's complex product)."""
    xf = x.double().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)
    return out.type_as(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention through SDPA. q: [B, Lq, H, D], k/v: [B, Lk, H, D] -> [B, Lq, H*D]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


def init_linear(module: nn.Linear | nn.Conv3d, std: float | None = None) -> None:
    """Xavier-uniform weights (Wan's init for linear and patchify layers), zero bias."""
    weight = module.weight.flatten(1) if isinstance(module, nn.Conv3d) else module.weight
    if std is None:
        nn.init.xavier_uniform_(weight)
    else:
        nn.init.normal_(weight, std=std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
