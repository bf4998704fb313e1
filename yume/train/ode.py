"""ODE distillation: the few-step student regresses its teacher's guided ODE solutions from the same noise.

CausVid (Yin et al. 2025) and Self-Forcing start their few-step students this way before DMD: the teacher's
deterministic sampler maps each noise to one video, a function the student can learn by plain regression, where DMD
only matches distributions through a critic that must first track the student. It is also a stage of its own: every
step is a generator update, where DMD spends most steps on its critic (docs/sim-model.md, session 26, measures both
on the built-in world).

Two steps: `write_pairs` solves the teacher's ODE (its own step recipe, with classifier-free guidance) from seeded
noise on training batches and stores the solutions in shards; the `ode` stage of `yume train` then rolls the
student's few-step sampler out from the same noise (gradient through one randomly chosen step, as Self-Forcing
does) and charges the MSE between its x̂₀ there and the teacher's solution. Histories and captions are read back
from the latent cache, so a pair costs one chunk of latents on disk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from yume.actions import Action
from yume.data.cache import LatentCache
from yume.data.loader import LatentLoader
from yume.sampling import get_schedule
from yume.train.self_forcing import rollout

SHARD = re.compile(r"pairs-(\d{6})-(\d{6})\.pt$")


def noise_for(seed: int, index: int, shape: torch.Size) -> torch.Tensor:
    """The noise pair `index` starts from: a pure function of (run.seed, index), so it is not stored."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index, 13]).generate_state(1)[0]))
    return torch.randn(shape, generator=g)


def teacher_solution(
    teacher, noise: torch.Tensor, context, uncond, history, sigmas: torch.Tensor, *, policy: str, guidance: float
) -> torch.Tensor:
    """Euler integration of the teacher's flow ODE from `noise` over `sigmas`, guided (CFG) when guidance > 1:
    what the teacher's own sampler (`flow-cfg`) makes of that noise."""
    x = noise
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            sigma = sigmas[i].expand(x.shape[0]).to(x.device)
            v = teacher(x, sigma, context, history, policy=policy)
            if guidance != 1.0:
                v_uncond = teacher(x, sigma, uncond, history, policy=policy)
                v = v_uncond + guidance * (v - v_uncond)
            x = x + (sigmas[i + 1] - sigmas[i]) * v.float()
    return x


def pair_loader(cfg) -> LatentLoader:
    """The batches pairs are made from: the run's data section, one chunk each, no caption dropout (the student is
    taught what the teacher does with a caption; Self-Forcing keeps the unconditional case)."""
    d = cfg.data
    if d.first_frame_noise:
        raise ValueError("ODE pairs re-read their histories from the cache; set data.first_frame_noise=0")
    return LatentLoader(
        LatentCache(d.cache), batch_size=d.batch_size, chunk=d.chunk_latents, history_min=d.history_min,
        history_max=d.history_max, history_stride=d.history_stride, mix=d.mix, decomposed_prob=d.decomposed_prob,
        text_dropout=0.0, seed=cfg.run.seed,
    )  # fmt: skip


def shard_paths(folder: str | Path) -> list[Path]:
    """The pair shards of `folder`, in index order."""
    return sorted(p for p in Path(folder).glob("pairs-*.pt") if SHARD.search(p.name))


def done_indices(folder: str | Path) -> set[int]:
    """The pair indices the shards in `folder` already hold."""
    done = set()
    for path in shard_paths(folder):
        m = SHARD.search(path.name)
        done.update(range(int(m.group(1)), int(m.group(2))))
    return done


def load_shard(path: Path, seed: int) -> dict:
    """One shard ({"meta", "records"}), checked to be of noise drawn from `seed`."""
    shard = torch.load(path, map_location="cpu", weights_only=True)
    if shard["meta"]["seed"] != seed:
        raise ValueError(
            f"{path} was written with run.seed={shard['meta']['seed']}, this run has {seed}: its noise would "
            "not be the noise the teacher solved from; train with the seed the pairs were made with"
        )
    return shard


