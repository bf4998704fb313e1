"""Stage 2: the generator rolls out K chunks on its own history with few steps; DMD scores each chunk.

Self-Forcing (Huang et al. 2025): training runs the same autoregressive loop as inference, so the generator learns
from (and to correct) its own drift. Only one randomly chosen denoising step per chunk keeps its graph; the chunk
it produces is the prediction x̂₀ at that step. Each finished chunk is appended, detached, to the clean history of
the next — the compressed-history policy packs it, as in inference (Yume has no KV cache to roll).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yume.sampling import get_schedule
from yume.train.dmd import critic_loss, dmd_loss, x0_from_velocity


def few_step_sigmas(steps: int = 4, shift: float = 7.0) -> torch.Tensor:
    """σ of the few-step sampler, `steps + 1` values ending at 0: t = 1000·[1, .75, .5, .25] shifted, for steps=4."""
    return get_schedule(steps, shift)


@dataclass
class Rollout:
    chunks: list[torch.Tensor]  # K x [B, C, f, h, w]; each carries the graph of its exit step only
    histories: list[torch.Tensor | None]  # the (detached) history each chunk was generated with
    exit_steps: list[int]


def rollout(
    model,
    noise: list[torch.Tensor],
    contexts: list[list[torch.Tensor]],
    history: torch.Tensor | None,
    sigmas: torch.Tensor,
    exit_steps: list[int],
    *,
    policy: str,
    grad: bool = True,
) -> Rollout:
    """Generate len(noise) chunks autoregressively with Euler steps (the inference sampler), each on the history
    of everything before it; chunk k stops at `exit_steps[k]` and returns x̂₀ = x − σ·v of that step."""
    chunks, histories = [], []
    for x, context, exit_step in zip(noise, contexts, exit_steps):
        if not 0 <= exit_step < len(sigmas) - 1:
            raise ValueError(f"exit step {exit_step} is outside the {len(sigmas) - 1}-step schedule")
        batch = x.shape[0]
        for i in range(exit_step + 1):
            sigma = sigmas[i].expand(batch).to(x.device)
            with torch.set_grad_enabled(grad and i == exit_step):
                v = model(x, sigma, context, history, policy=policy)
            if i == exit_step:
                x = x0_from_velocity(x, v, sigma)
            else:
                x = (x + (sigmas[i + 1] - sigmas[i]) * v).detach()
        chunks.append(x)
        histories.append(history)
        done = x.detach().to(noise[0].dtype)
        history = done if history is None else torch.cat([history, done], dim=2)
    return Rollout(chunks, histories, list(exit_steps))


def extend_history(
    model, noise: list[torch.Tensor], contexts: list[list[torch.Tensor]], history: torch.Tensor | None,
    sigmas: torch.Tensor, *, policy: str,
) -> torch.Tensor | None:
    """Roll out len(noise) chunks without gradient through every step of the few-step sampler (the chunks inference
    would make) and return `history` with them appended: where the trained chunks of a long-rollout step start."""
    if not noise:
        return history
    with torch.no_grad():
        out = rollout(model, noise, contexts, history, sigmas, [len(sigmas) - 2] * len(noise), policy=policy, grad=False)
    return torch.cat(([] if history is None else [history]) + [c.to(noise[0].dtype) for c in out.chunks], dim=2)


def real_score_x0(teacher, x_t, sigma, context, uncond, history, *, policy: str, guidance: float) -> torch.Tensor:
    """The frozen teacher's x̂₀, with classifier-free guidance on the velocity when guidance > 1."""
    with torch.no_grad():
        v = teacher(x_t, sigma, context, history, policy=policy)
        if guidance != 1.0:
            v_uncond = teacher(x_t, sigma, uncond, history, policy=policy)
            v = v_uncond + guidance * (v - v_uncond)
        return x0_from_velocity(x_t, v, sigma)


