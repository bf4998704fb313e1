"""The `yume eval` command line: `run` a benchmark with a model, `score` existing videos, `validate-if`."""

from __future__ import annotations

import argparse

from yume.eval.metrics import ModelPaths
from yume.eval.motion import MotionConfig
from yume.sim.camera import MOVE_SPEED
from yume.sim.events import EVENTS


def _models(args: argparse.Namespace) -> ModelPaths:
    return ModelPaths(dino=args.dino, clip_b32=args.clip_b32, clip_l14=args.clip_l14,
                      aesthetic_head=args.aesthetic_head)


def _score(args: argparse.Namespace) -> int:
    from yume.eval.score import markdown, score_dir, write_reports

    results = score_dir(args.video, MotionConfig(fov_deg=args.fov), _models(args))
    write_reports(results, args.json, args.md)
    print(markdown(results), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from yume.eval.run import session_generator
    from yume.eval.score import load_benchmark, markdown, run_cases, write_reports
    from yume.world import WorldModel

    cases = load_benchmark(args.benchmark)
    world = WorldModel.load(args.model, device=args.device, dtype=args.dtype)
    generate = session_generator(world, steps=args.steps, history=args.history, out_dir=args.videos)
    results = run_cases(cases, generate, MotionConfig(fov_deg=args.fov), _models(args))
    write_reports(results, args.json, args.md)
    print(markdown(results), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from yume.eval.validate import format_validation, validate_if

    motion = MotionConfig(opening_px=args.opening, contrast_sigma_px=args.contrast_sigma, jitter_px=args.jitter,
                          jitter_bands=args.jitter_bands)
    report = validate_if(repeats=args.repeats, height=args.height, width=args.width, frames=args.frames,
                         seed=args.seed, motion=motion, event=args.event, wobble_px=args.wobble,
                         wobble_region=args.wobble_region, move_speed=args.move_speed)
    print(format_validation(report), end="")
    return 0


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The --fov and VBench model-path options shared by scoring commands."""
    parser.add_argument("--fov", type=float, default=70.0, help="assumed horizontal field of view, degrees")
    g = parser.add_argument_group("VBench models (local transformers folders; unset = weight-free proxy)")
    g.add_argument("--dino", help="facebook/dino-vitb16 folder: subject consistency")
    g.add_argument("--clip-b32", help="openai/clip-vit-base-patch32 folder: background consistency")
    g.add_argument("--clip-l14", help="openai/clip-vit-large-patch14 folder: aesthetic quality (with --aesthetic-head)")
    g.add_argument("--aesthetic-head", help="LAION aesthetic linear head .pth (sa_0_4_vit_l_14_linear.pth)")


def add_eval_parser(subparsers) -> argparse._SubParsersAction:
    """Add `eval score`, `eval run` and `eval validate-if` (each sets `func(args) -> exit code`); returns eval's subparsers."""
    parser = subparsers.add_parser("eval", help="offline evaluation: IF and VBench-style metrics")
    sub = parser.add_subparsers(dest="eval_command", required=True)

    score = sub.add_parser("score", help="score videos that have JSON sidecars (clip.mp4 + clip.json)")
    score.add_argument("video", help="a video file or a folder searched recursively")
    score.add_argument("--json", help="write the results and summary here")
    score.add_argument("--md", help="write the markdown table here")
    add_model_args(score)
    score.set_defaults(func=_score)

    run = sub.add_parser("run", help="generate each case of a benchmark file with a model, then score it")
    run.add_argument("benchmark", help="benchmark definition (.json or .toml; see docs/eval.md)")
    run.add_argument("--model", help="model directory or built-in name (default: the built-in model)")
    run.add_argument("--steps", type=int, help="denoising steps per chunk (default: the model's recipe)")
    run.add_argument("--history", choices=["release", "full", "tscm"], help="default: the model's own")
    run.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    run.add_argument("--dtype", choices=["bf16", "fp16", "fp32"])
    run.add_argument("--videos", help="also write each case as VIDEOS/<id>.mp4 + <id>.json")
    run.add_argument("--json", help="write the results and summary here")
    run.add_argument("--md", help="write the markdown table here")
    add_model_args(run)
    run.set_defaults(func=_run)

    val = sub.add_parser("validate-if", help="check the IF estimator on rendered clips with known camera motion")
    val.add_argument("--repeats", type=int, default=1, help="clips per (movement, rotation) combination")
    val.add_argument("--height", type=int, default=128)
    val.add_argument("--width", type=int, default=128)
    val.add_argument("--frames", type=int, default=16, help="frames per clip")
    val.add_argument("--seed", type=int, default=0)
    val.add_argument("--event", choices=list(EVENTS), help="draw this event, ramping in over each clip")
    val.add_argument("--move-speed", type=float, default=MOVE_SPEED, help=f"metres a frame (default {MOVE_SPEED:g})")
    default = MotionConfig()
    val.add_argument("--opening", type=int, default=default.opening_px,
                     help=f"estimator: grey-level opening width, px (default {default.opening_px}; 0 = off)")
    val.add_argument("--contrast-sigma", type=float, default=default.contrast_sigma_px,
                     help=f"estimator: local contrast normalisation sigma, px (default {default.contrast_sigma_px:g}; 0 = off)")
    val.add_argument("--jitter", type=float, default=default.jitter_px,
                     help=f"estimator: RMS departure from a quadratic in time above which a track may be dropped, px "
                          f"(default {default.jitter_px:g})")
    val.add_argument("--jitter-bands", type=int, default=default.jitter_bands,
                     help=f"estimator: bands of rows that each get their own median jitter bound (default "
                          f"{default.jitter_bands})")
    val.add_argument("--wobble", type=float, default=0.0,
                     help="shimmer each frame's texture by this many px RMS about the known camera, as a small "
                          "generator's near ground does (default 0: off)")
    val.add_argument("--wobble-region", choices=["all", "bottom"], default="all",
                     help="where the wobble is: the whole frame or its bottom third (the near ground)")
    val.set_defaults(func=_validate)
    return sub
