"""Pack a trained DiT and VAE into a built-in model folder (`yume/assets/<name>/dit`, `/vae`)."""

from __future__ import annotations

from pathlib import Path

import torch

from yume.models.wan import YumeTransformer
from yume.vae import WanVAE


def export_builtin(dit: str | Path, vae: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> int:
    """DiT (any loadable layout) -> out/dit in `dtype`, original layout; VAE -> out/vae in float32. Returns bytes written."""
    out = Path(out)
    model = YumeTransformer.from_pretrained(dit, dtype=torch.float32)
    model.to(dtype).save_pretrained(out / "dit", layout="original")
    WanVAE.from_pretrained(vae, dtype=torch.float32).save_pretrained(out / "vae")
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
