"""Training checkpoints: sharded state through torch.distributed.checkpoint, plus loadable model exports.

    out/checkpoints/step-0000100/
        state/                 DCP: every trained part's model, optimizer and EMA (resharded on load)
        rng-rank<r>.pt         each process's torch RNG state
        <part>/original/       full weights in the original Wan layout (LoRA merged), loadable by from_pretrained
        <part>/diffusers/      the same in the diffusers layout
        <part>/ema/            EMA weights (original layout) when EMA is on
        config.toml            the run's resolved config
        trainer.json           step; written last, so a checkpoint without it is incomplete and ignored

The data position is the step: batches are a pure function of (seed, step, rank).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from yume.train.parallel import DistInfo, clean_name

TRAINER_FILE = "trainer.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir(out: str | Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"step-{step:07d}"


def latest_checkpoint(out: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under out/checkpoints, or None."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), d) for d in root.iterdir() if (m := _STEP_DIR.match(d.name)) and (d / TRAINER_FILE).is_file()]
    return max(found)[1] if found else None


def _barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def _part_state(part) -> dict:
    model_sd, optim_sd = get_state_dict(part.model, part.optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    if part.ema is not None:
        state["ema"] = part.ema.shadow
    return state


def merge_lora(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """peft LoRA keys (`x.base_layer.weight`, `x.lora_A.default.weight`, `x.lora_B.default.weight`) -> plain `x.weight`
    holding W + scale·B·A; other keys pass through."""
    out = {}
    for key, value in state.items():
        if ".lora_A." in key or ".lora_B." in key:
            continue
        if ".base_layer." in key:
            prefix, _, leaf = key.partition(".base_layer.")
            if leaf == "weight":
                a, b = state[f"{prefix}.lora_A.default.weight"], state[f"{prefix}.lora_B.default.weight"]
                value = value + scale * (b.float() @ a.float()).to(value.dtype)
            key = f"{prefix}.{leaf}"
        out[key] = value
    return out


def full_weights(part, *, ema: bool = False) -> dict[str, torch.Tensor]:
    """The whole model's weights on CPU with clean names (gathered from shards; a collective under FSDP)."""
    state = get_model_state_dict(part.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    state = {clean_name(k): v for k, v in state.items()}
    if ema:
        state.update({clean_name(k): v.cpu() for k, v in part.ema.full().items()})
    return merge_lora(state, part.lora_scale) if part.lora_scale is not None else state


def export_weights(state: dict[str, torch.Tensor], model_config, directory: Path, layout: str) -> None:
    """Write weights as a YumeTransformer checkpoint (config.json + safetensors) in one layout."""
    from yume.models.wan import YumeTransformer

    with torch.device("meta"):
        model = YumeTransformer(model_config)
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(directory, layout=layout)


def save_checkpoint(out: str | Path, step: int, parts: dict, config, info: DistInfo, *, export: tuple[str, ...]) -> Path:
    """Save every part's state (all ranks take part), and export the parts named in `export` on rank 0."""
    directory = step_dir(out, step)
    if info.is_main:
        directory.mkdir(parents=True, exist_ok=True)
    _barrier(info)
    dcp.save({name: _part_state(p) for name, p in parts.items()}, checkpoint_id=str(directory / "state"),
             no_dist=not info.distributed)  # fmt: skip
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, directory / f"rng-rank{info.rank}.pt")
    for name in export:
        part = parts[name]
        weights = full_weights(part)
        ema = full_weights(part, ema=True) if part.ema is not None else None
        if info.is_main:
            for layout in ("original", "diffusers"):
                export_weights(weights, part.model_config, directory / name / layout, layout)
            if ema is not None:
                export_weights(ema, part.model_config, directory / name / "ema", "original")
    _barrier(info)
    if info.is_main:
        config.save(directory / "config.toml")
        (directory / TRAINER_FILE).write_text(json.dumps({"step": step, "world_size": info.world_size}))
    _barrier(info)
    return directory


def load_checkpoint(directory: str | Path, parts: dict, info: DistInfo) -> int:
    """Restore every part (resharding to this run's process count) and this rank's RNG; returns the step."""
    directory = Path(directory)
    meta = json.loads((directory / TRAINER_FILE).read_text())
    state = {name: _part_state(p) for name, p in parts.items()}
    # A parameter that never had a gradient (e.g. a history embedding only v2v steps use) has no optimizer state
    # in the checkpoint; it must have none after loading either, or Adam's step count would differ from the
    # uninterrupted run.
    reader = dcp.FileSystemReader(str(directory / "state"))
    saved = set(reader.read_metadata().state_dict_metadata)
    dcp.load(state, storage_reader=reader, planner=DefaultLoadPlanner(allow_partial_load=True), no_dist=not info.distributed)
    for name, p in parts.items():
        set_state_dict(p.model, p.optimizer, model_state_dict=state[name]["model"], optim_state_dict=state[name]["optim"])
        for param_name, param in p.model.named_parameters():
            if f"{name}.optim.state.{clean_name(param_name)}.step" not in saved:
                p.optimizer.state.pop(param, None)
    rng_file = directory / f"rng-rank{info.rank}.pt"
    if rng_file.is_file():
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return int(meta["step"])
