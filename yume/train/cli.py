"""`yume data synth|label|check|cache` and `yume train flow|self-forcing|ode|ode-pairs|ode-verify|vae|export`: parse arguments, call the library."""

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

    p = dsub.add_parser("synth", help="render a posed, captioned dataset from the procedural street world (yume.sim)")
    p.add_argument("out", help="dataset folder to write (manifest.jsonl + clips/)")
    p.add_argument("--clips", type=int, default=240, help="number of clips, one world seed each (default 240)")
    p.add_argument("--first-seed", type=int, default=0, help="world seed of the first clip (default 0)")
    p.add_argument("--resolution", default="128x128", help="HxW of the rendered frames (default 128x128)")
    p.add_argument("--segments", type=int, default=2, help="constant-action segments per clip (default 2)")
    p.add_argument("--segment-frames", type=int, default=40, help="frames each action is held (default 40)")
    p.add_argument("--event-prob", type=float, default=0.5, help="share of clips showing an event (default 0.5)")
    p.add_argument("--event-onsets", default=None, metavar="F,F,...",
                   help="frames an event may begin at, drawn uniformly (e.g. 9,17: inference's chunk starts at "
                        "--segment-frames 8); default anywhere in the clip's first third")
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--move-speed", type=float, default=0.1,
                   help="metres the camera moves a frame while a move key is held (default 0.1, the built-in model's)")
    p.add_argument("--turn-speed", type=float, default=1.5,
                   help="degrees the camera turns a frame while an arrow is held (default 1.5, the built-in model's)")
    p.add_argument("--workers", type=int, default=1, help="processes rendering at once (e.g. the number of cores)")
    p.set_defaults(func=_synth)

    p = dsub.add_parser("check", help="report every bad clip (unreadable, missing fields, wrong fps, too short)")
    p.add_argument("dataset", help="dataset folder with manifest.jsonl")
    p.add_argument("--fps", type=float, default=None, help="the frame rate every clip must have")
    p.add_argument("--min-frames", type=int, default=1, help="shortest acceptable clip in frames")
    p.set_defaults(func=_check)

    p = dsub.add_parser("cache", help="VAE- and T5-encode every clip once into safetensors shards")
    p.add_argument("dataset", nargs="+", help="dataset folder(s) with manifest.jsonl; clip ids must not repeat")
    p.add_argument("out", help="cache folder to write")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes encoding clips at once (e.g. the CPU cores, or 4-8 on one GPU); the cache is the same",
    )
    p.add_argument("--vae", default="tiny", help="'tiny' (random test VAE) or a Wan2.2 VAE file/folder")
    p.add_argument("--text-encoder", default="tiny", help="'tiny' (random test T5) or a Wan/diffusers model folder")
    p.add_argument("--text-dim", type=int, default=32, help="width of the tiny text encoder (the DiT's text_dim)")
    p.add_argument("--text-len", type=int, default=512, help="token limit of the text encoder (the DiT's text_len)")
    p.add_argument(
        "--resolution", default=None, help="HxW to resize and centre-crop to, multiples of 32 (e.g. 704x1280)"
    )
    p.add_argument("--max-frames", type=int, default=None, help="cut clips to at most this many frames")
    p.add_argument(
        "--text-dtype",
        default="bf16",
        choices=("bf16", "fp32"),
        help="dtype of a text encoder loaded from a folder (default bf16; the tiny one is always fp32)",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cache)

    train = sub.add_parser("train", help="train the DiT: flow matching (stage 1) or Self-Forcing + DMD (stage 2)")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="STAGE")
    for stage, text in (
        ("flow", "rectified-flow foundation training"),
        ("self-forcing", "Self-Forcing rollouts with DMD"),
        ("ode", "ODE distillation: regress the few-step student on its teacher's solutions (`train ode-pairs`)"),
    ):
        p = tsub.add_parser(stage, help=text, description=f"{text}. Run under torchrun for FSDP/DDP.")
        p.add_argument("--config", default=None, help="a .toml or .yaml run config (see docs/training.md)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config value, e.g. --set run.steps=100 --set optim.lr=1e-4")  # fmt: skip
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.set_defaults(func=_train, stage=stage)
    p = tsub.add_parser("ode-pairs", help="solve the teacher's guided ODE on training batches for the ode stage",
                        description="Write ode.pairs: for pairs FIRST .. FIRST+COUNT-1, the teacher "
                        "(self_forcing.teacher, CFG self_forcing.guidance) solved from seeded noise on the data loader's "
                        "batch of that index. Shards already written are skipped; processes may write disjoint ranges.")
    _config_args(p, "the ode run's config (data, self_forcing.teacher, ode.pairs)")
    p.add_argument("--count", type=int, required=True, help="pairs to write")
    p.add_argument("--first", type=int, default=0, help="index of the first pair (default 0)")
    p.add_argument("--teacher-steps", type=int, default=16, help="Euler steps of the teacher (default 16, flow-cfg's)")
    p.add_argument("--teacher-shift", type=float, default=3.0, help="the teacher schedule's shift (default 3, flow-cfg's)")
    p.add_argument("--shard", type=int, default=25, help="pairs a shard file (default 25)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_ode_pairs)
    p = tsub.add_parser("ode-verify", help="read the camera motion of every ODE pair's teacher chunk (for ode.keep)",
                        description="Decode each pair's teacher chunk with VAE and read its camera motion with the "
                        "evaluation's estimator; writes a verdict file beside each shard of ode.pairs, which ode.keep = 'followed' reads. "
                        "Shards already read are skipped, so a second process started a little later shares the work.")
    _config_args(p, "the ode run's config (data, ode.pairs)")
    p.add_argument("--vae", required=True, help="the VAE folder the cache was encoded with")
    p.set_defaults(func=_ode_verify)
    p = tsub.add_parser("vae", help="train a small Wan-style VAE on a clip dataset (L1 + KL on random crops)")
    p.add_argument("dataset", help="dataset folder with manifest.jsonl")
    p.add_argument("out", help="folder for the VAE (diffusers layout: config.json + safetensors, log.jsonl)")
    p.add_argument("--preset", default="", help="VAE preset to train from scratch (default sim-small; sim-small-t2 "
                   "has a 2x temporal stride, sim-small-t1 none); with --init, moves init's weights into this preset's structure")
    p.add_argument("--init", default="", help="a VAE folder to continue training from (default: random init)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--frames", type=int, default=5, help="frames per training window, 1 + 4k (default 5)")
    p.add_argument("--crop", type=int, default=64, help="square crop side in pixels (default 64)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--temporal-weight", type=float, default=0.0,
                   help="weight of an L1 between the frame-to-frame differences of output and input (default 0)")
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="Gaussian noise added to the latent the decoder sees, in latent stds (default 0): a decoder "
                        "that tolerates latents a little off the encoder's, as a DiT's are")
    p.add_argument("--shift-weight", type=float, default=0.0,
                   help="weight of an L1 between the reconstructions of window pairs 1-7 px apart, where they overlap "
                        "(default 0): a codec whose output does not depend on the latent grid's phase, so a pan does "
                        "not swim; --batch-size counts pairs")
    p.add_argument("--autocast", default="bf16", choices=("bf16", "none"))
    p.add_argument("--max-clips", type=int, default=0, help="use at most this many clips (0 = all)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this wall time (0 = run every step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="", help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--train", default="all", choices=("all", "decoder"),
                   help="decoder: keep --init's encoder (its latent space, so DiTs trained on it still decode)")
    p.set_defaults(func=_train_vae)
    p = tsub.add_parser("probe", help="does a DiT read the action caption? flow loss with the true vs another action")
    p.add_argument("weights", help="a DiT file or folder (e.g. a checkpoint's generator/ema)")
    p.add_argument("cache", help="a latent cache made by `yume data cache` with the DiT's VAE and text encoder")
    p.add_argument(
        "--mode",
        default="i2v",
        choices=("t2v", "i2v", "v2v"),
        help="batches to probe: i2v (history = the first latent: the caption is the only clue) or v2v",
    )
    p.add_argument("--chunk", type=int, default=4, help="latent frames per chunk (as trained)")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--history", default="tscm", choices=("release", "full", "tscm"), help="history policy (as trained)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="", help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.set_defaults(func=_probe)
    p = tsub.add_parser("export", help="pack a trained DiT and VAE into a built-in model folder (bf16 DiT)")
    p.add_argument("dit", help="the DiT: a checkpoint's generator/original (or ema) folder")
    p.add_argument("vae", help="the VAE folder written by `yume train vae`")
    p.add_argument("out", help="model folder to write (dit/, vae/, text/), e.g. yume/assets/yume-sim-small")
    p.add_argument(
        "--text",
        default=None,
        help="the text encoder folder the cache was made with (default: the tiny random one, seed 0)",
    )
    p.add_argument("--sampling", default=None,
                   help="the step recipe sessions use by default (a preset: release-4step for a distilled model, "
                   "flow-cfg for a flow model)")
    p.add_argument("--chunk-latents", type=int, default=None,
                   help="latent frames per chunk the DiT was trained on (data.chunk_latents), where it differs from "
                   "the built-in model's 4: e.g. 8 for configs/sim-small/flow-t1.toml")
    p.add_argument("--move-speed", type=float, default=None,
                   help="metres a frame the data's camera walked (yume data synth --move-speed), where not 0.1: "
                   "the sim benchmark renders its true videos at it")
    p.add_argument("--turn-speed", type=float, default=None,
                   help="degrees a frame the data's camera turned (yume data synth --turn-speed), where not 1.5")
    p.set_defaults(func=_export)


