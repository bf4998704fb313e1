// The yume page: one WebSocket per tab; JSON messages both ways, JPEG frames (binary) from the server.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token") || "";
const query = token ? `?token=${encodeURIComponent(token)}` : "";
const ARROWS = { ArrowUp: "↑", ArrowDown: "↓", ArrowLeft: "←", ArrowRight: "→" };
const CODES = new Set(["KeyW", "KeyA", "KeyS", "KeyD", ...Object.keys(ARROWS)]);

let ws = null;
let session = null;
let limits = {};
let fps = 16;
let state = "connecting"; // connecting | idle | running | paused | closed
let imageReady = false;
let waitingForChunk = false; // a "next" was sent and its chunk_done has not come back
let framesPerChunk = 32;
let decoding = Promise.resolve(); // JPEGs decode in arrival order
const queue = []; // decoded frames waiting to be shown
const held = new Set();
let shown = 0;
let received = 0;
let chunks = 0;

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function setState(next) {
  state = next;
  $("start-panel").hidden = !(next === "idle");
  $("world-panel").hidden = !(next === "running" || next === "paused");
  $("start").disabled = next !== "idle";
  $("pause").textContent = next === "paused" ? "Resume" : "Pause";
  if (next !== "running") waitingForChunk = false; // a pause or reset drops a queued request
  if (next === "idle") {
    queue.length = 0;
    $("queue").textContent = "idle";
  }
  if (next === "paused") $("queue").textContent = "paused";
  requestChunk();
}

// Ask for the next chunk while running and less than one chunk of frames is waiting to be shown.
function requestChunk() {
  if (state !== "running" || waitingForChunk) return;
  if (received - shown >= framesPerChunk) return;
  waitingForChunk = true;
  send({ type: "next" });
}

function showKeys() {
  for (const b of document.querySelectorAll(".key")) b.classList.toggle("held", held.has(b.dataset.code));
  const names = [...held].map((c) => ARROWS[c] || c.replace("Key", ""));
  $("held").textContent = names.length ? names.join(" + ") : "none";
}

function press(code, down) {
  if (!CODES.has(code) || held.has(code) === down) return;
  if (down) held.add(code);
  else held.delete(code);
  showKeys();
  send({ type: "keys", held: [...held] });
}

function releaseAll() {
  for (const code of [...held]) press(code, false);
}

function onMessage(msg) {
  switch (msg.type) {
    case "hello":
      session = msg.session;
      fps = msg.fps;
      limits = msg.limits;
      setInterval(tick, 1000 / fps);
      $("model").textContent = `model ${msg.model} · ${msg.resolution[0]}×${msg.resolution[1]}`;
      $("warning").hidden = !msg.random_weights;
      say("Describe a world or choose an image, then Start.");
      setState("idle");
      break;
    case "state":
      setState(msg.state);
      if (msg.state === "running") say("Running: hold keys to move, type an event to change the world.");
      if (msg.state === "idle") say("Describe a world or choose an image, then Start.");
      break;
    case "queue":
      $("queue").textContent = msg.ahead === 0 ? "your chunk is next" : `queue: ${msg.ahead} chunk(s) ahead of yours`;
      break;
    case "chunk":
      $("queue").textContent = `making chunk ${msg.index} (${msg.action})`;
      break;
    case "chunk_done": {
      const s = msg.seconds;
      chunks += 1;
      framesPerChunk = msg.frames;
      waitingForChunk = false;
      $("chunks-done").textContent = chunks;
      $("latency").textContent =
        `chunk ${msg.index}: ${s.total.toFixed(2)} s (text ${s.text.toFixed(2)}, denoise ${s.denoise.toFixed(2)}, ` +
        `decode ${s.decode.toFixed(2)}) · first frames after ${(s.first_frames ?? 0).toFixed(2)} s · ` +
        `waited ${s.wait.toFixed(2)} s in the queue`;
      $("queue").textContent = "playing";
      requestChunk();
      break;
    }
    case "event_set":
      $("event-info").textContent = msg.text ? `event from the next chunk: “${msg.text}”` : "event cleared from the next chunk";
      break;
    case "error":
      say(msg.message, true);
      if (msg.fatal) setState("closed");
      break;
  }
}

function onFrame(blob) {
  received += 1;
  $("frames-received").textContent = received;
  decoding = decoding.then(() => createImageBitmap(blob)).then((bitmap) => queue.push(bitmap), () => {});
}

function tick() {
  const bitmap = queue.shift();
  if (bitmap) {
    const canvas = $("view");
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    shown += 1;
    $("frames-shown").textContent = shown;
  }
  requestChunk();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws${query}`);
  ws.binaryType = "blob";
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onMessage(JSON.parse(ev.data)) : onFrame(ev.data));
  ws.onclose = (ev) => {
    if (state !== "closed") say(`disconnected from the server (code ${ev.code}); reload the page to start again`, true);
    setState("closed");
  };
}

async function upload(file) {
  imageReady = false;
  $("image-info").textContent = "";
  if (!file) return;
  if (file.size > limits.upload_bytes) {
    say(`the image is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is ${(limits.upload_bytes / 2 ** 20).toFixed(0)} MiB`, true);
    return;
  }
  const res = await fetch(`/api/sessions/${session}/image${query}`, { method: "POST", body: file });
  const body = await res.json();
  if (!res.ok) {
    say(body.error, true);
    return;
  }
  imageReady = true;
  $("image-info").textContent = `image ready (${body.width}×${body.height})`;
  say("Image ready: add a scene description if you like, then Start.");
}

async function download() {
  say("preparing the mp4…");
  const res = await fetch(`/api/sessions/${session}/video.mp4${query}`);
  if (!res.ok) {
    say((await res.json()).error, true);
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await res.blob());
  link.download = "yume-world.mp4";
  link.click();
  URL.revokeObjectURL(link.href);
  say("mp4 downloaded.");
}

function typing(ev) {
  return ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement;
}

window.addEventListener("keydown", (ev) => {
  if (typing(ev) || !CODES.has(ev.code)) return;
  ev.preventDefault();
  press(ev.code, true);
});
window.addEventListener("keyup", (ev) => press(ev.code, false));
window.addEventListener("blur", releaseAll);
for (const b of document.querySelectorAll(".key")) {
  b.addEventListener("pointerdown", () => press(b.dataset.code, true));
  for (const up of ["pointerup", "pointerleave", "pointercancel"]) b.addEventListener(up, () => press(b.dataset.code, false));
}
$("image").addEventListener("change", (ev) => upload(ev.target.files[0]).catch((e) => say(`upload failed: ${e}`, true)));
$("start").addEventListener("click", () => send({ type: "start", prompt: $("prompt").value, image: imageReady }));
$("event-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  send({ type: "event", text: $("event").value });
});
$("pause").addEventListener("click", () => send({ type: state === "paused" ? "resume" : "pause" }));
$("reset").addEventListener("click", () => send({ type: "reset" }));
$("download").addEventListener("click", () => download().catch((e) => say(`download failed: ${e}`, true)));

connect();
