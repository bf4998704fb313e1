# strafeyaw.py RESULTS.json...: of a `yume bench sim` run's chunks that step and turn wrongly (rotate_ok false), how
# many ask for a strafe (A or D) and how many of those the estimator reads as a yaw with the strafe reversed or lost:
# image motion that is the same near and far, so a rotation explains it better than the asked sideways step.
import json
import sys

for path in sys.argv[1:]:
    wrong = strafe = swapped = 0
    for case in json.load(open(path))["results"]:
        for c in case["chunks"]:
            asked, seen = c["commanded"], c["estimated"]
            if c["rotate_ok"] or not any(k in asked for k in "WASD"):
                continue
            wrong += 1
            side = next((k for k in "AD" if k in asked), None)
            if side is None:
                continue
            strafe += 1
            # a made-up or wrong-way yaw, and the asked side step no longer read
            yaw_asked = next((k for k in "←→" if k in asked), None)
            yaw_seen = next((k for k in "←→" if k in seen), None)
            if yaw_seen != yaw_asked and side not in seen:
                swapped += 1
    print(f"{path}: stepping chunks turned wrongly {wrong}, of them asking a strafe {strafe}, "
          f"read as a yaw with the strafe lost {swapped}")