def _config_args(p, what: str) -> None:
    """--config and --set, for the commands that read a run config without training it."""
    p.add_argument("--config", default=None, help=what)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")


def _probe(args) -> int:
    import torch

    from yume.data.cache import LatentCache
    from yume.models.wan import YumeTransformer
    from yume.train.probe import action_probe, format_probe
    from yume.world import default_device

    model = YumeTransformer.from_pretrained(args.weights, dtype=torch.float32, device=args.device or default_device()).eval()
    rows = action_probe(model, LatentCache(args.cache), mode=args.mode, chunk=args.chunk, batches=args.batches,
                        batch_size=args.batch_size, policy=args.history, seed=args.seed)  # fmt: skip
    print(format_probe(rows))
    return 0


def _label(args) -> int:
    from yume.data.label import label_dataset

    clips, skipped = label_dataset(args.dataset, args.out, stride=args.stride, trans_thr=args.trans_thr,
                                   rot_thr=args.rot_thr, min_frames=args.min_frames)  # fmt: skip
    for clip_id, why in skipped.items():
        print(f"skipped {clip_id}: {why}", file=sys.stderr)
    print(f"{len(clips)} constant-action clips written to {args.out}")
    return 0


def _synth(args) -> int:
    from yume.data.synth import synth_dataset

    try:
        h, w = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        raise ValueError(f"--resolution {args.resolution!r}: write HxW, e.g. 128x128") from None
    try:
        onsets = None if args.event_onsets is None else tuple(int(f) for f in args.event_onsets.split(","))
    except ValueError:
        raise ValueError(f"--event-onsets {args.event_onsets!r}: write frame numbers separated by commas, e.g. 9,17") from None
    clips = synth_dataset(args.out, args.clips, first_seed=args.first_seed, height=h, width=w, fps=args.fps,
                          segments=args.segments, frames_per_segment=args.segment_frames, event_prob=args.event_prob,
                          event_onsets=onsets,
                          move_speed=args.move_speed, turn_speed=args.turn_speed, workers=args.workers, on_clip=lambda c: print(f"{c.id}: {c.caption} {c.event or ''}", flush=True))  # fmt: skip
    print(f"{len(clips)} clips written to {args.out}")
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
    import torch

    from yume.data.cache import build_cache
    from yume.models.text import TextEncoder
    from yume.vae import WanVAE

    vae = WanVAE.from_config("tiny") if args.vae == "tiny" else WanVAE.from_pretrained(args.vae)
    if args.text_encoder == "tiny":
        text = TextEncoder.from_config("tiny", d_model=args.text_dim, text_len=args.text_len)
    else:
        dtype = torch.float32 if args.text_dtype == "fp32" else torch.bfloat16
        text = TextEncoder.from_pretrained(args.text_encoder, dtype=dtype, text_len=args.text_len)
    vae.to(args.device)
    text.to(args.device)
    resolution = None
    if args.resolution:
        try:
            h, w = (int(v) for v in args.resolution.lower().split("x"))
        except ValueError:
            raise ValueError(f"--resolution {args.resolution!r}: write HxW, e.g. 704x1280") from None
        resolution = (h, w)
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: give 1 or more processes")
    index = build_cache(args.dataset, args.out, vae, text, resolution=resolution, max_frames=args.max_frames,
                        workers=args.workers, on_clip=lambda i, n: print(f"{i}: {n} latent frames", flush=True))  # fmt: skip
    print(f"{len(index['clips'])} clips cached in {args.out}")
    return 0


