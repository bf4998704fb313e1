"""The Yume-I2V-540P DiT (Yume 1.0): Wan2.1-I2V-14B with a CLIP image branch, 36-channel input and history packing.

What differs from the 5B model (facts of the authors' release, `wan/modules/model.py` and `fastvideo/sample/sample.py`):
- every latent frame enters as 36 channels: 16 latents (noisy chunk or re-noised history) + 4 mask channels
  (1 = a known frame) + 16 channels of the VAE-encoded conditioning video (history pixels, then zeros);
- the cross-attention also reads 257 CLIP tokens of the conditioning image through `k_img` / `v_img`;
- one timestep per sample for all tokens (history included): the sampler re-noises the history to the current σ;
- the newest `WINDOW` = 9 latents (the release's `latent_frame_zero`) are embedded at the base 2×2 patch and go
  through the head; everything older is packed with the release table (yume.models.history) and 36-channel convs.
"""

from __future__ import annotations

import torch
from torch import nn

from yume.config import ModelConfig, model_config
from yume.models import history as hist
from yume.models.layers import RMSNorm, attention, grid_positions
from yume.models.wan import CrossAttention, YumeTransformer

# Latents at the base patch at the end of the sequence; only these go through the head.
WINDOW = 9
MASK_CHANNELS = 4  # one mask value per pixel frame of a latent (4 frames per latent)


