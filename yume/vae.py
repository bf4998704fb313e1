"""The Wan2.2 VAE (diffusers' `AutoencoderKLWan`): loading, normalised encode, one-shot and streaming decode."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, patchify, unpatchify

from yume.models.weights import mismatch_lines

# fmt: off
# Per-channel latent statistics of the Wan2.2 VAE. Source: Wan2.2 `wan/modules/vae2_2.py` (`Wan2_2_VAE.__init__`,
# `mean` and `std`), identical to `vae22_diffusers_config` in diffusers' `scripts/convert_wan_to_diffusers.py`.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]

_WAN22_STRUCTURE = dict(
    z_dim=48,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    dropout=0.0,
    is_residual=True,
    in_channels=12,  # 3 colours x 2x2 patchify
    out_channels=12,
    patch_size=2,
    scale_factor_temporal=4,
    scale_factor_spatial=16,
)

# The Wan2.1 VAE (16 channels, stride 4×8×8) of Wan2.1-I2V-14B and Yume-I2V-540P: diffusers' default config, whose
# latent statistics are those of Wan2.1 `wan/modules/vae.py` (`WanVAE.__init__`).
_WAN21_STRUCTURE = dict(
    z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True],
    dropout=0.0, is_residual=False, in_channels=3, out_channels=3, patch_size=None, scale_factor_temporal=4,
    scale_factor_spatial=8,
)
WAN21_FILE = "Wan2.1_VAE.pth"

# `AutoencoderKLWan` keyword arguments (= a diffusers `vae/config.json`) by preset name.
VAE_CONFIGS: dict[str, dict] = {
    "wan2.1": dict(_WAN21_STRUCTURE, base_dim=96),
    "tiny-wan2.1": dict(_WAN21_STRUCTURE, base_dim=8,
                        latents_mean=[round(0.1 * math.sin(i), 4) for i in range(16)],
                        latents_std=[round(1.0 + 0.5 * math.cos(i), 4) for i in range(16)]),
    "wan2.2": dict(_WAN22_STRUCTURE, base_dim=160, decoder_base_dim=256,
                   latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD),
    # The built-in street world's VAE (`yume train vae`): Wan2.2's residual structure, one stage fewer (8x spatial,
    # 4x temporal), so a 128x128 frame is 16x16 latents. 32 channels, not 16: at 16 a CPU-trained VAE lost the
    # facade colours and the texture the motion estimator tracks (docs/sim-model.md). Stats 0/1 until training.
    "sim-small": dict(_WAN22_STRUCTURE, base_dim=16, decoder_base_dim=32, z_dim=32, dim_mult=[1, 2, 2],
                      temperal_downsample=[True, True], scale_factor_spatial=8,
                      latents_mean=[0.0] * 32, latents_std=[1.0] * 32),
    # The same with a 2x temporal stride (the first down- / last up-sampler is 2D only): 1 + 2k frames, twice the
    # latent frames. In equal CPU time its round trip keeps 0.519 of the sim's camera moves against 0.185 at 4x
    # (docs/sim-model.md); `yume train vae --init A_SIM_SMALL --preset sim-small-t2` moves a trained sim-small into it.
    "sim-small-t2": dict(_WAN22_STRUCTURE, base_dim=16, decoder_base_dim=32, z_dim=32, dim_mult=[1, 2, 2],
                         temperal_downsample=[False, True], scale_factor_temporal=2, scale_factor_spatial=8,
                         latents_mean=[0.0] * 32, latents_std=[1.0] * 32),
    # No temporal stride at all (both samplers 2D only): one latent per frame, twice sim-small-t2's latents. Coded
    # alone, frames keep more of the walk's parallax than through 2x latents (docs/sim-model.md, session 8).
    "sim-small-t1": dict(_WAN22_STRUCTURE, base_dim=16, decoder_base_dim=32, z_dim=32, dim_mult=[1, 2, 2],
                         temperal_downsample=[False, False], scale_factor_temporal=1, scale_factor_spatial=8,
                         latents_mean=[0.0] * 32, latents_std=[1.0] * 32),
    # Same structure at CPU size; fixed non-trivial stats so that tests see the normalisation.
    "tiny": dict(_WAN22_STRUCTURE, base_dim=8, decoder_base_dim=8,
                 latents_mean=[round(0.1 * math.sin(i), 4) for i in range(48)],
                 latents_std=[round(1.0 + 0.5 * math.cos(i), 4) for i in range(48)]),
}
# fmt: on

ORIGINAL_FILE = "Wan2.2_VAE.pth"
_WAN22_SOURCE = "Wan2.2_VAE.pth from Wan-AI/Wan2.2-TI2V-5B or stdstu123/Yume-5B-720P"

# diffusers name -> Wan2.2 `vae2_2.py` name; `{n}` is num_res_blocks (the resample follows the encoder's n resnets,
# the decoder's n + 1). The first rule whose pattern matches applies.
_RESNET_PARTS = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                 "conv_shortcut": "shortcut"}
_ORIGINAL_NAME_RULES = [
    (r"^quant_conv\.", "conv1."),
    (r"^post_quant_conv\.", "conv2."),
    (r"^(encoder|decoder)\.conv_in\.", r"\1.conv1."),
    (r"^(encoder|decoder)\.norm_out\.", r"\1.head.0."),
    (r"^(encoder|decoder)\.conv_out\.", r"\1.head.2."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.middle.0."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.middle.1."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.middle.2."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.downsamples.\1.downsamples.\2."),
    (r"^encoder\.down_blocks\.(\d+)\.downsampler\.", r"encoder.downsamples.\1.downsamples.{n}."),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", r"decoder.upsamples.\1.upsamples.\2."),
    (r"^decoder\.up_blocks\.(\d+)\.upsampler\.", r"decoder.upsamples.\1.upsamples.{n+1}."),
]


def original_name(name: str, num_res_blocks: int = 2) -> str:
    """Map one diffusers `AutoencoderKLWan` key to its name in `Wan2.2_VAE.pth`."""
    name = re.sub(
        r"(\.resnets\.\d+\.)(norm1|conv1|norm2|conv2|conv_shortcut)\.",
        lambda m: f"{m[1]}{_RESNET_PARTS[m[2]]}.",
        name,
    )
    for pattern, replacement in _ORIGINAL_NAME_RULES:
        if re.match(pattern, name):
            replacement = replacement.replace("{n}", str(num_res_blocks)).replace("{n+1}", str(num_res_blocks + 1))
            return re.sub(pattern, replacement, name)
    raise KeyError(f"no Wan2.2 name for the diffusers VAE key {name!r}")


def original_key_map(model: AutoencoderKLWan) -> dict[str, str]:
    """{diffusers key: Wan2.2_VAE.pth key} for every weight of `model`."""
    return {k: original_name(k, model.config.num_res_blocks) for k in model.state_dict()}


def vae_config(name_or_config: str | dict) -> dict:
    """Resolve a preset name or a config dict (e.g. a diffusers `vae/config.json`) into AutoencoderKLWan kwargs."""
    if isinstance(name_or_config, dict):
        accepted = inspect.signature(AutoencoderKLWan.__init__).parameters
        # Drops diffusers' bookkeeping (`_class_name`, ...) and `clip_output`, which older diffusers versions wrote.
        return {k: v for k, v in name_or_config.items() if k in accepted and k != "self"}
    try:
        return dict(VAE_CONFIGS[name_or_config])
    except KeyError:
        raise ValueError(f"unknown VAE preset {name_or_config!r}; choose one of {', '.join(VAE_CONFIGS)}") from None


def _few(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(file)
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # Legacy (non-zip) checkpoints cannot be memory-mapped.
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"could not read the VAE weights {file} ({file.stat().st_size:,} bytes): {type(e).__name__}: {e}. "
            f"The file is truncated or not a weights file; download it again ({_WAN22_SOURCE})."
        ) from e


def _check_weights(weights: dict[str, torch.Tensor], expected: dict[str, torch.Size], file: Path, what: str) -> None:
    problems = mismatch_lines({k: v.shape for k, v in weights.items()}, expected, indent="")
    if not problems:
        return
    lines = [f"{file} does not fit the {what}: it has {len(weights)} tensors, expected {len(expected)}.", *problems]
    z_key = "post_quant_conv.weight" if "post_quant_conv.weight" in weights else "conv2.weight"
    if z_key in weights and weights[z_key].shape[0] == 16:
        lines.append(f"This looks like the Wan2.1 VAE (16 latent channels); Yume-5B needs the Wan2.2 VAE: {_WAN22_SOURCE}.")
    else:
        lines.append(
            f"Use the Wan2.2 VAE ({_WAN22_SOURCE}) or a diffusers vae/ directory of it; for another size pass "
            f"config= one of {', '.join(VAE_CONFIGS)} or a config dict."
        )
    raise ValueError("\n".join(lines))


def _resolve_path(path: Path) -> Path:
    """A weights file or a diffusers vae/ directory, from a file, a vae/ directory or a model directory."""
    if not path.exists():
        raise FileNotFoundError(f"VAE weights not found: {path} does not exist; get {_WAN22_SOURCE}")
    if path.is_file():
        return path
    # A model directory (Yume, Wan) also has a config.json + safetensors at its top: those of the DiT.
    for candidate in (path / ORIGINAL_FILE, path / WAN21_FILE, path / "vae"):
        if candidate.exists():
            return _resolve_path(candidate)
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return path
    raise FileNotFoundError(
        f"no VAE in {path}: expected {ORIGINAL_FILE}, a vae/ directory, or config.json + *.safetensors; "
        f"get {_WAN22_SOURCE}"
    )


class WanVAE:
    """The Wan2.2 VAE on normalised latents: video [B,3,T,H,W] in [-1,1] <-> latents [B,48,1+(T-1)/4,H/16,W/16]."""

    def __init__(self, model: AutoencoderKLWan):
        self.model = model.eval().requires_grad_(False)
        self._n_decoder_convs = sum(isinstance(m, WanCausalConv3d) for m in model.decoder.modules())
        self._n_encoder_convs = sum(isinstance(m, WanCausalConv3d) for m in model.encoder.modules())

    @classmethod
    def from_config(
        cls, name_or_config: str | dict = "wan2.2", *, seed: int = 0, dtype=torch.float32, device="cpu"
    ) -> WanVAE:
        """A randomly initialised VAE, the same for the same seed (`tiny` is the CPU-sized test twin)."""
        config = vae_config(name_or_config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoencoderKLWan(**config)
        return cls(torch.nn.Module.to(model, device=device, dtype=dtype))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype=torch.float32, device="cpu", config: str | dict | None = None
    ) -> WanVAE:
        """Load `Wan2.2_VAE.pth` (original Wan names), a diffusers `vae/` directory, or a model directory holding either.

        `config` (preset name or dict) describes a single weights file; it defaults to `wan2.2`. A diffusers directory
        brings its own config.json. The model is built on the meta device and the weights are assigned, not copied.
        """
        source = _resolve_path(Path(path))
        if source.is_dir():
            raw_config = AutoencoderKLWan.load_config(source)
            if raw_config.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
                raise ValueError(
                    f"no VAE in {source}: its config.json describes a {raw_config['_class_name']}, not the VAE; "
                    f"put {ORIGINAL_FILE} (or a diffusers vae/ folder) there — get {_WAN22_SOURCE}"
                )
            config = vae_config(raw_config)
            weights = {}
            for file in sorted(source.glob("*.safetensors")):
                weights.update(_read_weights(file))
        else:
            config = vae_config(config or ("wan2.1" if source.name == WAN21_FILE else "wan2.2"))
            weights = _read_weights(source)
            if not config["is_residual"] and "post_quant_conv.weight" not in weights:
                from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

                weights = convert_wan_vae_to_diffusers(weights)  # Wan2.1 names -> diffusers, by diffusers' converter
                if "encoder.conv_in.weight" in weights:
                    config["base_dim"] = weights["encoder.conv_in.weight"].shape[0]  # the file says its width
        with torch.device("meta"):
            model = AutoencoderKLWan(**config)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if source.is_dir() or "post_quant_conv.weight" in weights:
            _check_weights(weights, expected, source, "Wan VAE (diffusers names)")
        else:
            to_original = original_key_map(model)
            _check_weights(weights, {to_original[k]: s for k, s in expected.items()}, source, "Wan2.2 VAE (Wan names)")
            weights = {k: weights[to_original[k]] for k in expected}
        for k in list(weights):  # one tensor at a time, so there is never a second full copy
            weights[k] = weights[k].to(device=device, dtype=dtype)
        model.load_state_dict(weights, strict=True, assign=True)
        return cls(model)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the diffusers layout: config.json + diffusion_pytorch_model.safetensors."""
        self.model.save_pretrained(directory, safe_serialization=True)

    def save_original(self, path: str | Path) -> None:
        """Write the weights under the Wan2.2_VAE.pth names, as .pth (torch.save) or .safetensors."""
        path = Path(path)
        to_original = original_key_map(self.model)
        weights = {to_original[k]: v.contiguous() for k, v in self.model.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(weights, path)
        else:
            torch.save(weights, path)

    @property
    def config(self) -> dict:
        return dict(self.model.config)

    @property
    def z_dim(self) -> int:
        return self.model.config.z_dim

    @property
    def temporal_stride(self) -> int:
        return self.model.config.scale_factor_temporal

    @property
    def spatial_stride(self) -> int:
        return self.model.config.scale_factor_spatial

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device=None, dtype=None) -> WanVAE:
        # nn.Module.to: diffusers' override warns about (non-existent) fp32 modules on every dtype cast.
        torch.nn.Module.to(self.model, device=device, dtype=dtype)
        return self

    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, std), each [1, z_dim, 1, 1, 1] on the VAE's device, float32."""
        mean = torch.tensor(self.model.config.latents_mean, device=self.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.model.config.latents_std, device=self.device).view(1, -1, 1, 1, 1)
        return mean, std

    def enable_tiling(self, tile_size: int = 256, tile_stride: int = 192) -> None:
        """Decode (and encode) frames larger than `tile_size` pixels in overlapping tiles blended over the overlap.

        Lowers peak memory; the result differs slightly from untiled decoding near tile seams. Streaming stays
        exact: each tile keeps its own causal cache, so chunked decoding equals one-shot tiled decoding.
        """
        s = self.spatial_stride
        if tile_size % s or tile_stride % s or not 0 < tile_stride <= tile_size:
            raise ValueError(
                f"tile_size={tile_size}, tile_stride={tile_stride}: both must be multiples of {s} "
                f"with 0 < tile_stride <= tile_size (e.g. 256 and 192)"
            )
        self.model.enable_tiling(tile_size, tile_size, tile_stride, tile_stride)

    def disable_tiling(self) -> None:
        self.model.disable_tiling()

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B,3,1+sk,H,W] in [-1,1] (s the temporal stride, 4 for Wan) -> normalised latents (z - mean) / std,
        [B,48,1+k,H/16,W/16] float32."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
        _, _, t, h, w = video.shape
        if (t - 1) % self.temporal_stride or h % self.spatial_stride or w % self.spatial_stride:
            raise ValueError(
                f"video of {t} frames at {h}x{w}: the frame count must be 1 + {self.temporal_stride}k and the "
                f"height and width multiples of {self.spatial_stride}; crop or pad it"
            )
        x = video.to(self.device, self.dtype)
        if (t - 1) % 4 == 0:
            z = self.model.encode(x).latent_dist.mode().float()
        else:
            # diffusers' encode feeds the encoder 4 frames at a time and drops a shorter tail, so a 2x-stride VAE's
            # 1 + 2k frames (k odd) go through the same causal encoder one stride at a time instead.
            if self.model.use_tiling:
                raise ValueError(f"{t} frames: tiled encoding needs 1 + 4k frames; disable tiling or cut the video")
            z = self.encode_causal(x, [None] * self.n_encoder_convs, first=True)
        mean, std = self.latent_stats()
        return (z - mean) / std

    @property
    def n_encoder_convs(self) -> int:
        """Causal convs of the encoder: the length of the cache `encode_causal` carries."""
        return self._n_encoder_convs

    def encode_causal(self, video: torch.Tensor, cache: list, first: bool) -> torch.Tensor:
        """Raw (unnormalised) latent means of the next frames of a stream, the encoder's causal `cache` advanced.

        `video` [B, 3, T, H, W] on the VAE's device and dtype: 1 + stride x k frames when `first`, else stride x k.
        The first frame is encoded alone, then one temporal stride at a time; the result equals one `encode` of the
        whole stream (the causal convs see the same inputs, and each stride's frames are pooled together).
        """
        model, stride = self.model, self.temporal_stride
        if model.config.patch_size is not None:
            video = patchify(video, patch_size=model.config.patch_size)
        pieces = [video[:, :, :1]] if first else []
        pieces += [video[:, :, i : i + stride] for i in range(1 if first else 0, video.shape[2], stride)]
        out = torch.cat([model.encoder(p, feat_cache=cache, feat_idx=[0]) for p in pieces], dim=2)
        return model.quant_conv(out)[:, : self.z_dim].float()  # the distribution's mode

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """image [B,3,H,W] in [-1,1] -> the release's 17-frame still (the image 17 times) -> [B,48,5,H/16,W/16]."""
        if image.ndim != 4:
            raise ValueError(f"image must be [B, 3, H, W], got shape {tuple(image.shape)}")
        return self.encode(image.unsqueeze(2).expand(-1, -1, 4 * self.temporal_stride + 1, -1, -1))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B,48,F,h,w] -> video [B,3,1+4(F-1),16h,16w] in [-1,1], float32."""
        return self.stream_decoder().decode(latents)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Decodes a latent stream chunk by chunk, carrying the decoder's causal conv cache from call to call.

    The first latent of the stream gives 1 frame, every later one 4; the frames of each call equal the matching
    frames of one decode of everything so far. `state_dict()` / `load_state_dict()` save and resume a stream.
    """

    def __init__(self, vae: WanVAE):
        self.vae = vae
        self.reset()

    def reset(self) -> None:
        # One cache per spatial tile ("full" when untiled): a list with an entry per causal conv of the decoder,
        # each None (not run yet), "Rep" (diffusers' marker: temporal upsampler seen only the first frame) or a tensor.
        self._caches: dict[str, list] = {}
        self.latents_decoded = 0

    def num_frames(self, num_latents: int) -> int:
        """Frames the next `decode` of `num_latents` latents returns."""
        stride = self.vae.temporal_stride
        return stride * num_latents - (stride - 1 if self.latents_decoded == 0 and num_latents else 0)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B,48,F,h,w] -> the next frames [B,3,num_frames(F),16h,16w] in [-1,1], float32."""
        vae, model = self.vae, self.vae.model
        if latents.ndim != 5 or latents.shape[1] != vae.z_dim:
            raise ValueError(f"latents must be [B, {vae.z_dim}, F, h, w], got shape {tuple(latents.shape)}")
        mean, std = vae.latent_stats()
        z = (latents.to(vae.device).float() * std + mean).to(vae.dtype)
        x = model.post_quant_conv(z)  # 1x1x1 conv: no temporal context, so per chunk is exact
        h, w = x.shape[-2:]
        tile = model.tile_sample_min_height // vae.spatial_stride
        stride = model.tile_sample_stride_height // vae.spatial_stride
        if model.use_tiling and (h > tile or w > tile):
            out = self._decode_tiled(x, tile, stride)
        else:
            out = self._decode_frames(x, "full")
        self.latents_decoded += latents.shape[2]
        return unpatchify(out, model.config.patch_size or 1).clamp(-1.0, 1.0).float()

    def _decode_frames(self, x: torch.Tensor, cache_key: str) -> torch.Tensor:
        """Post-quant latents [B,C,F,h,w] of one tile -> patchified frames [B,12,T,8h,8w], latent by latent."""
        cache = self._caches.setdefault(cache_key, [None] * self.vae._n_decoder_convs)
        frames = []
        for i in range(x.shape[2]):
            first = self.latents_decoded == 0 and i == 0
            frames.append(self.vae.model.decoder(x[:, :, i : i + 1], feat_cache=cache, feat_idx=[0], first_chunk=first))
        return torch.cat(frames, dim=2)

    def _decode_tiled(self, x: torch.Tensor, tile: int, stride: int) -> torch.Tensor:
        # The tiling of diffusers' `tiled_decode`, each tile with its own persistent cache.
        model = self.vae.model
        h, w = x.shape[-2:]
        up = self.vae.spatial_stride // (model.config.patch_size or 1)  # patchified pixels per latent pixel
        blend, keep = (tile - stride) * up, stride * up
        rows = []
        for i in range(0, h, stride):
            rows.append([self._decode_frames(x[..., i : i + tile, j : j + tile], f"{i}_{j}") for j in range(0, w, stride)])
        out_rows = []
        for i, row in enumerate(rows):
            out_row = []
            for j, t in enumerate(row):
                if i > 0:
                    t = model.blend_v(rows[i - 1][j], t, blend)
                if j > 0:
                    t = model.blend_h(row[j - 1], t, blend)
                out_row.append(t[..., :keep, :keep])
            out_rows.append(torch.cat(out_row, dim=-1))
        return torch.cat(out_rows, dim=-2)[..., : h * up, : w * up]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stream as plain tensors (safetensors-ready): the latent count and each tile's conv cache."""
        state = {"latents_decoded": torch.tensor(self.latents_decoded)}
        for key, cache in self._caches.items():
            state[f"{key}.rep"] = torch.tensor([isinstance(c, str) for c in cache])
            state.update({f"{key}.{i}": c.contiguous() for i, c in enumerate(cache) if isinstance(c, torch.Tensor)})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Resume a stream saved by `state_dict()` (with the same VAE)."""
        if "latents_decoded" not in state:
            raise ValueError(f"not a stream-decoder state: no 'latents_decoded' among {_few(sorted(state))}")
        n = self.vae._n_decoder_convs
        caches = {}
        for name, rep in state.items():
            if not name.endswith(".rep"):
                continue
            key = name[: -len(".rep")]
            if rep.numel() != n:
                raise ValueError(f"stream state has {rep.numel()} cached convs for {key!r}; this VAE's decoder has {n}")
            cache = [None] * n
            for i in range(n):
                if rep[i]:
                    cache[i] = "Rep"
                elif f"{key}.{i}" in state:
                    cache[i] = state[f"{key}.{i}"].to(self.vae.device, self.vae.dtype)
            caches[key] = cache
        self._caches = caches
        self.latents_decoded = int(state["latents_decoded"])
