"""The `yume` command: parse arguments, call one library function, report errors plainly."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each subsystem adds its subcommands to the parser through one function, named here as "module:function".
# The modules must import nothing heavy at module level, so `yume --help` stays fast.
SUBCOMMANDS = [
    "yume.bench.cli:add_bench_parser",
    "yume.train.cli:add_parsers",
    "yume.server.cli:add_serve_parser",
    "yume.eval.cli:add_eval_parser",
]


def _inspect(args) -> int:
    from yume.inspect import describe

    print(describe(args.path))
    return 0


def _generate(args) -> int:
    from yume.generate import generate, parse_resolution
    from yume.session import SAMPLING_PRESETS, SessionConfig
    from yume.world import is_i2v_model

    height, width = parse_resolution(args.resolution)
    # Yume-I2V-540P (detected from the checkpoint) samples with its own release recipe and the 1.0 vocabulary.
    i2v = is_i2v_model(args.model)
    # No --preset: the model's own recipe (the session reads it from the model; release-4step for Yume checkpoints).
    name = args.preset or ("yume-i2v" if i2v else None)
    preset = SAMPLING_PRESETS[name] if name else {"steps": None, "shift": None, "guidance": None}
    if i2v and not args.negative_prompt:
        from yume.session_i2v import I2V_NEGATIVE_PROMPT

        args.negative_prompt = I2V_NEGATIVE_PROMPT
    config = SessionConfig(
        height=height,
        width=width,
        steps=args.steps or preset["steps"],
        shift=args.shift or preset["shift"],
        guidance=args.guidance or preset["guidance"],
        negative_prompt=args.negative_prompt,
        history=args.history,
        prompt_mode=args.prompt_mode,
        vocab=args.vocab or ("1.0" if i2v else "1.5"),
        seed=args.seed,
        sampler=args.sampler,
    )
    record = generate(
        args.output,
        prompt=args.prompt or "",
        image=args.image,
        video=args.video,
        actions=args.actions,
        events=args.event,
        model=args.model,
        config=config,
        device=args.device,
        dtype=args.dtype,
        offload=args.offload,
        controls=not args.no_controls,
        save_session=args.save_session,
        resume=args.resume,
    )
    print(f"wrote {args.output} ({record['frames']} frames, {len(record['chunks'])} chunks, {record['seconds']:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yume", description="Yume-1.5 interactive world generation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="make a world video from a prompt or an image and an action script")
    src = p.add_argument_group("start")
    src.add_argument("--prompt", help="scene description (text-to-world; also the scene text with --image)")
    src.add_argument("--image", help="a start image (image-to-world)")
    src.add_argument("--video", help="a clip to continue (video-to-world; Yume-I2V-540P)")
    src.add_argument("--resume", help="continue a session file written by --save-session")
    p.add_argument("--model", help="model directory (Yume-5B-720P, Wan2.2-TI2V-5B in either layout) or built-in "
                   "name; default: yume-sim-small (the built-in street world, 128x128; tiny-random: random weights)")
    p.add_argument("--actions", default="W*4", help='per-chunk keys, e.g. "W*3 W+D*2 →*2 ." or a JSON file of '
                   '[{"action": "W", "event": "..."}] (default: W*4)')
    p.add_argument("--event", action="append", metavar="CHUNK:TEXT", help='text event from a chunk on, e.g. "4:A ghost appeared"')
    p.add_argument("--resolution", help="HEIGHTxWIDTH, multiples of 32: 704x1280 (default for Yume-5B) or 544x960")
    p.add_argument("--preset", choices=["release-4step", "release-50step", "wan-cfg", "yume-i2v", "flow-cfg"],
                   help="sampling recipe: 4 steps shift 7 (distilled weights), 50 steps shift 5, or 50 steps with CFG 5; "
                   "yume-i2v: 50 steps shift 3 CFG 5; flow-cfg: 16 steps shift 3 CFG 3 (default: the model's own: release-4step for Yume checkpoints, "
                   "yume-i2v for Yume-I2V-540P)")
    p.add_argument("--steps", type=int, help="denoising steps per chunk (overrides the preset)")
    p.add_argument("--shift", type=float, help="σ shift (overrides the preset)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 = off")
    p.add_argument("--negative-prompt", default="", help="negative prompt for guidance")
    p.add_argument("--history", choices=["release", "full", "tscm"],
                   help="history compression (default: the model's own — release for Yume checkpoints)")
    p.add_argument("--prompt-mode", choices=["joined", "decomposed"],
                   help="one caption string (release) or action and event encoded separately (paper); "
                   "default: the model's own (joined for Yume checkpoints)")
    p.add_argument("--vocab", choices=["1.5", "1.0"], help="action vocabulary (default: 1.5, or 1.0 for Yume-I2V-540P)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="euler", choices=["euler", "tts-sde"],
                   help="euler (the release's); tts-sde: Yume 1.0's time-travel SDE sampler (Yume-I2V-540P only)")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="DiT dtype (default bf16; fp32 for tiny-random)")
    p.add_argument("--offload", nargs="?", const="text", choices=["text", "blocks"],
                   help="text (the default when given alone): T5 on the CPU, DiT off the GPU while the VAE decodes; "
                   "blocks: also the DiT's blocks kept on the CPU, each copied to the GPU for its forward (24-48 GB GPUs)")
    p.add_argument("--no-controls", action="store_true", help="do not draw the key panel under the frames")
    p.add_argument("--save-session", metavar="FILE", help="save the session at the end, to continue it with --resume")
    p.add_argument("-o", "--output", default="world.mp4", help="output mp4 (a JSON sidecar is written beside it)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("inspect", help="say what a checkpoint directory or file holds")
    p.add_argument("path", help="a model directory (Yume/Wan original or diffusers layout) or a weights file")
    p.set_defaults(func=_inspect)

    for entry in SUBCOMMANDS:
        module, func = entry.split(":")
        getattr(importlib.import_module(module), func)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Library errors carry their own explanation; YUME_DEBUG=1 shows the traceback.
        if os.environ.get("YUME_DEBUG"):
            raise
        message = str(e)
        if type(e).__name__ == "OutOfMemoryError":
            message = f"out of GPU memory; try --offload (or --offload blocks), a smaller --resolution or --dtype bf16 ({e})"
        print(f"yume {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
