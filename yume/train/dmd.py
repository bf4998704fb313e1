"""Distribution matching distillation: the generator loss along (score_fake − score_real) and the critic loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yume.train.flow import add_noise, flow_loss


def x0_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The clean estimate x̂₀ = x_σ − σ·v of a flow model (v = ε − x, x_σ = (1 − σ)x + σε)."""
    return x_t - sigma.view(-1, *([1] * (x_t.ndim - 1))).to(x_t) * velocity


def dmd_loss(x: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor) -> torch.Tensor:
    """Generator loss of DMD (Yin et al. 2024, Eq. 7) with DMD2's normalisation.

    The KL gradient s_fake − s_real is estimated from the two denoisers' clean predictions at the same noisy x_t:
        grad = (p_fake − p_real) / mean|x − p_real|    (per sample; the mean is over C, F, H, W)
        loss = 0.5·‖x − sg(x − grad)‖²                 (so ∂loss/∂x = grad, up to the mean's 1/N)
    x [B, C, F, H, W] carries the generator's gradient; real_x0 and fake_x0 must be computed without it.
    """
    with torch.no_grad():
        dims = tuple(range(1, x.ndim))
        weight = (x.float() - real_x0.float()).abs().mean(dim=dims, keepdim=True)
        grad = (fake_x0.float() - real_x0.float()) / weight
        target = x.float() - grad
    return 0.5 * F.mse_loss(x.float(), target)


def critic_loss(fake_model, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, context, history, *, policy):
    """The fake score's denoising loss on generator samples x (detached): the flow loss of `flow.flow_loss`.

    Trained online, the fake model tracks the generator's current distribution (DMD, Yin et al. 2024, Eq. 6).
    """
    x = x.detach()
    velocity = fake_model(add_noise(x, noise, sigma), sigma, context, history, policy=policy)
    return flow_loss(velocity, x, noise)
