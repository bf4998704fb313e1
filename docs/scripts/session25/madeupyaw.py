# madeupyaw.py RESULTS.json...: the rotation a `yume bench sim` run makes up while it strafes. Over the chunks that
# ask for A or D and no yaw: the median |yaw| the estimator reads (degrees a frame) and the share read above its
# 0.45 (counted as a turn); the same for the chunks asking W or S alone.
import json
import sys

import numpy as np

TURN = 0.45  # yume.eval.motion.MotionConfig.rotate_deg_per_frame
for path in sys.argv[1:]:
    strafe, walk = [], []
    for case in json.load(open(path))["results"]:
        for c in case["chunks"]:
            asked = c["commanded"]
            if any(k in asked for k in "←→"):
                continue
            if any(k in asked for k in "AD"):
                strafe.append(abs(c["yaw_deg_per_frame"]))
            elif any(k in asked for k in "WS"):
                walk.append(abs(c["yaw_deg_per_frame"]))
    strafe, walk = np.array(strafe), np.array(walk)
    print(f"{path}: strafes with no yaw asked {len(strafe)}, median |yaw| {np.median(strafe):.2f}, "
          f"read as a turn {np.mean(strafe > TURN):.2f}; W/S alone {len(walk)}, median |yaw| {np.median(walk):.2f}, "
          f"read as a turn {np.mean(walk > TURN):.2f}")