def _train_vae(args) -> int:
    from yume.train.vae import VAETrainConfig, train_vae

    cfg = VAETrainConfig(args.dataset, args.out, preset=args.preset, init=args.init, steps=args.steps,
                         batch_size=args.batch_size, frames=args.frames, crop=args.crop, lr=args.lr,
                         kl_weight=args.kl_weight, temporal_weight=args.temporal_weight, latent_noise=args.latent_noise,
                         shift_weight=args.shift_weight, autocast=args.autocast,
                         max_clips=args.max_clips, max_minutes=args.max_minutes, seed=args.seed, device=args.device,
                         train=args.train)  # fmt: skip

    def report(m):
        dt = "".join(f"  {k} {m[k]:.4f}" for k in ("dt_l1", "shift_l1") if k in m)
        print(f"step {m['step']}/{cfg.steps}  l1 {m['l1']:.4f}{dt}  kl {m['kl']:.1f}  lr {m['lr']:.2g}  {m['elapsed_s']}s",
              flush=True)  # fmt: skip

    train_vae(cfg, callback=report)
    print(f"VAE written to {args.out}")
    return 0


def _export(args) -> int:
    from yume.train.export import export_builtin

    size = export_builtin(args.dit, args.vae, args.out, text=args.text, sampling=args.sampling,
                          chunk_latents=args.chunk_latents, move_speed=args.move_speed, turn_speed=args.turn_speed)
    print(f"{args.out}: {size / 2**20:.1f} MiB")
    return 0


