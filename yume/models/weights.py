"""Checkpoint layouts (original Wan / diffusers) for the DiT: finding files, renaming keys, loading, saving.

Models are built on the meta device and filled tensor by tensor with `assign=True`, so a checkpoint is never held
twice in memory. Mismatches raise `CheckpointError` with the file, the counts, a few names and a hint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from yume.config import ModelConfig, model_config

DIT_FILE = "diffusion_pytorch_model.safetensors"
DIT_INDEX = "diffusion_pytorch_model.safetensors.index.json"

# (original Wan name, diffusers WanTransformer3DModel name) prefixes (release.md); "{i}" is a block index and an
# entry without a trailing dot is a whole key. Both renaming directions are derived from this one table.
_NAME_PAIRS = [
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("head.head.", "proj_out."),
    ("head.modulation", "scale_shift_table"),
    ("blocks.{i}.modulation", "blocks.{i}.scale_shift_table"),
    *[(f"blocks.{{i}}.{ours}.{x}.", f"blocks.{{i}}.{theirs}.to_{x}.") for ours, theirs in
      (("self_attn", "attn1"), ("cross_attn", "attn2")) for x in "qkv"],
    ("blocks.{i}.self_attn.o.", "blocks.{i}.attn1.to_out.0."),
    ("blocks.{i}.cross_attn.o.", "blocks.{i}.attn2.to_out.0."),
    *[(f"blocks.{{i}}.{ours}.norm_{x}.", f"blocks.{{i}}.{theirs}.norm_{x}.") for ours, theirs in
      (("self_attn", "attn1"), ("cross_attn", "attn2")) for x in "qk"],
    ("blocks.{i}.norm3.", "blocks.{i}.norm2."),  # the affine cross-attention norm
    ("blocks.{i}.ffn.0.", "blocks.{i}.ffn.net.0.proj."),
    ("blocks.{i}.ffn.2.", "blocks.{i}.ffn.net.2."),
    # Wan2.1-I2V image branch (yume.models.i2v).
    ("blocks.{i}.cross_attn.k_img.", "blocks.{i}.attn2.add_k_proj."),
    ("blocks.{i}.cross_attn.v_img.", "blocks.{i}.attn2.add_v_proj."),
    ("blocks.{i}.cross_attn.norm_k_img.", "blocks.{i}.attn2.norm_added_k."),
    ("img_emb.proj.0.", "condition_embedder.image_embedder.norm1."),
    ("img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj."),
    ("img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2."),
    ("img_emb.proj.4.", "condition_embedder.image_embedder.norm2."),
]  # fmt: skip


def _rule(source: str, target: str) -> tuple[re.Pattern, str]:
    pattern = "^" + re.escape(source).replace(re.escape("{i}"), r"(\d+)") + ("" if source.endswith(".") else "$")
    return re.compile(pattern), target.replace("{i}", r"\1")


_COMPILED = {
    "to_diffusers": [_rule(ours, theirs) for ours, theirs in _NAME_PAIRS],
    "to_original": [_rule(theirs, ours) for ours, theirs in _NAME_PAIRS],
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message names the file and the fix."""


def rename_key(key: str, direction: str) -> str:
    for pattern, repl in _COMPILED[direction]:
        new, n = pattern.subn(repl, key)
        if n:
            return new
    return key


def detect_layout(keys) -> str:
    """'original' (Wan/Yume names) or 'diffusers' (WanTransformer3DModel names)."""
    keys = list(keys)
    if any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys):
        return "diffusers"
    if any(k.startswith(("time_embedding.", "text_embedding.")) or ".self_attn." in k for k in keys):
        return "original"
    sample = ", ".join(keys[:3]) or "no keys"
    raise CheckpointError(f"not a Wan/Yume DiT state dict (first keys: {sample})")


# --- finding files ----------------------------------------------------------------------------------------------


