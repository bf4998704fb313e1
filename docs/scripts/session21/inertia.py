# inertia.py RESULTS.json...: does the DiT carry on the motion its history shows? For chunks 2+ of each `yume bench
# sim` video whose commanded move differs from the previous chunk's, how many are walked, and how many of the misses
# are read as the previous chunk's commanded move (chance is about 1 in 8 of them).
import json
import sys


def move(action: str) -> str:  # "W+A+↓←" -> "W+A"; "" when no move key
    return "+".join(k for k in action.split("+") if k in "WASD")


for path in sys.argv[1:]:
    changed = walked = missed = as_previous = 0
    for case in json.load(open(path))["results"]:
        chunks = case["chunks"]
        for prev, c in zip(chunks, chunks[1:]):
            if move(c["commanded"]) == move(prev["commanded"]):
                continue
            changed += 1
            walked += c["move_ok"]
            if not c["move_ok"]:
                missed += 1
                as_previous += move(c["estimated"]) == move(prev["commanded"])
    print(f"{path}: chunks 2+ whose move differs from the previous chunk's: {changed}, walked {walked}; "
          f"of the {missed} missed, read as the previous chunk's move: {as_previous}")
