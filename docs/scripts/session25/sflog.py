# sflog.py RUN FIRST_STEP: a Self-Forcing run's logged terms after FIRST_STEP (its resume point), each as the mean of
# its first and of its last 40 logged values, with their range: how a term moved over a resumed run of 1,000 steps.
import json
import sys
from pathlib import Path

import numpy as np

run, first = Path(sys.argv[1]), int(sys.argv[2])
rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
rows = [r for r in rows if r["step"] > first]
for key in ("dmd_loss", "real_loss", "real_motion_loss", "motion_map_loss", "grad_norm"):
    v = np.array([r[key] for r in rows if key in r])
    if len(v):
        print(f"{key:17s} {len(v):4d} values: first 40 {v[:40].mean():.4f}, last 40 {v[-40:].mean():.4f}, "
              f"range {v.min():.4f}-{v.max():.4f}")
