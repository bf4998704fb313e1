"""`yume data label|check|cache` and `yume train flow|self-forcing`: parse arguments, call the library."""

from __future__ import annotations

import sys


def add_parsers(sub) -> None:
    data = sub.add_parser("data", help="label, check and cache training clips (see docs/data.md)")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    p = dsub.add_parser("label", help="split posed clips into constant-action clips with keyboard labels")
    p.add_argument("dataset", help="dataset folder with manifest.jsonl whose clips carry camera-to-world poses")
    p.add_argument("out", help="folder for the labelled dataset (new manifest and clip JSONs; videos are not copied)")
    p.add_argument("--stride", type=int, default=1, help="label every stride-th pose pair (default 1)")
    p.add_argument("--trans-thr", type=float, default=1e-4, help="translation threshold per frame (default 1e-4)")
    p.add_argument("--rot-thr", type=float, default=1e-3, help="rotation threshold per frame, radians (default 1e-3)")
    p.add_argument("--min-frames", type=int, default=33, help="shortest clip kept, in frames (default 33)")
    p.set_defaults(func=_label)

    p = dsub.add_parser("check", help="report every bad clip (unreadable, missing fields, wrong fps, too short)")
    p.add_argument("dataset", help="dataset folder with manifest.jsonl")
    p.add_argument("--fps", type=float, default=None, help="the frame rate every clip must have")
    p.add_argument("--min-frames", type=int, default=1, help="shortest acceptable clip in frames")
    p.set_defaults(func=_check)

    p = dsub.add_parser("cache", help="VAE- and T5-encode every clip once into safetensors shards")
    p.add_argument("dataset", help="dataset folder with manifest.jsonl")
    p.add_argument("out", help="cache folder to write")
    p.add_argument("--vae", default="tiny", help="'tiny' (random test VAE) or a Wan2.2 VAE file/folder")
    p.add_argument("--text-encoder", default="tiny", help="'tiny' (random test T5) or a Wan/diffusers model folder")
    p.add_argument("--text-dim", type=int, default=32, help="width of the tiny text encoder (the DiT's text_dim)")
    p.add_argument("--text-len", type=int, default=512, help="token limit of the text encoder (the DiT's text_len)")
    p.add_argument("--resolution", default=None, help="HxW to resize and centre-crop to, multiples of 32 (e.g. 704x1280)")
    p.add_argument("--max-frames", type=int, default=None, help="cut clips to at most this many frames")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cache)

    train = sub.add_parser("train", help="train the DiT: flow matching (stage 1) or Self-Forcing + DMD (stage 2)")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="STAGE")
    for stage, text in (("flow", "rectified-flow foundation training"), ("self-forcing", "Self-Forcing rollouts with DMD")):
        p = tsub.add_parser(stage, help=text, description=f"{text}. Run under torchrun for FSDP/DDP.")
        p.add_argument("--config", default=None, help="a .toml or .yaml run config (see docs/training.md)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config value, e.g. --set run.steps=100 --set optim.lr=1e-4")  # fmt: skip
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.set_defaults(func=_train, stage=stage)


def _label(args) -> int:
    from yume.data.label import label_dataset

    clips, skipped = label_dataset(args.dataset, args.out, stride=args.stride, trans_thr=args.trans_thr,
                                   rot_thr=args.rot_thr, min_frames=args.min_frames)  # fmt: skip
    for clip_id, why in skipped.items():
        print(f"skipped {clip_id}: {why}", file=sys.stderr)
    print(f"{len(clips)} constant-action clips written to {args.out}")
    return 0


def _check(args) -> int:
    from yume.data.clips import check_dataset

    def report(clip_id, problems):
        if problems:
            print(f"BAD {clip_id}: {'; '.join(problems)}", flush=True)

    result = check_dataset(args.dataset, fps=args.fps, min_frames=args.min_frames, on_clip=report)
    print(result.summary())
    return 1 if result.bad else 0


def _cache(args) -> int:
    from yume.data.cache import build_cache
    from yume.models.text import TextEncoder
    from yume.vae import WanVAE

    vae = WanVAE.from_config("tiny") if args.vae == "tiny" else WanVAE.from_pretrained(args.vae)
    if args.text_encoder == "tiny":
        text = TextEncoder.from_config("tiny", d_model=args.text_dim, text_len=args.text_len)
    else:
        text = TextEncoder.from_pretrained(args.text_encoder, text_len=args.text_len)
    vae.to(args.device)
    text.to(args.device)
    resolution = None
    if args.resolution:
        try:
            h, w = (int(v) for v in args.resolution.lower().split("x"))
        except ValueError:
            raise ValueError(f"--resolution {args.resolution!r}: write HxW, e.g. 704x1280") from None
        resolution = (h, w)
    index = build_cache(args.dataset, args.out, vae, text, resolution=resolution, max_frames=args.max_frames,
                        on_clip=lambda i, n: print(f"{i}: {n} latent frames", flush=True))  # fmt: skip
    print(f"{len(index['clips'])} clips cached in {args.out}")
    return 0


def _train(args) -> int:
    from yume.train.config import load_config

    cfg = load_config(args.config, [f"stage={args.stage}", *args.set])
    if args.print_config:
        from yume.train.config import to_toml

        print(to_toml(cfg.to_dict()), end="")
        return 0
    from yume.train.loop import train

    train(cfg)
    return 0

