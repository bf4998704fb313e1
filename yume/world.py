"""A loaded world model: the DiT, the VAE and the text encoder together, from a directory or a built-in name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yume.config import model_config
from yume.models.text import EmbeddingCache, TextEncoder
from yume.models.wan import YumeTransformer
from yume.vae import WanVAE

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}  # fmt: skip

# Built-in models that need no download. `tiny-random` has random weights: it exercises every code path
# (and the tests) in seconds on a CPU, but its video is noise, not a world.
BUILTIN = {
    # text_len 128: the tiny tokenizer splits a caption into ~60 tokens; 32 would cut the event off.
    "tiny-random": {"dit": "tiny", "text_len": 128, "vae": "tiny", "text": "tiny", "resolution": (128, 128), "seed": 0},
}
DEFAULT_MODEL = "tiny-random"


def parse_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose bf16, fp16 or fp32") from None


def default_cache_dir() -> Path:
    """Where text embeddings persist: $YUME_CACHE, else ~/.cache/yume/text (created on first write)."""
    root = os.environ.get("YUME_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yume"
    return Path(root) / "text"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class WorldModel:
    """Everything a session needs; `text_device` may differ from `device` (T5 kept on the CPU)."""

    dit: YumeTransformer
    vae: WanVAE
    text: TextEncoder
    name: str
    default_resolution: tuple[int, int] = (704, 1280)
    cache: EmbeddingCache | None = None
    offload: bool = False
    info: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.dit.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.patch_embedding.weight.dtype

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        offload: bool = False,
        cache_dir: str | Path | None = None,
    ) -> WorldModel:
        """A built-in model by name (default `tiny-random`) or a Yume/Wan2.2 directory (original or diffusers layout).

        `offload` keeps the text encoder on the CPU and moves the DiT off the GPU while the VAE decodes.
        """
        device = device or default_device()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"--device {device} asked for, but this torch has no CUDA device; use --device cpu")
        model = model or DEFAULT_MODEL
        if str(model) in BUILTIN:
            world = cls._builtin(str(model), device, parse_dtype(dtype or "fp32"))
        else:
            world = cls._from_directory(Path(model), device, parse_dtype(dtype or "bf16"), offload)
        world.offload = offload
        world.cache = EmbeddingCache(cache_dir or default_cache_dir())
        return world

    @classmethod
    def _builtin(cls, name: str, device: str, dtype: torch.dtype) -> WorldModel:
        spec = BUILTIN[name]
        dit = YumeTransformer.from_config(model_config(spec["dit"]).replace(text_len=spec["text_len"]), seed=spec["seed"])
        # Random weights give a zero head (Wan init); give it a small random output so the video moves.
        with torch.no_grad():
            g = torch.Generator().manual_seed(spec["seed"])
            dit.head.head.weight.copy_(torch.randn(dit.head.head.weight.shape, generator=g) * 0.02)
        dit = dit.to(device=device, dtype=dtype).eval()
        vae = WanVAE.from_config(spec["vae"], seed=spec["seed"], device=device)
        text = TextEncoder.from_config(spec["text"], seed=spec["seed"], d_model=dit.config.text_dim,
                                       text_len=dit.config.text_len, device="cpu")  # fmt: skip
        return cls(dit, vae, text, name, spec["resolution"], info={"builtin": True})

    @classmethod
    def _from_directory(cls, path: Path, device: str, dtype: torch.dtype, offload: bool) -> WorldModel:
        if not path.exists():
            raise FileNotFoundError(
                f"model {str(path)!r} is neither a built-in model ({', '.join(BUILTIN)}) nor an existing directory; "
                "download Yume-5B-720P (huggingface.co/stdstu123/Yume-5B-720P) and pass its folder"
            )
        dit = YumeTransformer.from_pretrained(path, dtype=dtype, device=device).eval()
        # The VAE stays in float32 as Wan runs it; bf16 costs visible banding.
        vae = WanVAE.from_pretrained(path, dtype=torch.float32, device=device)
        text_device = "cpu" if offload or device == "cpu" else device
        text = TextEncoder.from_pretrained(path, dtype=torch.bfloat16, device=text_device, text_len=dit.config.text_len)
        return cls(dit, vae, text, str(path), info={"builtin": False})

    def encode_texts(self, texts: list[str]) -> list[torch.Tensor]:
        """Embeddings [L_i, D] on the DiT's device, through the cache when there is one."""
        embs = self.cache.get_many(self.text, texts) if self.cache is not None else self.text.encode(texts)
        return [e.to(device=self.device, dtype=self.dtype) for e in embs]
