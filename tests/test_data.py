import json

import numpy as np
import pytest
import torch

from yume.actions import ALL_ACTIONS, Action
from yume.cli import main
from yume.data.cache import LatentCache, build_cache, latent_actions, prepare_frames
from yume.data.clips import Clip, read_frames, write_clip, write_manifest
from yume.data.label import split_clip, transition_labels
from yume.data.loader import LatentLoader
from yume.sim import Camera, step_camera


def trajectory(actions, frames_per_action):
    cam, poses = Camera(), [Camera().pose()]
    for a in actions:
        for _ in range(frames_per_action):
            cam = step_camera(cam, a.move, a.rotate)
            poses.append(cam.pose())
    return np.stack(poses)


def test_label_recovers_all_81_commanded_actions_as_clips():
    poses = trajectory(ALL_ACTIONS, 12)
    labels = transition_labels(poses)
    assert labels == [a for a in ALL_ACTIONS for _ in range(12)]
    clip = Clip("walk", video=None, fps=30, caption="a street", poses=poses)
    parts = split_clip(clip, min_frames=13)
    assert [p.action for p in parts] == list(ALL_ACTIONS)
    assert [(p.start, p.stop) for p in parts[:2]] == [(0, 13), (12, 25)]
    assert parts[5].id == "walk_60" and parts[5].poses is None
    assert split_clip(clip, min_frames=14) == []


def test_label_with_stride_spreads_each_label_over_its_stride():
    poses = trajectory([Action("W"), Action("", "→")], 8)
    labels = transition_labels(poses, stride=4)
    assert labels == [Action("W")] * 8 + [Action("", "→")] * 8


def test_data_label_cli_writes_constant_action_dataset(tmp_path, capsys):
    poses = trajectory([Action("W", "↑"), Action("S+A"), Action("", "↓←")], 40)
    posed = Clip("run", video=tmp_path / "src" / "clips" / "run.mp4", fps=30, caption="night", event="rain", poses=poses)
    write_manifest(tmp_path / "src", [posed])
    assert main(["data", "label", str(tmp_path / "src"), str(tmp_path / "out"), "--min-frames", "33"]) == 0
    assert "3 constant-action clips" in capsys.readouterr().out
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    metas = [json.loads((tmp_path / "out" / json.loads(line)["meta"]).read_text()) for line in lines]
    assert [(m["action"], m.get("start", 0), m["stop"]) for m in metas] == [("W+↑", 0, 41), ("S+A", 40, 81), ("↓←", 80, 121)]
    assert metas[0]["event"] == "rain" and metas[0]["video"].endswith("src/clips/run.mp4")


def frames(n, size=32, seed=0):
    return (np.random.default_rng(seed).random((n, size, size, 3)) * 255).astype(np.uint8)


