import gc
import io
import json
import time
import weakref

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from yume.cli import main
from yume.server.app import Limits, create_app, is_loopback
from yume.server.worker import FairQueue
from yume.session import SessionConfig
from yume.video import read_video
from yume.world import WorldModel

SMALL = SessionConfig(height=64, width=64, steps=1, chunk_latents=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture
def client(world):
    with TestClient(create_app(world, config=SMALL)) as c:
        yield c


def recv(ws):
    msg = ws.receive()
    if msg["type"] == "websocket.close":
        return {"type": "closed", "code": msg["code"]}
    return msg["bytes"] if msg.get("bytes") is not None else json.loads(msg["text"])


def until(ws, kind):
    """Messages up to the first JSON message of type `kind`: (that message, binary frames, JSON messages before)."""
    frames, seen = [], []
    while True:
        msg = recv(ws)
        if isinstance(msg, bytes):
            frames.append(msg)
        elif msg["type"] == kind:
            return msg, frames, seen
        else:
            seen.append(msg)


def start(ws, prompt="A quiet street", **extra):
    hello = recv(ws)
    assert hello["type"] == "hello"
    ws.send_json({"type": "start", "prompt": prompt, **extra})
    assert until(ws, "state")[0]["state"] == "running"
    return hello


def png_bytes(w=80, h=48):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_a_loader_runs_once_at_start_up(world):
    calls = []
    app = create_app(lambda: calls.append(1) or world, config=SMALL)
    assert calls == []
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert recv(ws)["model"] == "tiny-random" and calls == [1]


def test_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert 'new WebSocket' in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200


def test_held_keys_decide_the_chunk_action_and_jpeg_frames_stream_per_latent(client):
    with client.websocket_connect("/ws") as ws:
        hello = start(ws)
        assert hello["model"] == "tiny-random" and hello["random_weights"] and hello["resolution"] == [64, 64]
        ws.send_json({"type": "keys", "held": ["w", "ArrowRight"]})
        ws.send_json({"type": "next"})
        chunk, _, _ = until(ws, "chunk")
        assert chunk["action"] == "W+→" and chunk["index"] == 0 and chunk["event"] is None
        done, frames, _ = until(ws, "chunk_done")
        assert done["frames"] == len(frames) == 5  # 1 + 4 frames from 2 latents
        assert Image.open(io.BytesIO(frames[0])).format == "JPEG" and Image.open(io.BytesIO(frames[0])).size == (64, 64)
        assert set(done["seconds"]) == {"text", "denoise", "decode", "wait", "first_frames", "total"}
        assert 0 < done["seconds"]["first_frames"] <= done["seconds"]["total"]

        ws.send_json({"type": "keys", "held": ["KeyA", "KeyD", "ArrowUp"]})  # A and D cancel
        ws.send_json({"type": "event", "text": " A ghost appeared. "})
        assert until(ws, "event_set")[0]["text"] == "A ghost appeared."
        ws.send_json({"type": "next"})
        chunk, _, _ = until(ws, "chunk")
        assert (chunk["action"], chunk["event"], chunk["index"]) == ("↑", "A ghost appeared.", 1)
        done, frames, _ = until(ws, "chunk_done")
        assert len(frames) == 8 and "A ghost appeared." in done["caption"]

        sid = hello["session"]
        video = client.get(f"/api/sessions/{sid}/video.mp4")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        path = client.app.state.hub.sessions[sid].run.spool.dir.parent / f"yume-test-{sid}.mp4"
        path.write_bytes(video.content)
        pixels, fps = read_video(path)
        path.unlink()
        assert pixels.shape == (13, 64 + 24, 64, 3) and fps == 16  # every frame, key panel under each


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "message is not JSON: 'not json'"),
        ('{"type": "fly"}', 'a message is a JSON object whose "type" is one of start, keys, next, event, pause, '
         "resume, reset; got 'fly'"),
        ("[1, 2]", "got 'list'"),
        ('{"type": "keys", "held": "w"}', '"keys" needs "held": a list of key names'),
        ('{"type": "next"}', "start a world first"),
        ('{"type": "start", "prompt": ""}', "write a prompt or upload an image to start a world"),
        ('{"type": "start", "prompt": "x", "image": true}', "no image uploaded for this session"),
        (json.dumps({"type": "start", "prompt": "x" * 2001}), "the prompt is 2001 characters; the limit is 2000"),
        (json.dumps({"type": "event", "text": "x" * 501}), "the event is 501 characters; the limit is 500"),
    ],
    ids=["not-json", "unknown-type", "not-object", "bad-keys", "next-before-start", "empty-start", "no-image",
         "huge-prompt", "huge-event"],
)
def test_malformed_messages_get_a_clear_error_and_the_session_goes_on(client, message, error):
    with client.websocket_connect("/ws") as ws:
        assert recv(ws)["type"] == "hello"
        ws.send_text(message)
        reply = recv(ws)
        assert reply["type"] == "error" and error in reply["message"] and not reply.get("fatal")
        ws.send_bytes(b"\x00\x01")
        assert "binary messages are not accepted" in recv(ws)["message"]
        ws.send_json({"type": "start", "prompt": "A quiet street"})
        assert until(ws, "state")[0]["state"] == "running"


