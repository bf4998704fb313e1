"""Flow-matching σ schedules and samplers as plain functions (σ = 1 is pure noise, σ = 0 is data).

The model predicts the velocity v = noise − data of x_σ = (1 − σ)·data + σ·noise, so one Euler step from σ_i to
σ_{i+1} is x ← x + (σ_{i+1} − σ_i)·v.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

# A denoiser: (x [B, C, F, H, W], σ [B]) -> velocity like x. Sessions close over text and history.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The time shift of SD3/Wan: σ' = s·σ / (1 + (s − 1)·σ); larger s spends more steps at high noise."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def get_schedule(steps: int, shift: float = 5.0) -> torch.Tensor:
    """σ from 1 to 0 inclusive, `steps + 1` values: linspace(1, 0) then shifted.

    steps=4, shift=7 gives [1.000, 0.955, 0.875, 0.700, 0] — what the released 4-step Yume-5B weights expect.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()


def sample_euler(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
) -> torch.Tensor:
    """Euler integration of the flow ODE from sigmas[0] to sigmas[-1]; `callback` gets each step's tensors."""
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="denoise", leave=False):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        v = model(x, sigma.expand(x.shape[0]).to(x.device))
        x = x + (sigma_next - sigma) * v
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "velocity": v})
    return x


def cfg_denoiser(model: Callable, cond, uncond, scale: float) -> Denoiser:
    """Classifier-free guidance: v = v_uncond + scale·(v_cond − v_uncond). `model(x, σ, text)` -> v."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return model(x, sigma, cond)
        v_cond = model(x, sigma, cond)
        v_uncond = model(x, sigma, uncond)
        return v_uncond + scale * (v_cond - v_uncond)

    return denoise


def get_noise(shape, *, seed: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise drawn on the CPU from `seed`, so the same seed gives the same video on any device."""
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def sample_euler_renoised_history(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    history: torch.Tensor,
    history_noise: torch.Tensor,
    *,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
) -> torch.Tensor:
    """Euler on the chunk while the history is shown re-noised to each step's level (the Yume-I2V-540P release).

    At step i the model sees the history as σ_i·ε + (1 − σ_i)·history with one ε for the whole chunk, i.e. after
    each step the history is re-noised to the next step's level with the same noise. `model(x, σ, history_σ)` -> v.
    """
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="denoise", leave=False):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        past = sigma * history_noise + (1 - sigma) * history
        v = model(x, sigma.expand(x.shape[0]).to(x.device), past)
        x = x + (sigma_next - sigma) * v
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "velocity": v, "history": past})
    return x
