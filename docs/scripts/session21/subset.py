# subset.py CACHE OUT N: a latent cache (`yume data cache`) of the first N clips of CACHE (ids sim_00000 ..
# sim_{N-1}), its shards and text linked, not copied. The 240-world run of session 21 trained on the first 240
# of the 480 worlds this session rendered, which are session 20's 240 (same seeds, same speed, same clips).
import json
import os
import sys
from pathlib import Path

src, dst, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
dst.mkdir(parents=True, exist_ok=True)
index = json.loads((src / "index.json").read_text())
index["clips"] = [c for c in index["clips"] if int(c["id"].rsplit("_", 1)[1]) < n]
for f in src.iterdir():
    if f.name != "index.json" and not (dst / f.name).exists():
        os.symlink(f.resolve(), dst / f.name)
(dst / "index.json").write_text(json.dumps(index))
print(f"{dst}: {len(index['clips'])} clips of {src}")
