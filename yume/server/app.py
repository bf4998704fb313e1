"""The FastAPI app: the page, the per-session WebSocket protocol, image upload and mp4 download."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask

from yume.server.worker import FPS, FairQueue, SessionState, Worker
from yume.session import SessionConfig
from yume.world import WorldModel

STATIC = Path(__file__).parent / "static"
MESSAGE_TYPES = ("start", "keys", "next", "event", "pause", "resume", "reset")


@dataclass(frozen=True)
class Limits:
    """What one browser may ask of the server; anything over gets a clear error, never a crash."""

    max_sessions: int = 4
    max_prompt_chars: int = 2000
    max_event_chars: int = 500
    max_upload_bytes: int = 10 * 2**20
    max_image_pixels: int = 40_000_000

    def __post_init__(self):
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


class BadMessage(ValueError):
    """A message from the page that cannot be followed; its text is shown on the page."""


class Hub:
    """The one loaded world, the fair queue, the worker and every open browser session."""

    def __init__(self, world_or_loader: WorldModel | Callable[[], WorldModel], config: SessionConfig, limits: Limits):
        self._world_or_loader = world_or_loader
        self.world: WorldModel | None = None
        self.config, self.limits = config, limits
        self.queue = FairQueue()
        self.sessions: dict[str, SessionState] = {}
        self.worker: Worker | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load the world (when given a loader) and start the worker; runs once, at app start-up."""
        given = self._world_or_loader
        self.world = given if isinstance(given, WorldModel) else given()
        self.worker = Worker(self.world, self.config, self.sessions, self.queue)
        self.worker.start()

    def stop(self) -> None:
        self.queue.close()
        if self.worker is not None:
            self.worker.join(timeout=30)

    @property
    def resolution(self) -> tuple[int, int]:
        h, w = self.world.default_resolution
        return self.config.height or h, self.config.width or w

    def open(self, send: Callable[[dict | bytes], None]) -> SessionState | None:
        """A new session, or None when `max_sessions` are open."""
        with self._lock:
            if len(self.sessions) >= self.limits.max_sessions:
                return None
            state = SessionState(secrets.token_urlsafe(16), send)
            self.sessions[state.id] = state
            return state

    def reset(self, state: SessionState) -> None:
        """Back to the start form: stop the session's chunk, free its world and frames (blocks for one frame at most)."""
        state.epoch += 1
        self.queue.cancel(state.id)
        with state.lock:
            state.drop_run()
            state.started = state.paused = state.event_pending = False
            state.event = None

    def close(self, sid: str) -> None:
        """The browser left: forget the session and free everything it held."""
        state = self.sessions.get(sid)
        if state is None:
            return
        state.closed = True
        self.reset(state)
        with self._lock:
            self.sessions.pop(sid, None)

    def ahead(self, sid: str) -> int:
        """Chunks that will be made before this session's next one."""
        waiting = self.queue.waiting()
        place = waiting.index(sid) if sid in waiting else len(waiting)
        return place + (self.worker is not None and self.worker.current not in (None, sid))

    # --- the WebSocket protocol ---------------------------------------------------------------------------------
    def handle(self, state: SessionState, msg: dict) -> None:
        """Follow one parsed message from the page (everything but reset, which waits for the worker)."""
        kind = msg["type"]
        if kind == "keys":
            held = msg.get("held")
            if not isinstance(held, list) or len(held) > 32 or not all(isinstance(k, str) and len(k) <= 32 for k in held):
                raise BadMessage(f'"keys" needs "held": a list of key names such as ["w", "ArrowRight"], got {held!r:.80}')
            state.held = frozenset(held)
        elif kind == "start":
            self._start(state, msg)
        elif kind == "next":
            if not state.started:
                raise BadMessage("start a world first (prompt or image, then Start)")
            if state.paused:
                raise BadMessage("the world is paused; press Resume to go on")
            state.requested_at = time.perf_counter()
            self.queue.request(state.id)
            state.send({"type": "queue", "ahead": self.ahead(state.id)})
        elif kind == "event":
            event = msg.get("text")
            if not isinstance(event, str):
                raise BadMessage(f'"event" needs "text": a string, got {event!r:.80}')
            if len(event) > self.limits.max_event_chars:
                raise BadMessage(f"the event is {len(event)} characters; the limit is {self.limits.max_event_chars}")
            state.event, state.event_pending = event, True
            state.send({"type": "event_set", "text": event.strip() or None})
        elif kind == "pause":
            state.paused = True
            self.queue.cancel(state.id)
            state.send({"type": "state", "state": "paused"})
        elif kind == "resume":
            state.paused = False
            state.send({"type": "state", "state": "running" if state.started else "idle"})

    def _start(self, state: SessionState, msg: dict) -> None:
        prompt, use_image = msg.get("prompt", ""), msg.get("image", False)
        if not isinstance(prompt, str) or not isinstance(use_image, bool):
            raise BadMessage('"start" takes "prompt" (a string) and "image" (true to start from the uploaded image)')
        if len(prompt) > self.limits.max_prompt_chars:
            raise BadMessage(
                f"the prompt is {len(prompt)} characters; the limit is {self.limits.max_prompt_chars} — shorten it"
            )
        if state.started:
            raise BadMessage("this world is already running; press Reset to start another")
        if use_image and state.image is None:
            raise BadMessage("no image uploaded for this session; choose an image file first")
        if not prompt.strip() and not use_image:
            raise BadMessage("write a prompt or upload an image to start a world")
        state.prompt, state.use_image = prompt, use_image
        state.started, state.paused = True, False
        state.send({"type": "state", "state": "running"})

    def hello(self, state: SessionState) -> dict:
        world = self.world
        return {
            "type": "hello",
            "session": state.id,
            "model": world.name,
            "random_weights": bool(world.info.get("random_weights")),
            "resolution": list(self.resolution),
            "fps": FPS,
            "limits": {
                "prompt_chars": self.limits.max_prompt_chars,
                "event_chars": self.limits.max_event_chars,
                "upload_bytes": self.limits.max_upload_bytes,
            },
        }


