"""Stage 1 loss: rectified flow on the current chunk, with clean history at σ = 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yume.sampling import shift_sigmas


def sample_sigmas(
    batch: int, *, generator: torch.Generator, mean: float = 0.0, std: float = 1.0, shift: float = 7.0
) -> torch.Tensor:
    """σ [B]: logit-normal, σ = sigmoid(mean + std·n) with n ~ N(0, 1) (SD3, Esser et al. 2024, Eq. 19),
    then the time shift σ' = s·σ / (1 + (s − 1)·σ) that the sampler uses, so training sees the noise levels
    inference spends its steps at."""
    n = torch.randn(batch, generator=generator)
    return shift_sigmas(torch.sigmoid(mean + std * n), shift)


def add_noise(x: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ)·x + σ·ε, σ [B] broadcast over [B, C, F, H, W]."""
    s = sigma.view(-1, *([1] * (x.ndim - 1))).to(x)
    return (1 - s) * x + s * noise


def flow_loss(velocity: torch.Tensor, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Rectified-flow loss E‖v_θ(x_σ, σ) − (ε − x)‖² (Liu et al. 2022, Eq. 1; the target is d x_σ / dσ)."""
    return F.mse_loss(velocity.float(), (noise - x).float())


def flow_step_loss(
    model,
    latents: torch.Tensor,
    history: torch.Tensor | None,
    context: list[torch.Tensor],
    *,
    generator: torch.Generator,
    policy: str,
    shift: float = 7.0,
    mean: float = 0.0,
    std: float = 1.0,
) -> torch.Tensor:
    """The flow loss of one batch: noise the chunk [B, C, f, h, w] only; the history stays clean (σ = 0)."""
    sigma = sample_sigmas(latents.shape[0], generator=generator, mean=mean, std=std, shift=shift)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    x_t = add_noise(latents, noise, sigma)
    velocity = model(x_t, sigma.to(latents.device), context, history, policy=policy)
    return flow_loss(velocity, latents, noise)
