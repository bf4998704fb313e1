"""A loaded world model: the DiT, the VAE and the text encoder together, from a directory or a built-in name."""

from __future__ import annotations

import json
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

# Built-in models that need no download. `yume-sim-small` (the default) is trained on the procedural street world;
# `tiny-random` has random weights: it exercises every code path (and the tests) in seconds on a CPU, but its video
# is noise, not a world.
BUILTIN = {
    # text_len 128: the tiny tokenizer splits a caption into ~60 tokens; 32 would cut the event off.
    "tiny-random": {"dit": "tiny", "text_len": 128, "vae": "tiny", "text": "tiny", "resolution": (128, 128), "seed": 0},
    # The Yume-I2V-540P structure (Wan2.1 VAE, CLIP branch, 36 channels) at CPU size; needs an image or a video.
    "tiny-i2v-random": {
        "dit": "tiny-i2v",
        "text_len": 128,
        "vae": "tiny-wan2.1",
        "text": "tiny",
        "clip": "tiny",
        "resolution": (64, 64),
        "seed": 0,
    },
    # Trained on the procedural street world (yume.sim) on a CPU; shipped in yume/assets (docs/sim-model.md).
    # Sampled as configs/sim-small/*.toml train it: TSCM history, 4-latent chunks (16 frames through the 4x
    # temporal sim-small VAE, 8 through sim-small-t2; the shipped export's sampling.json says 8 latents, 8 frames
    # through its stride-free sim-small-t1, and the step recipe: release-4step for its Self-Forcing student),
    # action caption then scene text, and an image start of one latent (its i2v batches see only the first latent
    # as history).
    "yume-sim-small": {
        "weights": "yume-sim-small",
        "text_len": 128,
        "text": "tiny",
        "resolution": (128, 128),
        "seed": 0,
        "history": "tscm",
        "chunk_latents": 4,
        "prompt_mode": "decomposed",
        "image_start": "frame",
        # Trained under bf16 autocast; bf16 ran ~15% faster on a CPU with AVX-512 BF16 and scored the same IF
        # (docs/sim-model.md). --dtype fp32 still applies.
        "dtype": "bf16",
    },
}
ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = "yume-sim-small"
# text: T5 (and CLIP) on the CPU, the DiT off the GPU while the VAE decodes; blocks: also the DiT's blocks kept on the
# CPU and copied to the GPU one at a time (yume.offload), for GPUs too small for the 14B DiT (docs/checkpoints.md).
OFFLOAD_MODES = ("text", "blocks")


