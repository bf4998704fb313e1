"""Pack a trained DiT, its VAE and its text encoder into a built-in model folder (`yume/assets/<name>/dit`, `/vae`, `/text`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from yume.models.text import TextEncoder
from yume.models.wan import YumeTransformer
from yume.vae import WanVAE


def export_builtin(
    dit: str | Path,
    vae: str | Path,
    out: str | Path,
    text: str | Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
    sampling: str | None = None,
    chunk_latents: int | None = None,
    move_speed: float | None = None,
    turn_speed: float | None = None,
) -> int:
    """DiT (any loadable layout) -> out/dit in `dtype`, original layout; VAE -> out/vae in float32; the text encoder
    -> out/text in float32 (diffusers layout). `text` is the folder the cache was encoded with; None = the tiny
    random encoder of seed 0 at the DiT's text_dim. `sampling` (a SAMPLING_PRESETS name: "flow-cfg" for a model that
    is not distilled) goes to out/sampling.json, and sessions use it unless told otherwise; so does `chunk_latents`,
    the chunk length the DiT was trained on, where it differs from the built-in model's (e.g. 8 for a DiT on the
    stride-free sim-small-t1 VAE: 8 frames, as 4 latents are through sim-small-t2), and the key speeds (metres and
    degrees a frame) of the world its data was rendered at (`yume data synth --move-speed/--turn-speed`), where they
    differ from 0.1 and 1.5: the sim benchmark renders its true videos and the event detector's walks at them.
    Returns bytes written."""
    from yume.session import SAMPLING_PRESETS

    if sampling is not None and sampling not in SAMPLING_PRESETS:
        raise ValueError(f"sampling={sampling!r}: choose one of {', '.join(SAMPLING_PRESETS)}")
    if chunk_latents is not None and chunk_latents < 1:
        raise ValueError(f"chunk_latents={chunk_latents} must be >= 1")
    for key, v in (("move_speed", move_speed), ("turn_speed", turn_speed)):
        if v is not None and not v > 0:
            raise ValueError(f"{key}={v} must be > 0 (metres or degrees a frame)")
    out = Path(out)
    model = YumeTransformer.from_pretrained(dit, dtype=torch.float32)
    if text is None:
        encoder = TextEncoder.from_config("tiny", seed=0, d_model=model.config.text_dim, text_len=model.config.text_len)
    else:
        encoder = TextEncoder.from_pretrained(text, dtype=torch.float32, text_len=model.config.text_len)
    if encoder.dim != model.config.text_dim:
        raise ValueError(
            f"the text encoder in {text} is {encoder.dim}-d but the DiT expects text_dim={model.config.text_dim}"
        )
    model.to(dtype).save_pretrained(out / "dit", layout="original")
    WanVAE.from_pretrained(vae, dtype=torch.float32).save_pretrained(out / "vae")
    encoder.save_pretrained(out / "text")
    recipe = {"preset": sampling, "chunk_latents": chunk_latents, "move_speed": move_speed, "turn_speed": turn_speed}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    if recipe:
        (out / "sampling.json").write_text(json.dumps(recipe) + "\n", encoding="utf-8")
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