def generator_dmd_loss(
    out: Rollout,
    teacher,
    fake,
    contexts: list[list[torch.Tensor]],
    uncond: list[torch.Tensor],
    *,
    sigma_range: tuple[float, float],
    generator: torch.Generator,
    policy: str,
    guidance: float = 1.0,
) -> torch.Tensor:
    """Mean over chunks of `dmd_loss`: each chunk noised to σ ~ U(sigma_range) and scored by the real and fake
    models on the generated history it was made with (DMD on model-generated video, as the paper does)."""
    losses = []
    for x, history, context in zip(out.chunks, out.histories, contexts):
        b = x.shape[0]
        sigma = torch.empty(b).uniform_(*sigma_range, generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x)
        x_t = (1 - sigma.view(-1, 1, 1, 1, 1)) * x.detach() + sigma.view(-1, 1, 1, 1, 1) * noise
        real = real_score_x0(teacher, x_t, sigma, context, uncond, history, policy=policy, guidance=guidance)
        with torch.no_grad():
            fake_x0 = x0_from_velocity(x_t, fake(x_t, sigma, context, history, policy=policy), sigma)
        losses.append(dmd_loss(x, real, fake_x0))
    return torch.stack(losses).mean()


def fake_score_loss(
    out: Rollout, fake, contexts, *, sigma_range: tuple[float, float], generator: torch.Generator, policy: str
) -> torch.Tensor:
    """Mean over chunks of the fake score's denoising loss on the (detached) generated chunks."""
    losses = []
    for x, history, context in zip(out.chunks, out.histories, contexts):
        sigma = torch.empty(x.shape[0]).uniform_(*sigma_range, generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x)
        losses.append(critic_loss(fake, x, sigma, noise, context, history, policy=policy))
    return torch.stack(losses).mean()


def _pooled(x: torch.Tensor, pool: int) -> torch.Tensor:
    """[B, C, F, h, w] averaged over pool x pool cells in space, as float32."""
    return F.avg_pool3d(x.float(), (1, pool, pool)) if pool > 1 else x.float()


def _chunk_mse(out: Rollout, targets: list[torch.Tensor], view) -> torch.Tensor:
    """Mean over chunks of the MSE between view(generated chunk) and view(the clip's true chunk)."""
    return torch.stack([F.mse_loss(view(x), view(y.to(x.device))) for x, y in zip(out.chunks, targets)]).mean()


def real_data_loss(out: Rollout, targets: list[torch.Tensor], pool: int) -> torch.Tensor:
    """Mean over chunks of the MSE between each generated chunk and the clip's true one, both average-pooled
    pool x pool in space: where the camera's view went, not its fine detail (`self_forcing.real_weight`)."""
    return _chunk_mse(out, targets, lambda x: _pooled(x, pool))


def real_motion_loss(out: Rollout, targets: list[torch.Tensor], pool: int) -> torch.Tensor:
    """Mean over chunks of the MSE between the frame-to-frame changes of each generated chunk and of the clip's true
    one, both average-pooled pool x pool in space (`self_forcing.real_motion_weight`; chunks of 2+ latents).

    The frames themselves differ between a rollout and the clip (content the student made up, colours that drift)
    far more than their changes do; the changes are the camera's motion, which is what the keys ask for.
    """
    return _chunk_mse(out, targets, lambda x: _pooled(x, pool).diff(dim=2))


MOTION_MAP_GRID = 4  # the view cut into 4 x 4 regions: sky and far facades, near facades, road
# Well under a walk's mean square change a latent frame (0.02-0.15 in the built-in world's latents): a region that
# should stay still is still charged for moving, yet one at noise level does not blow up the log.
MOTION_MAP_EPS = 1e-3


def motion_map(x: torch.Tensor) -> torch.Tensor:
    """[B, C, F, h, w] -> [B, G, G]: the log of how much each region of the view changes from frame to frame (the
    mean square change over channels, frames and the region's cells)."""
    change = x.float().diff(dim=2).square().mean(dim=(1, 2))
    return torch.log(F.adaptive_avg_pool2d(change[:, None], MOTION_MAP_GRID)[:, 0] + MOTION_MAP_EPS)


def motion_map_loss(out: Rollout, targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over chunks of the MSE between the motion maps (`motion_map`) of each generated chunk and of the true one
    (`self_forcing.real_motion_map_weight`; chunks of 2+ latents).

    Where the view changes, not how: a turn moves the far view (sky, far facades) as much as the near; a sideways
    step moves the road and near facades and leaves the far view nearly still. The pointwise change term
    (`real_motion_loss`) cannot tell a made-up far-view motion from content the rollout made up there; this one
    compares only how much each region moves, so it holds whatever the content.
    """
    return _chunk_mse(out, targets, motion_map)
