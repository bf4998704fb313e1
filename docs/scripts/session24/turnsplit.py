# turnsplit.py RESULTS.json...: how often a `yume bench sim` run turns as told, split by what each chunk asks:
# no rotation, yaw alone, pitch alone, or both, each with and without a step (W/A/S/D). The estimator's rotate_ok
# also fails a chunk that asks for no rotation but shows one, so "none+step" counts rotation made up while walking.
import json
import sys
from collections import defaultdict

KIND = {(False, False): "none", (True, False): "yaw", (False, True): "pitch", (True, True): "both"}
for path in sys.argv[1:]:
    groups = defaultdict(lambda: [0, 0])  # (rotation asked, step asked) -> [turned as told, chunks]
    for case in json.load(open(path))["results"]:
        for c in case["chunks"]:
            asked = c["commanded"]
            kind = KIND[(any(k in asked for k in "←→"), any(k in asked for k in "↑↓"))]
            g = groups[(kind, any(k in asked for k in "WASD"))]
            g[0] += c["rotate_ok"]
            g[1] += 1
    cells = [f"{kind}{'+step' if step else ''} {ok}/{n}" for (kind, step), (ok, n) in sorted(groups.items())]
    print(f"{path}: " + ", ".join(cells))
