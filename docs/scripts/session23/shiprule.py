# shiprule.py PACKAGE_BENCH CANDIDATE_BENCH: the ship rule of sessions 22-23 applied to two `yume bench sim` folders
# scored on the same worlds: the candidate replaces the package's DiT only if it walks (the exact one of 8
# directions) at least 20 more chunks, turns as told in >= 0.85 of them, shows the asked event in no fewer cases than
# the package less 3, an unasked event in no more plain videos than the package plus 3, and keeps imaging >= 0.74.
import json
import sys
from collections import Counter
from pathlib import Path


def score(folder: Path) -> dict:
    results = json.loads((folder / "results.json").read_text())
    events = json.loads((folder / "events.json").read_text())
    chunks = [c for r in results["results"] for c in r["chunks"]]
    scored = [c for c in events["cases"] if c["asked"] != "none" and c["asked"] not in events["events_hidden"]]
    plain = [c for c in events["cases"] if c["asked"] == "none"]
    return {
        "chunks": len(chunks),
        "walked": sum(c["move_ok"] for c in chunks),
        "turns": sum(c["rotate_ok"] for c in chunks) / len(chunks),
        "asked": sum(c["asked"] == c["detected"] for c in scored), "asked_of": len(scored),
        "seen": Counter(c["asked"] for c in scored if c["asked"] == c["detected"]),
        "unasked": sum(c["detected"] != "none" for c in plain), "unasked_of": len(plain),
        "imaging": results["summary"]["imaging_quality"],
    }


pkg, cand = (score(Path(a)) for a in sys.argv[1:3])
if pkg["chunks"] != cand["chunks"]:
    raise SystemExit(f"the two folders scored {pkg['chunks']} and {cand['chunks']} chunks: not the same worlds")
for name, s in (("package", pkg), ("candidate", cand)):
    print(f"{name:9s}: walked {s['walked']} of {s['chunks']}, turns {s['turns']:.3f}, asked events {s['asked']}/"
          f"{s['asked_of']}, unasked {s['unasked']}/{s['unasked_of']}, imaging {s['imaging']:.3f}")
    print(f"{'':11s}asked events seen, by event: " + ", ".join(f"{e} {n}" for e, n in sorted(s["seen"].items())))
checks = [
    (f"walks >= {pkg['walked'] + 20}", cand["walked"] >= pkg["walked"] + 20),
    ("turns >= 0.85", cand["turns"] >= 0.85),
    (f"asked events >= {pkg['asked'] - 3}", cand["asked"] >= pkg["asked"] - 3),
    (f"unasked events <= {pkg['unasked'] + 3}", cand["unasked"] <= pkg["unasked"] + 3),
    ("imaging >= 0.74", cand["imaging"] >= 0.74),
]
for what, ok in checks:
    print(f"  {'met' if ok else 'NOT met'}: {what}")
print("ship" if all(ok for _, ok in checks) else "do not ship")
