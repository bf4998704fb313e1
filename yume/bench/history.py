"""`yume bench history`: time per chunk against chunk index for the history policies (the paper's Figure 7)."""

from __future__ import annotations

import csv
import textwrap
import time
from dataclasses import asdict, dataclass

import torch

from yume.config import model_config
from yume.models import tscm
from yume.models.wan import YumeTransformer

POLICIES = ("full", "release", "tscm")
VAE_STRIDE = 16  # pixels per latent pixel (Wan2.2 VAE)


@dataclass(frozen=True)
class ChunkTiming:
    policy: str
    chunk: int  # 1-based chunk index of the simulated session
    history_frames: int  # clean history latents before this chunk
    attention_tokens: int  # self-attention sequence: packed history + chunk
    memory_tokens: int  # TSCM channel-stream tokens (0 without the memory branch)
    seconds: float  # wall time of `steps` denoising forwards
    cpu_seconds: float  # this process's CPU time for them (on a shared CPU: the work, without others' load)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_history(
    config: str = "small",
    *,
    height: int = 256,
    width: int = 448,
    chunks: int = 8,
    steps: int = 1,
    repeats: int = 1,
    policies=POLICIES,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    chunk_frames: int = 8,
    start_frames: int = 5,
    seed: int = 0,
    callback=None,
) -> list[ChunkTiming]:
    """Simulate a session on a randomly initialised model: the history starts at `start_frames` latents (the image
    of image-to-world) and grows by `chunk_frames` per chunk; each chunk's time is that of `steps` forwards, the
    fastest of `repeats` tries (robust to a busy machine).

    `tscm` runs on a twin with the memory branch on (memory_dim 96, same seed); `full` and `release` without it.
    Policies alternate within each chunk so that background load hits them alike; each gets one untimed warm-up
    forward. `callback(timing)` is called after every timed chunk.
    """
    if height % 32 or width % 32:
        raise ValueError(f"resolution {height}×{width} must be multiples of 32 (VAE stride 16 × patch 2)")
    if chunks < 2 or steps < 1 or repeats < 1:
        raise ValueError(f"need chunks >= 2 (the report divides by chunk 2), steps >= 1, repeats >= 1; "
                         f"got {chunks}, {steps}, {repeats}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}")
    device = torch.device(device)
    cfg = model_config(config).replace(memory_dim=0)
    if not cfg.history_embeddings and "release" in policies:
        raise ValueError(f"config {config!r} has no history embeddings, so it cannot run 'release'; drop it")
    models = {}
    for policy in policies:
        memory = 96 if policy == "tscm" else 0
        if memory not in models:
            models[memory] = YumeTransformer.from_config(
                cfg.replace(memory_dim=memory), dtype=dtype, device=device, seed=seed
            ).eval()
    h, w = height // VAE_STRIDE, width // VAE_STRIDE
    g = torch.Generator(device="cpu").manual_seed(seed)
    max_frames = start_frames + chunk_frames * (chunks - 1)
    history = torch.randn(1, cfg.in_dim, max_frames, h, w, generator=g).to(device, dtype)
    x = torch.randn(1, cfg.in_dim, chunk_frames, h, w, generator=g).to(device, dtype)
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g).to(device, dtype)
    chunk_tokens = chunk_frames * (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])

    def model_for(policy):
        return models[96 if policy == "tscm" else 0]

    rows = []
    with torch.inference_mode():
        for policy in policies:
            model_for(policy)(x, 0.5, context, history[:, :, :start_frames], policy=policy)
        for k in range(1, chunks + 1):
            frames = start_frames + chunk_frames * (k - 1)
            past = history[:, :, :frames]
            for policy in policies:
                model = model_for(policy)
                walls, cpus = [], []
                for _ in range(repeats):
                    _sync(device)
                    start, cpu = time.perf_counter(), time.process_time()
                    for _ in range(steps):
                        model(x, 0.5, context, past, policy=policy)
                    _sync(device)
                    walls.append(time.perf_counter() - start)
                    cpus.append(time.process_time() - cpu)
                memory = 0
                if model.config.memory_dim:
                    memory = len(tscm.memory_windows(frames)) * -(-h // 4) * -(-w // 4)
                tokens = model.num_history_tokens(frames, h, w, policy) + chunk_tokens
                row = ChunkTiming(policy, k, frames, tokens, memory, min(walls), min(cpus))
                rows.append(row)
                if callback is not None:
                    callback(row)
    return sorted(rows, key=lambda r: (list(policies).index(r.policy), r.chunk))


CLOCKS = {"wall": "seconds", "cpu": "cpu_seconds"}


def growth(rows: list[ChunkTiming], clock: str = "wall") -> dict[str, float]:
    """time(last chunk) / time(chunk 2) per policy: ~1 when the cost is flat, ~N/2 when it grows linearly."""
    out = {}
    for policy in dict.fromkeys(r.policy for r in rows):
        times = {r.chunk: getattr(r, CLOCKS[clock]) for r in rows if r.policy == policy}
        out[policy] = times[max(times)] / times[2]
    return out


def format_table(rows: list[ChunkTiming], clock: str = "wall") -> str:
    """Markdown table: seconds per chunk (`clock`: wall or this process's CPU time) and attention/memory tokens."""
    attr = CLOCKS[clock]
    policies = list(dict.fromkeys(r.policy for r in rows))
    by = {(r.policy, r.chunk): r for r in rows}
    chunks = sorted({r.chunk for r in rows})
    head = ["chunk", "history"] + [f"{p} s" for p in policies] + [f"{p} tokens" for p in policies]
    lines = [head]
    for k in chunks:
        first = by[(policies[0], k)]
        cells = [str(k), str(first.history_frames)]
        cells += [f"{getattr(by[(p, k)], attr):.3f}" for p in policies]
        cells += [str(by[(p, k)].attention_tokens) + (f"+{by[(p, k)].memory_tokens}m" if by[(p, k)].memory_tokens else "")
                  for p in policies]
        lines.append(cells)
    ratio = growth(rows, clock)
    lines.append([f"chunk {chunks[-1]}/2", ""] + [f"{ratio[p]:.2f}x" for p in policies] + [""] * len(policies))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["| " + " | ".join(c.rjust(wd) for c, wd in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (wd + 1) + ":" for wd in widths) + "|")
    return "\n".join(text)


def write_csv(rows: list[ChunkTiming], path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def plot(rows: list[ChunkTiming], path, title: str, clock: str = "wall") -> None:
    """Seconds per chunk against chunk index, one line per policy (needs the optional matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("the plot needs matplotlib: pip install 'yume[bench]' (or matplotlib)") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy in dict.fromkeys(r.policy for r in rows):
        pts = [(r.chunk, getattr(r, CLOCKS[clock])) for r in rows if r.policy == policy]
        ax.plot(*zip(*pts), marker="o", label=policy)
    ax.set_xlabel("chunk index")
    ax.set_ylabel(f"seconds per chunk ({clock})")
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
