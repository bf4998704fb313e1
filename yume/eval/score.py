"""Scoring videos against their commanded actions, benchmark files, and the JSON / markdown reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from yume.actions import Action, parse_script
from yume.eval.metrics import METRICS, ModelPaths, quality_metrics
from yume.eval.motion import MotionConfig, estimate_chunk
from yume.video import read_video


@dataclass(frozen=True)
class Chunk:
    """One generated chunk: how many frames it added, the action held, and the event (if any) requested with it."""

    frames: int
    action: Action
    event: str | None = None


def chunk_windows(total: int, counts: Sequence[int]) -> list[tuple[int, int]]:
    """Frame ranges [start, stop) to estimate each chunk's motion from.

    The counts must add up to `total` or `total - 1` (then frame 0 is the start image). Each window also takes the
    frame before its chunk, since the motion into a chunk's first frame is that chunk's action.
    """
    if any(c < 1 for c in counts):
        raise ValueError(f"chunk frame counts must be >= 1, got {list(counts)}")
    offset = total - sum(counts)
    if offset not in (0, 1):
        raise ValueError(f"chunk frame counts add up to {sum(counts)} but the video has {total} frames; "
                         f"they must add up to {total} or {total - 1} (when frame 0 is the start image)")
    out, start = [], offset
    for c in counts:
        out.append((max(start - 1, 0), start + c))
        start += c
    return out


def parse_chunks(items: list, where: str) -> list[Chunk]:
    """Sidecar chunks [{"frames": 16, "action": "W+→", "event": "..."}] (or "move"/"rotate" keys) -> Chunks."""
    if not isinstance(items, list) or not items:
        raise ValueError(f'{where}: "chunks" must be a non-empty list of {{"frames": N, "action": "W+→"}}')
    chunks = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("frames"), int):
            raise ValueError(f'{where} chunk {i}: expected {{"frames": N, "action": "W+→"}}, got {item!r}')
        try:
            if "action" in item:
                action = Action.parse(item["action"])
            else:
                action = Action(item.get("move", ""), item.get("rotate", ""))
        except ValueError as e:
            raise ValueError(f"{where} chunk {i}: {e}") from None
        chunks.append(Chunk(item["frames"], action, item.get("event")))
    return chunks


def score_video(
    video: str | Path | np.ndarray,
    chunks: Sequence[Chunk],
    motion: MotionConfig | None = None,
    models: ModelPaths | None = None,
    name: str | None = None,
) -> dict:
    """Score one video (a path or frames [T, H, W, 3] uint8) against its chunks' commanded actions.

    Returns {"name", "frames", "seconds", "if": {"movement", "rotation", "both"}, "chunks": [...],
    "metrics": {metric: {"score", "method"}}}.
    """
    t0 = time.perf_counter()
    if isinstance(video, (str, Path)):
        name = name or Path(video).stem
        if not Path(video).is_file():
            raise FileNotFoundError(f"video {video} does not exist")
        frames, _ = read_video(video)
    else:
        frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    motion = motion or MotionConfig()
    rows = []
    for chunk, (a, b) in zip(chunks, chunk_windows(len(frames), [c.frames for c in chunks])):
        est = estimate_chunk(frames[a:b], motion)
        rows.append({
            "commanded": str(chunk.action), "estimated": str(Action(est.move, est.rotate)),
            "move_ok": est.move == chunk.action.move, "rotate_ok": est.rotate == chunk.action.rotate,
            "yaw_deg_per_frame": est.yaw, "pitch_deg_per_frame": est.pitch,
            "direction_right_forward": [est.right, est.forward], "parallax_px_per_frame": est.parallax,
            "event": chunk.event,
        })  # fmt: skip
    instruction = {
        "movement": float(np.mean([r["move_ok"] for r in rows])),
        "rotation": float(np.mean([r["rotate_ok"] for r in rows])),
        "both": float(np.mean([r["move_ok"] and r["rotate_ok"] for r in rows])),
        "method": f"weight-free camera-motion estimate (fov {motion.fov_deg} deg)",
    }
    metrics = quality_metrics(frames, models)
    return {"name": name or "video", "frames": len(frames), "seconds": time.perf_counter() - t0,
            "if": instruction, "chunks": rows, "metrics": metrics}  # fmt: skip


def score_dir(
    path: str | Path, motion: MotionConfig | None = None, models: ModelPaths | None = None
) -> list[dict]:
    """Score every `X.mp4` (or .mkv/.webm/.avi) under `path` that has an `X.json` sidecar holding {"chunks": [...]}.

    A single video path is scored alone. A sidecar may set "fov_deg" to override the estimator's field of view.
    """
    path = Path(path)
    videos = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix.lower() in (".mp4", ".mkv", ".webm", ".avi"))
    if not videos:
        raise FileNotFoundError(f"no videos (.mp4 .mkv .webm .avi) found at {path}")
    results = []
    for video in videos:
        sidecar = video.with_suffix(".json")
        if not sidecar.is_file():
            if path.is_file():
                raise FileNotFoundError(f"{video} has no sidecar {sidecar} with its per-chunk actions")
            continue
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"sidecar {sidecar} is not valid JSON: {e}") from None
        cfg = motion or MotionConfig()
        if "fov_deg" in meta:
            cfg = MotionConfig(**{**asdict(cfg), "fov_deg": float(meta["fov_deg"])})
        chunks = parse_chunks(meta.get("chunks"), str(sidecar))
        results.append(score_video(video, chunks, cfg, models, name=str(video.relative_to(path.parent))))
    if not results:
        raise FileNotFoundError(f"no video under {path} has a JSON sidecar (clip.mp4 + clip.json)")
    return results


@dataclass(frozen=True)
class Case:
    """One benchmark case: what to generate (prompt and/or start image), the action script, events, and size."""

    id: str
    actions: list[Action]
    prompt: str = ""
    image: str | None = None
    events: dict[int, str] = field(default_factory=dict)  # chunk index -> event text
    height: int = 704
    width: int = 1280
    frames_per_chunk: int = 32
    seed: int = 0

    def chunks(self) -> list[Chunk]:
        return [Chunk(self.frames_per_chunk, a, self.events.get(i)) for i, a in enumerate(self.actions)]


_CASE_KEYS = {"id", "prompt", "image", "actions", "events", "height", "width", "frames_per_chunk", "seed"}


def load_benchmark(path: str | Path) -> list[Case]:
    """Read a benchmark file (.json or .toml): {"defaults": {...}, "cases": [{"id", "actions", ...}]}.

    `actions` is a list of action strings (one per chunk, `*N` repeats allowed: "W*3"); `events` maps a chunk index
    to text; any case field may be set once in `defaults`. See docs/eval.md.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib  # Python >= 3.11

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise ImportError(f"reading {path} needs Python >= 3.11 (tomllib); write the benchmark as JSON") from None
    except ValueError as e:  # JSONDecodeError and TOMLDecodeError are both ValueErrors
        raise ValueError(f"benchmark file {path} does not parse: {e}") from None
    defaults = data.get("defaults", {})
    if not isinstance(data.get("cases"), list) or not data["cases"]:
        raise ValueError(f'benchmark file {path} needs a non-empty "cases" list')
    cases, seen = [], set()
    for i, raw in enumerate(data["cases"]):
        item = {**defaults, **raw}
        unknown = set(item) - _CASE_KEYS
        if unknown:
            raise ValueError(f"{path} case {i}: unknown fields {sorted(unknown)}; allowed: {sorted(_CASE_KEYS)}")
        if "id" not in item or "actions" not in item:
            raise ValueError(f'{path} case {i}: "id" and "actions" are required')
        if item["id"] in seen:
            raise ValueError(f"{path} case {i}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        if not item.get("prompt") and not item.get("image"):
            raise ValueError(f"{path} case {item['id']!r}: give a prompt, an image, or both")
        try:
            actions = parse_script(" ".join(item["actions"]) if isinstance(item["actions"], list) else item["actions"])
        except ValueError as e:
            raise ValueError(f"{path} case {item['id']!r}: {e}") from None
        events = {int(k): str(v) for k, v in item.get("events", {}).items()}
        bad = [k for k in events if not 0 <= k < len(actions)]
        if bad:
            raise ValueError(f"{path} case {item['id']!r}: events at chunks {bad} but there are {len(actions)} chunks")
        if item.get("image") and not Path(item["image"]).is_absolute():
            item["image"] = str(path.parent / item["image"])
        cases.append(Case(**{**item, "actions": actions, "events": events}))
    return cases


def run_cases(
    cases: Sequence[Case],
    generate: Callable[[Case], tuple[np.ndarray, list[int]]],
    motion: MotionConfig | None = None,
    models: ModelPaths | None = None,
) -> list[dict]:
    """Generate each case with `generate(case) -> (frames [T, H, W, 3] uint8, frames per chunk)` and score it.

    Each result's "seconds" splits into "generate_seconds" and the scoring time.
    """
    results = []
    for case in cases:
        t0 = time.perf_counter()
        frames, counts = generate(case)
        gen = time.perf_counter() - t0
        chunks = [Chunk(n, c.action, c.event) for n, c in zip(counts, case.chunks(), strict=True)]
        result = score_video(frames, chunks, motion, models, name=case.id)
        result["generate_seconds"] = gen
        result["seconds"] += gen
        results.append(result)
    return results


def summary(results: Sequence[dict]) -> dict:
    """Means over results of the IF accuracies and the five metrics, with the method each metric used."""
    out = {f"if_{k}": float(np.mean([r["if"][k] for r in results])) for k in ("movement", "rotation", "both")}
    for m in METRICS:
        out[m] = float(np.mean([r["metrics"][m]["score"] for r in results]))
    out["methods"] = {m: sorted({r["metrics"][m]["method"] for r in results}) for m in METRICS}
    return out


def if_by_chunk(results: Sequence[dict]) -> list[dict]:
    """IF accuracies per chunk index over all results: [0] is the chunk right after the start (an image start: the
    caption is its only clue to the motion), later ones also see the motion they continue."""
    chunks = range(max((len(r["chunks"]) for r in results), default=0))
    return [_rates([r["chunks"][i] for r in results if len(r["chunks"]) > i]) for i in chunks]


def _rates(chunks: Sequence[dict]) -> dict:
    """{"movement", "rotation"}: the fraction of `chunks` read right on each axis (None when there are none), and
    "chunks": how many."""
    def rate(key):
        return float(np.mean([c[key] for c in chunks])) if chunks else None

    return {"movement": rate("move_ok"), "rotation": rate("rotate_ok"), "chunks": len(chunks)}


def if_by_event(results: Sequence[dict]) -> dict[str, dict]:
    """IF accuracies over the chunks under an event (from the chunk that asks for it to the end of its video) and
    over the others: {"event": {...}, "clear": {...}}, each {"movement", "rotation", "chunks"} (None where empty).
    Weather and darkness are the hardest chunks to read, for the estimator and through a VAE (docs/eval.md), so the
    two are worth telling apart."""
    groups = {"event": [], "clear": []}
    for r in results:
        under = False
        for c in r["chunks"]:
            under = under or bool(c.get("event"))
            groups["event" if under else "clear"].append(c)
    return {k: _rates(v) for k, v in groups.items()}


MOVE_GROUPS = {"": "still", "W": "W/S", "S": "W/S", "A": "A/D", "D": "A/D"}  # the rest: "diagonal"


def if_by_move(results: Sequence[dict]) -> dict[str, dict]:
    """IF accuracies grouped by the commanded translation: "still" (no move key), "W/S" (straight ahead or back),
    "A/D" (sideways) and "diagonal" (two move keys), each {"movement", "rotation", "chunks"} (None where empty).
    The groups fail for different reasons: a VAE's wobble reads a turn as a step (still), a sideways step moves the
    picture much as a turn does (A/D, diagonal); docs/sim-model.md, session 13, measures both."""
    groups = {"still": [], "W/S": [], "A/D": [], "diagonal": []}
    for r in results:
        for c in r["chunks"]:
            groups[MOVE_GROUPS.get(Action.parse(c["commanded"]).move, "diagonal")].append(c)
    return {k: _rates(v) for k, v in groups.items()}


def sideways_reads(results: Sequence[dict]) -> dict[str, int]:
    """What the estimator read in the chunks that ask for one sideways key alone (A or D): "exact", "with W/S" (a
    sideways step, either side, plus a forward or backward one), "W/S instead" (a forward or backward step, no
    sideways one) and "other" (the wrong side alone, or standing), with "chunks" in all. A model that cannot tell a strafe from a turn misses
    by standing or turning; one that drifts ahead misses with W/S (docs/sim-model.md, session 18)."""
    counts = {"chunks": 0, "exact": 0, "with W/S": 0, "W/S instead": 0, "other": 0}
    for r in results:
        for c in r["chunks"]:
            asked = Action.parse(c["commanded"]).move
            if asked not in ("A", "D"):
                continue
            read = set(Action.parse(c["estimated"]).move.split("+")) - {""}
            counts["chunks"] += 1
            if read == {asked}:
                counts["exact"] += 1
            elif read & {"W", "S"}:
                counts["with W/S" if read & {"A", "D"} else "W/S instead"] += 1
            else:
                counts["other"] += 1
    return counts


def markdown(results: Sequence[dict]) -> str:
    """A markdown table: one row per video plus the mean, then which method produced each metric."""
    head = ["case", "IF move", "IF rot", "IF both", "subject", "background", "smooth", "aesthetic", "imaging", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name, i, m, secs):
        vals = [f"{i[k]:.3f}" for k in ("movement", "rotation", "both")] + [f"{m[k]:.3f}" for k in METRICS]
        return f"| {name} | " + " | ".join(vals) + f" | {secs} |"

    for r in results:
        lines.append(row(r["name"], r["if"], {k: v["score"] for k, v in r["metrics"].items()}, f"{r['seconds']:.1f}"))
    s = summary(results)
    mean_if = {k: s[f"if_{k}"] for k in ("movement", "rotation", "both")}
    lines.append(row("**mean**", mean_if, s, f"{sum(r['seconds'] for r in results):.1f}"))
    lines.append("")
    lines.append("IF: " + results[0]["if"]["method"] + ". " + "; ".join(
        f"{m}: {', '.join(v)}" for m, v in s["methods"].items()) + ".")
    return "\n".join(lines) + "\n"


def write_reports(results: Sequence[dict], json_path: str | Path | None, md_path: str | Path | None) -> None:
    """Write the results (and their summary) as JSON and/or the markdown table."""
    if json_path:
        Path(json_path).write_text(json.dumps({"summary": summary(results), "results": list(results)},
                                              indent=2, ensure_ascii=False), encoding="utf-8")
    if md_path:
        Path(md_path).write_text(markdown(results), encoding="utf-8")
