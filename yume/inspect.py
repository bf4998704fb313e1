"""`yume inspect`: say what a downloaded checkpoint directory holds, reading headers only."""

from __future__ import annotations

from pathlib import Path

from yume.models.weights import CheckpointError, detect_layout, find_dit_files, read_shapes, rename_key

# (part, candidate paths relative to the model directory) — original Wan/Yume names first, then diffusers.
PARTS = {
    "VAE": ["Wan2.2_VAE.pth", "Wan2.1_VAE.pth", "vae/config.json"],
    "T5 text encoder": ["models_t5_umt5-xxl-enc-bf16.pth", "text_encoder/config.json"],
    "tokenizer": ["google/umt5-xxl/tokenizer_config.json", "google/umt5-xxl/spiece.model", "tokenizer/tokenizer_config.json"],
}
# Only image-to-video models (Yume-I2V-540P, Wan2.1-I2V) need these.
I2V_PARTS = {
    "CLIP image encoder": ["models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "image_encoder/config.json"],
}


def _size(paths) -> str:
    n = sum(p.stat().st_size for p in paths)
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def describe(path) -> str:
    """A human-readable report of a model directory or DiT file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    lines = [f"{path}"]
    root = path if path.is_dir() else path.parent
    try:
        files, config = find_dit_files(path)
        shapes = read_shapes(files)
        layout = detect_layout(shapes)
        original = {rename_key(k, "to_original"): v for k, v in shapes.items()} if layout == "diffusers" else shapes
        params = sum(_numel(s) for s in shapes.values())
        dtypes = _dtypes(files)
        history = "patch_embedding_2x.weight" in original
        memory = any(".memory." in k for k in original)
        i2v = "img_emb.proj.0.weight" in original
        if i2v:
            kind = "Yume-I2V (Yume 1.0: Wan2.1-I2V + history patch embeddings)" if history else "plain Wan2.1-I2V (no history embeddings)"
        else:
            kind = "Yume (Wan2.2 + history patch embeddings)" if history else "plain Wan2.2 (no history embeddings)"
        if memory:
            kind += " + TSCM memory branch"
        dim = original.get("patch_embedding.weight", (0,))[0]
        layers = len({k.split(".")[1] for k in original if k.startswith("blocks.")})
        shard_note = f"{len(files)} shards" if len(files) > 1 else files[0].name
        lines += [
            f"  DiT: present — {kind}",
            f"    layout: {layout} ({shard_note}, {_size(files)}), config.json: {'yes' if config else 'no'}",
            f"    parameters: {params:,} ({len(shapes)} tensors), dtype: {', '.join(sorted(dtypes)) or 'unknown'}",
            f"    width {dim}, {layers} blocks",
        ]
    except CheckpointError as e:
        lines.append(f"  DiT: missing or unreadable — {e}")
        i2v = False
    if path.is_dir():
        for part, candidates in {**PARTS, **(I2V_PARTS if i2v else {})}.items():
            found = [root / c for c in candidates if (root / c).exists()]
            if found:
                lines.append(f"  {part}: present ({found[0].relative_to(root)})")
            else:
                lines.append(f"  {part}: missing (looked for {', '.join(candidates)})")
    return "\n".join(lines)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _dtypes(files) -> set[str]:
    from safetensors import safe_open

    found = set()
    for f in files:
        if f.suffix != ".safetensors":
            continue
        with safe_open(str(f), framework="pt") as sf:
            for k in list(sf.keys())[:50]:
                found.add(str(sf.get_slice(k).get_dtype()).lower())
    return found
