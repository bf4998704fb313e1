"""`yume bench sim`: the built-in street model on held-out worlds — IF, consistency metrics, event following."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from yume.sim.camera import MOVE_SPEED, TURN_SPEED
from yume.world import WorldModel


def untrained_twin(world: WorldModel, seed: int = 0) -> WorldModel:
    """The same model with its DiT re-initialised (random weights, the training's starting point); VAE and text kept."""
    from yume.models.wan import YumeTransformer

    dit = YumeTransformer.from_config(world.dit.config, seed=seed).to(device=world.device, dtype=world.dtype).eval()
    return WorldModel(dit, world.vae, world.text, f"{world.name} (untrained DiT)", world.default_resolution,
                      cache=world.cache, info=dict(world.info))  # fmt: skip


def vae_round_trip(world: WorldModel):
    """frames [1 + sk, H, W, 3] uint8 (s: the VAE's temporal stride) -> the same frames encoded and decoded by it."""
    from yume.session import to_uint8

    def transform(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
        with torch.no_grad():
            return to_uint8(world.vae.decode(world.vae.encode(x)))

    return transform


def write_model_benchmark(world: WorldModel, out: Path, scenes: int, first_scene: int | None = None) -> Path:
    """The held-out benchmark at the model's resolution and chunk length (out/bench), worlds from seed `first_scene`
    (default HELD_OUT_SEED)."""
    from yume.sim.bench import HELD_OUT_SEED, write_benchmark

    h, w = world.default_resolution
    first = HELD_OUT_SEED if first_scene is None else first_scene
    return write_benchmark(out / "bench", scenes, first_seed=first, height=h, width=w,
                           frames_per_chunk=chunk_frames(world))


def world_speeds(world: WorldModel) -> dict[str, float]:
    """The key speeds of the world the model's data was rendered at (its export's sampling.json, else synth's
    defaults), as `rendered_generator` and `rendered_examples` take them."""
    return {"move_speed": world.info.get("move_speed", MOVE_SPEED), "turn_speed": world.info.get("turn_speed", TURN_SPEED)}


def chunk_frames(world: WorldModel) -> int:
    """Frames per chunk the world generates (its training's chunk, in latents, times the VAE's temporal stride)."""
    return world.info.get("chunk_latents", 8) * world.vae.temporal_stride


DETECTOR_WORLDS = 12  # rendered walks per label the event detector is fitted on


def event_detector(world: WorldModel):
    """The event detector for this world's videos: fitted on rendered held-out walks (worlds 100500-100511) passed
    through its VAE, in its chunk length."""
    from yume.sim.bench import rendered_examples
    from yume.sim.detect import EventDetector

    h, w = world.default_resolution
    examples = rendered_examples(DETECTOR_WORLDS, height=h, width=w, chunk_frames=chunk_frames(world),
                                 transform=vae_round_trip(world), **world_speeds(world))
    return EventDetector.fit(examples)


def reference_ifs(world: WorldModel, out: str | Path, *, scenes: int = 12, first_scene: int | None = None,
                  detector=None, motion=None) -> dict:  # fmt: skip
    """IF and event following of the benchmark's true videos, rendered, and rendered then passed through the world's
    VAE.

    The first is the scorers' accuracy on this benchmark; the second bounds what any DiT decoded by this VAE can
    score. Writes out/reference.json and returns {"rendered": summary, "vae": summary}. `detector`: the world's
    `event_detector`, if already fitted; `motion`: the IF estimator's settings (default `MotionConfig()`).
    """
    from yume.eval.motion import MotionConfig
    from yume.eval.score import if_by_chunk, if_by_event, if_by_move, load_benchmark, run_cases, summary
    from yume.sim.bench import event_case, event_rates, rendered_generator
    from yume.sim.events import event_from_text

    out = Path(out)
    cases = load_benchmark(write_model_benchmark(world, out, scenes, first_scene))
    detector = detector or event_detector(world)
    ref = {}
    for name, transform in (("rendered", None), ("vae", vae_round_trip(world))):
        rows, render = [], rendered_generator(transform, **world_speeds(world))

        def generate(case, render=render, rows=rows):  # scores the event of each true video as it goes by
            video, counts = render(case)
            asked = event_from_text(case.events[max(case.events)]) if case.events else None
            rows.append(event_case(case.id, asked, video, counts, detector))
            return video, counts

        results = run_cases(cases, generate, motion or MotionConfig())
        ref[name] = {k: v for k, v in summary(results).items() if k.startswith("if_")}
        ref[name]["by_chunk"] = if_by_chunk(results)
        ref[name]["by_event"] = if_by_event(results)
        ref[name]["by_move"] = if_by_move(results)
        ref[name] |= {k: v for k, v in event_rates(rows, detector).items() if k != "cases"}
    (out / "reference.json").write_text(json.dumps(ref, indent=1), encoding="utf-8")
    return ref


def run_sim_bench(world: WorldModel, out: str | Path, *, scenes: int = 12, steps: int | None = None,
                  guidance: float | None = None, shift: float | None = None, first_scene: int | None = None,
                  detector=None, motion=None) -> dict:  # fmt: skip
    """Write the held-out benchmark to out/bench, generate it into out/videos, score it; returns the summary.

    Also writes out/results.json, out/results.md (per-case IF and metrics) and out/events.json (event following:
    `event_detector`: which event appears between the first and the last chunk). `motion`: the IF estimator's
    settings (default `MotionConfig()`).
    """
    from yume.eval.metrics import ModelPaths
    from yume.eval.motion import MotionConfig
    from yume.eval.run import session_generator
    from yume.eval.score import (
        if_by_chunk,
        if_by_event,
        if_by_move,
        load_benchmark,
        markdown,
        run_cases,
        sideways_reads,
        summary,
        write_reports,
    )
    from yume.sim.bench import event_following

    out = Path(out)
    bench = write_model_benchmark(world, out, scenes, first_scene)
    generate = session_generator(world, steps=steps, guidance=guidance, shift=shift, out_dir=out / "videos")
    results = run_cases(load_benchmark(bench), generate, motion or MotionConfig(), ModelPaths())
    write_reports(results, out / "results.json", out / "results.md")
    events = event_following(out / "videos", detector or event_detector(world))
    (out / "events.json").write_text(json.dumps(events, indent=1), encoding="utf-8")
    return {**summary(results), "event_hit_rate": events["event_hit_rate"], "if_by_chunk": if_by_chunk(results),
            "if_by_event": if_by_event(results), "if_by_move": if_by_move(results),
            "sideways_reads": sideways_reads(results), "false_event_rate": events["false_event_rate"],
            "events_hidden": events["events_hidden"], "table": markdown(results)}  # fmt: skip


@torch.no_grad()
def round_trips(vae, video: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """video [T, H, W, 3] uint8 -> (input, its round trip through the VAE's causal video path, every frame's own round
    trip through the image path: spatial compression only), each [1, 3, T, H, W] in [-1, 1], float, on the CPU."""
    x = torch.from_numpy(video).permute(3, 0, 1, 2)[None].float().to(vae.device) / 127.5 - 1.0
    y = vae.decode(vae.encode(x)).clamp(-1, 1).float().cpu()
    alone = vae.decode(vae.encode(x.transpose(1, 2).flatten(0, 1)[:, :, None]))
    return x.cpu(), y, alone.clamp(-1, 1).float().cpu()[:, :, 0].transpose(0, 1)[None]


def vae_report(vae, *, clips: int = 27, frames: int = 32, size: int = 128, seed: int = 7, move_speed: float = MOVE_SPEED,
               turn_speed: float = TURN_SPEED) -> dict:  # fmt: skip
    """A VAE on held-out street clips: PSNR, and whether the camera motion survives its round trip.

    `clips` clips of unseen worlds (seeds 100000+), each holding one of the 81 actions (a shuffled cycle) for
    `frames` frames from a random spot, rendered at size x size with the camera's `move_speed` (metres per frame)
    and `turn_speed` (degrees per frame). Returns the mean PSNR of frame 0 (encoded alone, the image path) and of the
    frames after it (the causal video path), the IF estimator's accuracy on the rendered clips, on their round
    trips (this bounds the IF of any model decoded by this VAE) and on every frame's own round trip through the
    image path ("vae_frames": what the spatial compression alone keeps), and the parallax it measured (rotation-only
    residual, pixels per frame) in each, averaged over the clips that translate and over those that do not: a VAE
    that smooths away near texture lowers the first; one that makes the picture wobble raises the second (the
    estimator's noise floor: above MotionConfig.parallax_px_per_frame a clip reads as translating).
    """
    import itertools

    from yume.actions import MOVES, ROTATIONS, Action
    from yume.eval.motion import MotionConfig, estimate_chunk
    from yume.session import to_uint8
    from yume.sim import Camera, World, render_clip

    if clips < 1 or frames < 4 or frames % 4:
        raise ValueError(f"clips={clips} must be >= 1 and frames={frames} a multiple of 4 (whole latents after frame 0)")
    if not (move_speed > 0 and turn_speed > 0):
        raise ValueError(f"move_speed={move_speed} and turn_speed={turn_speed} must be > 0")
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(MOVES, ROTATIONS))
    rng.shuffle(combos)
    motion = MotionConfig(fov_deg=70.0)
    psnr_first, psnr_rest, hits = [], [], {"rendered": [0, 0], "vae": [0, 0], "vae_frames": [0, 0]}
    parallax = {name: {"moving": [], "still": []} for name in hits}
    for i in range(clips):
        move, rotate = combos[i % len(combos)]
        world = World(100_000 + int(rng.integers(100)))
        camera = Camera(x=rng.uniform(-2, 2), z=rng.uniform(-300, 300), yaw=rng.uniform(-20, 20))
        video, _ = render_clip(world, [Action(move, rotate)], frames, size, size, camera=camera, supersample=2,
                               move_speed=move_speed, turn_speed=turn_speed)  # fmt: skip
        x, y, frame_by_frame = round_trips(vae, video)
        err = ((y - x) ** 2).mean(dim=(0, 1, 3, 4))  # per frame
        psnr_first.append(float(10 * torch.log10(4 / err[0])))
        psnr_rest.append(float(10 * torch.log10(4 / err[1:].mean())))
        for name, clip in (("rendered", video), ("vae", to_uint8(y)), ("vae_frames", to_uint8(frame_by_frame))):
            est = estimate_chunk(clip[1:], motion)
            hits[name][0] += est.move == move
            hits[name][1] += est.rotate == rotate
            parallax[name]["moving" if move else "still"].append(est.parallax)
    out = {"clips": clips, "frames": frames, "move_speed": move_speed, "turn_speed": turn_speed,
           "psnr_frame0": float(np.mean(psnr_first)), "psnr_video": float(np.mean(psnr_rest))}  # fmt: skip
    for name, (m, r) in hits.items():
        out[f"if_{name}"] = {"movement": m / clips, "rotation": r / clips}
        out[f"parallax_{name}"] = {k: float(np.mean(v)) if v else None for k, v in parallax[name].items()}
    return out


PAN_TURNS = ("→", "←", "↑", "↑→")  # the pans of `pan_report`: yaw, either way, pitch, and both at once


def pan_report(vae, *, worlds: int = 6, frames: int = 8, size: int = 128, turn_speed: float = TURN_SPEED) -> dict:
    """Does a VAE keep a pan rigid? `worlds` held-out worlds (100000+, the benchmark's start spots) x the four turns
    of PAN_TURNS: the camera turns `turn_speed` degrees a frame and never translates, for `frames` frames after the
    first. Returns, for the rendered pans, their round trips (video path) and every frame's own round trip (image
    path), how many of them the IF estimator reads as standing (no step; what each should read) and the median
    parallax it measured (px a frame). A codec whose output depends on where the picture sits on its latent grid
    makes a rigid pan swim: the parallax rises, and above MotionConfig.parallax_px_per_frame a pan reads as a walk.
    """
    from yume.actions import Action
    from yume.eval.motion import MotionConfig, estimate_chunk
    from yume.session import to_uint8
    from yume.sim import render_clip
    from yume.sim.bench import HELD_OUT_SEED, _start

    if worlds < 1 or frames < 4 or frames % 4:
        raise ValueError(f"worlds={worlds} must be >= 1 and frames={frames} a multiple of 4 (whole latents after frame 0)")
    motion = MotionConfig(fov_deg=70.0)
    read = {"rendered": [], "vae": [], "vae_frames": []}
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + worlds):
        world, start = _start(seed)
        for turn in PAN_TURNS:
            video, _ = render_clip(world, [Action(rotate=turn)], frames, size, size, camera=start, supersample=2,
                                   turn_speed=turn_speed)  # fmt: skip
            _, y, alone = round_trips(vae, video)
            for name, clip in (("rendered", video), ("vae", to_uint8(y)), ("vae_frames", to_uint8(alone))):
                est = estimate_chunk(clip[1:], motion)  # frame 0 is coded alone either way: the frames after it
                read[name].append((est.move == "", est.parallax))
    out = {"pans": worlds * len(PAN_TURNS), "frames": frames, "turn_speed": turn_speed}
    for name, rows in read.items():
        out[name] = {"standing": sum(s for s, _ in rows), "parallax": float(np.median([p for _, p in rows]))}
    return out
