# bymove.py BENCH [BENCH ...]: the saved videos of `yume bench sim` folders read again by the benchmark's estimator as
# it stands (MotionConfig()), chunk by chunk as the benchmark read them, and split by the move the keys asked for:
# chunks walked in the exact direction (of 8) and turned as told. Folders scored before session 30 read here with
# the per-third jitter bound, so a teacher and a student scored in different sessions compare on one ruler.
import json
import sys
from pathlib import Path

from yume.eval.motion import MotionConfig
from yume.eval.score import if_by_move, parse_chunks, score_video
from yume.video import read_video

GROUPS = ("still", "W/S", "A/D", "diagonal")  # yume.eval.score.if_by_move's groups of the move asked

print("| bench (saved videos, read again) | walked | turned as told | no step | W/S | A/D | diagonal |")
print("|---|---|---|---|---|---|---|")
for bench in map(Path, sys.argv[1:]):
    rows = []
    for sidecar in sorted((bench / "videos").glob("*.json")):
        chunks = parse_chunks(json.loads(sidecar.read_text())["chunks"], str(sidecar))
        frames = read_video(sidecar.with_suffix(".mp4"))[0]
        rows += score_video(frames, chunks, MotionConfig())["chunks"]
    groups = if_by_move([{"chunks": rows}])
    cells = [f"{round(g['movement'] * g['chunks'])}/{g['chunks']}" if g["chunks"] else "-" for g in map(groups.get, GROUPS)]
    print(f"| {bench.name} | {sum(r['move_ok'] for r in rows)} of {len(rows)} | "
          f"{sum(r['rotate_ok'] for r in rows) / len(rows):.3f} | " + " | ".join(cells) + " |", flush=True)