class ImageCrossAttention(CrossAttention):
    """Wan2.1-I2V cross-attention: queries attend to the text and, separately, to the CLIP image tokens; summed."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.text_len = cfg.text_len
        self.k_img = nn.Linear(cfg.dim, cfg.dim)
        self.v_img = nn.Linear(cfg.dim, cfg.dim)
        self.norm_k_img = RMSNorm(cfg.dim, cfg.eps) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """context: [B, L_img + text_len, dim], image tokens first (Wan's order)."""
        heads = (self.num_heads, -1)
        image, text = context[:, : -self.text_len], context[:, -self.text_len :]
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        k = self.norm_k(self.k(text)).unflatten(-1, heads)
        v = self.v(text).unflatten(-1, heads)
        k_img = self.norm_k_img(self.k_img(image)).unflatten(-1, heads)
        v_img = self.v_img(image).unflatten(-1, heads)
        return self.o(attention(q, k, v) + attention(q, k_img, v_img))


class ImageEmbedding(nn.Module):
    """CLIP features -> DiT width: LayerNorm, Linear, GELU, Linear, LayerNorm (Wan's `MLPProj`, key `img_emb.proj`)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, dim),
                                  nn.LayerNorm(dim))  # fmt: skip

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        norm1, fc1, act, fc2, norm2 = self.proj
        dtype = fc1.weight.dtype
        # The layer norms run in float32, as diffusers' FP32LayerNorm does.
        x = nn.functional.layer_norm(features.float(), norm1.normalized_shape, norm1.weight.float(), norm1.bias.float(), norm1.eps)
        x = fc2(act(fc1(x.to(dtype))))
        return nn.functional.layer_norm(x.float(), norm2.normalized_shape, norm2.weight.float(), norm2.bias.float(), norm2.eps)


class YumeI2VTransformer(YumeTransformer):
    """Wan2.1-I2V DiT that predicts the velocity of a chunk from re-noised history, a mask+video condition and CLIP.

    Without history it is exactly Wan2.1-I2V-14B (diffusers' WanTransformer3DModel with `image_dim` set).
    """

    def __init__(self, config: ModelConfig | str = "yume-i2v-540p-14b"):
        cfg = model_config(config)
        if not cfg.image_dim:
            raise ValueError(f"{cfg.model_type!r} config has image_dim=0: an I2V model needs the CLIP width (1280)")
        if cfg.in_dim != 2 * cfg.out_dim + MASK_CHANNELS:
            raise ValueError(
                f"in_dim={cfg.in_dim}, out_dim={cfg.out_dim}: the I2V input is latents + {MASK_CHANNELS} mask "
                f"channels + conditioning latents, so in_dim must be 2·out_dim + {MASK_CHANNELS} (36 for Wan2.1)"
            )
        super().__init__(cfg)
        for block in self.blocks:
            block.cross_attn = ImageCrossAttention(cfg)
        self.img_emb = ImageEmbedding(cfg.image_dim, cfg.dim)

    @property
    def cond_channels(self) -> int:
        """Channels of the condition: 4 mask + 16 conditioning latents."""
        return self.config.in_dim - self.config.out_dim

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        context,
        history: torch.Tensor | None = None,
        *,
        cond: torch.Tensor,
        image: torch.Tensor,
        policy: str | None = None,
    ) -> torch.Tensor:
        """Velocity for the chunk.

        x:       noisy chunk latents [B, 16, F, H, W]
        sigma:   one noise level per sample, [B] or a scalar; history tokens share it
        context: text embeddings [B, L, text_dim] or a list of [L_i, text_dim]
        history: history latents as the model should see them [B, 16, F_h, H, W] (the release re-noises them to σ)
        cond:    mask + conditioning latents [B, 20, F_h + F, H, W] for history and chunk (see yume.condition)
        image:   CLIP penultimate features [B, 257, image_dim]
        """
        cfg = self.config
        b, f, h, w = self.check_latents(x, cfg.out_dim)
        p = cfg.patch_size[1]
        if history is not None and history.shape[2] > 0:
            if history.shape[:2] != x.shape[:2] or history.shape[3:] != x.shape[3:]:
                raise ValueError(f"history latents {tuple(history.shape)} do not match the chunk {tuple(x.shape)}")
            latents = torch.cat([history.to(x.dtype), x], dim=2)
        else:
            latents = x
        total = latents.shape[2]
        if tuple(cond.shape) != (b, self.cond_channels, total, h, w):
            raise ValueError(
                f"condition of shape {tuple(cond.shape)} does not fit {total} latent frames of {h}×{w}: expected "
                f"{(b, self.cond_channels, total, h, w)} (mask + conditioning latents for history and chunk)"
            )
        if image.ndim != 3 or image.shape[0] != b or image.shape[2] != cfg.image_dim:
            raise ValueError(f"image features must be [{b}, L, {cfg.image_dim}], got {tuple(image.shape)}")
        device = x.device
        full = torch.cat([latents, cond.to(device=device, dtype=latents.dtype)], dim=1)  # [B, 36, F_h + F, H, W]

        n_window = max(f, min(WINDOW, total))
        packed, window = full[:, :, :-n_window], full[:, :, -n_window:]
        grid = (n_window, h // p, w // p)
        tokens = self.patch_embedding(window.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        n_window_tokens = tokens.shape[1]
        if packed.shape[2]:
            if (policy or self.history_policy) not in ("release", "full"):
                raise ValueError(f"history policy {policy!r} is not available for the I2V model; use 'release' or 'full'")
            packed_tokens, hist_pos, offset = self.pack_history(packed, policy, h, w)
            tokens = torch.cat([packed_tokens, tokens], dim=1)
            positions = torch.cat([hist_pos, grid_positions(*grid, offset, device=device)])
        else:
            positions = grid_positions(*grid, device=device)

        # One σ per sample: the history is re-noised with the chunk, so all tokens share it.
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=device)
        sigma = sigma.expand(b) if sigma.ndim == 0 else sigma
        if sigma.shape != (b,):
            raise ValueError(f"timesteps of shape {tuple(sigma.shape)}: the I2V model takes one σ per sample, [{b}]")
        ctx = self.embed_context(context, b)
        ctx = torch.cat([self.img_emb(image.to(device)).to(ctx.dtype), ctx], dim=1)  # [B, 257 + text_len, dim]
        out = self.run_blocks(tokens, sigma[:, None].expand(b, tokens.shape[1]), positions, ctx, n_window_tokens)
        return self.unpatchify(out, grid)[:, :, -f:]

    def num_history_tokens(self, num_frames: int, height: int, width: int, policy=None, chunk_latents: int = 8) -> int:
        """Packed tokens before the window for `num_frames` history latents and a chunk of `chunk_latents`."""
        total = num_frames + chunk_latents
        packed = total - max(chunk_latents, min(WINDOW, total))
        if not packed:
            return 0
        plan = hist.history_plan(policy or self.history_policy, packed)
        return hist.count_tokens(plan, self.history_convs(), height, width)
