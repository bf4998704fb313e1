"""`WorldSession`: an endless world made chunk by chunk — text or image in, keyboard actions and events steer it."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from yume.actions import Action
from yume.models.text import encode_prompt
from yume.sampling import cfg_denoiser, get_noise, get_schedule, sample_euler
from yume.world import WorldModel

SESSION_FORMAT = 1
SAMPLERS = ("euler", "tts-sde")


@dataclass(frozen=True)
class SessionConfig:
    """How a world is sampled. None = the model's own recipe (`WorldModel.info["sampling"]`, a SAMPLING_PRESETS
    name); without one, the release's 4-step recipe (4 steps, shift 7, no guidance)."""

    height: int | None = None  # None: the model's default resolution
    width: int | None = None
    steps: int | None = None
    shift: float | None = None
    guidance: float | None = None  # classifier-free guidance scale; 1 = off (distilled weights)
    negative_prompt: str = ""
    history: str | None = None  # history policy: release | full | tscm; None = the model's own (see WorldSession)
    prompt_mode: str | None = None  # joined (release: one string) | decomposed (paper: action + event); None = the model's
    vocab: str = "1.5"
    chunk_latents: int | None = None  # latent frames per chunk (8 = 32 video frames); None = the model's own
    seed: int = 0
    sampler: str = "euler"  # euler | tts-sde (Yume-I2V-540P: the release's time-travel SDE, yume.sampling.sample_tts_sde)

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.shift is not None and not self.shift > 0:  # σ' = sσ / (1 + (s − 1)σ) leaves [0, 1] for s <= 0
            raise ValueError(f"shift must be > 0, got {self.shift} (3 to 7 are usual; 1 = no shift)")
        if self.chunk_latents is not None and self.chunk_latents < 1:
            raise ValueError(f"chunk_latents must be >= 1, got {self.chunk_latents}")
        if self.prompt_mode not in (None, "joined", "decomposed"):
            raise ValueError(f"prompt_mode must be 'joined' or 'decomposed', got {self.prompt_mode!r}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None and (v <= 0 or v % 32):
                raise ValueError(f"{name}={v}: resolution must be positive multiples of 32 (e.g. 704x1280, 544x960)")


SAMPLING_PRESETS = {
    "release-4step": {"steps": 4, "shift": 7.0, "guidance": 1.0},
    "release-50step": {"steps": 50, "shift": 5.0, "guidance": 1.0},
    "wan-cfg": {"steps": 50, "shift": 5.0, "guidance": 5.0},
    # Yume-I2V-540P as released (with its negative prompt, see yume.session_i2v).
    "yume-i2v": {"steps": 50, "shift": 3.0, "guidance": 5.0},
    # A flow-matching model not yet distilled, as configs/sim-small/flow.toml trains it (shift 3, 10% empty captions).
    "flow-cfg": {"steps": 16, "shift": 3.0, "guidance": 3.0},
}


@dataclass
class Chunk:
    """One generated chunk: its frames (uint8 [T, H, W, 3]) and what made them."""

    index: int
    action: Action
    event: str | None
    caption: str
    frames: np.ndarray
    latents: torch.Tensor  # [1, C, F, h, w]
    seconds: dict = field(default_factory=dict)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    x = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def load_image(path_or_array, height: int, width: int) -> torch.Tensor:
    """An image file (or HxWx3 uint8 array) -> [1, 3, H, W] in [-1, 1], resized to cover and centre-cropped."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(path_or_array, np.ndarray):
        img = Image.fromarray(path_or_array).convert("RGB")
    else:
        try:
            img = Image.open(path_or_array).convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {str(path_or_array)!r}: {e}; give a PNG/JPEG/WebP file") from None
    scale = max(height / img.height, width / img.width)
    img = img.resize((max(width, round(img.width * scale)), max(height, round(img.height * scale))), Image.LANCZOS)
    left, top = (img.width - width) // 2, (img.height - height) // 2
    img = img.crop((left, top, left + width, top + height))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1
    return x[None]


class WorldSession:
    """A world that goes on for as long as `step` is called; each chunk sees all it made before as history."""

    def __new__(cls, world: WorldModel, *args, **kwargs):
        # A Yume-I2V-540P model (CLIP branch) needs its own conditioning: same API, see yume.session_i2v.
        if cls is WorldSession and world.dit.config.image_dim:
            from yume.session_i2v import I2VWorldSession

            return super().__new__(I2VWorldSession)
        return super().__new__(cls)

    def __init__(self, world: WorldModel, prompt: str = "", *, image=None, config: SessionConfig | None = None):
        self.world = world
        self.config = config or SessionConfig()
        self.prompt = prompt.strip()
        self.event: str | None = None
        self.index = 0
        self.log: list[dict] = []
        h = self.config.height or world.default_resolution[0]
        w = self.config.width or world.default_resolution[1]
        self.height, self.width = h, w
        s = world.vae.spatial_stride
        self.latent_hw = (h // s, w // s)
        if self.latent_hw[0] % 2 or self.latent_hw[1] % 2:
            raise ValueError(f"{h}x{w}: height and width must be multiples of {2 * s} for this model")
        if self.config.sampler != "euler" and not world.dit.config.image_dim:
            raise ValueError(
                f"sampler {self.config.sampler!r} is the Yume-I2V-540P release's; model {world.name!r} samples with 'euler'"
            )
        policies = ("release", "full", "tscm") if world.dit.config.history_embeddings else ("full", "tscm")
        if self.config.history is None:
            # The policy the model was trained with: a built-in model says; Yume checkpoints use the release table,
            # a plain Wan2.2 checkpoint (no history embeddings) sees every frame.
            self.config = dataclasses.replace(self.config, history=world.info.get("history", policies[0]))
        recipe = SAMPLING_PRESETS[world.info.get("sampling", "release-4step")]
        self.config = dataclasses.replace(
            self.config, **{k: v for k, v in recipe.items() if getattr(self.config, k) is None}
        )
        if self.config.prompt_mode is None:
            self.config = dataclasses.replace(self.config, prompt_mode=world.info.get("prompt_mode", "joined"))
        if self.config.chunk_latents is None:
            # The chunk length the model was trained on: a built-in model says; the release's is 8 latents.
            self.config = dataclasses.replace(self.config, chunk_latents=world.info.get("chunk_latents", 8))
        if self.config.history not in policies:
            raise ValueError(
                f"history policy {self.config.history!r} is not available for this model; choose {', '.join(policies)}"
            )
        self.progress = False  # show a progress bar over each chunk's denoising steps
        self.history: torch.Tensor | None = None  # clean latents so far, [1, C, F_h, h, w] on the DiT device
        self.decoder = world.vae.stream_decoder()
        self._negative: torch.Tensor | None = None
        if image is not None:
            self._start_from_image(image)

    # --- set-up -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _start_from_image(self, image) -> None:
        """The release's image-to-world start: a 17-frame still -> 5 clean history latents. A model trained to start
        from the image alone (info "image_start" = "frame", the built-in street world) gets that one latent instead."""
        pixels = load_image(image, self.height, self.width) if not torch.is_tensor(image) else image
        pixels = pixels.to(self.world.vae.device)
        if self.world.info.get("image_start", "still") == "frame":
            latents = self.world.vae.encode(pixels.unsqueeze(2))
        else:
            latents = self.world.vae.encode_image(pixels)
        self.history = latents.to(device=self.world.device, dtype=self.world.dtype)
        # Prime the streaming decoder with the still, so the first chunk continues it without a seam.
        self.decoder.decode(latents)

    def caption(self, action: Action) -> str:
        from yume.actions import caption

        return caption(action, self._scene_text(), self.config.vocab)

    def _scene_text(self) -> str | None:
        """The scene prompt, then the current event, as sentences."""
        parts = [p if p[-1] in ".!?。" else p + "." for p in (self.prompt, self.event) if p]
        return " ".join(parts) or None

    def _text(self, action: Action) -> torch.Tensor:
        emb = encode_prompt(
            self.world.text, action, self._scene_text(), self.config.prompt_mode, self.world.cache, self.config.vocab
        )
        return emb.to(device=self.world.device, dtype=self.world.dtype)

    def _negative_text(self) -> torch.Tensor:
        if self._negative is None:
            self._negative = self.world.encode_texts([self.config.negative_prompt])[0]
        return self._negative

    # --- one chunk ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(
        self,
        action: Action | str = "",
        event: str | None = None,
        *,
        on_frames: Callable[[np.ndarray], None] | None = None,
    ) -> Chunk:
        """Make the next chunk. `event` (if given) replaces the current event from this chunk on ("" clears it).

        `on_frames` receives each piece of uint8 frames [T, H, W, 3] as soon as the VAE has decoded it.
        """
        action = Action.parse(action) if isinstance(action, str) else action
        if event is not None:
            self.event = event.strip() or None
        world, timings = self.world, {}
        t0 = time.perf_counter()
        sample = self._prepare(action)
        timings["text"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        latents = sample().to(world.dtype)
        if world.device.type == "cuda":
            torch.cuda.synchronize()
        timings["denoise"] = time.perf_counter() - t1
        self.history = latents if self.history is None else torch.cat([self.history, latents], dim=2)

        t2 = time.perf_counter()
        frames = self._decode(latents, on_frames)
        timings["decode"] = time.perf_counter() - t2
        chunk = Chunk(self.index, action, self.event, self.caption(action), frames, latents, timings)
        self.log.append({"action": str(action), "event": self.event, "frames": int(frames.shape[0])})
        self.index += 1
        return chunk

    def _prepare(self, action: Action) -> Callable[[], torch.Tensor]:
        """Encode this chunk's text and draw its noise; return the sampler that makes the chunk's latents."""
        world, cfg = self.world, self.config
        text = self._text(action)
        dit, history, policy = world.dit, self.history, cfg.history

        def model(x, sigma, ctx):
            return dit(x, sigma, [ctx] * x.shape[0], history, policy=policy).float()

        denoise = cfg_denoiser(model, text, self._negative_text() if cfg.guidance != 1.0 else None, cfg.guidance)
        shape = (1, dit.config.in_dim, cfg.chunk_latents, *self.latent_hw)
        # Noise from (seed, chunk index): the same seed gives the same world, also after save and resume.
        noise = get_noise(shape, seed=cfg.seed * 1_000_003 + self.index, device=world.device)
        sigmas = get_schedule(cfg.steps, cfg.shift).to(world.device)
        return lambda: sample_euler(denoise, noise, sigmas, disable=not self.progress)

    def _decode(self, latents: torch.Tensor, on_frames) -> np.ndarray:
        world = self.world
        if world.offload == "text" and world.device.type == "cuda":
            world.dit.to("cpu")
        try:
            pieces = []
            # Latent by latent: the first frames reach the caller before the chunk is fully decoded.
            for i in range(latents.shape[2]):
                frames = to_uint8(self.decoder.decode(latents[:, :, i : i + 1]))
                pieces.append(frames)
                if on_frames is not None:
                    on_frames(frames)
            return np.concatenate(pieces)
        finally:
            if world.offload == "text" and world.device.type == "cuda":
                world.dit.to(latents.device)

    def run(self, actions, events: dict[int, str] | None = None, on_frames=None):
        """Yield a Chunk per action; `events` maps a chunk number (counted from this session's start) to an event."""
        events = events or {}
        for action in actions:
            yield self.step(action, events.get(self.index), on_frames=on_frames)

    # --- save / resume ------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the session (history latents, decoder cache, text state, log) to one safetensors file."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state_tensors().items()}
        meta = {
            "format": SESSION_FORMAT,
            "model": self.world.name,
            "config": dataclasses.asdict(self.config),
            "prompt": self.prompt,
            "event": self.event,
            "index": self.index,
            "log": self.log,
            "resolution": [self.height, self.width],
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        save_file(tensors, str(tmp), metadata={"yume_session": json.dumps(meta)})
        tmp.replace(path)  # a crash mid-write never leaves a broken session file
        return path

    @classmethod
    def load(cls, path, world: WorldModel) -> WorldSession:
        """Resume a session saved by `save` with the same model; it continues exactly where it stopped."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["yume_session"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises several types for a bad file
            raise ValueError(f"{path}: not a readable yume session file ({e})") from None
        if meta.get("format") != SESSION_FORMAT:
            raise ValueError(f"{path}: session format {meta.get('format')} is not supported (expected {SESSION_FORMAT})")
        if meta["model"] != world.name:
            raise ValueError(f"{path} was made with model {meta['model']!r}, not {world.name!r}; load that model")
        session = cls.__new__(cls, world)  # the session class for this model (see __new__)
        session._restore(world, meta, tensors)
        return session

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """What `save` stores besides the metadata: the decoder's stream and the history latents."""
        tensors = {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}
        if self.history is not None:
            tensors["history"] = self.history
        return tensors

    def _restore(self, world: WorldModel, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Set up a new session with the saved settings, then put back the state `_state_tensors` gave."""
        WorldSession.__init__(self, world, meta["prompt"], config=SessionConfig(**meta["config"]))
        self.event, self.index, self.log = meta["event"], meta["index"], meta["log"]
        if "history" in tensors:
            self.history = tensors["history"].to(device=world.device, dtype=world.dtype)
        decoder_state = {k[len("decoder.") :]: v.to(world.vae.device) for k, v in tensors.items() if k.startswith("decoder.")}
        self.decoder.load_state_dict(decoder_state)
