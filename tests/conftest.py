import os

# A missing local file must fail at once, not after a minute of hub retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# Tests are many tiny ops: one thread avoids oversubscription on small shared CI machines (measured 10× slower
# with 2 threads under load), and keeps results independent of the thread count.
torch.set_num_threads(1)
