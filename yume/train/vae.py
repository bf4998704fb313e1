"""`yume train vae`: fit a Wan-style VAE to a clip dataset with an L1 + KL loss, then measure its latent statistics."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from yume.data.clips import iter_clips, read_frames
from yume.vae import VAE_CONFIGS, WanVAE


@dataclass
class VAETrainConfig:
    """One VAE run: random `frames` x `crop` x `crop` windows of the dataset's clips, `batch_size` per step."""

    dataset: str
    out: str
    # The structure: trained from scratch when there is no `init`; with `init`, "" keeps init's own structure and
    # a preset moves init's weights into it (e.g. sim-small -> sim-small-t2: the same weights less the time convs
    # a 2x temporal stride has no use for; see `restructure`).
    preset: str = ""
    init: str = ""  # a VAE folder to continue from (e.g. to fine-tune on longer windows); "" = random `preset`
    steps: int = 2000
    batch_size: int = 4
    frames: int = 5  # 1 + 4k: whole latent frames
    crop: int = 64
    lr: float = 3e-4
    final_lr_ratio: float = 0.1  # cosine decay from lr to lr * final_lr_ratio
    kl_weight: float = 1e-6
    # > 0: add this times the L1 between the frame-to-frame differences of the reconstruction and of the input: it
    # charges motion a decoder damps or invents between the frames of one latent, which the plain L1 barely sees.
    # Measured on the sim VAE (docs/sim-model.md): no gain in IF ceiling from a decoder-only fine-tune with it.
    temporal_weight: float = 0.0
    # > 0: the decoder sees the latent plus Gaussian noise of this many of the VAE's per-channel latent stds (the
    # units a DiT's latents are normalised in), so it learns to decode latents a little off the encoder's, as a
    # DiT's are, instead of sharpening only on exact ones.
    latent_noise: float = 0.0
    # > 0: each step's windows come in pairs, the second cut a random 1-7 px down and right of the first (another
    # phase of the 8x latent grid on both axes), and this times the L1 between the two reconstructions where they
    # show the same pixels is added. A pan moves the picture across the latent grid; a codec whose output depends on
    # that phase makes a rigid pan swim (measured on the sim VAE: 0.16 px a frame of parallax where the render has 0.07,
    # docs/sim-model.md), which the IF estimator reads as a step. The plain L1 charges that only indirectly.
    shift_weight: float = 0.0
    autocast: str = "bf16"
    seed: int = 0
    max_clips: int = 0  # 0 = every clip of the dataset
    stats_clips: int = 32  # clips encoded whole to measure the per-channel latent mean / std
    log_every: int = 50
    max_minutes: float = 0.0  # > 0: stop after this wall time; the lr schedule runs on max(step, time) progress
    device: str = ""  # "" = cuda when available, else cpu
    # "decoder": the encoder (and so the latent space) stays fixed, so a DiT trained on this VAE's latents can be
    # decoded by the result; "all" trains both halves.
    train: str = "all"

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 1")
        if self.frames < 1 or (self.frames - 1) % 4:
            raise ValueError(f"frames={self.frames} must be 1 + 4k (whole latent frames), e.g. 5 or 9")
        if self.preset and self.preset not in VAE_CONFIGS:
            raise ValueError(f"unknown VAE preset {self.preset!r}; choose one of {', '.join(VAE_CONFIGS)}")
        if self.train not in ("all", "decoder"):
            raise ValueError(f"train={self.train!r} must be 'all' or 'decoder'")
        if self.train == "decoder" and (not self.init or self.preset):
            raise ValueError("train='decoder' keeps a trained encoder: give init, the VAE to continue, and no preset")
        if self.temporal_weight < 0 or (self.temporal_weight > 0 and self.frames < 2):
            raise ValueError(f"temporal_weight={self.temporal_weight} must be >= 0, and > 0 needs frames > 1 "
                             f"(now {self.frames})")  # fmt: skip
        if self.autocast not in ("bf16", "none"):
            raise ValueError(f"autocast={self.autocast!r} must be 'bf16' or 'none'")
        if self.latent_noise < 0:
            raise ValueError(f"latent_noise={self.latent_noise} must be >= 0")
        if self.shift_weight < 0:
            raise ValueError(f"shift_weight={self.shift_weight} must be >= 0")
        if self.shift_weight > 0 and self.crop <= 2 * SHIFT_MARGIN:
            raise ValueError(f"crop={self.crop} must be > {2 * SHIFT_MARGIN} for shift_weight > 0 (the pair's "
                             f"compared region leaves a {SHIFT_MARGIN}-px border on every side)")  # fmt: skip


SHIFT_MARGIN = 8  # the sim VAEs' spatial stride: offsets 1-7 cover every phase of the latent grid


