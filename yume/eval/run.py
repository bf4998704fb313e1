"""`yume eval run`: generate every case of a benchmark with a world model, then score it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yume.eval.score import Case


def session_generator(world, *, steps: int | None = None, history: str | None = None, guidance: float | None = None,
                      shift: float | None = None, out_dir=None):  # fmt: skip
    """A `generate(case) -> (frames, frames per chunk)` for `run_cases`, driving a WorldSession per case.

    With `out_dir`, each case is also written as `<id>.mp4` + `<id>.json`, so `yume eval score` can rescore it.
    """
    from yume.session import SessionConfig, WorldSession

    def generate(case: Case) -> tuple[np.ndarray, list[int]]:
        config = SessionConfig(height=case.height, width=case.width, seed=case.seed, history=history,
                               steps=steps, shift=shift, guidance=guidance)  # None: the model's own recipe
        session = WorldSession(world, case.prompt, image=case.image, config=config)
        chunks = [session.step(action, case.events.get(i)) for i, action in enumerate(case.actions)]
        frames = np.concatenate([c.frames for c in chunks])
        if out_dir is not None:
            _write_case(Path(out_dir), case, frames, chunks)
        return frames, [c.frames.shape[0] for c in chunks]

    return generate


def _write_case(out_dir: Path, case: Case, frames: np.ndarray, chunks) -> None:
    import json

    from yume.video import VideoWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    with VideoWriter(out_dir / f"{case.id}.mp4", fps=16) as writer:
        writer.write(frames)
    sidecar = {"chunks": [{"frames": int(c.frames.shape[0]), "action": str(c.action), "event": c.event} for c in chunks]}
    (out_dir / f"{case.id}.json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False))
