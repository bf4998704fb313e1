"""Helpers shared by the tests: random weights, and diffusers' WanTransformer3DModel as the reference twin."""

import torch

from yume.models.weights import rename_key


def randomize(model, std=0.1, seed=0, skip=None):
    """Gaussian weights of `std` everywhere (but in parameters whose name contains `skip`); the model is returned."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if skip is None or skip not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


class Float64Sinusoid(torch.nn.Module):
    """Wan computes the timestep sinusoid in float64, diffusers in float32: give diffusers Wan's to compare the rest."""

    def __init__(self, half):
        super().__init__()
        self.half = half

    def forward(self, t):
        freqs = torch.pow(10000.0, -torch.arange(self.half, dtype=torch.float64) / self.half)
        args = t.double()[:, None] * freqs
        return torch.cat([args.cos(), args.sin()], dim=1).float()


def diffusers_twin(model):
    """diffusers' WanTransformer3DModel with the same weights (history embeddings have no diffusers twin)."""
    from diffusers import WanTransformer3DModel

    cfg = model.config
    image = {"image_dim": cfg.image_dim, "added_kv_proj_dim": cfg.dim} if cfg.image_dim else {}
    ref = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads", eps=cfg.eps, **image,
    ).eval()  # fmt: skip
    state = {rename_key(k, "to_diffusers"): v for k, v in model.state_dict().items() if not k.startswith("patch_embedding_")}
    ref.load_state_dict(state, strict=True)
    ref.condition_embedder.timesteps_proj = Float64Sinusoid(cfg.freq_dim // 2)
    return ref
