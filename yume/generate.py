"""`yume generate`: one world from a prompt or image and an action script, written as mp4 + JSON sidecar."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from yume.actions import Action, load_script, parse_events, parse_script
from yume.overlay import with_controls
from yume.session import SessionConfig, WorldSession
from yume.video import VideoWriter
from yume.world import WorldModel


def parse_resolution(text: str | None) -> tuple[int | None, int | None]:
    """'704x1280' -> (704, 1280) as height x width."""
    if not text:
        return None, None
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ValueError(f"--resolution {text!r}: write HEIGHTxWIDTH, e.g. 704x1280 or 544x960") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"--resolution {text!r}: height and width must be positive multiples of 32 (e.g. 704x1280)")
    return h, w


def read_actions(spec: str) -> list[tuple[Action, str | None]]:
    """An inline script ("W*3 W+D*2 →*2") or a JSON file of per-chunk {"action", "event"} items."""
    if spec.endswith(".json"):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"--actions {spec}: no such file")
        return load_script(spec)
    return [(a, None) for a in parse_script(spec)]


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def generate(
    output,
    *,
    prompt: str = "",
    image=None,
    video=None,
    actions: str = "W*4",
    events: list[str] | None = None,
    model: str | None = None,
    config: SessionConfig | None = None,
    device: str | None = None,
    dtype: str | None = None,
    offload: str | bool | None = None,  # see WorldModel.load
    controls: bool = True,
    save_session: str | None = None,
    resume: str | None = None,
    progress: bool = True,
) -> dict:
    """Generate the world, stream its frames into `output` (mp4) and write the sidecar; returns the sidecar dict."""
    script = read_actions(actions)
    event_at = parse_events(events or [])
    for i, (_, ev) in enumerate(script):
        if ev:
            event_at.setdefault(i, ev)
    if not prompt and image is None and video is None and resume is None:
        raise ValueError("give --prompt TEXT (text-to-world) or --image FILE (image-to-world)")
    output = Path(output)
    world = WorldModel.load(model, device=device, dtype=dtype, offload=offload)
    if resume:
        session = WorldSession.load(resume, world)
    else:
        start = {"video": video} if video is not None else {}  # video-to-world: Yume-I2V-540P only
        session = WorldSession(world, prompt, image=image, config=config, **start)
    start_index = session.index
    session.progress = progress
    record = {
        "model": world.name,
        "random_weights": bool(world.info.get("random_weights")),
        "prompt": session.prompt,
        "image": str(image) if image is not None and not hasattr(image, "shape") else None,
        "config": {**session.config.__dict__, "height": session.height, "width": session.width},
        "device": str(world.device),
        "dtype": str(world.dtype).replace("torch.", ""),
        "fps": 16,
        "chunks": [],
    }
    if record["random_weights"]:
        print(f"note: model {world.name!r} has random weights; the video checks the pipeline, it shows no world")
    bar = tqdm(total=len(script), desc="chunks", unit="chunk", disable=not progress)
    t_start = time.perf_counter()
    with VideoWriter(output, fps=16) as writer:
        for i, (action, _) in enumerate(script):

            def emit(frames, _action=action):
                writer.write(with_controls(frames, _action, session.event) if controls else frames)

            chunk = session.step(action, event_at.get(i), on_frames=emit)
            record["chunks"].append({
                "index": start_index + i,
                "action": str(action),
                "event": chunk.event,
                "caption": chunk.caption,
                "frames": int(chunk.frames.shape[0]),
                "seconds": {k: round(v, 4) for k, v in chunk.seconds.items()},
            })  # fmt: skip
            bar.set_postfix(denoise=f"{chunk.seconds['denoise']:.1f}s", decode=f"{chunk.seconds['decode']:.1f}s")
            bar.update()
    bar.close()
    record["frames"] = writer.frames_written
    record["seconds"] = round(time.perf_counter() - t_start, 3)
    if save_session:
        record["session"] = str(session.save(save_session))
    sidecar_path(output).write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return record
