# byturn.py RESULTS.json...: the walk (exact one of 8 directions) of `yume bench sim` / refchunks.py results, split by
# whether the chunk also asks to turn, with each group's median parallax (the rotation-only residual the estimator
# reads as a step, px/frame) and the median error of the direction read, by what the chunk asks.
import json
import math
import sys
from collections import defaultdict

import numpy as np

ANGLE = {"W": 0, "W+D": 45, "D": 90, "S+D": 135, "S": 180, "S+A": 225, "A": 270, "W+A": 315}
groups = defaultdict(list)  # (move?, turn?) -> (walked, parallax, direction error or nan)
for path in sys.argv[1:]:
    for case in json.load(open(path))["results"]:
        for c in case["chunks"]:
            move = "+".join(k for k in c["commanded"].split("+") if k in "WASD")
            turn = any(k in c["commanded"] for k in "←→↑↓")
            r, f = c["direction_right_forward"]
            err = math.nan
            if move and (r or f):
                err = abs((math.degrees(math.atan2(r, f)) - ANGLE[move] + 180) % 360 - 180)
            groups[("step" if move else "no step", "turn" if turn else "no turn")].append(
                (c["move_ok"], c["parallax_px_per_frame"], err))
for key in sorted(groups):
    a = np.array(groups[key], float)
    err = f", median direction error {np.nanmedian(a[:, 2]):.0f} deg" if key[0] == "step" else ""
    print(f"{key[0]:7s} + {key[1]:7s}: {len(a):3d} chunks, walked {int(a[:, 0].sum()):3d} ({a[:, 0].mean():.2f}), "
          f"median parallax {np.median(a[:, 1]):.2f} px/frame{err}")
