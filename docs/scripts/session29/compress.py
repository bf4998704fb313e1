# compress.py PAIRS [PAIRS ...]: does the teacher's step follow the data's? Every chunk of the pairs' verdicts (written
# by `yume train ode-verify`, with data_parallax) that asks for a step, binned by the data's own parallax (quintiles):
# the median parallax of the data's chunks and of the teacher's, their median ratio, and how often the teacher's chunk
# moves as asked. A teacher that steps as its data does keeps the ratio near 1 in every bin.
import json
import sys
from pathlib import Path

import numpy as np

teacher, data, ok = [], [], []
for folder in sys.argv[1:]:
    for path in sorted(Path(folder).glob("pairs-*.followed.json")):
        for rows in json.loads(path.read_text(encoding="utf-8")).values():
            for r in rows:
                if any(k in r["asked"] for k in "WASD"):
                    teacher.append(r["parallax"]), data.append(r["data_parallax"]), ok.append(r["move_ok"])
teacher, data, ok = np.array(teacher), np.array(data), np.array(ok)
print(f"{len(data)} chunks that ask for a step; correlation of the teacher's parallax with the data's: "
      f"{np.corrcoef(teacher, data)[0, 1]:.2f}")
print("| the data's parallax (px a frame) | chunks | the data's, median | the teacher's, median | ratio, median | teacher moves as asked |")
print("|---|---|---|---|---|---|")
edges = np.quantile(data, np.linspace(0, 1, 6))
for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
    m = (data >= lo) & ((data < hi) if k < 4 else (data <= hi))
    ratio = teacher[m] / np.maximum(data[m], 1e-6)
    print(f"| {lo:.2f}-{hi:.2f} | {m.sum()} | {np.median(data[m]):.2f} | {np.median(teacher[m]):.2f} | "
          f"{np.median(ratio):.2f} | {ok[m].mean():.2f} |")