def write_pairs(
    cfg,
    count: int,
    *,
    first: int = 0,
    teacher_steps: int = 16,
    teacher_shift: float = 3.0,
    shard: int = 25,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Solve the teacher's ODE for pairs first .. first + count − 1 into `cfg.ode.pairs`, `shard` pairs a file.

    Pair i is the data loader's batch i (its clips, history length and captions) and noise `noise_for(run.seed, i)`.
    Shards already written are skipped, so an interrupted run resumes, and several processes may write disjoint
    ranges (`first`) into one folder at once.
    """
    from yume.train.loop import build_model

    sf = cfg.self_forcing
    if not sf.teacher:
        raise ValueError("ODE pairs need a teacher: set self_forcing.teacher to the flow DiT to distil")
    if count < 1 or first < 0 or shard < 1:
        raise ValueError(f"count and shard must be >= 1 and first >= 0, got {count}, {shard}, {first}")
    out = Path(cfg.ode.pairs)
    out.mkdir(parents=True, exist_ok=True)
    loader = pair_loader(cfg)
    dev = torch.device(device)
    teacher = build_model(cfg, dev, sf.teacher).requires_grad_(False).eval()
    sigmas = get_schedule(teacher_steps, teacher_shift)
    policy = cfg.model.history_policy
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.run.autocast == "bf16" else nullcontext()
    done = done_indices(out)
    for begin in range(first, first + count, shard):
        end = min(begin + shard, first + count)
        if set(range(begin, end)) <= done:
            if progress:
                progress(end - begin)
            continue
        records = []
        for i in range(begin, end):
            batch = loader.batch(i)
            noise = noise_for(cfg.run.seed, i, batch.latents.shape).to(dev)
            history = None if batch.history is None else batch.history.to(dev)
            context = [c.to(dev) for c in batch.context]
            uncond = [loader.cache.empty.to(dev)] * len(context)
            with autocast:
                x0 = teacher_solution(teacher, noise, context, uncond, history, sigmas, policy=policy,
                                      guidance=sf.guidance)  # fmt: skip
            records.append({"index": i, "clip_ids": batch.clip_ids, "start": batch.start, "mode": batch.mode,
                            "context": [c.cpu() for c in batch.context], "x0": x0.float().cpu()})  # fmt: skip
            if progress:
                progress(1)
        meta = {"teacher": sf.teacher, "guidance": sf.guidance, "teacher_steps": teacher_steps,
                "teacher_shift": teacher_shift, "seed": cfg.run.seed, "cache": cfg.data.cache}  # fmt: skip
        tmp = out / f".pairs-{begin:06d}-{end:06d}.pt.tmp"
        torch.save({"meta": meta, "records": records}, tmp)
        tmp.replace(out / f"pairs-{begin:06d}-{end:06d}.pt")  # a shard is whole or absent
    return out


def follows(verdict: dict, min_step_ratio: float = 0.0) -> bool:
    """Whether a teacher chunk, as `verify_pairs` read it, does what its keys asked: the rotation asked, and the move
    asked where one is (and, where one is, a step at least `min_step_ratio` times as long as the data's own
    continuation of that history steps: the ratio of their parallaxes, which the scene's depth cancels out of). A turn
    in place is not judged on its move: through a small VAE the estimator reads a walk in nearly every turned chunk of
    every model's, and in 6 of 15 of the true videos' (docs/sim-model.md, session 26), so the move it reads there says
    nothing about the teacher's mistakes."""
    if not Action.parse(verdict["asked"]).move:
        return bool(verdict["rotate_ok"])
    if not (verdict["rotate_ok"] and verdict["move_ok"]):
        return False
    if not min_step_ratio:
        return True
    if "data_parallax" not in verdict:
        raise ValueError("these verdicts carry no data_parallax (read before it was recorded): move the .followed.json "
                         "files away and run `yume train ode-verify` again, or set ode.min_step_ratio = 0")  # fmt: skip
    return verdict["parallax"] >= min_step_ratio * verdict["data_parallax"]


def sideways_weights(asked: list[list[str]], weight: float) -> np.ndarray | None:
    """Draw probabilities over pairs from the keys each pair's chunks ask (`asked[i]`, one per batch row): a pair
    where any row asks a sideways step (A or D, alone or in a diagonal) weighs `weight`, the others 1. None when every
    pair weighs the same, so that an unweighted run draws its pairs exactly as before."""
    w = np.array([weight if any(set(Action.parse(a).move) & {"A", "D"} for a in rows) else 1.0 for rows in asked])
    return None if len(w) == 0 or np.all(w == w[0]) else w / w.sum()


def verdict_path(shard: Path) -> Path:
    """Where `verify_pairs` writes the verdicts of the pairs of one shard."""
    return shard.with_name(shard.name.removesuffix(".pt") + ".followed.json")


def _claim(path: Path) -> bool:
    """Take the shard whose claim file is `path` for this process: False while another live process reads it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            owner = int(path.read_text() or 0)
            os.kill(owner, 0)
            return False  # its reader is alive
        except (ValueError, ProcessLookupError, FileNotFoundError):
            path.write_text(str(os.getpid()))  # a reader killed mid-shard: take it over
            return True
        except PermissionError:
            return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def verify_pairs(cfg, vae, *, progress: Callable[[int], None] | None = None) -> dict:
    """Decode every pair's teacher chunk with `vae` and read its camera motion with the evaluation's estimator
    (`yume.eval.motion.estimate_chunk`, as `yume bench sim` scores chunks). Per shard of `cfg.ode.pairs`, writes
    `<shard>.followed.json`: for each pair index, `read_chunks`'s row per sample (the action asked, the one read,
    whether the move and the rotation are the ones asked, the parallax) and the parallax of the data's own
    continuation of that history, read the same way (`data_parallax`); `ode.keep = "followed"` then trains on the
    pairs whose every sample `follows` its keys. Shards already read are skipped (resumable; processes started a few
    seconds apart share the work). Returns the verdicts of every shard.

    A window is the chunk with the history's last frame before it (the motion into a chunk's first frame is that
    chunk's), decoded together with the latent before that one so a causal decoder has its context.
    """
    from yume.eval.motion import MotionConfig

    loader = pair_loader(cfg)
    clips = {c.id: c for c in loader.cache.clips}
    motion, verdicts = MotionConfig(), {}
    for path in shard_paths(cfg.ode.pairs):
        out, claim = verdict_path(path), path.with_name(path.name + ".reading")
        if not out.is_file() and _claim(claim):
            records = load_shard(path, cfg.run.seed)["records"]
            found = {}
            for record in records:
                pair = load_pair(record, loader.cache, clips, cfg.run.seed)
                asked = asked_actions(loader, clips, record)
                rows = read_chunks(vae, pair.x0, pair.history, asked, motion)
                for row, true in zip(rows, read_chunks(vae, pair.data, pair.history, asked, motion)):
                    row["data_parallax"] = true["parallax"]  # the scene's own step, for ode.min_step_ratio
                found[str(record["index"])] = rows
                if progress:
                    progress(1)
            tmp = out.with_name("." + out.name + ".tmp")
            tmp.write_text(json.dumps(found, indent=0), encoding="utf-8")
            tmp.replace(out)
            claim.unlink()
        if out.is_file():
            verdicts.update(json.loads(out.read_text(encoding="utf-8")))
    return verdicts


def asked_actions(loader: LatentLoader, clips: dict, record: dict) -> list[Action]:
    """The action each sample of a pair was captioned with, as the loader chose it (`clips`: the cache's clips by id)."""
    from yume.actions import ALL_ACTIONS

    return [ALL_ACTIONS[loader.chunk_action(clips[c], record["start"])] for c in record["clip_ids"]]


def data_chunks(vae, pairs: PairSet, loader: LatentLoader, count: int) -> list[tuple[Action, np.ndarray]]:
    """The data's own continuation of each of the first `count` pairs' histories, per sample: (the action asked, its
    frames decoded as the estimator reads them, `decode_window`). Its camera moves exactly as the keys asked."""
    chunks = []
    for k, record in enumerate(pairs.records[:count]):
        pair = pairs.pair(k)
        for b, action in enumerate(asked_actions(loader, pairs.clips, record)):
            history = None if pair.history is None else pair.history[b : b + 1]
            chunks.append((action, decode_window(vae, pair.data[b : b + 1], history)))
    return chunks


def read_chunks(vae, x0: torch.Tensor, history: torch.Tensor | None, asked: list[Action], motion) -> list[dict]:
    """Decode each sample of the chunk `x0` [B, C, f, h, w] after its `history` and read its camera motion as
    `yume bench sim` does (`motion`: a `MotionConfig`): per sample, the action asked, the one read, and whether the
    move and the rotation are the ones asked (what `follows` judges), and the chunk's parallax (px a frame: how far
    the estimator saw the camera step)."""
    from yume.eval.motion import estimate_chunk

    rows = []
    for b, action in enumerate(asked):
        frames = decode_window(vae, x0[b : b + 1], None if history is None else history[b : b + 1])
        est = estimate_chunk(frames, motion)
        rows.append({"asked": str(action), "read": str(Action(est.move, est.rotate)),
                     "move_ok": est.move == action.move, "rotate_ok": est.rotate == action.rotate,
                     "parallax": round(float(est.parallax), 4)})  # fmt: skip
    return rows


def decode_window(vae, x0: torch.Tensor, history: torch.Tensor | None) -> np.ndarray:
    """One sample's chunk `x0` [1, C, f, h, w] decoded after its `history` as the estimator reads it: the chunk's
    frames and the history's last frame before them (the motion into a chunk's first frame is that chunk's), decoded
    together with the latent before that one so a causal decoder has its context. [T, H, W, 3] uint8."""
    from yume.session import to_uint8

    before = 0 if history is None else min(2, history.shape[2])
    latents = x0 if not before else torch.cat([history[:, :, -before:], x0], dim=2)
    with torch.no_grad():
        frames = to_uint8(vae.decode(latents.to(vae.device)))
    return frames[-(x0.shape[2] * vae.temporal_stride + 1) :] if before else frames


@dataclass
class Pair:
    noise: torch.Tensor  # [B, C, f, h, w]
    history: torch.Tensor | None
    context: list[torch.Tensor]
    x0: torch.Tensor  # the teacher's solution from `noise`
    mode: str
    data: torch.Tensor  # the clips' own chunk after this history: what the data did where the teacher was asked to


def load_pair(record: dict, cache: LatentCache, clips: dict, seed: int) -> Pair:
    """A stored pair made whole: its noise drawn again from (seed, index), its history read back from the cache
    (`clips`: the cache's clips by id)."""
    missing = [c for c in record["clip_ids"] if c not in clips]
    if missing:
        raise ValueError(f"ODE pair {record['index']} names clips {missing} this cache lacks; use the pairs' cache")
    start, length = record["start"], record["x0"].shape[2]
    latents = [cache.latents(clips[c]) for c in record["clip_ids"]]  # each clip read once
    history = torch.stack([x[:, :start] for x in latents]) if start else None
    data = torch.stack([x[:, start : start + length] for x in latents])
    return Pair(noise_for(seed, record["index"], record["x0"].shape), history, record["context"], record["x0"],
                record["mode"], data)  # fmt: skip


class PairSet:
    """Every pair of a folder of shards, in memory (one chunk of latents each), with its history from the cache."""

    def __init__(self, folder: str | Path, cache: LatentCache, seed: int, keep: str = "all", min_step_ratio: float = 0.0,
                 sideways_weight: float = 1.0):  # fmt: skip
        paths = shard_paths(folder)
        if not paths:
            raise FileNotFoundError(
                f"no ODE pairs in {folder}: write them first with `yume train ode-pairs --config ... --count N`"
            )
        self.records, self.meta = [], None
        self.draw_p = None  # the pairs' draw probabilities (`draw`); None: uniform
        for path in paths:
            shard = load_shard(path, seed)
            self.meta = self.meta or shard["meta"]
            self.records += shard["records"]
        if keep == "followed":
            unread = [verdict_path(p) for p in paths if not verdict_path(p).is_file()]
            if unread:
                raise FileNotFoundError(
                    f"ode.keep = 'followed' needs {unread[0]}: read the pairs' motion first with `yume train ode-verify`"
                )
            verdicts = {}
            for p in paths:
                verdicts.update(json.loads(verdict_path(p).read_text(encoding="utf-8")))
            self.records = [r for r in self.records if all(follows(v, min_step_ratio) for v in verdicts[str(r["index"])])]
            if not self.records:
                bound = f" with a step of at least {min_step_ratio} times the data's" if min_step_ratio else ""
                raise ValueError(f"no pair in {folder} follows its keys{bound}; train with ode.keep = 'all'"
                                 + (" or a lower ode.min_step_ratio" if min_step_ratio else ""))  # fmt: skip
            self.draw_p = sideways_weights([[v["asked"] for v in verdicts[str(r["index"])]] for r in self.records],
                                           sideways_weight)  # fmt: skip
        elif sideways_weight != 1:
            raise ValueError("ode.sideways_weight reads the keys from `yume train ode-verify`'s verdicts: set "
                             "ode.keep = 'followed'")  # fmt: skip
        self.cache, self.seed = cache, seed
        self.clips = {c.id: c for c in cache.clips}

    def __len__(self) -> int:
        return len(self.records)

    def draw(self, rng: np.random.Generator) -> int:
        """The index of a pair drawn by `rng`: uniformly, or by `draw_p` when the pairs are weighted."""
        if self.draw_p is None:
            return int(rng.integers(len(self.records)))
        return int(rng.choice(len(self.records), p=self.draw_p))

    def pair(self, k: int) -> Pair:
        return load_pair(self.records[k], self.cache, self.clips, self.seed)


def open_pairs(config: str | Path, folder: str | Path) -> tuple:
    """For analysis scripts: (the ode config at `config` with ode.pairs = `folder`, the PairSet of `folder` read with
    that config's cache and seed, the data loader its pairs were drawn from)."""
    from yume.train.config import load_config

    cfg = load_config(config, ["stage=ode", f"ode.pairs={folder}"])
    loader = pair_loader(cfg)
    return cfg, PairSet(folder, loader.cache, cfg.run.seed), loader


def ode_loss(
    model, pair: Pair, sigmas: torch.Tensor, exit_step: int, *, policy: str, device, target: str = "teacher"
) -> torch.Tensor:
    """The student's few-step sampler from the pair's noise, with gradient through step `exit_step` only; the MSE
    between its x̂₀ there and the teacher's solution (`target="teacher"`) or the data's own chunk (`"data"`)."""
    if target not in ("teacher", "data"):
        raise ValueError(f"ODE target must be 'teacher' or 'data', got {target!r}")
    history = None if pair.history is None else pair.history.to(device)
    out = rollout(model, [pair.noise.to(device)], [[c.to(device) for c in pair.context]], history, sigmas,
                  [exit_step], policy=policy)  # fmt: skip
    goal = pair.x0 if target == "teacher" else pair.data
    return F.mse_loss(out.chunks[0].float(), goal.to(device).float())
