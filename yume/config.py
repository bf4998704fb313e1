"""Dataclass configs for the Yume DiT and the named presets table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The five Yume history patch embeddings: name -> spatial kernel (= stride) in latent pixels.
# `patch_embedding_2x_f` maps 48 -> 48 channels (a pre-compression before `_16x`); the others map to `dim`.
HISTORY_EMBEDDINGS = {
    "patch_embedding_2x": 4,
    "patch_embedding_4x": 8,
    "patch_embedding_8x": 16,
    "patch_embedding_16x": 32,
    "patch_embedding_2x_f": 4,
}


@dataclass(frozen=True)
class ModelConfig:
    """The Wan2.2 DiT hyper-parameters (original Wan names) plus Yume's history embeddings."""

    dim: int = 3072
    ffn_dim: int = 14336
    num_layers: int = 30
    num_heads: int = 24
    in_dim: int = 48
    out_dim: int = 48
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    history_embeddings: bool = True  # the five `patch_embedding_{2x,4x,8x,16x,2x_f}` of Yume
    # TSCM's linear-attention memory branch (paper Fig. 3a); 0 = off (the released checkpoint has none).
    memory_dim: int = 0
    model_type: str = "ti2v"
    # Width of the CLIP image features read by the I2V cross-attention (Wan2.1-I2V: 1280); 0 = no image branch.
    image_dim: int = 0

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        head_dim = self.dim // self.num_heads
        if head_dim % 2 or head_dim < 6:
            raise ValueError(f"head dim {head_dim} (dim/num_heads) must be even and >= 6 for the 3-D RoPE split")
        if len(self.patch_size) != 3 or self.patch_size[0] != 1 or self.patch_size[1] != self.patch_size[2]:
            raise ValueError(f"patch_size must be (1, p, p), got {self.patch_size}")
        if self.memory_dim < 0:
            raise ValueError(f"memory_dim must be >= 0, got {self.memory_dim}")
        if self.image_dim < 0:
            raise ValueError(f"image_dim must be >= 0, got {self.image_dim}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Build from our own config dict or from the `config.json` the Wan/Yume release writes.

        The release's config.json (diffusers ConfigMixin for `WanModel`) leaves out patch_size, qk_norm,
        cross_attn_norm, text_dim and window_size; they take the Wan defaults.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        if "window_size" in d and tuple(d["window_size"]) != (-1, -1):
            raise ValueError(f"window_size={d['window_size']}: local attention windows are not supported (Wan uses (-1, -1))")
        return cls(**kwargs)


MODEL_PRESETS: dict[str, ModelConfig] = {
    # The published Yume-5B-720P DiT: Wan2.2-TI2V-5B + five history patch embeddings (5,200,377,072 params).
    "yume-5b": ModelConfig(),
    # The base model without history embeddings (4,999,787,712 params).
    "wan2.2-ti2v-5b": ModelConfig(history_embeddings=False),
    # CPU-sized twins for tests and the built-in random model; same structure, tiny widths.
    "tiny": ModelConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=4, text_dim=32, freq_dim=32, text_len=32),
    "tiny-wan": ModelConfig(
        dim=64, ffn_dim=128, num_layers=2, num_heads=4, text_dim=32, freq_dim=32, text_len=32, history_embeddings=False
    ),
    "small": ModelConfig(dim=256, ffn_dim=768, num_layers=4, num_heads=4, text_dim=256, freq_dim=64, text_len=64),
    # The built-in street world's DiT (docs/sim-model.md): 32-channel latents of the `sim-small` VAE, the tiny
    # text encoder's 64-d embeddings, no history patch embeddings (TSCM interpolates its coarse kernels).
    "sim-small": ModelConfig(dim=256, ffn_dim=1024, num_layers=6, num_heads=4, in_dim=32, out_dim=32, text_dim=64,
                             freq_dim=64, text_len=128, history_embeddings=False),
    # The published Yume-I2V-540P DiT (Yume 1.0): Wan2.1-I2V-14B (36 input channels = 16 noisy latents + 4 mask
    # + 16 conditioning latents, CLIP image branch) + five history embeddings (see yume.models.i2v).
    "yume-i2v-540p-14b": ModelConfig(
        dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_dim=36, out_dim=16, model_type="i2v", image_dim=1280
    ),
    # The base model without history embeddings.
    "wan2.1-i2v-14b": ModelConfig(
        dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_dim=36, out_dim=16, model_type="i2v", image_dim=1280,
        history_embeddings=False,
    ),
    # CPU-sized twin of the 14B structure.
    "tiny-i2v": ModelConfig(
        dim=64, ffn_dim=128, num_layers=2, num_heads=4, in_dim=36, out_dim=16, text_dim=32, freq_dim=32, text_len=32,
        model_type="i2v", image_dim=48,
    ),
}


def model_config(name_or_config: str | ModelConfig | dict) -> ModelConfig:
    """Resolve a preset name, a dict or a config into a ModelConfig."""
    if isinstance(name_or_config, ModelConfig):
        return name_or_config
    if isinstance(name_or_config, dict):
        return ModelConfig.from_dict(name_or_config)
    try:
        return MODEL_PRESETS[name_or_config]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name_or_config!r}; choose one of {', '.join(MODEL_PRESETS)}"
        ) from None

