# bounds.py SEED REPEATS BOUND[xBANDS] ...: the IF estimator's jitter bound (MotionConfig.jitter_px, and jitter_bands) on the
# validation clips of `yume eval validate-if` (known camera, 0.1 m and 1.5 degrees a frame, 128 x 128, 16 frames),
# clean and with each frame's texture shimmered about the camera (yume.eval.validate.wobble_texture): 0.3 and 0.6 px
# RMS in the bottom third (the near ground, as a small generator's shimmers) and 0.3 px over the whole frame.
# Prints movement and rotation accuracy per condition and bound.
#
# The rule that picks the benchmark's new bound, fixed before any of these ran (session 30):
#   1. against the bound in use (0.05 px), it may lose at most 2 of 324 clips of movement and 2 of rotation on the
#      clean tuning clips (seeds 1 and 2, --repeats 2 each);
#   2. of those, it reads the most movement right on average over seven conditions: the tuning clips shimmered
#      (0.3b, 0.6b, 0.3) and the 40 held-out pairs' true chunks through the package's VAE, clean and shimmered the
#      same (pairbounds.py); ties go to the smaller bound.
#   It is then run once on seeds 0 and 3 and on the events (seed 11), and only then is any model scored with it,
#   on worlds 103000 and up.
import sys

from yume.eval.motion import MotionConfig
from yume.eval.validate import per_class, validate_if

seed, repeats = int(sys.argv[1]), int(sys.argv[2])
bounds = [tuple(map(float, (b + "x1").split("x")[:2])) for b in sys.argv[3:]]  # "0.05x3": 0.05 px, 3 bands
conditions = [("clean", 0.0, "all"), ("0.3b", 0.3, "bottom"), ("0.6b", 0.6, "bottom"), ("0.3", 0.3, "all")]
print(f"seed {seed}, {repeats} repeats of the 81 combinations")
print("| condition | jitter bound (px) × bands | movement | rotation | both |")
print("|---|---|---|---|---|")
for name, amplitude, region in conditions:
    for bound in bounds:
        motion = MotionConfig(jitter_px=bound[0], jitter_bands=int(bound[1]))
        report = validate_if(repeats=repeats, seed=seed, motion=motion, wobble_px=amplitude, wobble_region=region)
        o = per_class(report["clips"])["overall"]
        print(f"| {name} | {bound[0]:g} × {int(bound[1])} | {o['movement']:.3f} | {o['rotation']:.3f} | {o['both']:.3f} |", flush=True)
