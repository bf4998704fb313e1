"""The `yume bench` command group: parse options, run one benchmark, print its table and write its files."""

from __future__ import annotations

import sys
from pathlib import Path

DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


def add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print a table")
    group = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    p = group.add_parser("history", help="time per chunk against chunk index for full / release / tscm (Figure 7)")
    p.add_argument("--config", default="small", help="model preset: tiny, small, yume-5b, … (random weights)")
    p.add_argument("--height", type=int, default=256, help="frame height in pixels (multiple of 32)")
    p.add_argument("--width", type=int, default=448, help="frame width in pixels (multiple of 32)")
    p.add_argument("--chunks", type=int, default=8, help="chunks to simulate (history grows 8 latents per chunk)")
    p.add_argument("--steps", type=int, default=1, help="denoising forwards timed per chunk")
    p.add_argument("--repeats", type=int, default=1, help="time each chunk this many times and keep the fastest")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="what the table and plot show: wall time, or this process's CPU time (a CPU shared with other jobs; "
        "run with OMP_NUM_THREADS=1 so no thread spins waiting for another)",
    )
    p.add_argument("--policies", default="full,release,tscm", help="comma-separated history policies")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-history", help="folder for history.csv and history.png")
    p.set_defaults(func=_history)

    p = group.add_parser("generate", help="per-chunk latency (text / denoise / VAE), FPS and peak memory of a session")
    p.add_argument("--config", default="tiny", help="DiT preset (random weights): tiny, small, yume-5b, …")
    p.add_argument("--vae", default="tiny", help="VAE preset (random weights): tiny or wan2.2")
    p.add_argument("--resolution", default="128x128", help="HEIGHTxWIDTH, multiples of 32")
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--history", default="release", choices=["release", "full", "tscm"])
    p.add_argument("--start", default="image", choices=["image", "text"], help="image-to-world or text-to-world")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.set_defaults(func=_generate)

    p = group.add_parser("load", help="load time and peak RAM of a DiT checkpoint (random weights written first)")
    p.add_argument("directory", help="checkpoint folder; random weights are written there if it has none")
    p.add_argument("--config", default="yume-5b")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--repeats", type=int, default=1)
    p.set_defaults(func=_load)

    p = group.add_parser("vae", help="a VAE on held-out street clips: PSNR, and IF of the clips after its round trip")
    p.add_argument("vae", help="a VAE folder (e.g. from `yume train vae`) or built-in model name (its VAE)")
    p.add_argument("--clips", type=int, default=27, help="held-out clips, one action each (default 27)")
    p.add_argument("--frames", type=int, default=32, help="frames after the first (multiple of 4; default 32)")
    p.add_argument("--move-speed", type=float, default=0.1,
                   help="camera metres per frame of a held move key (default 0.1, as `yume data synth` renders)")
    p.add_argument("--turn-speed", type=float, default=1.5, help="degrees per frame of a held arrow (default 1.5)")
    p.add_argument("--pan-worlds", type=int, default=6,
                   help="worlds of the pan check: 4 pans each (turn only, never a step) through the VAE; 0 skips it "
                        "(default 6: 24 pans)")
    p.set_defaults(func=_vae)

    p = group.add_parser("sim", help="the street-world model on held-out worlds: IF, metrics, event following")
    p.add_argument("out", help="folder for the benchmark, videos, results.json/.md and events.json")
    p.add_argument("--model", default="yume-sim-small", help="built-in model name (default yume-sim-small)")
    p.add_argument("--weights", default=None, help="a folder written by `yume train export` to score instead of the "
                   "model's shipped weights")  # fmt: skip
    p.add_argument("--untrained", action="store_true", help="score the same model with a random-init DiT")
    p.add_argument("--scenes", type=int, default=12, help="held-out worlds (two cases each: plain, with an event)")
    p.add_argument("--first-scene", type=int, default=None,
                   help="world seed of the first scene (default 100000); another range confirms a checkpoint chosen "
                   "on the default one")  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the session's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the recipe of the weights scored; 1, none, for "
                   "yume-sim-small's 4-step student)")  # fmt: skip
    p.add_argument("--shift", type=float, default=None,
                   help="timestep shift of the sampling schedule (default: the recipe of the weights scored; 7 for "
                   "yume-sim-small's 4-step student)")  # fmt: skip
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="DiT dtype (default: the model's own)")
    p.add_argument("--reference", action="store_true",
                   help="also score the true videos, rendered and through the model's VAE (the IF and event following "
                        "it can reach at best)")
    p.add_argument("--jitter-bands", type=int, default=None,
                   help="the IF estimator's bands of rows with their own jitter bound (default: MotionConfig's, 3; "
                        "1 reads as the benchmark did before session 30, docs/eval.md 'Shimmer')")
    p.set_defaults(func=_sim)

    p = group.add_parser("walk", help="long walks of the street-world model: IF, drift and time per chunk by window")
    p.add_argument("--model", default="yume-sim-small", help="built-in model name (default yume-sim-small)")
    p.add_argument("--weights", default=None, help="a folder written by `yume train export` to walk instead of the "
                   "model's shipped weights")  # fmt: skip
    p.add_argument("--walks", type=int, default=3, help="walks, one held-out world each (default 3)")
    p.add_argument("--chunks", type=int, default=40, help="chunks a walk (default 40)")
    p.add_argument("--window", type=int, default=10, help="chunks scored together (default 10)")
    p.add_argument("--first-world", type=int, default=None, help="world seed of the first walk (default 100300)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the session's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's own recipe)")
    p.add_argument("--shift", type=float, default=None, help="timestep shift (default: the model's own recipe)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="DiT dtype (default: the model's own)")
    p.add_argument("--out", default=None, help="also write the report as JSON to this file")
    p.set_defaults(func=_walk)


def _vae(args) -> int:
    import torch

    from yume.bench.sim import vae_report
    from yume.eval.motion import MotionConfig
    from yume.vae import WanVAE
    from yume.world import BUILTIN, WorldModel

    vae = WorldModel.load(args.vae, device="cpu").vae if args.vae in BUILTIN else WanVAE.from_pretrained(args.vae, dtype=torch.float32)
    r = vae_report(vae, clips=args.clips, frames=args.frames, move_speed=args.move_speed, turn_speed=args.turn_speed)
    print(f"| {args.vae} | PSNR frame 0 | PSNR frames 1-{r['frames']} | IF move / rot, rendered | IF move / rot, through the VAE |")
    print("|---|---|---|---|---|")
    print(f"| {r['clips']} held-out clips | {r['psnr_frame0']:.2f} dB | {r['psnr_video']:.2f} dB | "
          f"{r['if_rendered']['movement']:.3f} / {r['if_rendered']['rotation']:.3f} | "
          f"{r['if_vae']['movement']:.3f} / {r['if_vae']['rotation']:.3f} |")  # fmt: skip
    print(f"IF move / rot with every frame encoded alone (image path, no temporal compression): "
          f"{r['if_vae_frames']['movement']:.3f} / {r['if_vae_frames']['rotation']:.3f}")  # fmt: skip
    par = {name: r[f"parallax_{name}"] for name in ("rendered", "vae")}
    print(f"parallax (px/frame at {r['move_speed']} m, {r['turn_speed']} deg per frame), translating clips: "
          f"rendered {_px(par['rendered']['moving'])}, through the VAE {_px(par['vae']['moving'])}; "
          f"clips that only turn or stand: rendered {_px(par['rendered']['still'])}, "
          f"through the VAE {_px(par['vae']['still'])} (the estimator counts > {MotionConfig().parallax_px_per_frame} "
          "as moving)")  # fmt: skip
    if args.pan_worlds:
        from yume.bench.sim import pan_report

        pans = pan_report(vae, worlds=args.pan_worlds, frames=args.frames, turn_speed=args.turn_speed)
        print(f"pans ({pans['pans']} clips that only turn, {pans['frames']} frames), read as standing: "
              + ", ".join(f"{label} {pans[k]['standing']} (median parallax {pans[k]['parallax']:.3f})" for k, label in
                          (("rendered", "rendered"), ("vae", "through the VAE"), ("vae_frames", "each frame alone"))))
    return 0


def _px(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _sim(args) -> int:
    from yume.bench.sim import event_detector, reference_ifs, run_sim_bench, untrained_twin
    from yume.eval.motion import MotionConfig
    from yume.session import SessionConfig
    from yume.sim.bench import require_held_out
    from yume.world import WorldModel

    if args.first_scene is not None:
        require_held_out("--first-scene", args.first_scene)
    # Bad sampling settings fail here, not after the model has loaded and the event detector has been fitted.
    SessionConfig(steps=args.steps, shift=args.shift, guidance=args.guidance)
    motion = MotionConfig() if args.jitter_bands is None else MotionConfig(jitter_bands=args.jitter_bands)
    world = WorldModel.load(args.model, device="cpu", dtype=args.dtype, weights=args.weights)
    if args.untrained:
        world = untrained_twin(world)
    detector = event_detector(world)  # fitted once: rendered walks through the world's VAE
    if args.reference:
        refs = reference_ifs(world, args.out, scenes=args.scenes, first_scene=args.first_scene, detector=detector,
                             motion=motion)
        for name, r in refs.items():
            print(f"IF of the true videos, {name}: movement {r['if_movement']:.3f}  rotation {r['if_rotation']:.3f}  "
                  f"both {r['if_both']:.3f}  (by chunk: {_by_chunk(r['by_chunk'])}; {_by_event(r['by_event'])}; "
                  f"by commanded move: {_by_move(r['by_move'])})")  # fmt: skip
            print(f"event following of the true videos, {name}: {_events(r)}")
    s = run_sim_bench(world, args.out, scenes=args.scenes, steps=args.steps, guidance=args.guidance,
                      shift=args.shift, first_scene=args.first_scene, detector=detector, motion=motion)
    print(s.pop("table"), end="")
    print(f"IF by chunk (chunk 1 starts from the image, its caption the only clue): {_by_chunk(s['if_by_chunk'])}")
    print(f"IF by event: {_by_event(s['if_by_event'])}")
    print(f"IF by commanded move: {_by_move(s['if_by_move'])}")
    print(f"sideways asks: {_sideways(s['sideways_reads'])}")
    print(f"event following: {_events(s)}")
    return 0


def _walk(args) -> int:
    import json

    from yume.bench.walk import FIRST_WALK_WORLD, check_walks, long_walks, walk_table
    from yume.session import SessionConfig
    from yume.world import WorldModel

    first = FIRST_WALK_WORLD if args.first_world is None else args.first_world
    check_walks(args.walks, args.chunks, args.window, first)  # bad arguments fail before the model loads
    SessionConfig(steps=args.steps, shift=args.shift, guidance=args.guidance)  # bad settings fail before loading
    world = WorldModel.load(args.model, device="cpu", dtype=args.dtype, weights=args.weights)
    report = long_walks(world, walks=args.walks, chunks=args.chunks, window=args.window, first_world=first,
                        steps=args.steps, guidance=args.guidance, shift=args.shift)  # fmt: skip
    print(f"{args.walks} walks of {args.chunks} chunks from worlds {first}-{first + args.walks - 1} "
          f"({world.name}{', ' + args.weights if args.weights else ''})")  # fmt: skip
    print(walk_table(report), end="")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


def _events(r: dict) -> str:
    hit = "-" if r["event_hit_rate"] is None else f"{r['event_hit_rate']:.3f}"
    hidden = r["events_hidden"]
    return (f"{hit} of event cases show the asked event appear; {r['false_event_rate']:.3f} of plain cases show one"
            + (f" (not scored: {', '.join(hidden)}, which the detector cannot tell from no event through this VAE)"
               if hidden else ""))  # fmt: skip


def _by_chunk(rows: list[dict]) -> str:
    return "; ".join(f"chunk {i + 1}: move {r['movement']:.3f} rot {r['rotation']:.3f}" for i, r in enumerate(rows))


def _by_group(groups: dict, labels: dict | None = None) -> str:
    """"label (n chunks): move x rot y" for each non-empty group of `if_by_event` / `if_by_move`."""
    return "; ".join(f"{(labels or {}).get(k, k)} ({g['chunks']} chunks): move {g['movement']:.3f} rot "
                     f"{g['rotation']:.3f}" for k, g in groups.items() if g["chunks"])


def _by_event(groups: dict) -> str:
    return _by_group(groups, {"event": "under an event"})


def _by_move(groups: dict) -> str:
    return _by_group(groups)


def _sideways(counts: dict) -> str:
    return f"{counts['chunks']} chunks ask for A or D alone; read as " + ", ".join(
        f"{k} {v}" for k, v in counts.items() if k != "chunks")


def _generate(args) -> int:
    from yume.bench.generate import bench_generate
    from yume.generate import parse_resolution

    height, width = parse_resolution(args.resolution)
    bench_generate(args.config, args.vae, height, width, chunks=args.chunks, steps=args.steps, history=args.history,
                   device=args.device, dtype=args.dtype, image=args.start == "image")  # fmt: skip
    return 0


def _load(args) -> int:
    from yume.bench.load import bench_load

    bench_load(args.directory, args.config, args.dtype, args.repeats)
    return 0


def _history(args) -> int:
    import torch

    from yume.bench.history import bench_history, format_table, plot, write_csv

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, DTYPES[args.dtype])
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    header = (
        f"config {args.config} · {args.height}×{args.width} · {args.chunks} chunks · {args.steps} step(s)/chunk · "
        f"fastest of {args.repeats} · {args.clock} clock · {args.dtype} · {name}"
    )
    print(header, flush=True)

    def progress(row):
        print(f"  {row.policy:>7} chunk {row.chunk:>3}: {row.seconds:.3f} s", file=sys.stderr, flush=True)

    rows = bench_history(
        args.config,
        height=args.height,
        width=args.width,
        chunks=args.chunks,
        steps=args.steps,
        repeats=args.repeats,
        policies=policies,
        dtype=dtype,
        device=device,
        seed=args.seed,
        callback=progress,
    )
    print(format_table(rows, args.clock))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "history.csv")
    plot(rows, out / "history.png", header, args.clock)
    print(f"wrote {out / 'history.csv'} and {out / 'history.png'}")
    return 0
