"""The training loop shared by both stages: build, resume, then batch → loss → backward → clip → step → EMA → log → save."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yume.config import ModelConfig
from yume.data.cache import LatentCache
from yume.data.loader import LatentLoader
from yume.train import checkpoint as ckpt
from yume.train.config import TrainConfig
from yume.train.flow import flow_step_loss
from yume.train.ode import PairSet, ode_loss
from yume.train.parallel import (
    DistInfo,
    apply_fsdp,
    apply_lora,
    destroy_distributed,
    device_mesh,
    init_distributed,
    parallelize,
)
from yume.train.self_forcing import (
    extend_history,
    fake_score_loss,
    few_step_sigmas,
    generator_dmd_loss,
    motion_map_loss,
    real_data_loss,
    real_motion_loss,
    rollout,
)


class EMA:
    """Exponential moving average of the trainable parameters: θ_ema ← θ_ema + (1 − decay)·(θ − θ_ema)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(list(self.shadow.values()), [p.detach() for p in self.params.values()], 1 - self.decay)

    def full(self) -> dict[str, torch.Tensor]:
        """Unsharded copies (a collective under FSDP)."""
        return {n: t.full_tensor() if hasattr(t, "full_tensor") else t for n, t in self.shadow.items()}


@dataclass
class Part:
    """A trained network with its optimizer; what a checkpoint saves per name."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    model_config: ModelConfig
    lora_scale: float | None = None

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def build_model(cfg: TrainConfig, device: torch.device, weights: str | None = None):
    from yume.models.wan import YumeTransformer

    path = cfg.model.weights if weights is None else weights
    if path:
        model = YumeTransformer.from_pretrained(path, dtype=torch.float32, device=device)
    else:
        model = YumeTransformer.from_config(cfg.model.preset, seed=cfg.model.init_seed)
    return model.to(device=device, dtype=torch.float32).train()


def make_optimizer(params, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.eight_bit:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


def lr_at(step: int, base: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then constant (the release trains at a constant 1e-5)."""
    return base * min(1.0, (step + 1) / warmup) if warmup else base


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def _optimize(part: Part, loss: torch.Tensor, cfg: TrainConfig, lr: float) -> float:
    """backward → clip → step → EMA; returns the gradient norm before clipping."""
    loss.backward()
    clip = cfg.optim.grad_clip or math.inf
    norm = torch.nn.utils.clip_grad_norm_(part.params, clip)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    for group in part.optimizer.param_groups:
        group["lr"] = lr
    part.optimizer.step()
    part.optimizer.zero_grad(set_to_none=True)
    if part.ema is not None:
        part.ema.update()
    return float(norm)


