"""End to end in real headless Chromium (Debian's package, driven by Playwright; CI installs it with apt-get)."""

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from yume.actions import Action
from yume.server.app import create_app
from yume.session import SessionConfig
from yume.video import read_video
from yume.world import WorldModel

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]  # fmt: skip


@pytest.fixture
def served(tmp_path):
    """The app under uvicorn in a thread on a free port: (url, hub)."""
    world = WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path / "cache")
    app = create_app(world, config=SessionConfig(height=64, width=64, steps=1, chunk_latents=2))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", app.state.hub
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_page_plays_a_world_steered_by_held_keys_and_an_event(served, tmp_path):
    url, hub = served
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    # Generous waits: on a loaded 2-core machine the world's first chunk can take many seconds; the test checks
    # what the page shows, not how fast.
    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page_errors = []
        page.on("pageerror", lambda e: page_errors.append(e))
        page.goto(url)
        expect(page.locator("#warning")).to_be_visible()  # tiny-random: the page says the weights are random
        page.fill("#prompt", "A quiet street")
        page.click("#start")
        expect(page.locator("#world-panel")).to_be_visible()
        page.keyboard.down("w")
        page.keyboard.down("ArrowRight")
        expect(page.locator(".key.held")).to_have_count(2)
        expect(page.locator("#held")).to_have_text("W + →")

        page.fill("#event", "A ghost appears.")
        page.click("#event-send")
        expect(page.locator("#event-info")).to_contain_text("A ghost appears.")
        # At least 3: the world runs on between the page's polls, so the counter can step past exactly 3.
        page.wait_for_function("Number(document.getElementById('chunks-done').textContent) >= 3", timeout=60_000)
        expect(page.locator("#latency")).to_contain_text("first frames after")
        # 5 + 8 frames of the first two chunks have been drawn on the canvas at 16 fps.
        page.wait_for_function("Number(document.getElementById('frames-shown').textContent) >= 13", timeout=30_000)
        size, brightness = page.evaluate(
            """() => { const c = document.getElementById('view');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       return [[c.width, c.height], d.reduce((a, b) => a + b, 0)]; }"""
        )
        assert size == [64, 64] and brightness > 0

        page.click("#pause")
        expect(page.locator("#pause")).to_have_text("Resume")
        state = next(iter(hub.sessions.values()))
        with state.lock:  # a chunk already in flight when Pause was clicked finishes first; no new one starts
            pass
        segments = state.run.spool.segments
        assert segments[-1][1:] == (Action("W", "→"), "A ghost appears.")  # keys held and event set mid-run
        with page.expect_download() as download:
            page.click("#download")
        download.value.save_as(tmp_path / "world.mp4")
        frames, _ = read_video(tmp_path / "world.mp4")
        assert frames.shape[0] == state.run.spool.count and frames.shape[1:] == (64 + 24, 64, 3)

        page.click("#reset")
        expect(page.locator("#start-panel")).to_be_visible()
        browser.close()
    assert not page_errors
