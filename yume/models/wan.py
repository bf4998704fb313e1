"""The Yume DiT: Wan2.2-TI2V-5B with clean history tokens packed before the noisy chunk (original Wan key names)."""

from __future__ import annotations

import math

import torch
from torch import nn

from yume.config import HISTORY_EMBEDDINGS, ModelConfig, model_config
from yume.models import history as hist
from yume.models import tscm
from yume.models.layers import (
    LayerNorm,
    RMSNorm,
    apply_rope,
    attention,
    grid_positions,
    init_linear,
    rope_angles,
    timestep_embedding,
)


class Modulation:
    """Per-token adaLN parameters, stored once per distinct σ and gathered per token.

    A sequence holds few distinct timesteps (0 for history, σ for the chunk), so the [B, L, 6, dim] tensor that Wan
    materialises is never built: `table` is [U, n, dim] and `index` [B, L] says which row each token uses.
    """

    def __init__(self, table: torch.Tensor, index: torch.Tensor):
        self.table, self.index = table, index

    def chunks(self, base: torch.Tensor) -> list[torch.Tensor]:
        rows = base.float() + self.table  # [U, n, dim]
        # One embedding lookup, not `rows[:, i][index]` per chunk: the backward of advanced indexing sums the
        # thousands of tokens that share a row one after another on CUDA (4.7 ms a call, 85% of the GPU time of a
        # sim-small flow step on an H200); embedding's backward is built for repeated indices. Same values.
        n = rows.shape[1]
        return list(nn.functional.embedding(self.index, rows.flatten(1)).chunk(n, dim=-1))  # n × [B, L, dim]


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q = RMSNorm(cfg.dim, cfg.eps) if cfg.qk_norm else nn.Identity()
        self.norm_k = RMSNorm(cfg.dim, cfg.eps) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        heads = (self.num_heads, -1)
        q = apply_rope(self.norm_q(self.q(x)).unflatten(-1, heads), *rope)
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, heads), *rope)
        v = self.v(x).unflatten(-1, heads)
        return self.o(attention(q, k, v))


class CrossAttention(SelfAttention):
    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        heads = (self.num_heads, -1)
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        k = self.norm_k(self.k(context)).unflatten(-1, heads)
        v = self.v(context).unflatten(-1, heads)
        return self.o(attention(q, k, v))


class Block(nn.Module):
    """Wan attention block: adaLN self-attention, affine-normed cross-attention, adaLN GELU(tanh) FFN.

    The residual stream stays float32 as in Wan's reference; matmuls run in the weights' dtype.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        self.norm3 = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(cfg)
        self.norm2 = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)
        # TSCM's linear-attention memory (paper Fig. 3a); absent (no keys) when memory_dim = 0.
        self.memory = tscm.MemoryBranch(cfg.dim, cfg.memory_dim, cfg.eps) if cfg.memory_dim else None

    def forward(
        self, x: torch.Tensor, mod: Modulation, context: torch.Tensor, rope, memory: tscm.Memory | None = None
    ) -> torch.Tensor:
        """memory: TSCM's channel-stream tokens, read by the chunk (the last `memory.num_chunk_tokens` of x)."""
        dtype = self.ffn[0].weight.dtype
        shift, scale, gate, c_shift, c_scale, c_gate = mod.chunks(self.modulation[0])
        y = self.self_attn((self.norm1(x) * (1 + scale) + shift).to(dtype), rope)
        x = x + y.float() * gate
        x = x + self.cross_attn(self.norm3(x).to(dtype), context).float()
        if memory is not None and self.memory is not None:
            n = memory.num_chunk_tokens
            x = torch.cat([x[:, :-n], x[:, -n:] + self.memory(x[:, -n:], memory.tokens)], dim=1)
        y = self.ffn((self.norm2(x) * (1 + c_scale) + c_shift).to(dtype))
        return x + y.float() * c_gate