class Trainer:
    """One run of either stage; `train(cfg)` is the entry point."""

    def __init__(self, cfg: TrainConfig, info: DistInfo):
        self.cfg, self.info = cfg, info
        self.device = info.device
        torch.manual_seed(cfg.run.seed)
        d = cfg.data
        self.cache = LatentCache(d.cache)
        self.loader = LatentLoader(
            self.cache, batch_size=d.batch_size, chunk=d.chunk_latents, history_min=d.history_min,
            history_max=d.history_max, history_stride=d.history_stride, mix=d.mix, decomposed_prob=d.decomposed_prob,
            first_frame_noise=d.first_frame_noise, text_dropout=d.text_dropout, seed=cfg.run.seed, rank=info.rank,
            lookahead=cfg.self_forcing.chunks if cfg.stage == "self-forcing" and cfg.self_forcing.real_data else 1,
        )  # fmt: skip
        self.policy = cfg.model.history_policy
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.run.autocast == "bf16" else nullcontext()
        )
        base = build_model(cfg, self.device)
        if base.config.text_dim != self.cache.text_dim:
            raise ValueError(
                f"the cache's text embeddings are {self.cache.text_dim}-d but the model expects text_dim="
                f"{base.config.text_dim}; rebuild the cache with the matching text encoder"
            )
        self.parts: dict[str, Part] = {}
        lora_scale = None
        if cfg.stage == "self-forcing":
            teacher = build_model(cfg, self.device, cfg.self_forcing.teacher) if cfg.self_forcing.teacher else None
            teacher = teacher or copy.deepcopy(base)
            fake = copy.deepcopy(teacher)
            teacher.requires_grad_(False).eval()
            self.teacher = (
                apply_fsdp(teacher, device_mesh(info)) if info.distributed and cfg.run.parallel != "ddp" else teacher
            )
        generator = base
        if cfg.lora.rank:
            generator = apply_lora(generator, cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets)
            lora_scale = (cfg.lora.alpha or cfg.lora.rank) / cfg.lora.rank
        self._add_part("generator", generator, cfg.optim.lr, lora_scale)
        if cfg.stage == "self-forcing":
            self._add_part("fake", fake, cfg.self_forcing.critic_lr or cfg.optim.lr, None)
        if cfg.stage in ("self-forcing", "ode"):
            self.sigmas = few_step_sigmas(cfg.self_forcing.steps, cfg.self_forcing.shift)
        if cfg.stage == "ode":
            self.pairs = PairSet(cfg.ode.pairs, self.cache, cfg.run.seed, keep=cfg.ode.keep,
                                 min_step_ratio=cfg.ode.min_step_ratio, sideways_weight=cfg.ode.sideways_weight)  # fmt: skip

    def _add_part(self, name: str, model: nn.Module, lr: float, lora_scale: float | None) -> None:
        cfg = self.cfg
        model_config = model.config
        model = parallelize(
            model, self.info, parallel=cfg.run.parallel, activation_checkpointing=cfg.run.activation_checkpointing
        )
        params = [p for p in model.parameters() if p.requires_grad]
        ema = EMA(model, cfg.run.ema_decay) if cfg.run.ema_decay else None
        self.parts[name] = Part(name, model, make_optimizer(params, cfg, lr), ema, model_config, lora_scale)

    # --- steps --------------------------------------------------------------------------------------------------
    def flow_step(self, step: int) -> dict:
        batch = self.loader.batch(step)
        g = torch.Generator().manual_seed(_seed(self.cfg.run.seed, step, self.info.rank, 7))
        part, f = self.parts["generator"], self.cfg.flow
        dev = self.device
        with self.autocast:
            loss, parts = flow_step_loss(
                part.model, batch.latents.to(dev), None if batch.history is None else batch.history.to(dev),
                [c.to(dev) for c in batch.context], generator=g, policy=self.policy, shift=f.shift,
                mean=f.logit_mean, std=f.logit_std, motion_weight=f.motion_weight,
            )  # fmt: skip
        _check_finite(loss, step, "flow loss")
        norm = _optimize(part, loss, self.cfg, lr_at(step, self.cfg.optim.lr, self.cfg.optim.warmup_steps))
        metrics = {"loss": loss.item(), "grad_norm": norm, "mode": batch.mode, "samples": len(batch.clip_ids)}
        if "motion" in parts:
            metrics["flow_loss"], metrics["motion_loss"] = parts["flow"], parts["motion"]
        return metrics

    def self_forcing_step(self, step: int) -> dict:
        cfg, sf, dev = self.cfg, self.cfg.self_forcing, self.device
        batch = self.loader.batch(step)
        uncond = [self.cache.empty.to(dev)] * len(batch.clip_ids)
        # Exit steps and the prefix length are shared by all ranks (same number of forwards under FSDP); noise is
        # per rank.
        shared = np.random.default_rng([cfg.run.seed, step, 3])
        exits = [int(e) for e in shared.integers(0, sf.steps, sf.chunks)]
        prefix = int(shared.integers(0, sf.prefix_chunks + 1)) if sf.prefix_chunks else 0
        targets = None
        if sf.real_data:
            # The clip's own actions, so that its true continuation is the answer to them (t2v has no history that
            # pins where the camera is, so it is rolled out and scored by DMD alone).
            targets, true_contexts = self.loader.continuation(batch, sf.chunks)
            contexts = [[c.to(dev) for c in chunk] for chunk in true_contexts]
            targets = targets if batch.history is not None else None
        else:
            contexts = [
                [c.to(dev) for c in chunk] for chunk in self.loader.action_contexts(batch, step, prefix + sf.chunks)
            ]
        prefix_contexts, contexts = contexts[:prefix], contexts[prefix:]
        g = torch.Generator().manual_seed(_seed(cfg.run.seed, step, self.info.rank, 11))
        noise = [torch.randn(batch.latents.shape, generator=g).to(dev) for _ in range(sf.chunks)]
        prefix_noise = [torch.randn(batch.latents.shape, generator=g).to(dev) for _ in range(prefix)]
        history = None if batch.history is None else batch.history.to(dev)
        gen, fake = self.parts["generator"], self.parts["fake"]
        sigma_range = (sf.sigma_min, sf.sigma_max)
        metrics = {"mode": batch.mode, "samples": len(batch.clip_ids)}
        if sf.prefix_chunks:
            metrics["prefix"] = prefix
        lr = lr_at(step, cfg.optim.lr, cfg.optim.warmup_steps)
        generator_turn = step % sf.critic_ratio == 0
        with self.autocast:
            history = extend_history(gen.model, prefix_noise, prefix_contexts, history, self.sigmas, policy=self.policy)
            out = rollout(
                gen.model, noise, contexts, history, self.sigmas, exits, policy=self.policy, grad=generator_turn
            )
            if generator_turn:
                loss = generator_dmd_loss(out, self.teacher, fake.model, contexts, uncond, sigma_range=sigma_range,
                                          generator=g, policy=self.policy, guidance=sf.guidance)  # fmt: skip
                metrics["dmd_loss"] = loss.item()
                if targets is not None:
                    if sf.real_weight:
                        real = real_data_loss(out, targets, sf.real_pool)
                        metrics["real_loss"] = real.item()
                        loss = loss + sf.real_weight * real
                    if sf.real_motion_weight:
                        motion = real_motion_loss(out, targets, sf.real_pool)
                        metrics["real_motion_loss"] = motion.item()
                        loss = loss + sf.real_motion_weight * motion
                    if sf.real_motion_map_weight:
                        motion_map = motion_map_loss(out, targets)
                        metrics["motion_map_loss"] = motion_map.item()
                        loss = loss + sf.real_motion_map_weight * motion_map
        if generator_turn:
            _check_finite(loss, step, "DMD generator loss")
            metrics["grad_norm"] = _optimize(gen, loss, cfg, lr)
        with self.autocast:
            critic = fake_score_loss(
                out, fake.model, contexts, sigma_range=sigma_range, generator=g, policy=self.policy
            )
        _check_finite(critic, step, "fake-score loss")
        metrics["critic_grad_norm"] = _optimize(fake, critic, cfg, sf.critic_lr or lr)
        metrics["loss"] = critic.item()
        return metrics

    def ode_step(self, step: int) -> dict:
        # One draw for all ranks: the exit step is shared (the same number of forwards under FSDP); the pair is not,
        # so that ranks regress different pairs.
        rng = np.random.default_rng([self.cfg.run.seed, step, 5])
        k, exit_step = self.pairs.draw(rng), int(rng.integers(self.cfg.self_forcing.steps))
        rank = self.info.rank
        if rank:  # uniform draws move on by the rank; weighted ones (ode.sideways_weight) draw again, which keeps them
            if self.pairs.draw_p is None:
                k = (k + rank) % len(self.pairs)
            else:
                k = self.pairs.draw(np.random.default_rng([self.cfg.run.seed, step, 5, rank]))
        pair = self.pairs.pair(k)
        part = self.parts["generator"]
        with self.autocast:
            loss = ode_loss(part.model, pair, self.sigmas, exit_step, policy=self.policy, device=self.device,
                            target=self.cfg.ode.target)  # fmt: skip
        _check_finite(loss, step, "ODE regression loss")
        norm = _optimize(part, loss, self.cfg, lr_at(step, self.cfg.optim.lr, self.cfg.optim.warmup_steps))
        return {"loss": loss.item(), "grad_norm": norm, "mode": pair.mode, "exit": exit_step,
                "samples": pair.x0.shape[0]}  # fmt: skip

    # --- run ----------------------------------------------------------------------------------------------------
    def run(self, callback: Callable[[dict], None] | None = None) -> list[dict]:
        from tqdm.auto import tqdm

        cfg, info = self.cfg, self.info
        out = Path(cfg.run.out)
        step = 0
        latest = ckpt.latest_checkpoint(out) if cfg.run.resume else None
        if latest is not None:
            step = ckpt.load_checkpoint(latest, self.parts, info)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            cfg.save(out / "config.toml")
        step_fn = {"flow": self.flow_step, "self-forcing": self.self_forcing_step, "ode": self.ode_step}[cfg.stage]
        log = (out / "log.jsonl").open("a", encoding="utf-8") if info.is_main else None
        bar = tqdm(total=cfg.run.steps, initial=step, disable=not (cfg.run.progress and info.is_main), desc=cfg.stage)
        history, start = [], time.perf_counter()
        try:
            while step < cfg.run.steps:
                reason = self._stop_reason(start)
                if reason:
                    if step % cfg.run.save_every:  # else the last step already saved this checkpoint
                        ckpt.save_checkpoint(out, step, self.parts, cfg, info, export=("generator",))
                    if info.is_main:
                        print(f"{reason} at step {step}; checkpoint saved", flush=True)
                    break
                t0 = time.perf_counter()
                metrics = step_fn(step)
                step += 1
                metrics["loss"] = _mean_over_ranks(metrics["loss"], info)
                seconds = time.perf_counter() - t0
                metrics.update(step=step, lr=lr_at(step - 1, cfg.optim.lr, cfg.optim.warmup_steps),
                               samples_per_s=metrics.pop("samples") * info.world_size / seconds,
                               elapsed_s=time.perf_counter() - start)  # fmt: skip
                history.append(metrics)
                bar.update(1)
                if log is not None and (step % cfg.run.log_every == 0 or step == cfg.run.steps):
                    log.write(json.dumps(metrics) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", gn=f"{metrics.get('grad_norm', float('nan')):.3f}")
                    if not cfg.run.progress:
                        print(_format(metrics, cfg.run.steps), flush=True)
                if callback is not None:
                    callback(metrics)
                if step % cfg.run.save_every == 0 or step == cfg.run.steps:
                    ckpt.save_checkpoint(out, step, self.parts, cfg, info, export=("generator",))
        finally:
            bar.close()
            if log is not None:
                log.close()
        return history


    def _stop_reason(self, start: float) -> str:
        """Why the run stops before its last step ('' = it goes on). Rank 0 decides for all: ranks that disagreed
        would wait on each other's collectives forever."""
        r = self.cfg.run
        if not (r.max_minutes or r.stop_file):
            return ""
        reason = ""
        if r.max_minutes and time.perf_counter() - start > 60 * r.max_minutes:
            reason = f"run.max_minutes={r.max_minutes} reached"
        elif r.stop_file and Path(r.stop_file).exists():
            reason = f"stop file {r.stop_file} found"
        if self.info.distributed:
            import torch.distributed as dist

            flag = torch.tensor([int(bool(reason))], device=self.device)
            dist.broadcast(flag, src=0)
            if not flag.item():
                reason = ""
            elif not reason:
                reason = "rank 0 stopped the run"
        return reason


def _check_finite(loss: torch.Tensor, step: int, what: str) -> None:
    if not torch.isfinite(loss).all():
        raise RuntimeError(
            f"{what} is {loss.item()} at step {step + 1}; stopping. Lower optim.lr, keep optim.grad_clip on, "
            "or resume from the last checkpoint"
        )


def _mean_over_ranks(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.item() / info.world_size


def _format(m: dict, total: int) -> str:
    parts = [f"step {m['step']}/{total}", f"loss {m['loss']:.5f}"]
    if "grad_norm" in m:
        parts.append(f"grad_norm {m['grad_norm']:.4f}")
    if "prefix" in m:
        parts.append(f"prefix {m['prefix']}")
    if "exit" in m:
        parts.append(f"exit {m['exit']}")
    if "real_loss" in m:
        parts.append(f"real {m['real_loss']:.4f}")
    if "real_motion_loss" in m:
        parts.append(f"real motion {m['real_motion_loss']:.4f}")
    if "motion_map_loss" in m:
        parts.append(f"motion map {m['motion_map_loss']:.4f}")
    if "motion_loss" in m:
        parts.append(f"flow {m['flow_loss']:.5f}  motion {m['motion_loss']:.5f}")
    parts += [f"lr {m['lr']:.3g}", f"{m['samples_per_s']:.2f} samples/s", m["mode"]]
    return "  ".join(parts)


def train(cfg: TrainConfig, callback: Callable[[dict], None] | None = None) -> list[dict]:
    """Run (or resume) one training run, on one process or under torchrun; returns the per-step metrics."""
    info = init_distributed()
    try:
        return Trainer(cfg, info).run(callback)
    finally:
        destroy_distributed(info)
