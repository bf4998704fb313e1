"""The generation worker: one thread runs every browser session's chunks, one chunk per session per turn."""

from __future__ import annotations

import io
import logging
import shutil
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yume.actions import Action, action_from_keys
from yume.session import SessionConfig, WorldSession
from yume.world import WorldModel

log = logging.getLogger("yume.server")

FPS = 16
JPEG_QUALITY = 90


def encode_jpeg(frame: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


class FairQueue:
    """Round robin over sessions: each holds at most one pending chunk and goes to the back once served."""

    def __init__(self):
        self._order: deque[str] = deque()
        self._cv = threading.Condition()
        self._closed = False

    def request(self, sid: str) -> int:
        """Queue one chunk for `sid` (a repeat while one is pending is a no-op); returns its 0-based place."""
        with self._cv:
            if sid not in self._order:
                self._order.append(sid)
                self._cv.notify()
            return self._order.index(sid)

    def cancel(self, sid: str) -> None:
        with self._cv:
            if sid in self._order:
                self._order.remove(sid)

    def pop(self) -> str | None:
        """The next session to serve; blocks until there is one, None once closed."""
        with self._cv:
            while not self._order and not self._closed:
                self._cv.wait()
            return None if self._closed else self._order.popleft()

    def waiting(self) -> list[str]:
        with self._cv:
            return list(self._order)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class FrameSpool:
    """The JPEG frames a session has made so far, appended to a temp file, with the action and event of each chunk.

    Kept as the same JPEGs the page receives, so a download re-encodes what was shown; the file goes with the session.
    """

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="yume-serve-"))
        self._file = open(self.dir / "frames.bin", "ab")  # noqa: SIM115 — open for the session's lifetime
        self._lock = threading.Lock()
        self.count = 0
        self.segments: list[tuple[int, Action, str | None]] = []  # (first frame, action, event) per chunk

    def begin_chunk(self, action: Action, event: str | None) -> None:
        with self._lock:
            self.segments.append((self.count, action, event))

    def append(self, jpeg: bytes) -> None:
        with self._lock:
            self._file.write(struct.pack("<I", len(jpeg)) + jpeg)
            self._file.flush()
            self.count += 1

    def snapshot(self) -> tuple[list[bytes], list[tuple[int, Action, str | None]]]:
        """Every JPEG so far and the chunk segments, read consistently while the worker may be appending."""
        with self._lock:
            data = (self.dir / "frames.bin").read_bytes()
            segments = list(self.segments)
            count = self.count
        jpegs, pos = [], 0
        for _ in range(count):
            (n,) = struct.unpack_from("<I", data, pos)
            jpegs.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return jpegs, segments

    def delete(self) -> None:
        with self._lock:
            self._file.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Run:
    """One started world of a browser session: the WorldSession and its frames so far."""

    world_session: WorldSession
    spool: FrameSpool


class _Cancelled(Exception):
    """Raised from the frame callback when the session was reset or closed mid-chunk."""


@dataclass
class SessionState:
    """One browser connection. The async side sets the inputs; only the worker (under `lock`) touches `run`."""

    id: str
    send: Callable[[dict | bytes], None]  # thread-safe: queues a JSON message or a binary frame to this browser
    held: frozenset[str] = frozenset()
    prompt: str = ""
    image: bytes | None = None  # an uploaded, already validated image file
    use_image: bool = False
    started: bool = False
    paused: bool = False
    closed: bool = False
    epoch: int = 0  # bumped by reset/close: a chunk made for an older epoch stops and is dropped
    event: str | None = None  # set by the page; applied when the next chunk starts
    event_pending: bool = False
    requested_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    run: Run | None = None

    def drop_run(self) -> None:
        """Free the world and its temp files (call with `lock` held)."""
        if self.run is not None:
            self.run.spool.delete()
            self.run = None


class Worker(threading.Thread):
    """Serves `queue` one chunk at a time; every session's state stays its own."""

    def __init__(self, world: WorldModel, config: SessionConfig, sessions: dict[str, SessionState], queue: FairQueue):
        super().__init__(name="yume-worker", daemon=True)
        self.world, self.config, self.sessions, self.queue = world, config, sessions, queue
        self.current: str | None = None
        self.turn = 0  # chunks made by this worker, all sessions together

    def run(self) -> None:
        while (sid := self.queue.pop()) is not None:
            state = self.sessions.get(sid)
            if state is None:
                continue
            self.current = sid
            for i, other in enumerate(self.queue.waiting()):
                if (waiting := self.sessions.get(other)) is not None:
                    waiting.send({"type": "queue", "ahead": i + 1})
            try:
                with state.lock:
                    self._chunk(state)
            except Exception as e:  # a failed chunk must not stop the other sessions
                log.exception("chunk for session %s failed", sid)
                state.paused = True
                state.send({"type": "error", "message": f"making the chunk failed ({type(e).__name__}: {e}); "
                            "the world is paused: Resume to try again, or Reset"})  # fmt: skip
                state.send({"type": "state", "state": "paused"})
            finally:
                self.current = None

    def _chunk(self, state: SessionState) -> None:
        if state.closed or not state.started or state.paused:
            return
        epoch, started = state.epoch, time.perf_counter()
        if state.run is None:
            try:
                image = io.BytesIO(state.image) if state.use_image else None
                ws = WorldSession(self.world, state.prompt, image=image, config=self.config)
            except ValueError as e:
                state.started = False
                state.send({"type": "error", "message": f"cannot start this world: {e}"})
                state.send({"type": "state", "state": "idle"})
                return
            state.run = Run(ws, FrameSpool())
        run = state.run
        action = action_from_keys(state.held)
        event = state.event if state.event_pending else None
        state.event_pending = False
        index = run.world_session.index
        shown_event = run.world_session.event if event is None else (event.strip() or None)
        run.spool.begin_chunk(action, shown_event)
        state.send({"type": "chunk", "index": index, "turn": self.turn, "action": str(action), "event": shown_event})
        self.turn += 1
        first = []

        def on_frames(frames: np.ndarray) -> None:  # [T, H, W, 3]
            if state.closed or state.epoch != epoch:
                raise _Cancelled
            if not first:
                first.append(time.perf_counter())
            for frame in frames:
                jpeg = encode_jpeg(frame)
                run.spool.append(jpeg)
                state.send(jpeg)

        try:
            chunk = run.world_session.step(action, event, on_frames=on_frames)
        except _Cancelled:
            return
        done = time.perf_counter()
        seconds = {k: round(v, 3) for k, v in chunk.seconds.items()}
        seconds |= {
            "wait": round(max(0.0, started - state.requested_at), 3),
            "first_frames": round(first[0] - started, 3) if first else None,
            "total": round(done - started, 3),
        }
        state.send({"type": "chunk_done", "index": index, "frames": int(chunk.frames.shape[0]),
                    "caption": chunk.caption, "seconds": seconds})  # fmt: skip
