"""Training batches from the latent cache: a history prefix, then the chunk to denoise, and its text.

Every batch is a pure function of (seed, step, rank), so resuming at step n reproduces the data exactly and the
"data position" of a run is its step count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from yume.data.cache import CachedClip, LatentCache

MODES = ("t2v", "i2v", "v2v")


@dataclass
class Batch:
    latents: torch.Tensor  # [B, C, f, h, w] the clean chunk
    history: torch.Tensor | None  # [B, C, F_h, h, w] clean history latents, None for T2V
    context: list[torch.Tensor]  # B x [L_i, text_dim]
    mode: str
    clip_ids: list[str]
    scenes: list[torch.Tensor]  # B x [L_i, text_dim] scene/event text alone (for per-chunk action prompts)
    actions: list[int]  # B action indices the captions name (-1 = unlabelled)
    start: int = 0  # the chunk's first latent frame in its clips (= the history length)


class LatentLoader:
    """Samples T2V / I2V / V2V batches with probabilities `mix` (t2v, i2v, v2v).

    t2v: the chunk is the clip's first `chunk` latents, no history. i2v: history = latent 0 (the first frame alone).
    v2v: history = the prefix latents[0:s] with s drawn from [history_min, history_max] in steps of
    `history_stride`, then the chunk.
    `first_frame_noise` > 0 noises history latent 0 with σ ~ U(0, first_frame_noise), so the model does not rely on
    a pixel-perfect start frame. Captions are decomposed (action ⊕ scene) with probability `decomposed_prob`, and
    replaced by the empty caption's embedding with probability `text_dropout`, so classifier-free guidance has an
    unconditional model to push away from (Wan and Yume train with it; a model trained without it has none).
    """

    def __init__(
        self,
        cache: LatentCache,
        *,
        batch_size: int,
        chunk: int,
        history_min: int = 2,
        history_max: int = 250,
        history_stride: int = 1,
        mix: tuple[float, float, float] = (0.3, 0.3, 0.4),
        decomposed_prob: float = 0.6,
        first_frame_noise: float = 0.0,
        text_dropout: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        lookahead: int = 1,
    ):
        self.cache, self.batch_size, self.chunk = cache, batch_size, chunk
        # Chunks every picked clip must still hold from the batch's start: > 1 when Self-Forcing's real-data term
        # needs the clip's own continuation (`continuation`); 1 draws exactly the batches it always drew.
        self.lookahead, self.span = lookahead, chunk * lookahead
        self._clips = {c.id: c for c in cache.clips}
        self.history_min, self.history_max, self.history_stride = history_min, history_max, history_stride
        self.decomposed_prob, self.first_frame_noise = decomposed_prob, first_frame_noise
        self.text_dropout = text_dropout
        self.seed, self.rank = seed, rank
        self.longest = longest = max(c.frames for c in cache.clips)
        span = self.span
        allowed = {"t2v": longest >= span, "i2v": longest >= span + 1, "v2v": longest >= span + history_min}
        weights = np.array([w if allowed[m] else 0.0 for m, w in zip(MODES, mix)], dtype=np.float64)
        if weights.sum() <= 0:
            need = f"{chunk}" if lookahead == 1 else f"{span} ({lookahead} chunks of {chunk}, Self-Forcing's real term)"
            raise ValueError(
                f"no training mode fits: the longest cached clip has {longest} latent frames, the chunk needs {need} "
                f"(+1 for i2v, +{history_min} history for v2v) and mix={mix}; lower data.chunk_latents or cache longer clips"
            )
        self.mode_probs = weights / weights.sum()

    def batch(self, step: int) -> Batch:
        # Mode and history length are shared by all ranks, so every rank runs the same modules (FSDP needs it);
        # the clips, captions and noise differ per rank.
        shared = np.random.default_rng([self.seed, step])
        rng = np.random.default_rng([self.seed, step, self.rank])
        mode = MODES[shared.choice(len(MODES), p=self.mode_probs)]
        if mode == "t2v":
            start = 0
        elif mode == "i2v":
            start = 1
        else:
            top = min(self.history_max, self.longest - self.span)
            if self.history_stride == 1:  # drawn as before the stride existed, so old runs replay the same batches
                start = int(shared.integers(self.history_min, top + 1))
            else:
                start = self.history_min + self.history_stride * int(
                    shared.integers(0, max(top - self.history_min, 0) // self.history_stride + 1))
        eligible = [c for c in self.cache.clips if c.frames >= start + self.span]
        picks = [eligible[i] for i in rng.integers(0, len(eligible), self.batch_size)]
        latents, history, contexts, scenes, actions = [], [], [], [], []
        # Its own stream, so that dropout changes the captions and nothing else a run draws.
        dropout = np.random.default_rng([self.seed, step, self.rank, 2]).random(self.batch_size)
        for clip in picks:
            x = self.cache.latents(clip)  # [C, F, h, w]
            latents.append(x[:, start : start + self.chunk])
            history.append(x[:, :start])
            action = self.chunk_action(clip, start)
            actions.append(action)
            decomposed = rng.random() < self.decomposed_prob
            context = self.cache.decomposed(clip, action) if decomposed else self.cache.joined(clip, action)
            if dropout[len(contexts)] < self.text_dropout:
                context = self.cache.empty
            contexts.append(context)
            scenes.append(self.cache.scene(clip)[: self.cache.text_len])
        hist = torch.stack(history) if start else None
        if hist is not None and self.first_frame_noise > 0:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            sigma = torch.rand(len(picks), 1, 1, 1, generator=g) * self.first_frame_noise
            noise = torch.randn(hist[:, :, 0].shape, generator=g)
            hist[:, :, 0] = (1 - sigma) * hist[:, :, 0] + sigma * noise
        return Batch(torch.stack(latents), hist, contexts, mode, [c.id for c in picks], scenes, actions, start)

    def continuation(self, batch: Batch, chunks: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """The clips' own next `chunks` chunks from the batch's start ([B, C, f, h, w] each) and, per chunk and
        sample, the caption of the action the clip really takes there ⊕ its scene text: what the camera did after
        this history, for Self-Forcing's real-data term (`self_forcing.real_weight`)."""
        if chunks > self.lookahead:
            raise ValueError(f"{chunks} chunks of continuation asked of a loader built with lookahead={self.lookahead}")
        clips = [self._clips[i] for i in batch.clip_ids]
        latents = [self.cache.latents(c) for c in clips]  # each clip read once, sliced per chunk
        begins = [batch.start + k * self.chunk for k in range(chunks)]
        targets = [torch.stack([x[:, b : b + self.chunk] for x in latents]) for b in begins]
        contexts = [[self.cache.compose(self.chunk_action(c, b), s) for c, s in zip(clips, batch.scenes)] for b in begins]
        return targets, contexts

    def action_contexts(self, batch: Batch, step: int, chunks: int) -> list[list[torch.Tensor]]:
        """Per chunk, per sample: a random action's caption ⊕ the sample's scene text (Self-Forcing rollouts)."""
        rng = np.random.default_rng([self.seed, step, self.rank, 1])
        actions = rng.integers(0, len(self.cache.action_embeddings), (chunks, len(batch.scenes)))
        return [[self.cache.compose(int(a), s) for a, s in zip(row, batch.scenes)] for row in actions]

    def chunk_action(self, clip: CachedClip, start: int) -> int:
        """The most common action over the chunk's latent frames (-1 if unlabelled)."""
        labels = clip.actions[start : start + self.chunk]
        return Counter(labels).most_common(1)[0][0]
