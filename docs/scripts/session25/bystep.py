# bystep.py RESULTS.json...: the chunks of `yume bench sim` runs, pooled over all the files given, walked (exact
# direction) and turned as told by the step each asks: none, W/S alone, A/D alone, or a diagonal (W/S with A/D).
import json
import sys
from collections import defaultdict


def step_kind(asked: str) -> str:
    keys = {k for k in asked if k in "WASD"}
    if not keys:
        return "none"
    return "W/S" if keys <= set("WS") else "A/D" if keys <= set("AD") else "diagonal"


counts = defaultdict(lambda: [0, 0, 0])  # kind -> [walked, turned, chunks]
for path in sys.argv[1:]:
    for case in json.load(open(path))["results"]:
        for c in case["chunks"]:
            row = counts[step_kind(c["commanded"])]
            row[0] += c["move_ok"]
            row[1] += c["rotate_ok"]
            row[2] += 1
for kind in ("none", "W/S", "A/D", "diagonal"):
    walked, turned, n = counts[kind]
    print(f"{kind:8s} {n:4d} chunks: walked {walked}, turned as told {turned}")