def find_dit_files(path) -> tuple[list[Path], Path | None]:
    """Weight files and config.json of a DiT given a file, a model directory, or a diffusers root/transformer dir."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_file():
        if path.name.endswith(".index.json"):
            return _shards_from_index(path), _config_beside(path.parent)
        return [path], _config_beside(path.parent)
    if (path / "transformer").is_dir() and not any(path.glob("*.safetensors")):
        path = path / "transformer"
    if (path / "Yume-Dit").is_dir() and not any(path.glob("*.safetensors")):
        path = path / "Yume-Dit"  # the Yume-I2V-540P release keeps its sharded DiT there
    index = sorted(path.glob("*.safetensors.index.json"))
    if index:
        return _shards_from_index(index[0]), _config_beside(path)
    if (path / DIT_FILE).is_file():
        return [path / DIT_FILE], _config_beside(path)
    candidates = sorted(p for p in path.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates, _config_beside(path)
    listing = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
    raise CheckpointError(
        f"{path}: no DiT weights found (expected {DIT_FILE}, a *.safetensors.index.json with shards, or a "
        f"transformer/ folder); it holds: {listing}"
    )


def _shards_from_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{index}: unreadable shard index ({e})") from None
    shards = sorted({index.parent / name for name in weight_map.values()})
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise CheckpointError(f"{index}: shard files missing: {', '.join(missing)}")
    return shards


def _config_beside(directory: Path) -> Path | None:
    cfg = directory / "config.json"
    return cfg if cfg.is_file() else None


# --- config -----------------------------------------------------------------------------------------------------


def config_from_json(path: Path) -> dict:
    """Model hyper-parameters from an original (WanModel) or diffusers (WanTransformer3DModel) config.json."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config.json ({e})") from None
    if "num_attention_heads" in d:  # diffusers
        heads = d["num_attention_heads"]
        return {
            "dim": heads * d["attention_head_dim"],
            "num_heads": heads,
            "ffn_dim": d["ffn_dim"],
            "num_layers": d["num_layers"],
            "in_dim": d["in_channels"],
            "out_dim": d.get("out_channels") or d["in_channels"],
            "patch_size": tuple(d.get("patch_size", (1, 2, 2))),
            "text_dim": d.get("text_dim", 4096),
            "freq_dim": d.get("freq_dim", 256),
            "eps": d.get("eps", 1e-6),
            "qk_norm": d.get("qk_norm") is not None,
            "cross_attn_norm": d.get("cross_attn_norm", True),
            **{k: d[k] for k in ("text_len", "memory_dim", "history_embeddings") if k in d},
            **({"image_dim": d["image_dim"], "model_type": "i2v"} if d.get("image_dim") else {}),
        }
    return d


