# odelog.py RUN [N]: an ode run's logged regression loss by exit step, over its first and its last N logged steps
# (default 40): how far the student's x̂0 is from the teacher's solutions at each step of its sampler.
import json
import sys
from collections import defaultdict
from pathlib import Path

rows = [json.loads(line) for line in (Path(sys.argv[1]) / "log.jsonl").read_text().splitlines()]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
for name, part in (("first", rows[:n]), ("last", rows[-n:])):
    by_exit = defaultdict(list)
    for r in part:
        by_exit[r["exit"]].append(r["loss"])
    cells = ", ".join(f"exit {e}: {sum(v) / len(v):.4f} ({len(v)})" for e, v in sorted(by_exit.items()))
    print(f"{sys.argv[1]} {name} {len(part)} logged steps (steps {part[0]['step']}-{part[-1]['step']}): {cells}")
