"""World sessions with the Yume-I2V-540P model (Yume 1.0): image- or video-to-world through the `WorldSession` API.

Per chunk, as the release samples it (`fastvideo/sample/sample.py`): 50 Euler steps at shift 3, guidance 5 with the
negative prompt below, the history re-noised to each step's σ with one noise draw, the condition built from the
pixel history + black frames, and the CLIP tokens of the start image (or of the input clip's last frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from yume.actions import Action
from yume.condition import StreamEncoder, i2v_condition
from yume.sampling import get_noise, get_schedule, sample_euler_renoised_history, sample_tts_sde
from yume.session import SessionConfig, WorldSession, load_image, to_uint8

# The negative prompt of the release's I2V sampler (`wan/image2video.py`).
I2V_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall "
    "gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, "
    "poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three "
    "legs, many people in the background, walking backwards"
)
I2V_CONFIG = SessionConfig(steps=50, shift=3.0, guidance=5.0, negative_prompt=I2V_NEGATIVE_PROMPT, vocab="1.0")


def load_video(path_or_array, height: int, width: int) -> torch.Tensor:
    """A video file (or [T, H, W, 3] uint8 array) -> [1, 3, T, H, W] in [-1, 1], each frame resized and cropped."""
    if isinstance(path_or_array, (str, Path)):
        from yume.video import read_video

        frames, _ = read_video(path_or_array)
    else:
        frames = np.asarray(path_or_array)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"a video must be [T, H, W, 3] uint8 with T >= 1, got shape {frames.shape}")
    return torch.stack([load_image(f, height, width)[0] for f in frames], dim=1)[None]


class I2VWorldSession(WorldSession):
    """A Yume-I2V-540P world continuing an image (the release's 17-frame still) or an input clip."""

    def __init__(self, world, prompt: str = "", *, image=None, video=None, config: SessionConfig | None = None):
        if (image is None) == (video is None):
            raise ValueError("the Yume-I2V model continues a picture: give exactly one of image= or video=")
        if world.image_encoder is None:
            raise ValueError(f"model {world.name!r} has an image branch but no CLIP image encoder was loaded")
        self.encoder = StreamEncoder(world.vae)
        self.known: torch.Tensor | None = None  # encoded pixel history [1, z, F_h, h, w]: the condition's latents
        self.image_tokens: torch.Tensor | None = None  # CLIP features [1, 257, 1280]
        super().__init__(world, prompt, image=image, config=config or I2V_CONFIG)
        if video is not None:
            pixels = video if torch.is_tensor(video) else load_video(video, self.height, self.width)
            # Keep the newest 1 + sk frames: the causal VAE starts a stream with one frame, then steps of its stride s.
            keep = 1 + (pixels.shape[2] - 1) // self.world.vae.temporal_stride * self.world.vae.temporal_stride
            self._start(pixels[:, :, -keep:])

    @torch.no_grad()
    def _start_from_image(self, image) -> None:
        pixels = load_image(image, self.height, self.width) if not torch.is_tensor(image) else image
        self._start(pixels.unsqueeze(2).expand(-1, -1, 4 * self.world.vae.temporal_stride + 1, -1, -1))

    @torch.no_grad()
    def _start(self, pixels: torch.Tensor) -> None:
        """pixels [1, 3, 1 + sk, H, W] (s: the VAE's temporal stride) -> history latents, the condition stream, CLIP
        tokens of the last frame."""
        world = self.world
        latents = self.encoder.encode(pixels)
        self.known = latents
        self.history = latents.to(device=world.device, dtype=world.dtype)
        self.image_tokens = world.image_encoder.encode(pixels[:, :, -1]).to(world.device, world.dtype)
        self.decoder.decode(latents)  # the decoder's causal cache continues from the start frames

    @torch.no_grad()
    def _prepare(self, action: Action):
        """The chunk's text, condition and noise; the sampler re-noises the history at every step (the release's)."""
        world, cfg, dit = self.world, self.config, self.world.dit
        text = self._text(action)
        negative = self._negative_text() if cfg.guidance != 1.0 else None
        f, (h, w) = cfg.chunk_latents, self.latent_hw
        black = torch.zeros(1, 3, world.vae.temporal_stride * f, self.height, self.width)
        cond = i2v_condition(self.known, self.encoder.peek(black)).to(world.device, world.dtype)
        # One draw per chunk from (seed, chunk index): the chunk's start noise and the history's re-noising noise.
        noise = get_noise((1, dit.config.out_dim, self.history.shape[2] + f, h, w), seed=cfg.seed * 1_000_003 + self.index,
                          device=world.device)  # fmt: skip

        def model(x, sigma, past):
            v = dit(x, sigma, [text], past, cond=cond, image=self.image_tokens, policy=cfg.history).float()
            if negative is None:
                return v
            v_neg = dit(x, sigma, [negative], past, cond=cond, image=self.image_tokens, policy=cfg.history).float()
            return v_neg + cfg.guidance * (v - v_neg)

        sigmas = get_schedule(cfg.steps, cfg.shift).to(world.device)
        history = self.history.float()
        if cfg.sampler == "tts-sde":
            # The SDE's noise: its own CPU stream from (seed, chunk index), apart from the start noise's.
            rng = torch.Generator("cpu").manual_seed(cfg.seed * 1_000_003 + self.index + (1 << 62))
            return lambda: sample_tts_sde(model, noise[:, :, -f:], sigmas, history, noise[:, :, :-f], generator=rng,
                                          disable=not self.progress)
        return lambda: sample_euler_renoised_history(model, noise[:, :, -f:], sigmas, history, noise[:, :, :-f],
                                                     disable=not self.progress)

    def _decode(self, latents: torch.Tensor, on_frames) -> np.ndarray:
        """Decode latent by latent (streaming to `on_frames`), then encode the new frames into the condition stream."""
        world = self.world
        if world.offload == "text" and world.device.type == "cuda":
            world.dit.to("cpu")
        try:
            pixels, pieces = [], []
            for i in range(latents.shape[2]):
                video = self.decoder.decode(latents[:, :, i : i + 1])  # [1, 3, 4, H, W] in [-1, 1]
                pixels.append(video)
                pieces.append(to_uint8(video))
                if on_frames is not None:
                    on_frames(pieces[-1])
            # The release conditions on the decoded frames themselves (float, not the 8-bit video).
            self.known = torch.cat([self.known, self.encoder.encode(torch.cat(pixels, dim=2))], dim=2)
            return np.concatenate(pieces)
        finally:
            if world.offload == "text" and world.device.type == "cuda":
                world.dit.to(latents.device)

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """The 5B session's state plus the condition stream: encoder cache, encoded pixel history, CLIP tokens."""
        tensors = super()._state_tensors()
        tensors.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        # A clone: before the first step `known` may be the history itself, and safetensors refuses shared memory.
        tensors["known"], tensors["image_tokens"] = self.known.clone(), self.image_tokens
        return tensors

    def _restore(self, world, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        missing = [k for k in ("known", "image_tokens", "encoder.frames_encoded") if k not in tensors]
        if missing:
            raise ValueError(f"the session file has no {', '.join(missing)}: it was not saved by a Yume-I2V session")
        self.encoder = StreamEncoder(world.vae)
        self.encoder.load_state_dict({k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")})
        self.known = tensors["known"].to(world.vae.device)
        self.image_tokens = tensors["image_tokens"].to(world.device, world.dtype)
        super()._restore(world, meta, tensors)
