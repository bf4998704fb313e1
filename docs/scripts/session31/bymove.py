# bymove.py BENCH [BENCH ...]: the saved videos of `yume bench sim` folders read again by the benchmark's estimator as
# it stands (MotionConfig()), chunk by chunk as the benchmark read them, and split by the move the keys asked for:
# chunks walked in the exact direction (of 8) and turned as told. Folders scored before session 30 read here with
# the per-third jitter bound, so a teacher and a student scored in different sessions compare on one ruler.
import json
import sys
from pathlib import Path

from yume.eval.motion import MotionConfig
from yume.eval.score import parse_chunks, score_video
from yume.video import read_video

CLASSES = ("no step", "W/S", "A/D", "diagonal")


def move_class(commanded: str) -> str:
    keys = [k for k in commanded.split("+") if k in ("W", "A", "S", "D")]
    return CLASSES[0] if not keys else CLASSES[3] if len(keys) == 2 else CLASSES[1] if keys[0] in "WS" else CLASSES[2]


print("| bench (saved videos, read again) | walked | turned as told | " + " | ".join(CLASSES) + " |")
print("|---|---|---|" + "---|" * len(CLASSES))
for bench in map(Path, sys.argv[1:]):
    rows = []
    for sidecar in sorted((bench / "videos").glob("*.json")):
        chunks = parse_chunks(json.loads(sidecar.read_text())["chunks"], str(sidecar))
        frames = read_video(sidecar.with_suffix(".mp4"))[0]
        rows += score_video(frames, chunks, MotionConfig())["chunks"]
    cells = []
    for name in CLASSES:
        part = [r for r in rows if move_class(r["commanded"]) == name]
        cells.append(f"{sum(r['move_ok'] for r in part)}/{len(part)}")
    print(f"| {bench.name} | {sum(r['move_ok'] for r in rows)} of {len(rows)} | "
          f"{sum(r['rotate_ok'] for r in rows) / len(rows):.3f} | " + " | ".join(cells) + " |", flush=True)
