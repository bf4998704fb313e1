# verdicts.py PAIRS: what the teacher's chunks in an ODE pair folder do, as `yume train ode-verify` read them: by the
# step asked (none, W/S, a strafe A/D, a diagonal) and whether a rotation was asked, how many chunks move and turn as
# asked, and how many of each kind `ode.keep = "followed"` keeps (yume.train.ode.follows: the turn asked, and the move
# asked where one is).
import json
import sys
from collections import defaultdict
from pathlib import Path

from yume.actions import Action
from yume.train.ode import follows

rows = []
for path in sorted(Path(sys.argv[1]).glob("pairs-*.followed.json")):
    for verdicts in json.loads(path.read_text()).values():
        rows += verdicts


def kind(a: Action) -> str:
    step = {"": "none", "W": "W/S", "S": "W/S", "A": "strafe", "D": "strafe"}.get(a.move, "diagonal")
    return f"{step}, {'rotation' if a.rotate else 'no rotation'} asked"


groups = defaultdict(list)
for r in rows:
    groups[kind(Action.parse(r["asked"]))].append(r)
print(f"{len(rows)} teacher chunks in {sys.argv[1]}")
print("| asked | chunks | move as asked | turn as asked | both | kept (follow their keys) |")
print("|---|---|---|---|---|---|")
for name in sorted(groups) + ["all"]:
    g = rows if name == "all" else groups[name]
    move, turn = sum(r["move_ok"] for r in g), sum(r["rotate_ok"] for r in g)
    both, kept = sum(r["move_ok"] and r["rotate_ok"] for r in g), sum(follows(r) for r in g)
    print(f"| {name} | {len(g)} | {move} ({move / len(g):.2f}) | {turn} ({turn / len(g):.2f}) | {both} ({both / len(g):.2f}) "
          f"| {kept} ({kept / len(g):.2f}) |")
