"""The latent cache: each clip VAE-encoded and its texts T5-encoded once, stored as safetensors shards.

Layout::

    cache/index.json                 format, latent grid, text dim, vocabulary, one entry per clip
    cache/text.safetensors           "action/<i>" for the 81 action captions (i indexes ALL_ACTIONS), "empty"
    cache/shard-00000.safetensors    "latents/<id>" [48, F, h, w], "scene/<id>" [L, D], "joined/<id>/<i>" [L, D]

Per latent frame the cache keeps the clip's action index (-1 = unlabelled), so a training chunk gets the caption of
the action it shows. Latent 0 encodes pixel frame 0 alone; latent j >= 1 encodes frames 4j-3 .. 4j.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from yume.actions import ALL_ACTIONS, Action, action_caption, caption
from yume.data.clips import Clip, iter_clips, read_frames

INDEX = "index.json"
TEXT_FILE = "text.safetensors"
FORMAT = 1
ACTION_INDEX = {a: i for i, a in enumerate(ALL_ACTIONS)}


def scene_text(clip: Clip) -> str:
    """The scene/event half of a decomposed caption: caption, then the event if any."""
    return " ".join(t.strip() for t in (clip.caption, clip.event or "") if t and t.strip())


def latent_actions(transitions: list[Action | None], num_latents: int, temporal_stride: int = 4) -> list[int]:
    """Action index per latent frame: the most common label over the transitions into the frames it encodes."""
    out = []
    for j in range(num_latents):
        span = transitions[:1] if j == 0 else transitions[temporal_stride * (j - 1) : temporal_stride * j]
        labels = [ACTION_INDEX[a] for a in span if a is not None]
        out.append(Counter(labels).most_common(1)[0][0] if labels else -1)
    return out


def prepare_frames(frames: np.ndarray, resolution: tuple[int, int] | None, multiple: int = 32) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [1, 3, T, H', W'] in [-1, 1]: resized (short side) and centre-cropped to `resolution`."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)  # [3, T, H, W]
    h, w = video.shape[-2:]
    if resolution is None:
        if h % multiple or w % multiple:
            raise ValueError(
                f"frames are {h}x{w}, not multiples of {multiple}; give a resolution to resize and crop to"
            )
        return video[None]
    th, tw = resolution
    if th % multiple or tw % multiple:
        raise ValueError(f"resolution {th}x{tw} must be multiples of {multiple} (VAE stride 16 x patch 2)")
    scale = max(th / h, tw / w)
    size = (max(th, round(h * scale)), max(tw, round(w * scale)))
    if size != (h, w):
        video = torch.nn.functional.interpolate(video, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - th) // 2, (size[1] - tw) // 2
    return video[None, :, :, top : top + th, left : left + tw].clamp(-1, 1)


def encode_clip(clip: Clip, vae, text_encoder, *, resolution=None, max_frames=None, vocab: str = "1.5"):
    """One clip -> (latents [C, F, h, w], action index per latent, texts): texts["scene"] is the scene/event
    embedding [L, D], texts[i] the joined caption of action index i for every i the clip shows."""
    stride = vae.temporal_stride
    frames = read_frames(clip.video, clip.start, clip.stop)
    if max_frames is not None:
        frames = frames[:max_frames]
    usable = 1 + (len(frames) - 1) // stride * stride
    video = prepare_frames(frames[:usable], resolution)
    with torch.no_grad():
        latents = vae.encode(video.to(vae.device))[0].float().cpu().contiguous()
    per_latent = latent_actions(clip.transition_actions(usable), latents.shape[1], stride)
    used = sorted(set(per_latent))
    scene = scene_text(clip)
    joined_texts = [caption(ALL_ACTIONS[i], scene, vocab) if i >= 0 else scene for i in used]
    embs = text_encoder.encode([scene, *joined_texts])
    texts = {"scene": embs[0]} | {i: e for i, e in zip(used, embs[1:])}  # action index -> joined caption
    return latents, per_latent, {k: v.float().cpu().contiguous() for k, v in texts.items()}


_WORKER: dict = {}


def _init_worker(vae, text_encoder, options: dict, threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    # Each worker holds its own copy on the VAE's device: on a GPU, several processes keep it busy where one
    # process spends most of its time in Python between the VAE's small kernels.
    _WORKER.update(vae=vae.to(device), text_encoder=text_encoder, options=options)


def _encode_in_worker(clip: Clip):
    return encode_clip(clip, _WORKER["vae"], _WORKER["text_encoder"], **_WORKER["options"])


def build_cache(
    dataset: str | Path | list[str | Path],
    out: str | Path,
    vae,
    text_encoder,
    *,
    resolution: tuple[int, int] | None = None,
    max_frames: int | None = None,
    vocab: str = "1.5",
    shard_bytes: int = 1 << 30,
    workers: int = 1,
    on_clip=None,
) -> dict:
    """Encode every clip of `dataset` (one folder or several) once into `out`; returns the index.

    Clips are cut to 1 + sk frames, s the VAE's temporal stride (and to `max_frames`); `vae` is a `yume.vae.WanVAE`,
    `text_encoder` a `yume.models.text.TextEncoder` whose dim is the DiT's text_dim. `workers` > 1 encodes clips in
    that many processes (one CPU thread each unless there are threads to spare), each with a copy of the VAE on its
    device and the text encoder on the CPU; the cache is the same as with one (on a GPU, up to its kernels'
    rounding). `on_clip(id, num_latents)` reports progress, in clip order.
    """
    from safetensors.torch import save_file

    datasets = [dataset] if isinstance(dataset, (str, Path)) else list(dataset)
    clips = [clip for d in datasets for clip in iter_clips(d)]
    if not clips:
        raise ValueError(f"dataset {', '.join(map(str, datasets))} has no clips to cache")
    repeated = sorted(i for i, n in Counter(c.id for c in clips).items() if n > 1)
    if repeated:
        raise ValueError(f"clip ids {', '.join(repeated[:5])} appear more than once across {', '.join(map(str, datasets))}; "
                         "clip ids must be unique in one cache (e.g. synthesise with different --first-seed)")  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    actions = [action_caption(a, vocab) for a in ALL_ACTIONS]
    text = {f"action/{i}": e for i, e in enumerate(text_encoder.encode(actions))}
    text["empty"] = text_encoder.encode([""])[0]
    save_file({k: v.float().contiguous().cpu() for k, v in text.items()}, out / TEXT_FILE)

    entries, shard, shard_size, shards = [], {}, 0, []

    def flush():
        nonlocal shard, shard_size
        if shard:
            name = f"shard-{len(shards):05d}.safetensors"
            save_file(shard, out / name)
            shards.append(name)
            shard, shard_size = {}, 0

    options = dict(resolution=resolution, max_frames=max_frames, vocab=vocab)
    pool = None
    if workers > 1:
        import copy
        import multiprocessing

        # spawn, not fork: a forked child of a process that already ran OpenMP work (or CUDA) can hang.
        threads = max(1, torch.get_num_threads() // workers)
        device = str(vae.device)
        cpu_vae = vae if device == "cpu" else copy.deepcopy(vae).to("cpu")  # sent to the workers by pickle
        pool = multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=(cpu_vae, text_encoder.to("cpu"), options, threads, device)
        )
        results = pool.imap(_encode_in_worker, clips)  # in clip order, so the cache equals a one-process one
    else:
        results = (encode_clip(c, vae, text_encoder, **options) for c in clips)
    grid = None
    try:
        for clip, (latents, per_latent, texts) in zip(clips, results):
            if grid is None:
                grid = tuple(latents.shape[2:])
            elif tuple(latents.shape[2:]) != grid:
                raise ValueError(
                    f"clip {clip.id} gives latents {tuple(latents.shape[2:])}, others {grid}: one cache holds one "
                    "resolution; pass a resolution to resize every clip"
                )
            shard[f"latents/{clip.id}"] = latents
            for key, emb in texts.items():
                shard[f"scene/{clip.id}" if key == "scene" else f"joined/{clip.id}/{key}"] = emb
            entries.append({"id": clip.id, "shard": f"shard-{len(shards):05d}.safetensors", "frames": latents.shape[1],
                            "actions": per_latent})  # fmt: skip
            shard_size += sum(t.numel() * t.element_size() for t in texts.values()) + latents.numel() * 4
            if on_clip is not None:
                on_clip(clip.id, latents.shape[1])
            if shard_size >= shard_bytes:
                flush()
    finally:
        if pool is not None:
            pool.terminate()
    flush()
    index = {
        "format": FORMAT,
        "latent_channels": vae.z_dim,
        "latent_size": list(grid),
        "text_dim": text_encoder.dim,
        "text_len": text_encoder.text_len,
        "vocab": vocab,
        "text_encoder": text_encoder.fingerprint,
        "clips": entries,
    }
    (out / INDEX).write_text(json.dumps(index), encoding="utf-8")
    return index


@dataclass
class CachedClip:
    id: str
    shard: str
    frames: int  # latent frames
    actions: list[int]  # action index per latent frame, -1 = unlabelled


class LatentCache:
    """Read access to a latent cache; shards are memory-mapped on first use."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index_file = self.root / INDEX
        if not index_file.is_file():
            raise FileNotFoundError(f"no {INDEX} in {self.root}: build the cache first with `yume data cache`")
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT:
            raise ValueError(f"{index_file} has cache format {index.get('format')!r}, this yume reads {FORMAT}")
        self.index = index
        self.clips = [CachedClip(c["id"], c["shard"], c["frames"], c["actions"]) for c in index["clips"]]
        self.text_dim = index["text_dim"]
        self.text_len = index["text_len"]
        self._handles: dict[str, object] = {}
        from safetensors.torch import load_file

        text = load_file(self.root / TEXT_FILE)
        self.action_embeddings = [text[f"action/{i}"] for i in range(len(ALL_ACTIONS))]
        self.empty = text["empty"]

    def _get(self, shard: str, key: str) -> torch.Tensor:
        if shard not in self._handles:
            from safetensors import safe_open

            self._handles[shard] = safe_open(str(self.root / shard), framework="pt")
        return self._handles[shard].get_tensor(key)

    def latents(self, clip: CachedClip) -> torch.Tensor:
        return self._get(clip.shard, f"latents/{clip.id}")

    def scene(self, clip: CachedClip) -> torch.Tensor:
        return self._get(clip.shard, f"scene/{clip.id}")

    def joined(self, clip: CachedClip, action: int) -> torch.Tensor:
        return self._get(clip.shard, f"joined/{clip.id}/{action}")

    def decomposed(self, clip: CachedClip, action: int) -> torch.Tensor:
        """Action caption tokens then scene tokens, at most text_len in all (the scene's tail is cut)."""
        return self.compose(action, self.scene(clip))

    def compose(self, action: int, scene: torch.Tensor) -> torch.Tensor:
        """The decomposed caption [L, D] of an action index (-1 = none) and a scene embedding."""
        if action < 0:
            return scene[: self.text_len]
        head = self.action_embeddings[action][: self.text_len]
        return torch.cat([head, scene[: self.text_len - head.shape[0]]])
