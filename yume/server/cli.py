"""`yume serve`: parse the options, load the model once, run the app under uvicorn."""

from __future__ import annotations

import argparse
import secrets


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="play a world in the browser: live keys, text events, frames streamed as made")
    p.add_argument("--model", help="model directory (Yume-5B-720P, …) or built-in name; default: yume-sim-small "
                   "(the built-in street world, 128x128; tiny-random: random weights)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "any other address requires the access token)")  # fmt: skip
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--token", help="access token required on every request (default: none on 127.0.0.1, a random "
                   "one otherwise)")  # fmt: skip
    p.add_argument("--resolution", help="HEIGHTxWIDTH, multiples of 32 (default: the model's)")
    p.add_argument("--steps", type=int, default=None,
                   help="denoising steps per chunk (default: the model's recipe, 4 for the distilled release)")
    p.add_argument("--chunk-latents", type=int, help="latent frames per chunk (8 = 32 video frames; default: the model's own)")
    p.add_argument("--history", choices=["release", "full", "tscm"],
                   help="history compression (default: the model's own — release for Yume checkpoints)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="DiT dtype (default bf16; fp32 for tiny-random)")
    p.add_argument("--offload", nargs="?", const="text", choices=["text", "blocks"],
                   help="text (the default when given alone): T5 on the CPU, DiT off the GPU while the VAE decodes; "
                   "blocks: also the DiT's blocks kept on the CPU, each copied to the GPU for its forward (24-48 GB GPUs)")
    p.add_argument("--max-sessions", type=int, default=4, help="browser sessions open at once (default 4)")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from yume.generate import parse_resolution
    from yume.server.app import Limits, create_app, is_loopback
    from yume.session import SessionConfig, WorldSession
    from yume.world import DEFAULT_MODEL, WorldModel

    height, width = parse_resolution(args.resolution)
    config = SessionConfig(height=height, width=width, steps=args.steps, chunk_latents=args.chunk_latents,
                           history=args.history, seed=args.seed)  # fmt: skip
    limits = Limits(max_sessions=args.max_sessions)
    token = args.token or (None if is_loopback(args.host) else secrets.token_urlsafe(16))
    print(f"loading {args.model or DEFAULT_MODEL} …", flush=True)
    world = WorldModel.load(args.model, device=args.device, dtype=args.dtype, offload=args.offload)
    WorldSession(world, config=config)  # a resolution or history the model cannot do fails here, not in the browser
    app = create_app(world, config=config, limits=limits, token=token)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"open http://{host}:{args.port}/" + (f"?token={token}" if token else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
