"""`yume train probe`: does a DiT read the action in its caption? The flow loss with the true action vs another.

A world model that follows the keys predicts a chunk better when told the action that made it. On cached batches,
with the same noise, history and scene text, the probe scores the model's velocity with each chunk's own action
caption and with a different action drawn at random, at fixed noise levels. The ratio other/true is 1.0 for a
model that ignores the action (a random init, or one that learned only to continue the motion it sees in the
history) and grows as it learns to read it. It needs no VAE decode and no motion estimate, so it shows whether the
DiT is learning the keys long before `yume bench sim` can, and separately from how good the VAE is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from yume.data.cache import LatentCache
from yume.data.loader import MODES, LatentLoader
from yume.train.flow import add_noise


@dataclass
class ProbeRow:
    sigma: float
    loss_true: float  # mean flow loss with each chunk's own action caption
    loss_other: float  # ... with another action's caption, same noise

    @property
    def ratio(self) -> float:
        return self.loss_other / self.loss_true


def action_probe(
    model,
    cache: LatentCache,
    *,
    mode: str = "i2v",
    chunk: int = 4,
    batches: int = 6,
    batch_size: int = 4,
    sigmas: tuple[float, ...] = (0.5, 0.8, 0.95),
    policy: str = "tscm",
    history_max: int = 16,
    seed: int = 0,
) -> list[ProbeRow]:
    """Flow loss with the true vs another action caption (decomposed: action ⊕ scene), one row per σ."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    mix = tuple(float(m == mode) for m in MODES)
    loader = LatentLoader(cache, batch_size=batch_size, chunk=chunk, history_min=1, history_max=history_max,
                          mix=mix, decomposed_prob=1.0, seed=seed)  # fmt: skip
    rng = np.random.default_rng([seed, 1])
    n = len(cache.action_embeddings)
    totals = {s: [0.0, 0.0] for s in sigmas}
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    for step in range(batches):
        batch = loader.batch(step)
        # Another action: a uniform draw among the other 80, so the ratio does not hinge on one choice.
        other = [(a + 1 + int(rng.integers(n - 1))) % n if a >= 0 else int(rng.integers(n)) for a in batch.actions]
        wrong = [cache.compose(a, s) for a, s in zip(other, batch.scenes)]
        g = torch.Generator().manual_seed(seed * 100_003 + step)
        x = batch.latents
        noise = torch.randn(x.shape, generator=g)
        history = None if batch.history is None else batch.history.to(device, dtype)
        for s in sigmas:
            sigma = torch.full((x.shape[0],), s)
            x_t = add_noise(x, noise, sigma).to(device, dtype)
            target = (noise - x).to(device)
            for i, context in enumerate((batch.context, wrong)):
                with torch.no_grad():
                    v = model(x_t, sigma.to(device), [c.to(device, dtype) for c in context], history, policy=policy)
                totals[s][i] += float(((v.float() - target) ** 2).mean())
    return [ProbeRow(s, t / batches, o / batches) for s, (t, o) in totals.items()]


def format_probe(rows: list[ProbeRow]) -> str:
    lines = ["| σ | loss, true action | loss, other action | other / true |", "|---|---|---|---|"]
    lines += [f"| {r.sigma:.2f} | {r.loss_true:.4f} | {r.loss_other:.4f} | {r.ratio:.4f} |" for r in rows]
    return "\n".join(lines)
