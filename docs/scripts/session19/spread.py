# spread.py RESULTS...: per results.json, for chunks asking A or D alone, how many read a direction within 22.5 deg
# of the asked one (the estimator's own bin) and the median parallax of those and of the chunks asking to stand still.
import json
import math
import sys

import numpy as np

for path in sys.argv[1:]:
    lone, still = [], []
    for case in json.load(open(path))["results"]:
        for c in case["chunks"]:
            keys = [k for k in c["commanded"].split("+") if k in "WASD"]
            r, f = c["direction_right_forward"]
            if keys in (["A"], ["D"]):
                want = -90.0 if keys == ["A"] else 90.0
                err = abs((math.degrees(math.atan2(r, f)) - want + 180) % 360 - 180)
                lone.append((err, c["parallax_px_per_frame"]))
            elif not keys:
                still.append(c["parallax_px_per_frame"])
    e = np.array(lone)
    print(f"{path}: A/D alone {len(e)}: within 22.5 deg {int((e[:, 0] <= 22.5).sum())}, median error "
          f"{np.median(e[:, 0]):.0f} deg, median parallax {np.median(e[:, 1]):.2f} px/frame; still {len(still)}: "
          f"median parallax {np.median(still):.2f}")