def _parse(text: str) -> dict:
    try:
        msg = json.loads(text)
    except json.JSONDecodeError:
        raise BadMessage(f"message is not JSON: {text[:80]!r}") from None
    if not isinstance(msg, dict) or msg.get("type") not in MESSAGE_TYPES:
        got = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
        raise BadMessage(f'a message is a JSON object whose "type" is one of {", ".join(MESSAGE_TYPES)}; got {got!r:.80}')
    return msg


def check_image(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Decode an uploaded image fully (a truncated file fails here, not in the worker); returns (width, height)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ValueError(f"the image is {w}x{h} pixels; the limit is {max_pixels:,} pixels — resize it")
            img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a readable image ({e}); upload a PNG, JPEG or WebP file") from None
    return w, h


def render_mp4(jpegs: list[bytes], segments: list, path: Path) -> None:
    """The session's frames with the key panel under each, as H.264 at 16 fps."""
    from PIL import Image

    from yume.overlay import with_controls
    from yume.video import VideoWriter

    bounds = [start for start, _, _ in segments[1:]] + [len(jpegs)]
    with VideoWriter(path, fps=FPS) as writer:
        for (start, action, event), stop in zip(segments, bounds):
            if stop > start:
                frames = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs[start:stop]])
                writer.write(with_controls(frames, action, event))


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(
    world_or_loader: WorldModel | Callable[[], WorldModel],
    *,
    config: SessionConfig | None = None,
    limits: Limits | None = None,
    token: str | None = None,
) -> FastAPI:
    """The `yume serve` app. A loader callable runs at start-up; `token`, when set, is required on every request."""
    hub = Hub(world_or_loader, config or SessionConfig(), limits or Limits())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.to_thread(hub.start)
        yield
        await asyncio.to_thread(hub.stop)

    app = FastAPI(title="yume", lifespan=lifespan)
    app.state.hub = hub

    def authorized(params) -> bool:
        return token is None or secrets.compare_digest(params.get("token", ""), token)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request):
        if not authorized(request.query_params):
            return HTMLResponse(
                "<h1>401: access token missing or wrong</h1><p>Open the URL that <code>yume serve</code> printed "
                "(it ends in <code>?token=…</code>).</p>",
                status_code=401,
            )
        return HTMLResponse((STATIC / "index.html").read_text())

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def session_for(request: Request, sid: str) -> SessionState | JSONResponse:
        if not authorized(request.query_params):
            return error(401, "access token missing or wrong; open the URL printed by yume serve")
        state = hub.sessions.get(sid)
        if state is None:
            return error(404, f"no open session {sid!r}; reload the page to start a new one")
        return state

    @app.post("/api/sessions/{sid}/image")
    async def upload_image(sid: str, request: Request):
        state = session_for(request, sid)
        if isinstance(state, JSONResponse):
            return state
        limit = hub.limits.max_upload_bytes
        too_big = error(413, f"the image is larger than the {limit / 2**20:.0f} MiB limit; upload a smaller file")
        if int(request.headers.get("content-length") or 0) > limit:
            return too_big
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                return too_big
        if not body:
            return error(400, "the upload is empty; choose a PNG, JPEG or WebP file")
        try:
            w, h = await asyncio.to_thread(check_image, bytes(body), hub.limits.max_image_pixels)
        except ValueError as e:
            return error(400, str(e))
        state.image = bytes(body)
        return {"width": w, "height": h, "bytes": len(body)}

    @app.get("/api/sessions/{sid}/video.mp4")
    async def download(sid: str, request: Request):
        state = session_for(request, sid)
        if isinstance(state, JSONResponse):
            return state
        run = state.run
        if run is None or run.spool.count == 0:
            return error(404, "nothing made yet: start a world and let it make a chunk first")
        jpegs, segments = await asyncio.to_thread(run.spool.snapshot)
        fd, name = tempfile.mkstemp(prefix="yume-download-", suffix=".mp4")
        os.close(fd)
        try:
            await asyncio.to_thread(render_mp4, jpegs, segments, Path(name))
        except BaseException:
            os.unlink(name)
            raise
        return FileResponse(name, media_type="video/mp4", filename="yume-world.mp4", background=BackgroundTask(os.unlink, name))

    @app.websocket("/ws")
    async def websocket(ws: WebSocket):
        await ws.accept()
        origin = ws.headers.get("origin")
        if not authorized(ws.query_params) or (origin and urlsplit(origin).netloc != ws.headers.get("host")):
            await ws.send_json({"type": "error", "fatal": True, "message": "access token missing or wrong (or the "
                                "page is from another site); open the URL printed by yume serve"})  # fmt: skip
            await ws.close(code=1008)
            return
        loop, outbox = asyncio.get_running_loop(), asyncio.Queue()

        def send(msg: dict | bytes) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the browser has left
                loop.call_soon_threadsafe(outbox.put_nowait, msg)

        state = hub.open(send)
        if state is None:
            await ws.send_json({"type": "error", "fatal": True, "message": f"the server is full: "
                                f"{hub.limits.max_sessions} sessions are open (--max-sessions); try again later"})  # fmt: skip
            await ws.close(code=1013)
            return

        async def pump():
            while True:
                msg = await outbox.get()
                await (ws.send_bytes(msg) if isinstance(msg, bytes) else ws.send_text(json.dumps(msg)))

        sender = asyncio.create_task(pump())
        try:
            send(hub.hello(state))
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                try:
                    if msg.get("text") is None:
                        raise BadMessage("binary messages are not accepted; upload images with the file picker")
                    parsed = _parse(msg["text"])
                    if parsed["type"] == "reset":
                        await asyncio.to_thread(hub.reset, state)
                        send({"type": "state", "state": "idle"})
                    else:
                        hub.handle(state, parsed)
                except BadMessage as e:
                    send({"type": "error", "message": str(e)})
        finally:
            # Free the session in a thread of its own: this task may be cancelled, and the worker may be mid-chunk.
            threading.Thread(target=hub.close, args=(state.id,), name="yume-close").start()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)  # a send to a closed socket is no error here

    return app