def test_uploads_reject_non_images_and_oversized_files_and_start_from_a_good_image(world):
    with TestClient(create_app(world, config=SMALL, limits=Limits(max_upload_bytes=50_000))) as client:
        with client.websocket_connect("/ws") as ws:
            sid = recv(ws)["session"]
            url = f"/api/sessions/{sid}/image"
            bad = client.post(url, content=b"GIF89a but not really an image")
            assert bad.status_code == 400 and "not a readable image" in bad.json()["error"]
            truncated = client.post(url, content=png_bytes()[:200])
            assert truncated.status_code == 400 and "not a readable image" in truncated.json()["error"]
            big = client.post(url, content=b"\x89PNG" + b"\x00" * 60_000)
            assert big.status_code == 413 and "larger than the" in big.json()["error"]
            assert client.post("/api/sessions/nope/image", content=png_bytes()).status_code == 404
            good = client.post(url, content=png_bytes())
            assert good.status_code == 200 and good.json()["width"] == 80
            ws.send_json({"type": "start", "prompt": "", "image": True})
            assert until(ws, "state")[0]["state"] == "running"
            ws.send_json({"type": "next"})
            done, frames, _ = until(ws, "chunk_done")
            assert len(frames) == done["frames"] == 8  # the still primed the decoder: no lone first frame


def test_too_many_sessions_get_a_clear_message_and_the_open_one_keeps_working(world):
    with TestClient(create_app(world, config=SMALL, limits=Limits(max_sessions=1))) as client:
        with client.websocket_connect("/ws") as first:
            start(first)
            with client.websocket_connect("/ws") as second:
                refused = recv(second)
                assert refused["fatal"] and "the server is full: 1 sessions are open" in refused["message"]
                assert recv(second) == {"type": "closed", "code": 1013}
            first.send_json({"type": "next"})
            assert until(first, "chunk_done")[0]["frames"] == 5


def test_an_access_token_guards_page_socket_and_api(world):
    with TestClient(create_app(world, config=SMALL, token="s3cret")) as client:
        assert client.get("/").status_code == 401
        assert client.get("/?token=s3cret").status_code == 200
        with client.websocket_connect("/ws") as ws:
            assert "access token missing or wrong" in recv(ws)["message"]
            assert recv(ws) == {"type": "closed", "code": 1008}
        with client.websocket_connect("/ws?token=s3cret") as ws:
            sid = recv(ws)["session"]
            assert client.post(f"/api/sessions/{sid}/image", content=png_bytes()).status_code == 401
            assert client.post(f"/api/sessions/{sid}/image?token=s3cret", content=png_bytes()).status_code == 200


def test_a_socket_from_another_site_is_refused(client):
    with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
        assert recv(ws)["fatal"]


def test_fair_queue_serves_round_robin_one_pending_chunk_per_session():
    q = FairQueue()
    assert [q.request("a"), q.request("a"), q.request("b")] == [0, 0, 1]
    assert q.pop() == "a"
    q.request("a")
    assert q.waiting() == ["b", "a"]
    q.cancel("b")
    assert q.pop() == "a"
    q.close()
    assert q.pop() is None


def test_two_sessions_take_turns_one_chunk_each(client):
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        start(a)
        start(b)
        a.send_json({"type": "next"})
        b.send_json({"type": "next"})
        turns = {"a": [], "b": []}
        for _ in range(3):
            for name, ws in (("a", a), ("b", b)):
                turns[name].append(until(ws, "chunk")[0]["turn"])
                until(ws, "chunk_done")
                ws.send_json({"type": "next"})
        # Each asks again at once, yet never gets two chunks in a row while the other waits.
        assert turns == {"a": [0, 2, 4], "b": [1, 3, 5]}


def test_reset_and_disconnect_free_the_world_and_its_frames(client):
    hub = client.app.state.hub
    with client.websocket_connect("/ws") as ws:
        sid = start(ws)["session"]
        ws.send_json({"type": "next"})
        until(ws, "chunk_done")
        run = hub.sessions[sid].run
        world_session, spool_dir = weakref.ref(run.world_session), run.spool.dir
        assert spool_dir.is_dir()
        ws.send_json({"type": "reset"})
        assert until(ws, "state")[0]["state"] == "idle"
        del run
        gc.collect()
        assert world_session() is None and not spool_dir.exists()
        assert client.get(f"/api/sessions/{sid}/video.mp4").json()["error"].startswith("nothing made yet")

        ws.send_json({"type": "start", "prompt": "again"})
        until(ws, "state")
        ws.send_json({"type": "next"})
        until(ws, "chunk_done")
        run = hub.sessions[sid].run
        world_session, spool_dir = weakref.ref(run.world_session), run.spool.dir
        del run
    deadline = time.monotonic() + 10
    while sid in hub.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()
    assert sid not in hub.sessions and world_session() is None and not spool_dir.exists()


def test_serve_binds_loopback_without_token_and_other_hosts_with_a_printed_one(monkeypatch, capsys):
    import uvicorn

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: apps.append((app, host, port)))
    assert main(["serve", "--model", "tiny-random", "--resolution", "64x64", "--steps", "1", "--chunk-latents", "2",
                 "--dtype", "fp32"]) == 0
    assert capsys.readouterr().out.endswith("open http://127.0.0.1:7860/\n")
    assert main(["serve", "--model", "tiny-random", "--host", "0.0.0.0", "--port", "8000", "--resolution", "64x64"]) == 0
    url = capsys.readouterr().out.strip().splitlines()[-1]
    assert url.startswith("open http://0.0.0.0:8000/?token=") and len(url.split("token=")[1]) >= 16
    with TestClient(apps[1][0]) as client:
        assert client.get("/").status_code == 401
        assert client.get("/?" + url.split("?")[1]).status_code == 200
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("192.168.1.5")
