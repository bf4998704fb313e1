"""`yume bench load`: time and peak RAM of loading a DiT checkpoint (random weights written to disk first)."""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

from yume.config import model_config
from yume.models.weights import DIT_FILE, original_config

_DTYPES = {"bf16": (torch.bfloat16, "BF16"), "fp16": (torch.float16, "F16"), "fp32": (torch.float32, "F32")}


def write_random_checkpoint(directory, config: str, dtype: str = "bf16", seed: int = 0) -> Path:
    """Write a random DiT in the original layout tensor by tensor, so RAM never holds the whole model."""
    from yume.models.wan import YumeTransformer

    torch_dtype, st_dtype = _DTYPES[dtype]
    cfg = model_config(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shapes = {k: tuple(v.shape) for k, v in YumeTransformer.from_config(cfg, device="meta").state_dict().items()}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    for k, shape in shapes.items():
        n = itemsize
        for s in shape:
            n *= s
        header[k] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    g = torch.Generator().manual_seed(seed)
    with open(directory / DIT_FILE, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for shape in shapes.values():
            t = (torch.randn(shape, generator=g) * 0.02).to(torch_dtype)
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    (directory / "config.json").write_text(json.dumps(original_config(cfg), indent=2))
    return directory


def _load_once(directory: str, dtype: str) -> None:
    from yume.models.wan import YumeTransformer

    start = time.perf_counter()
    model = YumeTransformer.from_pretrained(directory, dtype=_DTYPES[dtype][0])
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    # safetensors tensors may still be backed by the file mapping; read every weight so the peak counts them all.
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "peak_rss_gib": peak_load, "peak_rss_touched_gib": peak, "parameters": params}))


def bench_load(directory, config: str = "yume-5b", dtype: str = "bf16", repeats: int = 1) -> list[dict]:
    """Load the checkpoint in fresh processes (so peak RSS is the load's own) and return their measurements."""
    directory = Path(directory)
    if not (directory / DIT_FILE).is_file():
        print(f"writing random {config} weights ({dtype}) to {directory} ...", flush=True)
        write_random_checkpoint(directory, config, dtype)
    results = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", f"from yume.bench.load import _load_once; _load_once({str(directory)!r}, {dtype!r})"],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    size = (directory / DIT_FILE).stat().st_size / 2**30
    print("| config | dtype | file GiB | parameters | load s | peak RSS after load GiB | after reading every weight GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {config} | {dtype} | {size:.2f} | {r['parameters']:,} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} "
              f"| {r['peak_rss_touched_gib']:.2f} |")
    return results
