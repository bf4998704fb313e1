"""`yume bench generate`: per-chunk latency (text / denoise / VAE), frames per second and peak memory of a session."""

from __future__ import annotations

import resource
import time

import torch

from yume.config import model_config
from yume.models.text import TextEncoder
from yume.models.wan import YumeTransformer
from yume.session import SessionConfig, WorldSession
from yume.vae import WanVAE
from yume.world import WorldModel, parse_dtype


def random_world(config: str, vae: str, device: str, dtype: str, seed: int = 0) -> WorldModel:
    """A world of random weights with the structure of `config` (timing needs no trained weights).

    The text encoder is a tiny random UMT5 projecting to the DiT's text width: with the embedding cache, the real
    encoder runs once per distinct caption, so it is not part of the per-chunk cost being measured here.
    """
    cfg = model_config(config)
    dit = YumeTransformer.from_config(cfg, seed=seed, device=device, dtype=parse_dtype(dtype)).eval()
    v = WanVAE.from_config(vae, seed=seed, device=device)
    text = TextEncoder.from_config("tiny", seed=seed, d_model=cfg.text_dim, text_len=cfg.text_len)
    return WorldModel(dit, v, text, f"random:{config}", info={"builtin": True, "random_weights": True})


def bench_generate(
    config: str = "tiny",
    vae: str = "tiny",
    height: int = 128,
    width: int = 128,
    chunks: int = 4,
    steps: int = 4,
    history: str = "release",
    device: str | None = None,
    dtype: str = "bf16",
    image: bool = True,
) -> list[dict]:
    """Run a session of `chunks` chunks and print a table of its timings; chunk 1 includes warm-up."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    world = random_world(config, vae, device, dtype)
    session_cfg = SessionConfig(height=height, width=width, steps=steps, history=history)
    start = torch.zeros(1, 3, height, width) if image else None
    session = WorldSession(world, "A city street.", image=start, config=session_cfg)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rows = []
    for i in range(chunks):
        t0 = time.perf_counter()
        chunk = session.step("W")
        total = time.perf_counter() - t0
        n = chunk.frames.shape[0]
        rows.append({
            "chunk": i + 1,
            "history_latents": session.history.shape[2] - chunk.latents.shape[2],
            "frames": n,
            **{k: chunk.seconds[k] for k in ("text", "denoise", "decode")},
            "total": total,
            "fps_denoise": n / chunk.seconds["denoise"],
            "fps_end_to_end": n / total,
        })  # fmt: skip
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = (torch.cuda.max_memory_allocated() / 2**30) if device.startswith("cuda") else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)  # fmt: skip
    print(f"device {gpu} · DiT {config} {dtype} · VAE {vae} fp32 · {height}x{width} · {steps} steps · "
          f"history {history} · start from {'image' if image else 'text'} · peak {'GPU' if device.startswith('cuda') else 'RSS'} "
          f"memory {peak:.2f} GiB")  # fmt: skip
    print("| chunk | history latents | frames | text s | denoise s | VAE s | total s | FPS denoise | FPS end-to-end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['chunk']} | {r['history_latents']} | {r['frames']} | {r['text']:.3f} | {r['denoise']:.3f} | "
              f"{r['decode']:.3f} | {r['total']:.3f} | {r['fps_denoise']:.1f} | {r['fps_end_to_end']:.1f} |")  # fmt: skip
    return rows
