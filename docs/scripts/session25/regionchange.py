# regionchange.py CACHE [SHARD]: how much each band of latent rows changes from frame to frame in a latent cache's
# clips, by the action held: a walk (W/S alone), a strafe (A/D alone) or a yaw (←/→ alone). The mean square change
# per latent frame over channels and columns, row by row (x 1000), for the clips of one shard (default the first).
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open

from yume.actions import ALL_ACTIONS

cache = Path(sys.argv[1])
index = json.loads((cache / "index.json").read_text())
shard = sys.argv[2] if len(sys.argv) > 2 else index["clips"][0]["shard"]
f = safe_open(str(cache / shard), "pt")
rows = defaultdict(list)
for clip in index["clips"]:
    if clip["shard"] != shard:
        continue
    x = f.get_tensor(f"latents/{clip['id']}").float()  # [C, F, h, w], one latent a frame
    actions = clip["actions"]
    actions = json.loads(actions) if isinstance(actions, str) else actions
    change = (x[:, 1:] - x[:, :-1]).pow(2).mean(0)  # [F - 1, h, w]
    for t in range(change.shape[0]):
        keys = set(str(ALL_ACTIONS[actions[min(t + 1, len(actions) - 1)]]).replace("+", ""))
        for kind, alone in (("walk W/S", "WS"), ("strafe A/D", "AD"), ("yaw ←/→", "←→")):
            if keys and keys <= set(alone):
                rows[kind].append(change[t].mean(1))
for kind, v in rows.items():
    print(f"{kind:11s} ({len(v)} frames), top to bottom: {(torch.stack(v).mean(0) * 1000).round().int().tolist()}")
