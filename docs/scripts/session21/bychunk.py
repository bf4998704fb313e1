# bychunk.py RESULTS.json...: chunks walked (the exact one of 8 directions) by chunk index, with the median parallax
# (px a frame) and median direction error of the chunks that ask for a step, in all videos and in the plain and event
# videos apart. Reads `yume bench sim` / refspeed.py results and truehistory.py's (one chunk a record).
import json
import math
import sys

import numpy as np

ANGLE = {"W": 0, "W+D": 45, "D": 90, "S+D": 135, "S": 180, "S+A": 225, "A": 270, "W+A": 315}


def direction_error(c: dict) -> float:  # as session 20's byturn.py: nan where no direction was read
    move = "+".join(k for k in c["commanded"].split("+") if k in "WASD")
    right, forward = c["direction_right_forward"]
    if not (right or forward):
        return math.nan
    return abs((math.degrees(math.atan2(right, forward)) - ANGLE[move] + 180) % 360 - 180)


for path in sys.argv[1:]:
    chunks = []  # (kind, chunk index from 1, row)
    for r in json.load(open(path))["results"]:
        kind = r["name"].split("-chunk")[0].rsplit("-", 1)[1]
        chunks += [(kind, c.get("chunk", i + 1), c) for i, c in enumerate(r["chunks"])]
    for kind in ("all", "plain", "event"):
        parts = []
        for index in sorted({i for _, i, _ in chunks}):
            rows = [c for k, i, c in chunks if i == index and kind in ("all", k)]
            steps = [c for c in rows if any(key in c["commanded"] for key in "WASD")]
            par = np.median([c["parallax_px_per_frame"] for c in steps]) if steps else math.nan
            err = np.nanmedian([direction_error(c) for c in steps]) if steps else math.nan
            parts.append(f"chunk {index}: {sum(c['move_ok'] for c in rows)} of {len(rows)} ({par:.2f} px, {err:.0f} deg)")
        print(f"{path} {kind}: " + "; ".join(parts))