def load_videos(dataset: str | Path, max_clips: int = 0) -> list[np.ndarray]:
    """Every clip's frames [T, H, W, 3] uint8 (its [start, stop) range), at most `max_clips` clips (0 = all)."""
    videos = []
    for clip in iter_clips(dataset):
        videos.append(read_frames(clip.video, clip.start, clip.stop))
        if max_clips and len(videos) >= max_clips:
            break
    if not videos:
        raise ValueError(f"dataset {dataset} has no clips")
    return videos


def sample_batch(
    videos: list[np.ndarray], rng: np.random.Generator, batch: int, frames: int, crop: int
) -> torch.Tensor:
    """Random windows [B, 3, frames, crop, crop] in [-1, 1], each from a random clip, start and position."""
    out = []
    for _ in range(batch):
        v = videos[rng.integers(len(videos))]
        t, h, w, _ = v.shape
        if t < frames or h < crop or w < crop:
            raise ValueError(f"a clip of {t} frames at {h}x{w} is smaller than the {frames} x {crop} x {crop} window")
        t0, y0, x0 = rng.integers(t - frames + 1), rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        out.append(v[t0 : t0 + frames, y0 : y0 + crop, x0 : x0 + crop])
    x = torch.from_numpy(np.stack(out)).permute(0, 4, 1, 2, 3).float()  # [B, 3, T, H, W]
    return x / 127.5 - 1.0


def vae_loss(vae: WanVAE, x: torch.Tensor, generator: torch.Generator, kl_weight: float,
             temporal_weight: float = 0.0, latent_noise: float = 0.0, shift_weight: float = 0.0,
             shift: tuple[int, int] = (0, 0)) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """L1 reconstruction of a posterior sample + kl_weight x KL to N(0, 1), both means over elements, + temporal_weight
    x the L1 of the reconstruction's frame differences against the input's (x [B, 3, T, H, W]). `latent_noise`: the
    decoder gets the sample plus that many latent stds of Gaussian noise.

    shift_weight > 0: x holds pairs (x[:B/2], x[B/2:]) where the second is the first's scene cut `shift` = (dy, dx)
    px further down and right (`shift_pairs`); + shift_weight x the L1 between the two reconstructions over the
    pixels both show, SHIFT_MARGIN px in from every edge of either window (borders differ for any codec)."""
    posterior = vae.model.encode(x).latent_dist
    # Noise drawn on the CPU generator, so a run draws the same samples on any device.
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(x.device)
    if latent_noise > 0:
        std = torch.tensor(vae.model.config.latents_std, device=x.device).view(1, -1, 1, 1, 1)
        z = z + latent_noise * std * torch.randn(z.shape, generator=generator).to(x.device)
    recon = vae.model.decode(z).sample.float()
    l1 = (recon - x).abs().mean()
    kl = 0.5 * (posterior.mean.float() ** 2 + posterior.var.float() - 1.0 - posterior.logvar.float()).mean()
    loss, metrics = l1 + kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}
    if temporal_weight > 0:
        dt = (recon.diff(dim=2) - x.diff(dim=2)).abs().mean()
        loss = loss + temporal_weight * dt
        metrics["dt_l1"] = dt.item()
    if shift_weight > 0:
        a, b = recon.chunk(2)
        (dy, dx), m, (h, w) = shift, SHIFT_MARGIN, x.shape[-2:]
        sh = (a[..., dy + m : h - m, dx + m : w - m] - b[..., m : h - m - dy, m : w - m - dx]).abs().mean()
        loss = loss + shift_weight * sh
        metrics["shift_l1"] = sh.item()
    return loss, metrics


