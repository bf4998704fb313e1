"""Process groups, and what is applied to a plain model to train it: LoRA, activation checkpointing, FSDP2 or DDP."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group that torchrun describes (gloo on CPU, NCCL on CUDA); one process runs without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world == 1:
        return DistInfo(device=device)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, device)


def destroy_distributed(info: DistInfo) -> None:
    """Leave the process group (gloo can abort at interpreter exit otherwise)."""
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def device_mesh(info: DistInfo):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(info.device.type, (info.world_size,))


def apply_lora(model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...]) -> nn.Module:
    """Inject peft LoRA adapters into the blocks' linear layers named by `targets` and freeze everything else."""
    from peft import LoraConfig, inject_adapter_in_model

    names = "|".join(t.replace(".", r"\.") for t in targets)
    pattern = rf"blocks\.\d+\.(?:(?:self_attn|cross_attn)\.)?(?:{names})"
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=pattern, lora_dropout=0.0)
    model.requires_grad_(False)
    model = inject_adapter_in_model(config, model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"LoRA targets {targets} matched no layer; use names like q, k, v, o, ffn.0, ffn.2")
    return model


def apply_ac(model: nn.Module) -> nn.Module:
    """Recompute each block's activations in backward instead of storing them (non-reentrant checkpointing)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.blocks):
        model.blocks[i] = checkpoint_wrapper(block)
    return model


def apply_fsdp(model: nn.Module, mesh, *, reshard_after_forward: bool = True) -> nn.Module:
    """FSDP2: shard each block's parameters over `mesh` (one all-gather per block), then the rest at the root."""
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


def apply_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """Replicate the model and all-reduce gradients; history embeddings unused in a T2V step are allowed."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def parallelize(model: nn.Module, info: DistInfo, *, parallel: str, activation_checkpointing: bool) -> nn.Module:
    """Activation checkpointing, then FSDP2 ("fsdp", or "auto" under torchrun), DDP ("ddp") or nothing."""
    if activation_checkpointing:
        model = apply_ac(model)
    if not info.distributed:
        return model
    if parallel == "none":
        raise ValueError(f"run.parallel='none' under torchrun ({info.world_size} processes) would train "
                         f"{info.world_size} unsynchronised copies; use fsdp, ddp or auto")
    if parallel in ("fsdp", "auto"):
        return apply_fsdp(model, device_mesh(info))
    return apply_ddp(model, info)


def clean_name(name: str) -> str:
    """A parameter name without the wrappers' prefixes (DDP's `module.`, checkpointing's wrapped module)."""
    name = name.replace("_checkpoint_wrapped_module.", "")
    return name.removeprefix("module.")
