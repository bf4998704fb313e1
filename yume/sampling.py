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


def _sde_step(x, v, sigma, sigma_next, eta: float, generator) -> torch.Tensor:
    """One Euler–Maruyama step of the reverse SDE with constant diffusion η, from σ to σ_next.

    The score is −ε̂/σ with the predicted noise ε̂ = x + (1 − σ)·v, so the drift adds (η²/2)·ε̂/σ to v; the step to
    σ = 0 adds no noise (the release's `sample_tts.py`).
    """
    x_next = x + (sigma_next - sigma) * v
    if eta == 0:
        return x_next
    eps = x + (1 - sigma) * v
    x_next = x_next + (sigma_next - sigma) * (0.5 * eta**2) * eps / sigma
    if sigma_next > 0:
        device = generator.device if generator is not None else x.device
        z = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x)
        x_next = x_next + eta * (sigma - sigma_next).sqrt() * z
    return x_next


def sample_tts_sde(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    history: torch.Tensor,
    history_noise: torch.Tensor,
    *,
    eta: float = 0.3,
    travel_interval: int = 2,
    travel_depth: int = 1,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
) -> torch.Tensor:
    """Time Travel Sampling with an SDE (TTS-SDE, Yume 1.0 paper Algorithm 3; the release's `sample_tts.py`).

    Each step is an SDE step (`_sde_step`, noise from `generator`). Every `travel_interval`-th step (i % interval
    == 0) then looks ahead: from its SDE result it goes on with SDE steps, evaluating the model at σ_{i+1} …
    σ_{i+travel_depth} (at most the last σ > 0), and the step is retaken as the Euler step x + (σ_{i+1} − σ_i)·v
    with the velocity v seen there. The history is shown as in `sample_euler_renoised_history`, at each evaluated σ.
    Defaults are the release's (η = 0.3, interval 2, one look-ahead evaluation); eta=0 with travel_interval=0 is
    `sample_euler_renoised_history` exactly. `model(x, σ, history_σ)` -> v.
    """
    if eta < 0 or travel_interval < 0 or travel_depth < 1:
        raise ValueError(
            f"TTS-SDE needs eta >= 0, travel_interval >= 0 (0: no travel) and travel_depth >= 1; got eta={eta}, "
            f"travel_interval={travel_interval}, travel_depth={travel_depth}"
        )
    steps = len(sigmas) - 1

    def velocity(z: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        past = sigmas[j] * history_noise + (1 - sigmas[j]) * history
        return model(z, sigmas[j].expand(z.shape[0]).to(z.device), past), past

    for i in tqdm(range(steps), disable=disable, desc="denoise", leave=False):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        v, past = velocity(x, i)
        x_next = _sde_step(x, v, sigma, sigma_next, eta, generator)
        far = min(i + travel_depth, steps - 1)
        travel = travel_interval > 0 and i % travel_interval == 0 and far > i
        if travel:
            ahead = x_next
            for j in range(i + 1, far + 1):
                v, _ = velocity(ahead, j)
                if j < far:
                    ahead = _sde_step(ahead, v, sigmas[j], sigmas[j + 1], eta, generator)
            x_next = x + (sigma_next - sigma) * v
        x = x_next
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "velocity": v, "history": past,
                      "travel": travel})  # fmt: skip
    return x