def infer_config(shapes: dict[str, tuple], base: dict | None = None) -> ModelConfig:
    """Fill what config.json leaves out from the tensor shapes (original names)."""
    d = dict(base or {})
    dim = shapes["patch_embedding.weight"][0]
    d.setdefault("dim", dim)
    d.setdefault("in_dim", shapes["patch_embedding.weight"][1])
    d.setdefault("patch_size", tuple(shapes["patch_embedding.weight"][2:]))
    d.setdefault("text_dim", shapes["text_embedding.0.weight"][1])
    d.setdefault("freq_dim", shapes["time_embedding.0.weight"][1])
    d.setdefault("ffn_dim", shapes["blocks.0.ffn.0.weight"][0])
    d.setdefault("num_layers", len({k.split(".")[1] for k in shapes if k.startswith("blocks.")}))
    d.setdefault("out_dim", shapes["head.head.weight"][0] // (d["patch_size"][1] * d["patch_size"][2]))
    d.setdefault("qk_norm", "blocks.0.self_attn.norm_q.weight" in shapes)
    d.setdefault("cross_attn_norm", "blocks.0.norm3.weight" in shapes)
    d.setdefault("history_embeddings", "patch_embedding_2x.weight" in shapes)
    if "num_heads" not in d:
        d["num_heads"] = dim // 128 if dim % 128 == 0 else max(1, dim // 64)
    image = shapes.get("img_emb.proj.0.weight")
    if image is not None:
        d.setdefault("image_dim", image[0])
        d["model_type"] = "i2v"
    memory = shapes.get("blocks.0.memory.down.weight")
    if memory is not None:
        d.setdefault("memory_dim", memory[0])
    return ModelConfig.from_dict(d)


# --- reading ----------------------------------------------------------------------------------------------------


def read_shapes(files: list[Path]) -> dict[str, tuple]:
    """Key -> shape of safetensors files from their headers only (no tensor is read)."""
    from safetensors import safe_open

    shapes = {}
    for f in files:
        if f.suffix != ".safetensors":
            shapes.update({k: tuple(v.shape) for k, v in _torch_load(f).items()})
            continue
        try:
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    shapes[k] = tuple(sf.get_slice(k).get_shape())
        except Exception as e:  # safetensors raises several types for a bad header
            raise CheckpointError(f"{f}: not a readable safetensors file ({e}); re-download it") from None
    return shapes


def _torch_load(f: Path) -> dict:
    try:
        sd = torch.load(f, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{f}: not a readable torch checkpoint ({e}); re-download it") from None
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def iter_tensors(files: list[Path]):
    """(key, tensor) pairs, one tensor in memory at a time for safetensors."""
    from safetensors import safe_open

    for f in files:
        if f.suffix != ".safetensors":
            yield from _torch_load(f).items()
            continue
        try:
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    yield k, sf.get_tensor(k)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{f}: reading failed ({e}); the file is truncated or corrupt — re-download it") from None


# --- loading ----------------------------------------------------------------------------------------------------


def load_transformer(path, *, dtype=torch.bfloat16, device="cpu", config=None):
    """Build the DiT on the meta device and fill it from a checkpoint (original or diffusers layout)."""
    from yume.models.wan import YumeTransformer

    files, config_path = find_dit_files(path)
    shapes = read_shapes(files)
    layout = detect_layout(shapes)
    if layout == "diffusers":
        shapes = {rename_key(k, "to_original"): v for k, v in shapes.items()}
    if config is None:
        base = config_from_json(config_path) if config_path else None
        cfg = infer_config(shapes, base)
    else:
        cfg = model_config(config)
    if cfg.image_dim:
        from yume.models.i2v import YumeI2VTransformer as YumeTransformer  # Wan2.1-I2V: CLIP branch, 36 channels
    with torch.device("meta"):
        model = YumeTransformer(cfg)
    check_state_shapes(model, shapes, source=files[0] if len(files) == 1 else files[0].parent, cfg=cfg)

    state = {}
    for key, tensor in iter_tensors(files):
        if layout == "diffusers":
            key = rename_key(key, "to_original")
        state[key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def mismatch_lines(found: dict[str, tuple], expected: dict[str, tuple], indent: str = "  ") -> list[str]:
    """Lines naming the missing, unexpected and wrong-shaped keys of a state dict (empty when it fits)."""

    def few(items, k=6, sep=", "):
        return sep.join(items[:k]) + (" …" if len(items) > k else "")

    found = {k: tuple(v) for k, v in found.items()}
    expected = {k: tuple(v) for k, v in expected.items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = sorted(f"{k}: file {found[k]} vs model {expected[k]}" for k in expected.keys() & found.keys() if found[k] != expected[k])
    lines = []
    if missing:
        lines.append(f"{indent}missing {len(missing)}: {few(missing)}")
    if unexpected:
        lines.append(f"{indent}unexpected {len(unexpected)}: {few(unexpected)}")
    if wrong:
        lines.append(f"{indent}wrong shape {len(wrong)}: {few(wrong, 4, '; ')}")
    return lines


def check_state_shapes(model, shapes: dict[str, tuple], source, cfg: ModelConfig) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = mismatch_lines(shapes, expected)
    if not problems:
        return
    missing = expected.keys() - shapes.keys()
    lines = [f"{source}: checkpoint does not fit the model config ({len(shapes)} keys in file, {len(expected)} expected)"]
    lines += problems
    if any(k.startswith("patch_embedding_") for k in missing):
        lines.append(
            "  hint: this looks like a plain Wan2.2 checkpoint without Yume's history embeddings — load it without "
            "config= (or with history_embeddings=False); its history then uses the 'full' policy"
        )
    elif any(".memory." in k for k in missing):
        lines.append("  hint: the checkpoint has no TSCM memory branch; load with memory_dim=0 and switch the branch on after loading")
    else:
        lines.append("  hint: check that the file is a Wan2.2-TI2V-5B / Yume-5B DiT and that the config matches it")
    raise CheckpointError("\n".join(lines))


# --- saving -----------------------------------------------------------------------------------------------------


def diffusers_config(cfg: ModelConfig) -> dict:
    return {
        "_class_name": "WanTransformer3DModel",
        "patch_size": list(cfg.patch_size),
        "num_attention_heads": cfg.num_heads,
        "attention_head_dim": cfg.head_dim,
        "in_channels": cfg.in_dim,
        "out_channels": cfg.out_dim,
        "text_dim": cfg.text_dim,
        "freq_dim": cfg.freq_dim,
        "ffn_dim": cfg.ffn_dim,
        "num_layers": cfg.num_layers,
        "cross_attn_norm": cfg.cross_attn_norm,
        "qk_norm": "rms_norm_across_heads" if cfg.qk_norm else None,
        "eps": cfg.eps,
        "rope_max_seq_len": 1024,
        # Not diffusers fields: kept so yume reloads the exact model (diffusers ignores unknown config keys).
        "text_len": cfg.text_len,
        "history_embeddings": cfg.history_embeddings,
        "memory_dim": cfg.memory_dim,
        **({"image_dim": cfg.image_dim, "added_kv_proj_dim": cfg.dim} if cfg.image_dim else {}),
    }


def original_config(cfg: ModelConfig) -> dict:
    return {"_class_name": "WanModel", **cfg.to_dict()}


def save_transformer(model, directory, *, layout: str = "original", max_shard_bytes: int | None = None) -> None:
    """Write config.json + safetensors (sharded with an index when larger than max_shard_bytes)."""
    from safetensors.torch import save_file

    if layout not in ("original", "diffusers"):
        raise ValueError(f"layout must be 'original' or 'diffusers', got {layout!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if layout == "diffusers":
        state = {rename_key(k, "to_diffusers"): v for k, v in state.items()}
    config = diffusers_config(cfg) if layout == "diffusers" else original_config(cfg)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    meta = {"format": "pt", "yume_layout": layout}
    shards = _split(state, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], str(directory / DIT_FILE), metadata=meta)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata=meta)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(v.numel() * v.element_size() for v in state.values())
    (directory / DIT_INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _split(state: dict, max_bytes: int | None) -> list[dict]:
    if not max_bytes:
        return [state]
    shards, current, size = [], {}, 0
    for k, v in state.items():
        n = v.numel() * v.element_size()
        if current and size + n > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[k] = v
        size += n
    return shards + [current]
