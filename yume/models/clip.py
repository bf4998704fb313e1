"""The CLIP ViT-H/14 image encoder of Wan2.1-I2V (transformers' CLIPVisionModel): penultimate-layer image tokens.

Weights come from Wan's `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` (its `visual.*` part, renamed
here) or from a diffusers `image_encoder/` folder. Preprocessing is Wan's (`wan/modules/clip.py`, `CLIPModel.visual`):
the frame is resized to 224×224 (bicubic, whole frame, no crop) and normalised with OpenAI CLIP's mean and std.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F

from yume.models.weights import mismatch_lines

WAN_CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# transformers CLIPVisionConfig kwargs by preset name. ViT-H/14: 32 layers of width 1280, 16 heads, exact GELU.
CLIP_CONFIGS = {
    "vit-h-14": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                     image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1024),
    # CPU-sized twin: 28×28 pixels in 2×2 patches of 14 -> 5 tokens of width 48.
    "tiny": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, image_size=28,
                 patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=32),
}  # fmt: skip

# Wan/open-clip `visual.*` name -> transformers CLIPVisionModel name; `to_qkv` is split into q, k, v separately.
_WAN_TO_HF = [
    (r"^visual\.patch_embedding\.", "embeddings.patch_embedding."),
    (r"^visual\.pre_norm\.", "pre_layrnorm."),
    (r"^visual\.post_norm\.", "post_layernorm."),
    (r"^visual\.transformer\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^visual\.transformer\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^visual\.transformer\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^visual\.transformer\.(\d+)\.mlp\.0\.", r"encoder.layers.\1.mlp.fc1."),
    (r"^visual\.transformer\.(\d+)\.mlp\.2\.", r"encoder.layers.\1.mlp.fc2."),
]


def wan_clip_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan's CLIP state dict (text tower, `visual.head` and `log_scale` dropped) -> CLIPVisionModel names."""
    out = {}
    for key, value in state.items():
        if not key.startswith("visual.") or key == "visual.head":
            continue
        if key == "visual.cls_embedding":
            out["embeddings.class_embedding"] = value.reshape(-1)  # [1, 1, D] -> [D]
        elif key == "visual.pos_embedding":
            out["embeddings.position_embedding.weight"] = value[0]  # [1, 257, D] -> [257, D]
        elif m := re.match(r"^visual\.transformer\.(\d+)\.attn\.to_qkv\.(weight|bias)$", key):
            for name, part in zip("qkv", value.chunk(3, dim=0)):  # Wan views the output as (3, heads, head_dim)
                out[f"encoder.layers.{m[1]}.self_attn.{name}_proj.{m[2]}"] = part
        else:
            for pattern, repl in _WAN_TO_HF:
                new, n = re.subn(pattern, repl, key)
                if n:
                    out[new] = value
                    break
            else:
                raise KeyError(f"no CLIPVisionModel name for the Wan CLIP key {key!r}")
    return out


def _preset_of(state: dict[str, torch.Tensor], path) -> str:
    """The preset whose width, depth and patch size match the weights (attention heads cannot be read off them)."""
    width = state["embeddings.class_embedding"].shape[0]
    layers = len({k.split(".")[2] for k in state if k.startswith("encoder.layers.")})
    patch = state["embeddings.patch_embedding.weight"].shape[-1]
    for name, c in CLIP_CONFIGS.items():
        if (c["hidden_size"], c["num_hidden_layers"], c["patch_size"]) == (width, layers, patch):
            return name
    raise ValueError(f"{path}: a CLIP vision tower of width {width}, {layers} layers, patch {patch} is not "
                     f"Wan2.1's ViT-H/14 (1280, 32, 14); is it {WAN_CLIP_FILE}?")  # fmt: skip


class CLIPImageEncoder:
    """Image(s) in [-1, 1] -> Wan2.1-I2V's image tokens: the hidden states after the second-to-last layer."""

    def __init__(self, model):
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_config(cls, name: str = "vit-h-14", *, seed: int = 0, dtype=torch.float32, device="cpu") -> CLIPImageEncoder:
        from transformers import CLIPVisionConfig, CLIPVisionModel

        try:
            config = CLIPVisionConfig(**CLIP_CONFIGS[name])
        except KeyError:
            raise ValueError(f"unknown CLIP preset {name!r}; choose one of {', '.join(CLIP_CONFIGS)}") from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPVisionModel(config)
        return cls(model.to(device=device, dtype=dtype))

    @classmethod
    def from_pretrained(cls, path, *, dtype=torch.float32, device="cpu") -> CLIPImageEncoder:
        """Wan's CLIP .pth, a diffusers `image_encoder/` folder, or a model folder holding either."""
        from transformers import CLIPVisionConfig, CLIPVisionModel

        path = Path(path)
        if path.is_dir():
            for candidate in (path / WAN_CLIP_FILE, path / "image_encoder"):
                if candidate.exists():
                    path = candidate
                    break
        if path.is_dir() and (path / "config.json").is_file():
            return cls(CLIPVisionModel.from_pretrained(path, torch_dtype=dtype).to(device))
        if not path.is_file():
            raise FileNotFoundError(
                f"no CLIP image encoder at {path}: expected {WAN_CLIP_FILE} (from Wan-AI/Wan2.1-I2V-14B-720P or "
                "the Yume-I2V-540P folder) or a diffusers image_encoder/ folder"
            )
        try:
            raw = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: not a readable CLIP checkpoint ({e}); download it again") from None
        state = wan_clip_to_hf(raw)
        config = CLIPVisionConfig(**CLIP_CONFIGS[_preset_of(state, path)])
        with torch.device("meta"):
            model = CLIPVisionModel(config)
        expected = model.state_dict()
        # transformers may nest the tower under `vision_model.`; follow whatever this version names it.
        prefix = next(k for k in expected if k.endswith("embeddings.class_embedding"))[: -len("embeddings.class_embedding")]
        state = {prefix + k: v.to(device=device, dtype=dtype) for k, v in state.items()}
        problems = mismatch_lines({k: v.shape for k, v in state.items()}, {k: v.shape for k, v in expected.items()})
        if problems:
            raise ValueError("\n".join([f"{path} does not fit the CLIP vision tower; is it {WAN_CLIP_FILE}?", *problems]))
        model.load_state_dict(state, strict=True, assign=True)
        # Non-persistent buffers are not in the file: rebuild them off the meta device.
        for name, buffer in list(model.named_buffers()):
            if buffer.is_meta and name.endswith("position_ids"):
                owner = model.get_submodule(name.rpartition(".")[0])
                owner.register_buffer("position_ids", torch.arange(buffer.shape[-1], device=device)[None], persistent=False)
        return cls(model)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, 3, S, S] normalised for CLIP (Wan's bicubic resize of the whole frame)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] in [-1, 1], got shape {tuple(images.shape)}")
        size = (self.image_size, self.image_size)
        x = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False) * 0.5 + 0.5
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> penultimate hidden states [B, 1 + (S/14)², width] (257 × 1280 for ViT-H), float32."""
        pixels = self.preprocess(images).to(device=self.device, dtype=self.dtype)
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[-2].float()
