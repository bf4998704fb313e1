# corrnoise.py YUME-ARGS...: the yume CLI with each chunk's starting noise correlated across its frames, ALPHA of it
# shared by all of them (ALPHA·shared + sqrt(1 − ALPHA²)·own: each frame's noise is still N(0, 1)). Video models
# sample with such noise to steady what a frame makes up; here it asks whether the package's turns in place stop
# reading as steps. ALPHA=0 is the package's own sampler, draw for draw.
#   ALPHA=0.6 python docs/scripts/session31/corrnoise.py bench sim OUT --scenes 12 --first-scene 102800
import os
import sys

import torch

from yume import session
from yume.cli import main

ALPHA = float(os.environ["ALPHA"])
own_noise = session.get_noise


def correlated_noise(shape, *, seed, device="cpu", dtype=torch.float32):
    noise = own_noise(shape, seed=seed)
    shared = own_noise((*shape[:2], 1, *shape[3:]), seed=seed + 7_777_777)
    return (ALPHA * shared + (1 - ALPHA**2) ** 0.5 * noise).to(device=device, dtype=dtype)


session.get_noise = correlated_noise
sys.exit(main(sys.argv[1:]))
