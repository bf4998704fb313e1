# soup.py OUT A B W: a DiT checkpoint (original layout, fp32) whose every weight is (1 - W) * A + W * B, for two
# fine-tunes of one starting DiT (a "model soup"); OUT/config.json is A's.
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

out, a, b, w = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
name = "diffusion_pytorch_model.safetensors"
sa, sb = load_file(a / name), load_file(b / name)
if set(sa) != set(sb):
    raise SystemExit(f"{a} and {b} hold different keys")
out.mkdir(parents=True, exist_ok=True)
shutil.copy(a / "config.json", out / "config.json")
save_file({k: ((1 - w) * sa[k].float() + w * sb[k].float()).contiguous() for k in sa}, out / name)
