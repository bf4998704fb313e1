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


def motion_loss(velocity: torch.Tensor, x: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """MSE between the frame-to-frame changes of the clean chunk the velocity implies, x̂ = x_σ − σ·v, and of the
    true chunk x ([B, C, f, h, w], f ≥ 2; `flow.motion_weight`).

    x̂ − x = σ·(v* − v), so this is the velocity error's change from frame to frame, weighted σ²: the same minimiser
    as the flow loss (E[ε − x | x_σ], for any positive weighting), but an error the chunk's frames share (a colour,
    a facade's texture) costs nothing here, while one that moves the view the wrong way, or too little, does. A small
    DiT spends its loss on content, which dwarfs the camera's motion (a 0.1 m step is a fraction of a latent pixel);
    this term charges the motion by itself."""
    s = sigma.view(-1, *([1] * (x.ndim - 1))).to(velocity.device, torch.float32)
    err = s * ((noise - x).float() - velocity.float())  # x̂ − x
    return err.diff(dim=2).square().mean()


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
    motion_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The flow loss of one batch: noise the chunk [B, C, f, h, w] only; the history stays clean (σ = 0). Returns the
    loss to minimise and, when motion_weight > 0, its parts {"flow", "motion"} for the log (else {})."""
    sigma = sample_sigmas(latents.shape[0], generator=generator, mean=mean, std=std, shift=shift)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    x_t = add_noise(latents, noise, sigma)
    velocity = model(x_t, sigma.to(latents.device), context, history, policy=policy)
    loss = flow_loss(velocity, latents, noise)
    if not motion_weight:
        return loss, {}
    motion = motion_loss(velocity, latents, noise, sigma)
    return loss + motion_weight * motion, {"flow": loss.item(), "motion": motion.item()}