def test_data_check_reports_every_bad_clip_and_keeps_going(tmp_path, capsys):
    root = tmp_path / "ds"
    clips = [
        write_clip(root, "good", frames(9), 16, "fine"),
        write_clip(root, "slow", frames(9), 8, "wrong fps"),
        write_clip(root, "short", frames(3), 16, "too short"),
        write_clip(root, "posed", frames(9), 16, "poses", poses=np.tile(np.eye(4), (5, 1, 1))),
        write_clip(root, "broken", frames(9), 16, "corrupt"),
        Clip("gone", root / "clips" / "gone.mp4", 16, "missing video"),
    ]
    write_manifest(root, clips)
    (root / "clips" / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    with (root / "manifest.jsonl").open("a") as f:
        f.write(json.dumps({"id": "nocap", "meta": "clips/nocap.json"}) + "\n")
        f.write(json.dumps({"id": "garbled", "meta": "clips/garbled.json"}) + "\n")
    (root / "clips" / "nocap.json").write_text(json.dumps({"video": "good.mp4", "fps": 16}))
    (root / "clips" / "garbled.json").write_text("{not json")
    assert main(["data", "check", str(root), "--fps", "16", "--min-frames", "5"]) == 1
    out = capsys.readouterr().out
    bad = {line.split(":")[0][4:]: line for line in out.splitlines() if line.startswith("BAD ")}
    assert set(bad) == {"slow", "short", "posed", "broken", "gone", "nocap", "garbled"}
    assert "fps 8 in the JSON, expected 16" in bad["slow"]
    assert "too short: 3 frames, need at least 5" in bad["short"]
    assert "5 poses for 9 video frames" in bad["posed"]
    assert "unreadable" in bad["broken"]
    assert "does not exist" in bad["gone"]
    assert "missing fields ['caption']" in bad["nocap"]
    assert "not valid JSON" in bad["garbled"]
    assert out.strip().endswith("8 clips, 7 bad")


def test_latent_actions_take_the_majority_of_each_latents_frames():
    w, d = Action("W"), Action("D")
    transitions = [w] * 5 + [d] * 3 + [None] * 4
    assert latent_actions(transitions, 4) == [ALL_ACTIONS.index(w), ALL_ACTIONS.index(w), ALL_ACTIONS.index(d), -1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from yume.models.text import TextEncoder
    from yume.vae import WanVAE

    root = tmp_path_factory.mktemp("clips")
    w, r = Action("W"), Action("", "→")
    clips = [
        write_clip(root, "a", frames(9, 64, 1), 16, "a wet street", event="a bus passes", actions=[w] * 4 + [r] * 4),
        write_clip(root, "b", frames(13, 64, 2), 16, "a market", actions=[r] * 12),
    ]
    write_manifest(root, clips)
    vae = WanVAE.from_config("tiny")
    text = TextEncoder.from_config("tiny", d_model=32, text_len=32)
    build_cache(root, root / "cache", vae, text)
    return root, vae, text


def test_cache_holds_vae_latents_texts_and_per_latent_actions(cache):
    root, vae, text = cache
    c = LatentCache(root / "cache")
    a, b = c.clips
    assert (a.frames, b.frames) == (3, 4)
    assert a.actions == [ALL_ACTIONS.index(Action("W")), ALL_ACTIONS.index(Action("W")), ALL_ACTIONS.index(Action("", "→"))]
    video = prepare_frames(read_frames(root / "clips" / "a.mp4"), None)
    torch.testing.assert_close(c.latents(a), vae.encode(video)[0])
    assert c.latents(a).shape == (48, 3, 4, 4)
    torch.testing.assert_close(c.scene(a), text.encode(["a wet street a bus passes"])[0])
    joined = "First-person perspective. The camera pushes forward (W). The rotation direction of the camera remains " \
             "stationary (·). a wet street a bus passes"  # fmt: skip
    torch.testing.assert_close(c.joined(a, a.actions[0]), text.encode([joined])[0])
    dec = c.decomposed(a, a.actions[0])
    assert dec.shape[0] == 32  # action caption + scene, cut at text_len
    torch.testing.assert_close(dec[:5], c.action_embeddings[a.actions[0]][:5])


def test_cache_with_a_2x_temporal_vae_cuts_1_plus_2k_frames_and_labels_each_latent_by_its_2_frames(tmp_path):
    from yume.models.text import TextEncoder
    from yume.vae import WanVAE

    w, r = Action("W"), Action("", "→")
    write_manifest(tmp_path, [write_clip(tmp_path, "a", frames(12, 64, 3), 16, "a street", actions=[w] * 6 + [r] * 5)])
    vae = WanVAE.from_config("sim-small-t2", seed=0)
    build_cache(tmp_path, tmp_path / "cache", vae, TextEncoder.from_config("tiny", d_model=32, text_len=32))
    (a,) = LatentCache(tmp_path / "cache").clips
    # 12 frames are cut to 11 = 1 + 2 x 5 -> 6 latents, each after the first made of 2 frames.
    assert a.frames == 6 and a.actions == [ALL_ACTIONS.index(w)] * 4 + [ALL_ACTIONS.index(r)] * 2
    video = prepare_frames(read_frames(tmp_path / "clips" / "a.mp4"), None)
    torch.testing.assert_close(LatentCache(tmp_path / "cache").latents(a)[:, :5], vae.encode(video[:, :, :9])[0],
                               atol=1e-5, rtol=1e-5)  # fmt: skip


def test_cache_from_two_datasets_with_two_workers_equals_the_one_process_cache(cache, tmp_path):
    from safetensors.torch import load_file

    root, vae, text = cache
    other = tmp_path / "other"
    write_manifest(other, [write_clip(other, "c", frames(9, 64, 3), 16, "a bridge", actions=[Action("S")] * 8)])
    build_cache([root, other], tmp_path / "one", vae, text)
    build_cache([root, other], tmp_path / "two", vae, text, workers=2)
    one, two = (json.loads((tmp_path / d / "index.json").read_text()) for d in ("one", "two"))
    assert one == two and [c["id"] for c in one["clips"]] == ["a", "b", "c"]
    for name in ("shard-00000.safetensors", "text.safetensors"):
        a, b = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    with pytest.raises(ValueError, match="clip ids a, b appear more than once"):
        build_cache([root, root], tmp_path / "twice", vae, text)


def test_loader_modes_shapes_and_determinism(cache):
    root, _, _ = cache
    c = LatentCache(root / "cache")
    shapes = {}
    loader = LatentLoader(c, batch_size=2, chunk=2, history_min=1, history_max=2, first_frame_noise=0.5, seed=3)
    for step in range(30):
        batch = loader.batch(step)
        hist = None if batch.history is None else tuple(batch.history.shape)
        shapes.setdefault(batch.mode, set()).add((tuple(batch.latents.shape), hist))
        assert len(batch.context) == 2 and all(t.shape[1] == 32 for t in batch.context)
    assert shapes["t2v"] == {((2, 48, 2, 4, 4), None)}
    assert shapes["i2v"] == {((2, 48, 2, 4, 4), (2, 48, 1, 4, 4))}
    assert shapes["v2v"] <= {((2, 48, 2, 4, 4), (2, 48, 1, 4, 4)), ((2, 48, 2, 4, 4), (2, 48, 2, 4, 4))}
    again = LatentLoader(c, batch_size=2, chunk=2, history_min=1, history_max=2, first_frame_noise=0.5, seed=3)
    x, y = loader.batch(7), again.batch(7)
    torch.testing.assert_close(x.latents, y.latents)
    assert x.clip_ids == y.clip_ids


def test_history_stride_draws_only_lengths_on_the_stride(cache):
    root, _, _ = cache
    c = LatentCache(root / "cache")  # the longest clip has 4 latents: with a 1-latent chunk, histories of 1..3
    kw = dict(batch_size=2, chunk=1, history_min=1, history_max=3, mix=(0, 0, 1), seed=0)
    seen = {s: {LatentLoader(c, history_stride=s, **kw).batch(t).history.shape[2] for t in range(40)} for s in (1, 2, 3)}
    assert seen == {1: {1, 2, 3}, 2: {1, 3}, 3: {1}}


def test_first_frame_noise_touches_only_history_latent_0(cache):
    root, _, _ = cache
    c = LatentCache(root / "cache")
    kw = dict(batch_size=1, chunk=2, history_min=2, history_max=2, mix=(0, 0, 1), seed=0)
    clean, noisy = LatentLoader(c, **kw).batch(0), LatentLoader(c, first_frame_noise=1.0, **kw).batch(0)
    assert not torch.equal(clean.history[:, :, 0], noisy.history[:, :, 0])
    torch.testing.assert_close(clean.history[:, :, 1:], noisy.history[:, :, 1:])
    torch.testing.assert_close(clean.latents, noisy.latents)


def test_text_dropout_swaps_in_the_empty_caption_and_leaves_the_rest_alone(cache):
    root, _, _ = cache
    c = LatentCache(root / "cache")
    kw = dict(batch_size=8, chunk=2, history_min=1, history_max=2, seed=5)
    plain, dropped = LatentLoader(c, **kw), LatentLoader(c, text_dropout=0.5, **kw)
    empties = 0
    for step in range(4):
        a, b = plain.batch(step), dropped.batch(step)
        torch.testing.assert_close(a.latents, b.latents)  # same clips and chunks: only the captions change
        for ca, cb in zip(a.context, b.context):
            if cb is c.empty:
                empties += 1
            else:
                torch.testing.assert_close(ca, cb)
    assert 6 <= empties <= 26  # about half of 32
    assert not any(t is c.empty for step in range(4) for t in plain.batch(step).context)


def test_loader_rejects_a_chunk_longer_than_every_clip(cache):
    root, _, _ = cache
    with pytest.raises(ValueError, match="longest cached clip has 4 latent frames, the chunk needs 5"):
        LatentLoader(LatentCache(root / "cache"), batch_size=1, chunk=5)
