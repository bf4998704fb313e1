"""Sequential block offload for inference: a model's blocks stay on the CPU and visit the GPU one at a time."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def enable_block_offload(model: nn.Module, device, *, blocks: str = "blocks", offload_device="cpu") -> nn.Module:
    """Put everything but `model.<blocks>` on `device`; keep each block's weights on `offload_device` (pinned when
    CUDA is available) and copy them to `device` just for that block's forward.

    Peak weight memory on `device` is the non-block parts plus one block. For inference: the copies are dropped after
    each forward, so a change to them is lost. Moving the model afterwards (`model.to`) undoes the offload.
    """
    device, offload_device = torch.device(device), torch.device(offload_device)
    stack = getattr(model, blocks, None)
    if not isinstance(stack, nn.ModuleList) or len(stack) == 0:
        raise ValueError(f"{type(model).__name__} has no non-empty ModuleList {blocks!r}; name its blocks with blocks=")
    for name, child in model.named_children():
        if name != blocks:
            child.to(device)
    for t in itertools.chain(model.parameters(recurse=False), model.buffers(recurse=False)):
        t.data = t.data.to(device)
    pin = offload_device.type == "cpu" and torch.cuda.is_available()
    for block in stack:
        _offload_block(block, device, offload_device, pin)
    return model


def _offload_block(block: nn.Module, device: torch.device, offload_device: torch.device, pin: bool) -> None:
    tensors = list(itertools.chain(block.parameters(), block.buffers()))
    stored = []
    for t in tensors:
        data = t.data.to(offload_device)
        stored.append(data.pin_memory() if pin else data)
        t.data = stored[-1]

    def load(module, args):
        # Always a fresh copy (also CPU to CPU), so the resident weights are never the ones the forward reads.
        for t, data in zip(tensors, stored):
            t.data = torch.empty_like(data, device=device).copy_(data, non_blocking=pin)

    def unload(module, args, output):
        for t, data in zip(tensors, stored):
            t.data = data

    block.register_forward_pre_hook(load)
    block.register_forward_hook(unload, always_call=True)  # also after an exception (e.g. out of memory)
