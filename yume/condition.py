"""Yume-I2V conditioning: the pixel history encoded as a stream, and the 20-channel mask + video condition.

The release rebuilds the condition for every chunk as `encode(history pixels + 32 black frames)` over the whole
history (`wan/image2video.py`, `generate_next`). The Wan VAE encoder is causal in steps of 4 frames, so the same
latents come from one persistent encoder cache: the history is encoded once, chunk by chunk, and the black frames
are encoded from a copy of the cache (`StreamEncoder.peek`).
"""

from __future__ import annotations

import torch

from yume.vae import WanVAE

MASK_CHANNELS = 4


class StreamEncoder:
    """Encodes a pixel stream (1 + sk frames first, then multiples of s, the VAE's temporal stride: 4 for Wan) into
    normalised latents, carrying the cache."""

    def __init__(self, vae: WanVAE):
        self.vae = vae
        self._n_convs = vae.n_encoder_convs
        self.reset()

    def reset(self) -> None:
        self._cache: list = [None] * self._n_convs
        self.frames_encoded = 0

    def _check(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W] in [-1, 1], got shape {tuple(video.shape)}")
        t = video.shape[2] - (1 if self.frames_encoded == 0 else 0)
        if t < 0 or t % self.vae.temporal_stride:
            s = self.vae.temporal_stride
            first = f"1 + {s}k frames to start the stream" if self.frames_encoded == 0 else f"a multiple of {s} frames"
            raise ValueError(f"{video.shape[2]} frames given; the causal encoder takes {first}")

    @torch.no_grad()
    def _run(self, video: torch.Tensor, cache: list, first: bool) -> torch.Tensor:
        mu = self.vae.encode_causal(video.to(self.vae.device, self.vae.dtype), cache, first)
        mean, std = self.vae.latent_stats()
        return (mu - mean) / std

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """The next frames [B, 3, T, H, W] -> latents [B, z, T/stride (+1 at the start), h, w]; the cache advances."""
        self._check(video)
        latents = self._run(video, self._cache, self.frames_encoded == 0)
        self.frames_encoded += video.shape[2]
        return latents

    def peek(self, video: torch.Tensor) -> torch.Tensor:
        """Latents the next `encode(video)` would give, leaving the stream where it is."""
        self._check(video)
        cache = [c.clone() if isinstance(c, torch.Tensor) else c for c in self._cache]
        return self._run(video, cache, self.frames_encoded == 0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stream as plain tensors (safetensors-ready): the frame count and the cached conv inputs."""
        state = {"frames_encoded": torch.tensor(self.frames_encoded)}
        # The encoder's cache holds only tensors or None (no "Rep" marker: that is the decoder's upsampler).
        state.update({str(i): c.contiguous() for i, c in enumerate(self._cache) if isinstance(c, torch.Tensor)})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Resume a stream saved by `state_dict()` (with the same VAE)."""
        if "frames_encoded" not in state:
            raise ValueError(f"not a stream-encoder state: no 'frames_encoded' among {sorted(state)[:5]}")
        slots = sorted(int(k) for k in state if k != "frames_encoded")
        if slots and slots[-1] >= self._n_convs:
            raise ValueError(f"stream state caches conv {slots[-1]}; this VAE's encoder has {self._n_convs} causal convs")
        self.reset()
        for i in slots:
            self._cache[i] = state[str(i)].to(self.vae.device, self.vae.dtype)
        self.frames_encoded = int(state["frames_encoded"])


def i2v_condition(known: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
    """Mask + conditioning latents [B, 4 + z, F_h + F, h, w] from the encoded history `known` [B, z, F_h, h, w] and
    the encoded black continuation `future` [B, z, F, h, w]; the mask is 1 on the history's latents, 0 on the chunk's."""
    b, _, f_h, h, w = known.shape
    mask = torch.cat([known.new_ones(b, MASK_CHANNELS, f_h, h, w), known.new_zeros(b, MASK_CHANNELS, future.shape[2], h, w)], 2)
    return torch.cat([mask, torch.cat([known, future.to(known)], dim=2)], dim=1)