def _ode_pairs(args) -> int:
    from tqdm.auto import tqdm

    from yume.train.config import load_config
    from yume.train.ode import write_pairs

    cfg = load_config(args.config, ["stage=ode", *args.set])
    with tqdm(total=args.count, desc="ode pairs") as bar:
        out = write_pairs(cfg, args.count, first=args.first, teacher_steps=args.teacher_steps,
                          teacher_shift=args.teacher_shift, shard=args.shard, device=args.device, progress=bar.update)  # fmt: skip
    print(f"{out}: pairs {args.first}-{args.first + args.count - 1}")
    return 0


def _ode_verify(args) -> int:
    import statistics

    from tqdm.auto import tqdm

    from yume.actions import Action
    from yume.train.config import load_config
    from yume.train.ode import follows, verify_pairs
    from yume.vae import WanVAE

    cfg = load_config(args.config, ["stage=ode", *args.set])
    vae = WanVAE.from_pretrained(args.vae)
    with tqdm(desc="ode verify") as bar:
        verdicts = verify_pairs(cfg, vae, progress=bar.update)
    rows = [v for vs in verdicts.values() for v in vs]
    kept = sum(follows(v) for v in rows)
    print(f"{cfg.ode.pairs}: of {len(rows)} teacher chunks, {sum(v['move_ok'] for v in rows)} move as asked, "
          f"{sum(v['rotate_ok'] for v in rows)} turn as asked; {kept} follow their keys (kept by ode.keep = 'followed')")
    steps = [v["parallax"] / v["data_parallax"] for v in rows
             if v.get("data_parallax") and follows(v) and Action.parse(v["asked"]).move]  # fmt: skip
    if steps:
        print(f"where a step is asked and followed, the teacher steps a median {statistics.median(steps):.3f} times as "
              f"far as the data's own continuation ({len(steps)} chunks; ode.min_step_ratio bounds it)")
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