def is_i2v_model(model: str | Path | None) -> bool:
    """Whether a built-in name or model directory is an image-to-video model (Yume-I2V-540P), from headers only."""
    model = model or DEFAULT_MODEL
    if str(model) in BUILTIN:
        return "clip" in BUILTIN[str(model)]
    from yume.models.weights import CheckpointError, find_dit_files, read_shapes

    try:
        keys = read_shapes(find_dit_files(model)[0])
    except CheckpointError:
        return False  # loading will say what is wrong
    return "img_emb.proj.0.weight" in keys or "condition_embedder.image_embedder.norm1.weight" in keys


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
    offload: str | None = None  # None or one of OFFLOAD_MODES
    info: dict = field(default_factory=dict)
    image_encoder: object | None = None  # CLIPImageEncoder of an I2V model (Yume-I2V-540P), else None

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
        offload: str | bool | None = None,
        cache_dir: str | Path | None = None,
        weights: str | Path | None = None,
    ) -> WorldModel:
        """A built-in model by name (default `yume-sim-small`) or a Yume/Wan2.2 directory (original or diffusers layout).

        `weights`: for a built-in model with shipped weights, a folder written by `yume train export` to load instead
        of the package's (to score a checkpoint without overwriting the shipped model).

        `offload`: "text" (or True) keeps the text encoder on the CPU and moves the DiT off the GPU while the VAE
        decodes; "blocks" keeps the text encoder and the DiT's blocks on the CPU, each block copied in for its forward.
        """
        offload = "text" if offload is True else (offload or None)
        if offload is not None and offload not in OFFLOAD_MODES:
            raise ValueError(f"offload={offload!r}: choose 'text' (T5 on the CPU) or 'blocks' (also the DiT's blocks)")
        device = device or default_device()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"--device {device} asked for, but this torch has no CUDA device; use --device cpu")
        model = model or DEFAULT_MODEL
        if weights is not None and "weights" not in BUILTIN.get(str(model), {}):
            trained = [name for name, spec in BUILTIN.items() if "weights" in spec]
            raise ValueError(f"weights={str(weights)!r} replaces a trained built-in model's weights ({', '.join(trained)}); "
                             f"{str(model)!r} is not one")  # fmt: skip
        if str(model) in BUILTIN:
            dtype = parse_dtype(dtype or BUILTIN[str(model)].get("dtype", "fp32"))
            world = cls._builtin(str(model), device, dtype, None if weights is None else Path(weights))
        else:
            world = cls._from_directory(Path(model), device, parse_dtype(dtype or "bf16"), offload)
        if offload == "blocks":
            from yume.offload import enable_block_offload

            enable_block_offload(world.dit, device)
        world.offload = offload
        world.cache = EmbeddingCache(cache_dir or default_cache_dir())
        return world

    @classmethod
    def _builtin(cls, name: str, device: str, dtype: torch.dtype, root: Path | None = None) -> WorldModel:
        spec = BUILTIN[name]
        if "weights" in spec:
            return cls._builtin_trained(name, spec, device, dtype, root or ASSETS / spec["weights"])
        dit_config = model_config(spec["dit"]).replace(text_len=spec["text_len"])
        dit_class = YumeTransformer
        if dit_config.image_dim:
            from yume.models.i2v import YumeI2VTransformer as dit_class
        dit = dit_class.from_config(dit_config, seed=spec["seed"])
        # Random weights give a zero head (Wan init); give it a small random output so the video moves.
        with torch.no_grad():
            g = torch.Generator().manual_seed(spec["seed"])
            dit.head.head.weight.copy_(torch.randn(dit.head.head.weight.shape, generator=g) * 0.02)
        dit = dit.to(device=device, dtype=dtype).eval()
        vae = WanVAE.from_config(spec["vae"], seed=spec["seed"], device=device)
        text = TextEncoder.from_config(spec["text"], seed=spec["seed"], d_model=dit.config.text_dim,
                                       text_len=dit.config.text_len, device="cpu")  # fmt: skip
        world = cls(dit, vae, text, name, spec["resolution"], info={"builtin": True, "random_weights": True})
        if "clip" in spec:
            from yume.models.clip import CLIPImageEncoder

            world.image_encoder = CLIPImageEncoder.from_config(spec["clip"], seed=spec["seed"])
        return world

    @classmethod
    def _builtin_trained(cls, name: str, spec: dict, device: str, dtype: torch.dtype, root: Path) -> WorldModel:
        """A built-in model with shipped weights: root/dit, /vae and /text (else the tiny random encoder); root is
        assets/<weights> unless `load(weights=...)` names an export."""
        if not (root / "dit").is_dir() or not (root / "vae").is_dir():
            raise FileNotFoundError(f"built-in model {name!r}: its weights are missing from {root} (dit/ and vae/); "
                                    "reinstall yume or rebuild them with docs/sim-model.md")  # fmt: skip
        dit = YumeTransformer.from_pretrained(root / "dit", dtype=dtype, device=device).eval()
        vae = WanVAE.from_pretrained(root / "vae", dtype=torch.float32, device=device)
        if (root / "text").is_dir():  # the encoder the cache was made with, as `yume train export` packs it
            text = TextEncoder.from_pretrained(root / "text", dtype=torch.float32, text_len=spec["text_len"])
        else:
            text = TextEncoder.from_config(spec["text"], seed=spec["seed"], d_model=dit.config.text_dim,
                                           text_len=spec["text_len"], device="cpu")  # fmt: skip
        # How the model was trained to be sampled: its history policy, chunk length, image start and step recipe.
        keys = ("history", "chunk_latents", "image_start", "prompt_mode")
        info = {"builtin": True} | {k: spec[k] for k in keys if k in spec}
        if (root / "sampling.json").is_file():  # written by `yume train export --sampling / --chunk-latents`
            recipe = json.loads((root / "sampling.json").read_text(encoding="utf-8"))
            if "preset" in recipe:
                info["sampling"] = recipe["preset"]
            if "chunk_latents" in recipe:
                info["chunk_latents"] = int(recipe["chunk_latents"])
            for key in ("move_speed", "turn_speed"):  # the key speeds of the world its data was rendered at
                if key in recipe:
                    info[key] = float(recipe[key])
        return cls(dit, vae, text, name, spec["resolution"], info=info)

    @classmethod
    def _from_directory(cls, path: Path, device: str, dtype: torch.dtype, offload: str | None) -> WorldModel:
        if not path.exists():
            raise FileNotFoundError(
                f"model {str(path)!r} is neither a built-in model ({', '.join(BUILTIN)}) nor an existing directory; "
                "download Yume-5B-720P (huggingface.co/stdstu123/Yume-5B-720P) and pass its folder"
            )
        # With block offload the DiT is read into CPU memory; `load` then moves its non-block parts to the device.
        dit_device = "cpu" if offload == "blocks" else device
        dit = YumeTransformer.from_pretrained(path, dtype=dtype, device=dit_device).eval()
        # The VAE stays in float32 as Wan runs it; bf16 costs visible banding.
        vae = WanVAE.from_pretrained(path, dtype=torch.float32, device=device)
        text_device = "cpu" if offload or device == "cpu" else device
        text = TextEncoder.from_pretrained(path, dtype=torch.bfloat16, device=text_device, text_len=dit.config.text_len)
        world = cls(dit, vae, text, str(path), info={"builtin": False})
        if dit.config.image_dim:
            from yume.models.clip import CLIPImageEncoder

            # Yume-I2V-540P: CLIP on the text encoder's device; it runs once per session.
            world.image_encoder = CLIPImageEncoder.from_pretrained(path, dtype=torch.float32 if text_device == "cpu" else dtype,
                                                                   device=text_device)  # fmt: skip
            world.default_resolution = (544, 960)
        return world

    def encode_texts(self, texts: list[str]) -> list[torch.Tensor]:
        """Embeddings [L_i, D] on the DiT's device, through the cache when there is one."""
        embs = self.cache.get_many(self.text, texts) if self.cache is not None else self.text.encode(texts)
        return [e.to(device=self.device, dtype=self.dtype) for e in embs]