def shift_pairs(x: torch.Tensor, rng: np.random.Generator, crop: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Windows [B, 3, T, crop + SHIFT_MARGIN, crop + SHIFT_MARGIN] -> (pairs [2B, 3, T, crop, crop], (dy, dx)): each
    window's top-left crop, then the crop (dy, dx) px down and right of it, dy and dx drawn from 1..SHIFT_MARGIN-1:
    the same scene at another phase of the latent grid on both axes."""
    dy, dx = (int(v) for v in rng.integers(1, SHIFT_MARGIN, size=2))
    return torch.cat([x[..., :crop, :crop], x[..., dy : dy + crop, dx : dx + crop]]), (dy, dx)


@torch.no_grad()
def latent_statistics(vae: WanVAE, videos: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw (unnormalised) posterior means over whole clips (cut to 1 + 4k frames)."""
    zs = []
    for v in videos:
        t = 1 + (len(v) - 1) // 4 * 4
        x = torch.from_numpy(v[:t]).permute(3, 0, 1, 2)[None].float().to(vae.device) / 127.5 - 1.0
        zs.append(vae.model.encode(x).latent_dist.mean.float().transpose(0, 1).reshape(vae.z_dim, -1))
    z = torch.cat(zs, dim=1)
    return [round(float(m), 5) for m in z.mean(1)], [round(float(s), 5) for s in z.std(1)]


def restructure(src: WanVAE, preset: str, seed: int = 0) -> WanVAE:
    """`src`'s weights in the structure of `preset`, which may differ from it only by temporal-sampling convs.

    A VAE with fewer temporal downsamplings (sim-small -> sim-small-t2) has the same convolutions, so an image-
    trained VAE's weights carry over but for the `time_conv`s it drops (one it gains starts at random). Its outputs
    do shift: the parameter-free residual shortcut of a block that no longer samples time groups its channels
    differently, which the training that follows has to settle. The latent statistics stay the preset's until
    training measures them.
    """
    dst = WanVAE.from_config(preset, seed=seed)
    try:
        missing, unexpected = dst.model.load_state_dict(src.model.state_dict(), strict=False)
    except RuntimeError as e:  # shape mismatches: another width or channel count
        first = str(e).splitlines()[1].strip()
        raise ValueError(f"the init VAE does not fit preset {preset!r} (other sizes, not only the temporal "
                         f"stride): {first}; drop --preset to keep its own structure") from None  # fmt: skip
    odd = [k for k in missing + unexpected if ".time_conv." not in k]
    if odd:
        raise ValueError(f"the init VAE and preset {preset!r} differ in more than temporal sampling: {len(odd)} "
                         f"weights such as {', '.join(odd[:3])}; drop --preset to keep its own structure")  # fmt: skip
    return dst


def train_vae(cfg: VAETrainConfig, callback: Callable[[dict], None] | None = None) -> WanVAE:
    """Train `cfg.preset` from scratch (or continue `cfg.init`, restructured to `cfg.preset` if given), write it to
    cfg.out (diffusers layout, measured latent stats) and return it."""
    videos = load_videos(cfg.dataset, cfg.max_clips)
    rng = np.random.default_rng(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    from yume.world import default_device

    device = torch.device(cfg.device or default_device())
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={cfg.device!r} asked for, but this torch has no CUDA device; use cpu")
    if not cfg.init:
        vae = WanVAE.from_config(cfg.preset or "sim-small", seed=cfg.seed)
    elif cfg.preset:
        vae = restructure(WanVAE.from_pretrained(cfg.init), cfg.preset, seed=cfg.seed)
    else:
        vae = WanVAE.from_pretrained(cfg.init)
    vae.to(device)
    vae.model.train().requires_grad_(True)
    if cfg.train == "decoder":
        vae.model.encoder.requires_grad_(False)
        vae.model.quant_conv.requires_grad_(False)
    trainable = [p for p in vae.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.autocast == "bf16" else nullcontext()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1), encoding="utf-8")
    start = time.perf_counter()
    with (out / "log.jsonl").open("w", encoding="utf-8") as log:
        for step in range(cfg.steps):
            elapsed = time.perf_counter() - start
            if cfg.max_minutes and elapsed > 60 * cfg.max_minutes:
                break
            progress = step / max(cfg.steps - 1, 1)
            if cfg.max_minutes:
                progress = max(progress, elapsed / (60 * cfg.max_minutes))
            lr = cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.shift_weight > 0:  # batch_size pairs: twice the windows, half of them shifted
                x, shift = shift_pairs(sample_batch(videos, rng, cfg.batch_size, cfg.frames, cfg.crop + SHIFT_MARGIN),
                                       rng, cfg.crop)  # fmt: skip
            else:
                x, shift = sample_batch(videos, rng, cfg.batch_size, cfg.frames, cfg.crop), (0, 0)
            x = x.to(device, non_blocking=True)
            with amp:
                loss, metrics = vae_loss(vae, x, g, cfg.kl_weight, cfg.temporal_weight, cfg.latent_noise,
                                         cfg.shift_weight, shift)  # fmt: skip
            if not torch.isfinite(loss):
                raise RuntimeError(f"VAE loss is {loss.item()} at step {step + 1}; lower lr (now {cfg.lr})")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                metrics.update(step=step + 1, lr=lr, elapsed_s=round(time.perf_counter() - start, 1))
                log.write(json.dumps(metrics) + "\n")
                log.flush()
                if callback is not None:
                    callback(metrics)
    vae.model.eval().requires_grad_(False)
    if cfg.train == "all":  # a fixed encoder keeps its statistics: the DiT's latents were normalised with them
        mean, std = latent_statistics(vae, videos[: cfg.stats_clips])
        vae.model.register_to_config(latents_mean=mean, latents_std=std)
    vae.to("cpu")
    vae.save_pretrained(out)
    return vae
