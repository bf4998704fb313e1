# bychunk.py RESULTS.json...: chunks walked (the exact one of 8 directions) by chunk index, in all of `yume bench
# sim`'s videos and in its plain and event videos apart.
import json
import sys

for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    for kind in ("all", "plain", "event"):
        rows = [r for r in results if kind == "all" or r["name"].endswith(kind)]
        walked = [[c["move_ok"] for r in rows for c in r["chunks"][i : i + 1]] for i in range(3)]
        print(f"{path} {kind}: " + " / ".join(f"{sum(w)} of {len(w)}" for w in walked))