class Head(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, mod: Modulation) -> torch.Tensor:
        shift, scale = mod.chunks(self.modulation[0])
        return self.head((self.norm(x) * (1 + scale) + shift).to(self.head.weight.dtype))


class YumeTransformer(nn.Module):
    """Wan2.2 DiT that predicts the flow velocity (noise − data) of a chunk, given clean history latents.

    Without history (or with `history_embeddings=False`) it is exactly Wan2.2-TI2V-5B.
    """

    def __init__(self, config: ModelConfig | str = "yume-5b"):
        super().__init__()
        cfg = self.config = model_config(config)
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim * 6))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        if cfg.history_embeddings:
            for name, k in HISTORY_EMBEDDINGS.items():
                out = cfg.in_dim if name == hist.PRE4 else cfg.dim
                setattr(self, name, nn.Conv3d(cfg.in_dim, out, kernel_size=(1, k, k), stride=(1, k, k)))
        if cfg.memory_dim:
            self.memory_embedding = tscm.make_memory_embedding(cfg.in_dim, cfg.memory_dim)
        self.history_policy = "release" if cfg.history_embeddings else "full"

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ModelConfig | str | dict, *, dtype=None, device=None, seed: int | None = None):
        """A randomly initialised model (Wan's init); `device="meta"` builds the structure without memory."""
        cfg = model_config(config)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.device(device or "cpu"):
            model = cls(cfg)
        if str(device) != "meta":
            model.init_weights()
        return model.to(dtype=dtype) if dtype is not None else model

    @classmethod
    def from_pretrained(cls, path, *, dtype=torch.bfloat16, device="cpu", config=None):
        """Load a Yume or Wan2.2 DiT from a file or directory, original or diffusers layout (see yume.models.weights)."""
        from yume.models.weights import load_transformer

        return load_transformer(path, dtype=dtype, device=device, config=config)

    def save_pretrained(self, directory, *, layout: str = "original", max_shard_bytes: int | None = None):
        from yume.models.weights import save_transformer

        save_transformer(self, directory, layout=layout, max_shard_bytes=max_shard_bytes)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Wan's initialisation, plus Yume's history embeddings interpolated from the base patchify kernel."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_linear(m)
        init_linear(self.patch_embedding)
        for m in (*self.text_embedding, *self.time_embedding):
            if isinstance(m, nn.Linear):
                init_linear(m, std=0.02)
        # Zero output layer: an untrained model predicts zero velocity rather than noise.
        nn.init.zeros_(self.head.head.weight)
        if self.config.history_embeddings:
            self.init_history_embeddings()
        if self.config.memory_dim:
            self.init_memory()

    @torch.no_grad()
    def init_memory(self) -> None:
        """TSCM's memory: Wan's init for its linears and the (8,4,4) patchify; FC up zero (see MemoryBranch)."""
        init_linear(self.memory_embedding)
        for block in self.blocks:
            block.memory.init_weights()

    @torch.no_grad()
    def init_history_embeddings(self) -> None:
        """Coarse patch embeddings start as the base kernel stretched over the larger patch (release recipe)."""
        for name, k in HISTORY_EMBEDDINGS.items():
            conv = getattr(self, name)
            if name == hist.PRE4:
                # 48 -> 48: the pre-compression starts as a plain 4×4 mean of each channel.
                conv.weight.zero_()
                conv.bias.zero_()
                for c in range(conv.weight.shape[0]):
                    conv.weight[c, c] = 1.0 / (k * k)
            else:
                conv.weight.copy_(hist.interpolate_patch_kernel(self.patch_embedding.weight, k))
                conv.bias.copy_(self.patch_embedding.bias)

    # --- inputs -------------------------------------------------------------------------------------------------
    def history_convs(self, policy=None) -> dict:
        """Patchify convs by name; for TSCM, the coarse kernels the model lacks are interpolated from the base one."""
        names = [hist.BASE, *HISTORY_EMBEDDINGS] if self.config.history_embeddings else [hist.BASE]
        convs = {n: getattr(self, n) for n in names}
        if policy == "tscm" or isinstance(policy, tscm.TSCMPolicy):
            convs = tscm.with_interpolated_kernels(convs)
        return convs

    def embed_context(self, context, batch: int) -> torch.Tensor:
        """Text embeddings ([B, L, text_dim] or a list of [L_i, text_dim]) -> [B, text_len, dim], zero-padded as Wan."""
        cfg = self.config
        items = list(context) if isinstance(context, (list, tuple)) else list(context.unbind(0))
        if len(items) != batch:
            raise ValueError(f"got {len(items)} text embeddings for a batch of {batch}")
        for i, u in enumerate(items):
            if u.ndim != 2 or u.shape[1] != cfg.text_dim:
                raise ValueError(f"text embedding {i} has shape {tuple(u.shape)}, expected [L, {cfg.text_dim}]")
            if u.shape[0] > cfg.text_len:
                raise ValueError(f"text embedding {i} has {u.shape[0]} tokens, more than text_len={cfg.text_len}")
        w = self.text_embedding[0].weight
        padded = torch.stack([torch.cat([u, u.new_zeros(cfg.text_len - u.shape[0], u.shape[1])]) for u in items])
        return self.text_embedding(padded.to(device=w.device, dtype=w.dtype))

    def _chunk_sigma(self, sigma: torch.Tensor, batch: int, grid: tuple[int, int, int]) -> torch.Tensor:
        """σ as [B, L_chunk] from [B] (or scalar), per-frame [B, F] or per-token [B, L_chunk]."""
        f, h, w = grid
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        if sigma.ndim == 0:
            sigma = sigma.expand(batch)
        if sigma.ndim == 1:
            sigma = sigma[:, None].expand(batch, f * h * w)
        elif sigma.ndim == 2 and sigma.shape[1] == f and f * h * w != f:
            sigma = sigma.repeat_interleave(h * w, dim=1)
        if sigma.shape != (batch, f * h * w):
            raise ValueError(
                f"timesteps of shape {tuple(sigma.shape)} do not fit a batch of {batch} chunks of {f}×{h}×{w} tokens: "
                f"give [B], [B, {f}] (per latent frame) or [B, {f * h * w}] (per token)"
            )
        return sigma

    # --- forward ------------------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        context,
        history: torch.Tensor | None = None,
        *,
        policy: str | tscm.TSCMPolicy | None = None,
    ) -> torch.Tensor:
        """Velocity for the chunk.

        x:       noisy chunk latents [B, C, F, H, W]
        sigma:   noise level in [0, 1] (t = 1000·σ): [B], [B, F] or per token [B, F·H·W/4]
        context: text embeddings [B, L, text_dim] or a list of [L_i, text_dim]
        history: clean history latents [B, C, F_h, H, W] (timestep 0), packed with `policy` ("release", "full",
                 "tscm" or a `TSCMPolicy`); with `memory_dim` > 0 the chunk also reads TSCM's channel-stream memory
        """
        cfg = self.config
        b, f, h, w = self.check_latents(x, cfg.in_dim)
        p = cfg.patch_size[1]
        device = x.device
        grid = (f, h // p, w // p)
        chunk = self.patch_embedding(x.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        sigma_tokens = self._chunk_sigma(sigma, b, grid).to(device)
        memory = None
        if history is not None and history.shape[2] > 0:
            if history.shape[0] != b or history.shape[1] != cfg.in_dim or history.shape[3:] != x.shape[3:]:
                raise ValueError(f"history latents {tuple(history.shape)} do not match the chunk {tuple(x.shape)}")
            if cfg.memory_dim:
                memory = tscm.Memory(tscm.memory_tokens(history, self.memory_embedding), chunk.shape[1])
            hist_tokens, hist_pos, offset = self.pack_history(history, policy, h, w)
            tokens = torch.cat([hist_tokens, chunk], dim=1)
            positions = torch.cat([hist_pos, grid_positions(*grid, offset, device=device)])
            sigma_tokens = torch.cat([sigma_tokens.new_zeros(b, hist_pos.shape[0]), sigma_tokens], dim=1)
        else:
            tokens = chunk
            positions = grid_positions(*grid, device=device)
        out = self.run_blocks(tokens, sigma_tokens, positions, self.embed_context(context, b), chunk.shape[1], memory)
        return self.unpatchify(out, grid)

    def check_latents(self, x: torch.Tensor, channels: int) -> tuple[int, int, int, int]:
        """(B, F, H, W) of chunk latents [B, channels, F, H, W], or a ValueError saying what is wrong."""
        if x.ndim != 5 or x.shape[1] != channels:
            raise ValueError(f"latents must be [B, {channels}, F, H, W], got {tuple(x.shape)}")
        b, _, f, h, w = x.shape
        p = self.config.patch_size[1]
        if h % p or w % p:
            raise ValueError(f"latent height/width {h}×{w} must be multiples of the patch size {p}")
        return b, f, h, w

    def pack_history(self, history: torch.Tensor, policy, height: int, width: int):
        """Tokens [B, L_h, dim] and RoPE positions [L_h, 3] of history latents under a policy, and the frame index
        where the chunk starts."""
        policy = policy or self.history_policy
        plan = hist.history_plan(policy, history.shape[2])
        convs = self.history_convs(policy)
        missing = {n for s in plan for n in s.embeds} - convs.keys()
        if missing:
            raise ValueError(
                f"history policy {policy!r} needs {sorted(missing)}, which this model lacks (a plain Wan checkpoint "
                "without Yume's history embeddings?): use policy='full', or load a Yume checkpoint"
            )
        positions, offset = hist.plan_positions(plan, convs, height, width, device=history.device)
        return hist.embed_plan(history, plan, convs), positions, offset

    def run_blocks(self, tokens, sigma_tokens, positions, context, n_out: int, memory=None) -> torch.Tensor:
        """The blocks and head over a token sequence [B, L, dim] with per-token σ [B, L]; returns the head's output
        [B, n_out, C·p·p] for the last `n_out` tokens."""
        cfg = self.config
        # Time embedding once per distinct σ, gathered per token (see Modulation).
        levels, index = torch.unique(sigma_tokens, return_inverse=True)
        t_dtype = self.time_embedding[0].weight.dtype
        e = self.time_embedding(timestep_embedding(levels, cfg.freq_dim).to(t_dtype)).float()  # [U, dim]
        e0 = self.time_projection(e.to(t_dtype)).float().unflatten(1, (6, cfg.dim))  # [U, 6, dim]
        angles = rope_angles(positions, cfg.head_dim, cfg.rope_theta)
        rope = (angles.cos(), angles.sin())
        xs = tokens.float()
        block_mod = Modulation(e0, index)
        for block in self.blocks:
            xs = block(xs, block_mod, context, rope, memory)
        return self.head(xs[:, -n_out:], Modulation(e[:, None], index[:, -n_out:]))

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, f·h·w, pt·ph·pw·C] -> [B, C, f·pt, h·ph, w·pw]."""
        pt, ph, pw = self.config.patch_size
        f, h, w = grid
        x = tokens.unflatten(1, (f, h, w)).unflatten(-1, (pt, ph, pw, -1))  # [B, f, h, w, pt, ph, pw, C]
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], x.shape[1], f * pt, h * ph, w * pw)

    def num_history_tokens(self, num_frames: int, height: int, width: int, policy=None) -> int:
        """Self-attention history tokens for `num_frames` latent frames of height × width latent pixels."""
        policy = policy or self.history_policy
        plan = hist.history_plan(policy, num_frames)
        return hist.count_tokens(plan, self.history_convs(policy), height, width)
