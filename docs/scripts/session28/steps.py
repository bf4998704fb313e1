# steps.py PAIRS [MIN_STEP_RATIO]: how far the teacher's chunks in an ODE pair folder step, as `yume train ode-verify`
# read them: among the chunks that follow their keys and are asked a step, by the step asked (W/S, a strafe A/D, a
# diagonal), the quartiles of the teacher's parallax, of the data's own continuation's (`data_parallax`, px a frame)
# and of their ratio; and how many pairs `ode.keep = "followed"` keeps with `ode.min_step_ratio = MIN_STEP_RATIO`
# (yume.train.ode.follows).
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from yume.actions import Action
from yume.train.ode import follows

folder = Path(sys.argv[1])
bound = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
pairs = {}
for path in sorted(folder.glob("pairs-*.followed.json")):
    pairs.update(json.loads(path.read_text()))
rows = [r for verdicts in pairs.values() for r in verdicts]


def kind(a: Action) -> str:
    return {"W": "W/S", "S": "W/S", "A": "strafe", "D": "strafe"}.get(a.move, "diagonal")


groups = defaultdict(list)
for r in rows:
    if Action.parse(r["asked"]).move and follows(r):
        groups[kind(Action.parse(r["asked"]))].append(r)
groups["every step"] = [r for k in list(groups) for r in groups[k]]


def quartiles(values: list[float]) -> str:
    return " / ".join(f"{q:.3f}" for q in statistics.quantiles(values, n=4))


print(f"{len(rows)} teacher chunks in {folder}; of those that follow a step asked (quartiles 25% / 50% / 75%):")
print("| step asked | chunks | teacher's parallax | data's parallax | ratio | ratio at least the bound |")
print("|---|---|---|---|---|---|")
for name, g in groups.items():
    ratios = [r["parallax"] / max(r["data_parallax"], 1e-6) for r in g]
    print(f"| {name} | {len(g)} | {quartiles([r['parallax'] for r in g])} | {quartiles([r['data_parallax'] for r in g])} "
          f"| {quartiles(ratios)} | {sum(x >= bound for x in ratios)} |")
kept = sum(all(follows(v) for v in verdicts) for verdicts in pairs.values())
bounded = sum(all(follows(v, bound) for v in verdicts) for verdicts in pairs.values())
print(f"pairs kept by ode.keep = 'followed': {kept} of {len(pairs)}; with ode.min_step_ratio = {bound}: {bounded}")
