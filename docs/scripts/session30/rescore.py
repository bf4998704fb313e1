# rescore.py BOUND[xBANDS][,...] BENCH [BENCH ...]: a `yume bench sim` folder's saved videos read again by the IF estimator
# with other jitter bounds (MotionConfig.jitter_px, jitter_bands), chunk by chunk as the benchmark read them (each video's sidecar
# gives the chunks). Prints per folder and bound the chunks walked in the exact direction, turned as told, and how
# many of them differ from the folder's results.json (read from the in-memory frames, before the mp4 encoding, by the estimator of its day).
import json
import sys
from pathlib import Path

from yume.eval.motion import MotionConfig
from yume.eval.score import parse_chunks, score_video
from yume.video import read_video

bounds = [tuple(map(float, (b + "x1").split("x")[:2])) for b in sys.argv[1].split(",")]  # "0.05x3"
print("| bench | jitter bound (px) × bands | chunks | walked | turned as told | reads unlike results.json (at 0.05) |")
print("|---|---|---|---|---|---|")
for bench in map(Path, sys.argv[2:]):
    saved = {r["name"]: r["chunks"] for r in json.loads((bench / "results.json").read_text())["results"]}
    videos = {}
    for sidecar in sorted((bench / "videos").glob("*.json")):
        chunks = parse_chunks(json.loads(sidecar.read_text())["chunks"], str(sidecar))
        videos[sidecar.stem] = (read_video(sidecar.with_suffix(".mp4"))[0], chunks)
    for bound in bounds:
        motion, rows = MotionConfig(jitter_px=bound[0], jitter_bands=int(bound[1])), []
        for name, (frames, chunks) in videos.items():
            for new, old in zip(score_video(frames, chunks, motion)["chunks"], saved[name]):
                rows.append((new["move_ok"], new["rotate_ok"], new["move_ok"] != old["move_ok"]))
        print(f"| {bench.name} | {bound[0]:g} × {int(bound[1])} | {len(rows)} | {sum(r[0] for r in rows)} | "
              f"{sum(r[1] for r in rows) / len(rows):.3f} | {sum(r[2] for r in rows)} |", flush=True)
