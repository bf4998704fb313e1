import dataclasses
import json

import numpy as np
import pytest
import torch

from yume.actions import Action
from yume.data.clips import check_dataset, iter_clips
from yume.data.label import label_dataset
from yume.data.synth import synth_clip, synth_dataset
from yume.sim import World, render_clip
from yume.sim.captions import scene_caption
from yume.sim.detect import FEATURES, NONE, EventDetector, frame_features
from yume.sim.events import EVENTS, Scene, apply_event, event_from_text, event_text, ramp


@pytest.fixture(scope="module")
def clip():
    world = World(seed=5)
    frames, poses = render_clip(world, [("W", "→")], 6, 48, 64, supersample=1)
    return world, frames, poses


def test_ramp_starts_at_onset_and_saturates():
    assert ramp(6, 2, 2).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]


def test_every_event_changes_the_frames_and_keeps_shape(clip):
    world, frames, poses = clip
    for name in EVENTS:
        out = apply_event(frames, name, Scene(world, poses), np.ones(len(frames)))
        assert out.shape == frames.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - frames).mean() > 1.0, name
    none = apply_event(frames, "night", Scene(world, poses), np.zeros(len(frames)))
    assert np.array_equal(none, frames)  # strength 0 draws nothing


def test_event_effects_show_in_the_statistics_they_should(clip):
    world, frames, poses = clip
    scene, full = Scene(world, poses), np.ones(len(frames))
    base = frame_features(frames)
    idx = {name: i for i, name in enumerate(("luma", "contrast", "red", "warm_light"))}
    night = frame_features(apply_event(frames, "night", scene, full))
    assert night[idx["luma"]] < 0.5 * base[idx["luma"]]
    fog = frame_features(apply_event(frames, "fog", scene, full))
    assert fog[idx["contrast"]] < 0.8 * base[idx["contrast"]]
    balloon = frame_features(apply_event(frames, "balloon", scene, full))
    assert balloon[idx["red"]] > base[idx["red"]] + 0.002
    lights = frame_features(apply_event(frames, "street_lights", scene, full))
    assert lights[idx["warm_light"]] > base[idx["warm_light"]]


def test_event_text_round_trips_and_unknown_names_fail():
    for name in EVENTS:
        assert event_from_text(f"A street. {event_text(name)}") == name
    assert event_from_text("A quiet street.") is None
    with pytest.raises(ValueError, match="unknown event 'hail'"):
        event_text("hail")


def test_detector_sees_events_appear_on_rendered_walks():
    """Fitted on (chunk 0, chunk 2) of rendered walks, it names the event that came in between on unseen worlds."""
    from yume.sim.bench import rendered_examples

    detector = EventDetector.fit(rendered_examples(4, height=48, width=48, chunk_frames=4))
    assert detector.hidden == {} and detector.labels == sorted([*EVENTS, NONE])
    test = rendered_examples(2, first_seed=100_900, height=48, width=48, chunk_frames=4)
    for name in (NONE, "night", "fog", "snow"):  # (the balloon, fixed ahead of the start, can be out of view)
        assert [detector.predict(before, after) for before, after in test[name]] == [name, name], name


def test_detector_leaves_out_an_event_it_cannot_see_and_ignores_constant_features():
    """An 'event' whose examples look like no event (as the balloon through a VAE that washes out red) is hidden,
    so that no plain video is read as showing it; a feature that never varied cannot sway a prediction."""
    from yume.sim.bench import rendered_examples

    examples = rendered_examples(4, height=48, width=48, chunk_frames=4)
    examples["ghost"] = [(before, after.copy()) for before, after in examples[NONE]]
    detector = EventDetector.fit({k: examples[k] for k in (NONE, "night", "ghost")})
    assert detector.labels == ["night", NONE] and set(detector.hidden) == {"ghost"}
    assert detector.hidden["ghost"] < 0.5
    before, after = examples[NONE][0]
    lamp = after.copy()
    lamp[:, :8, :8] = (255, 217, 115)  # a lamp-lit corner moves "warm_light", which never varied in fog vs none
    fog_only = EventDetector.fit({NONE: examples[NONE], "fog": examples["fog"]})
    assert fog_only.scale[FEATURES.index("warm_light")] == np.inf
    assert fog_only.predict(before, lamp) == NONE
    with pytest.raises(ValueError, match="no event can be told from 'none'"):
        EventDetector.fit({NONE: examples[NONE], "ghost": examples["ghost"]})


def test_event_rates_score_first_against_last_chunk_and_skip_hidden_events():
    from yume.sim.bench import event_case, event_rates, rendered_examples

    examples = rendered_examples(4, height=48, width=48, chunk_frames=4)
    examples["ghost"] = [(before, after.copy()) for before, after in examples[NONE]]
    detector = EventDetector.fit({k: examples[k] for k in (NONE, "night", "ghost")})
    (b0, a0), (b1, a1) = examples[NONE][0], examples["night"][1]
    middle = np.zeros_like(b0)
    rows = [event_case("p", None, np.concatenate([b0, middle, a0]), [4, 4, 4], detector),
            event_case("n", "night", np.concatenate([b1, middle, a1]), [4, 4, 4], detector),
            event_case("g", "ghost", np.concatenate([b0, middle, a0]), [4, 4, 4], detector)]  # fmt: skip
    assert [(r["asked"], r["detected"]) for r in rows] == [(NONE, NONE), ("night", "night"), ("ghost", NONE)]
    rates = event_rates(rows, detector)
    assert rates["event_hit_rate"] == 1.0 and rates["false_event_rate"] == 0.0 and rates["events_hidden"] == ["ghost"]


def test_scene_caption_names_height_colour_and_light():
    text = scene_caption(World(seed=1))
    assert text.startswith("A first-person walk along a city street between ")
    assert any(w in text for w in ("low", "mid-rise", "tall")) and any(w in text for w in ("warm", "cool", "grey"))


def test_synth_clip_keeps_the_camera_in_the_street_and_labels_every_transition():
    frames, poses, actions, caption = synth_clip(7, height=32, width=32, segments=3, frames_per_segment=4)
    assert frames.shape == (13, 32, 32, 3) and poses.shape == (13, 4, 4) and len(actions) == 12
    assert np.abs(poses[:, 0, 3]).max() < 4.0
    assert all(isinstance(a, Action) for a in actions) and caption.endswith(".")


def test_synth_clip_moves_the_camera_at_the_speeds_asked():
    def walk(**kw):  # world 16 holds D+→ then →: a step and a turn, then a turn alone
        _, poses, actions, _ = synth_clip(16, height=32, width=32, segments=2, frames_per_segment=4, **kw)
        heading = np.degrees(np.arctan2(poses[:, 0, 2], poses[:, 2, 2]))  # the viewing direction on the ground
        return np.linalg.norm(np.diff(poses[:, [0, 2], 3], axis=0), axis=1), np.abs(np.diff(heading)), actions

    slow_steps, slow_turns, slow_keys = walk()
    fast_steps, fast_turns, fast_keys = walk(move_speed=0.2, turn_speed=3.0)
    assert [str(a) for a in slow_keys] == ["D+→"] * 4 + ["→"] * 4 and fast_keys == slow_keys
    np.testing.assert_allclose(slow_steps, [0.1] * 4 + [0.0] * 4, atol=1e-6)
    np.testing.assert_allclose(fast_steps, [0.2] * 4 + [0.0] * 4, atol=1e-6)
    np.testing.assert_allclose(slow_turns, 1.5, atol=1e-4)
    np.testing.assert_allclose(fast_turns, 3.0, atol=1e-4)


def test_synth_writes_a_dataset_that_checks_and_labels_back_to_its_actions(tmp_path):
    clips = synth_dataset(tmp_path / "raw", 2, height=32, width=32, segments=2, frames_per_segment=8, event_prob=1.0)
    assert [c.id for c in clips] == ["sim_00000", "sim_00001"]
    report = check_dataset(tmp_path / "raw", fps=16, min_frames=17)
    assert not report.bad, report.problems
    meta = json.loads((tmp_path / "raw" / "clips" / "sim_00000.json").read_text())
    assert event_from_text(meta["event"]) in EVENTS and len(meta["poses"]) == 17 and len(meta["actions"]) == 16
    labelled, _ = label_dataset(tmp_path / "raw", tmp_path / "labelled", min_frames=9)
    truth = {c.id: c.actions for c in iter_clips(tmp_path / "raw")}
    for c in labelled:
        source, start = c.id.rsplit("_", 1)
        assert truth[source][int(start)] == c.action


def test_synth_in_worker_processes_writes_the_same_dataset(tmp_path):
    from yume.data.clips import read_frames

    # 128x128: at 32x32 and 64x64 libx264 itself wrote different pixels for the same frames from run to run.
    kw = dict(first_seed=3, height=128, width=128, segments=2, frames_per_segment=4, event_prob=0.5)
    one = synth_dataset(tmp_path / "one", 3, **kw)
    two = synth_dataset(tmp_path / "two", 3, workers=2, **kw)
    assert (tmp_path / "one" / "manifest.jsonl").read_text() == (tmp_path / "two" / "manifest.jsonl").read_text()
    for a, b in zip(one, two):
        assert (a.id, a.caption, a.event, a.actions) == (b.id, b.caption, b.event, b.actions)
        np.testing.assert_array_equal(read_frames(a.video), read_frames(b.video))


def test_synth_event_onsets_are_drawn_from_the_given_frames(tmp_path, monkeypatch):
    import yume.data.synth as synth

    seen = []

    def recording(seed, **kw):
        seen.append(kw["event_onset"])
        return real(seed, **kw)

    real = synth.synth_clip
    monkeypatch.setattr(synth, "synth_clip", recording)
    kw = dict(height=32, width=32, segments=3, frames_per_segment=8, event_prob=1.0)
    synth_dataset(tmp_path / "grid", 12, event_onsets=(9, 17), **kw)
    assert set(seen) == {9, 17}
    seen.clear()
    synth_dataset(tmp_path / "default", 12, **kw)  # anywhere in the first third of 25 frames, as before
    assert all(0 <= f <= 8 for f in seen) and len(set(seen)) > 2
    with pytest.raises(ValueError, match=r"event_onsets=\(25,\) must be frames of the clip, in \[0, 24\]"):
        synth_dataset(tmp_path / "bad", 1, event_onsets=(25,), **kw)


@pytest.mark.parametrize("onsets, message", [("9,x", "write frame numbers separated by commas"),
                                              ("9,99", "must be frames of the clip, in [0, 16]")])
def test_synth_cli_bad_event_onsets(tmp_path, capsys, onsets, message):
    from yume.cli import main

    code = main(["data", "synth", str(tmp_path / "raw"), "--clips", "1", "--segments", "2", "--segment-frames", "8",
                 "--event-onsets", onsets])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "raw" / "manifest.jsonl").exists()


def test_synth_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_clips=0"):
        synth_dataset(tmp_path, 0)
    with pytest.raises(ValueError, match="event_prob=1.5"):
        synth_dataset(tmp_path, 1, event_prob=1.5)
    with pytest.raises(ValueError, match="workers=0"):
        synth_dataset(tmp_path, 1, workers=0)
    with pytest.raises(ValueError, match="move_speed=0"):
        synth_dataset(tmp_path, 1, move_speed=0.0)


def test_train_vae_writes_a_loadable_vae_with_measured_latent_stats(tmp_path):
    from yume.train.vae import VAETrainConfig, train_vae
    from yume.vae import WanVAE

    synth_dataset(tmp_path / "raw", 1, height=32, width=32, segments=1, frames_per_segment=8, event_prob=0.0)
    losses = []
    cfg = VAETrainConfig(str(tmp_path / "raw"), str(tmp_path / "vae"), steps=3, batch_size=1, crop=32, log_every=1)
    train_vae(cfg, callback=losses.append)
    assert [m["step"] for m in losses] == [1, 2, 3] and all(np.isfinite(m["l1"]) for m in losses)
    vae = WanVAE.from_pretrained(tmp_path / "vae")
    assert vae.spatial_stride == 8 and vae.z_dim == 32
    assert vae.config["latents_std"] != [1.0] * 32  # measured, not the preset's placeholder
    video = torch.zeros(1, 3, 5, 32, 32)
    assert vae.encode(video).shape == (1, 32, 2, 4, 4)
    # Decoder-only: the encoder (the latent space a DiT was trained on) is kept bit for bit; the decoder moves.
    cfg = VAETrainConfig(str(tmp_path / "raw"), str(tmp_path / "dec"), init=str(tmp_path / "vae"), train="decoder",
                         steps=2, batch_size=1, crop=32, lr=1e-2)  # fmt: skip
    train_vae(cfg)
    before, after = vae.model.state_dict(), WanVAE.from_pretrained(tmp_path / "dec").model.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"decoder", "post_quant_conv"}
    assert WanVAE.from_pretrained(tmp_path / "dec").config["latents_std"] == vae.config["latents_std"]
    with pytest.raises(ValueError, match="train='decoder' keeps a trained encoder"):
        VAETrainConfig("d", "o", train="decoder")
    with pytest.raises(ValueError, match="train='decoder' keeps a trained encoder.*and no preset"):
        VAETrainConfig("d", "o", init="v", preset="sim-small-t2", train="decoder")
    # --init with --preset: the trained VAE moved into a 2x temporal stride, trained on, its stats measured.
    cfg = VAETrainConfig(str(tmp_path / "raw"), str(tmp_path / "t2"), init=str(tmp_path / "vae"), preset="sim-small-t2",
                         steps=1, batch_size=1, crop=32)  # fmt: skip
    t2 = train_vae(cfg)
    assert t2.temporal_stride == 2 and WanVAE.from_pretrained(tmp_path / "t2").temporal_stride == 2
    assert t2.config["latents_std"] != [1.0] * 32
    with pytest.raises(ValueError, match="unknown VAE preset 'sim-huge'; choose one of"):
        VAETrainConfig("d", "o", preset="sim-huge")
    # --shift-weight: pairs of 24-px windows up to 7 px apart, cut from 32-px windows of the 32-px clip.
    logs = []
    cfg = VAETrainConfig(str(tmp_path / "raw"), str(tmp_path / "sh"), init=str(tmp_path / "vae"), train="decoder",
                         steps=2, batch_size=1, crop=24, shift_weight=1.0, log_every=1)  # fmt: skip
    train_vae(cfg, callback=logs.append)
    assert [m["step"] for m in logs] == [1, 2] and all(m["shift_l1"] > 0 for m in logs)


def test_vae_config_rejects_a_window_that_is_not_whole_latent_frames():
    from yume.train.vae import VAETrainConfig

    with pytest.raises(ValueError, match="frames=4 must be 1 \\+ 4k"):
        VAETrainConfig("d", "o", frames=4)
    with pytest.raises(ValueError, match="temporal_weight=1.0 must be >= 0, and > 0 needs frames > 1"):
        VAETrainConfig("d", "o", frames=1, temporal_weight=1.0)
    with pytest.raises(ValueError, match="latent_noise=-0.1 must be >= 0"):
        VAETrainConfig("d", "o", latent_noise=-0.1)


def test_temporal_loss_is_the_l1_of_the_reconstructions_frame_differences_against_the_inputs():
    """vae_loss's temporal term compares frame-to-frame changes: the same as the plain loss plus w x that L1."""
    from yume.train.vae import vae_loss
    from yume.vae import WanVAE

    vae = WanVAE.from_config("sim-small", seed=0)
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    plain, m0 = vae_loss(vae, x, torch.Generator().manual_seed(0), 1e-6)
    both, m1 = vae_loss(vae, x, torch.Generator().manual_seed(0), 1e-6, temporal_weight=2.0)
    assert "dt_l1" not in m0 and m1["dt_l1"] > 0 and m1["l1"] == m0["l1"]
    assert both.item() == pytest.approx(plain.item() + 2.0 * m1["dt_l1"], rel=1e-6)
    # The term by hand: the same posterior sample (same generator), decoded, differenced along time.
    with torch.no_grad():
        post = vae.model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(0))
        recon = vae.model.decode(z).sample
    assert m1["dt_l1"] == pytest.approx((recon.diff(dim=2) - x.diff(dim=2)).abs().mean().item(), rel=1e-5)


def test_latent_noise_decodes_the_sample_plus_noise_scaled_by_each_channels_latent_std():
    """--latent-noise: the decoder sees z + n * latents_std * eps, eps the generator's next draw after the sample."""
    from yume.train.vae import vae_loss
    from yume.vae import WanVAE

    vae = WanVAE.from_config("sim-small", seed=0)
    vae.model.register_to_config(latents_std=[0.5 + 0.05 * i for i in range(32)])
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    _, m0 = vae_loss(vae, x, torch.Generator().manual_seed(0), 1e-6)
    _, m1 = vae_loss(vae, x, torch.Generator().manual_seed(0), 1e-6, latent_noise=0.5)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        post = vae.model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        std = torch.tensor(vae.model.config.latents_std).view(1, -1, 1, 1, 1)
        recon = vae.model.decode(z + 0.5 * std * torch.randn(z.shape, generator=g)).sample
    assert m1["l1"] == pytest.approx((recon - x).abs().mean().item(), rel=1e-5) and m1["l1"] != m0["l1"]
    assert m1["kl"] == m0["kl"]  # the noise is the decoder's, not the posterior's


def test_builtin_sim_model_loads_exported_weights_and_runs_one_chunk(tmp_path, monkeypatch):
    """`yume train export` writes what `--model yume-sim-small` loads (here from a random sim-small DiT and VAE)."""
    import yume.world
    from yume import YumeTransformer
    from yume.actions import Action
    from yume.session import SessionConfig, WorldSession
    from yume.train.export import export_builtin
    from yume.vae import WanVAE
    from yume.world import WorldModel

    YumeTransformer.from_config("sim-small", seed=0).save_pretrained(tmp_path / "dit")
    WanVAE.from_config("sim-small", seed=0).save_pretrained(tmp_path / "vae")
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "assets" / "yume-sim-small")
    monkeypatch.setattr(yume.world, "ASSETS", tmp_path / "assets")
    files = [f for f in (tmp_path / "assets" / "yume-sim-small").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20  # the package budget of issue 8
    world = WorldModel.load("yume-sim-small", device="cpu")
    assert world.dit.config.in_dim == world.vae.z_dim == 32 and world.default_resolution == (128, 128)
    assert not world.info.get("random_weights")
    # The text encoder travels with the weights: the same embeddings as the encoder the cache was made with.
    from yume.models.text import TextEncoder

    assert (tmp_path / "assets" / "yume-sim-small" / "text" / "text_encoder").is_dir()
    made_with = TextEncoder.from_config("tiny", seed=0, d_model=64, text_len=128)
    torch.testing.assert_close(world.text.encode(["A red balloon appears."])[0],
                               made_with.encode(["A red balloon appears."])[0], rtol=0, atol=0)  # fmt: skip
    start = torch.zeros(1, 3, 128, 128)
    session = WorldSession(
        world, "A first-person walk along a city street.", image=start, config=SessionConfig(steps=1)
    )
    # Sampled as it was trained: TSCM packing, 4-latent chunks, decomposed prompts, the image as one latent.
    assert session.config.history == "tscm" and session.config.chunk_latents == 4
    assert session.config.prompt_mode == "decomposed" and session.history.shape[2] == 1
    # No sampling.json: the distilled release's 4 steps; an export that names a recipe is sampled with it.
    assert (WorldSession(world, "a street", image=start).config.steps, world.info.get("sampling")) == (4, None)
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "flow" / "yume-sim-small", sampling="flow-cfg")
    monkeypatch.setattr(yume.world, "ASSETS", tmp_path / "flow")
    flow = WorldSession(WorldModel.load("yume-sim-small", device="cpu"), "a street", image=start).config
    assert (flow.steps, flow.shift, flow.guidance) == (16, 3.0, 3.0)
    with pytest.raises(ValueError, match="sampling='fast'"):
        export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "x", sampling="fast")
    chunk = session.step(Action("W", ""))
    assert chunk.frames.shape == (16, 128, 128, 3) and chunk.frames.dtype == np.uint8


def test_builtin_sim_model_with_a_2x_temporal_vae_makes_8_frame_chunks(tmp_path, monkeypatch):
    """An export with a sim-small-t2 VAE: the same 4-latent chunks, 2 frames a latent, streamed like the 4x one."""
    import yume.world
    from yume import YumeTransformer
    from yume.actions import Action
    from yume.session import SessionConfig, WorldSession
    from yume.train.export import export_builtin
    from yume.vae import WanVAE
    from yume.world import WorldModel

    YumeTransformer.from_config("sim-small", seed=0).save_pretrained(tmp_path / "dit")
    WanVAE.from_config("sim-small-t2", seed=0).save_pretrained(tmp_path / "vae")
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "assets" / "yume-sim-small")
    monkeypatch.setattr(yume.world, "ASSETS", tmp_path / "assets")
    world = WorldModel.load("yume-sim-small", device="cpu")
    assert world.vae.temporal_stride == 2
    session = WorldSession(world, "a street", image=torch.zeros(1, 3, 128, 128), config=SessionConfig(steps=1))
    frames = [session.step(Action("W", "")).frames for _ in range(2)]
    assert [f.shape for f in frames] == [(8, 128, 128, 3)] * 2
    assert session.history.shape[2] == 1 + 4 + 4  # the image's latent, then 4 per chunk


def test_builtin_sim_model_with_a_stride_free_vae_takes_its_chunk_length_from_the_export(tmp_path, monkeypatch):
    """A DiT trained on sim-small-t1 latents (flow-t1.toml: 8-latent chunks): the export records the chunk length,
    and sessions make 8-frame chunks, one latent a frame."""
    import json

    import yume.world
    from yume import YumeTransformer
    from yume.actions import Action
    from yume.session import SessionConfig, WorldSession
    from yume.train.export import export_builtin
    from yume.vae import WanVAE
    from yume.world import WorldModel

    YumeTransformer.from_config("sim-small", seed=0).save_pretrained(tmp_path / "dit")
    WanVAE.from_config("sim-small-t1", seed=0).save_pretrained(tmp_path / "vae")
    out = tmp_path / "assets" / "yume-sim-small"
    export_builtin(tmp_path / "dit", tmp_path / "vae", out, sampling="flow-cfg", chunk_latents=8)
    assert json.loads((out / "sampling.json").read_text()) == {"preset": "flow-cfg", "chunk_latents": 8}
    monkeypatch.setattr(yume.world, "ASSETS", tmp_path / "assets")
    world = WorldModel.load("yume-sim-small", device="cpu")
    assert (world.vae.temporal_stride, world.info["chunk_latents"], world.info["sampling"]) == (1, 8, "flow-cfg")
    session = WorldSession(world, "a street", image=torch.zeros(1, 3, 128, 128), config=SessionConfig(steps=1))
    assert session.step(Action("W", "")).frames.shape == (8, 128, 128, 3)
    assert session.history.shape[2] == 1 + 8
    with pytest.raises(ValueError, match="chunk_latents=0"):
        export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "x", chunk_latents=0)
    with pytest.raises(ValueError, match="move_speed=0"):
        export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "x", move_speed=0.0)


def test_an_export_carries_its_worlds_key_speeds_to_the_benchmarks_true_videos(tmp_path):
    """Data rendered with `yume data synth --move-speed 0.2`: the export records it, and the sim benchmark renders
    the true videos (and the event detector's walks) at that speed."""
    import json

    from yume import YumeTransformer
    from yume.bench.sim import world_speeds
    from yume.eval.score import load_benchmark
    from yume.sim.bench import rendered_generator, write_benchmark
    from yume.train.export import export_builtin
    from yume.vae import WanVAE
    from yume.world import WorldModel

    YumeTransformer.from_config("sim-small", seed=0).save_pretrained(tmp_path / "dit")
    WanVAE.from_config("sim-small-t1", seed=0).save_pretrained(tmp_path / "vae")
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "fast", chunk_latents=8, move_speed=0.2)
    assert json.loads((tmp_path / "fast" / "sampling.json").read_text()) == {"chunk_latents": 8, "move_speed": 0.2}
    fast = WorldModel.load("yume-sim-small", device="cpu", weights=tmp_path / "fast")
    assert world_speeds(fast) == {"move_speed": 0.2, "turn_speed": 1.5}
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "plain", chunk_latents=8)
    plain = WorldModel.load("yume-sim-small", device="cpu", weights=tmp_path / "plain")
    assert world_speeds(plain) == {"move_speed": 0.1, "turn_speed": 1.5}
    case = dataclasses.replace(load_benchmark(write_benchmark(tmp_path / "b", 1, chunks=2, height=64, width=64,
                                                              frames_per_chunk=6))[0], actions=["D", "D"])  # fmt: skip
    slow, _ = rendered_generator()(case)
    quick, _ = rendered_generator(**world_speeds(fast))(case)
    np.testing.assert_array_equal(rendered_generator(**world_speeds(plain))(case)[0], slow)
    # 0.2 m a frame: frame 3 of the quick walk is where the slow walk is at frame 6 (the same spot, the same view)
    diff = lambda a, b: np.abs(a.astype(int) - b).mean()  # noqa: E731
    assert diff(quick[2], slow[5]) < 0.05 and diff(quick[5], slow[5]) > 1.0


def test_builtin_sim_model_loads_an_export_given_as_weights_and_refuses_them_for_others(tmp_path):
    """`load(weights=EXPORT)` (`yume bench sim --weights`) scores a checkpoint without touching the shipped model."""
    from yume import YumeTransformer
    from yume.train.export import export_builtin
    from yume.vae import WanVAE
    from yume.world import WorldModel

    YumeTransformer.from_config("sim-small", seed=3).save_pretrained(tmp_path / "dit")
    WanVAE.from_config("sim-small-t2", seed=0).save_pretrained(tmp_path / "vae")
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "export")
    world = WorldModel.load("yume-sim-small", device="cpu", weights=tmp_path / "export")
    exported = YumeTransformer.from_pretrained(tmp_path / "export" / "dit", dtype=torch.bfloat16)
    assert world.name == "yume-sim-small" and "sampling" not in world.info  # exported without --sampling
    assert torch.equal(world.dit.head.head.weight, exported.head.head.weight)
    with pytest.raises(ValueError, match="'tiny-random' is not one"):
        WorldModel.load("tiny-random", device="cpu", weights=tmp_path / "export")
    with pytest.raises(FileNotFoundError, match="weights are missing"):
        WorldModel.load("yume-sim-small", device="cpu", weights=tmp_path / "nothing")


def test_builtin_sim_model_without_its_weights_says_how_to_rebuild(tmp_path, monkeypatch):
    import yume.world
    from yume.world import WorldModel

    monkeypatch.setattr(yume.world, "ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="docs/sim-model.md"):
        WorldModel.load("yume-sim-small", device="cpu")


def test_rendered_reference_is_the_case_it_renders_and_scores_its_own_motion(tmp_path):
    """`yume bench sim --reference`: the true video of a benchmark case — its start image, then its actions."""
    from PIL import Image

    from yume.eval.motion import MotionConfig
    from yume.eval.score import load_benchmark, run_cases
    from yume.sim.bench import rendered_generator, write_benchmark

    cases = load_benchmark(write_benchmark(tmp_path, 1, chunks=2, height=64, width=64, frames_per_chunk=12))
    seen = []

    def transform(video):
        seen.append(video.copy())
        return video

    plain = cases[0]
    frames, counts = rendered_generator(transform)(plain)
    assert counts == [12, 12] and frames.shape == (24, 64, 64, 3)
    assert len(seen[0]) == 25  # the whole clip goes through the transform, start frame included, then it is dropped
    np.testing.assert_array_equal(seen[0][0], np.asarray(Image.open(tmp_path / plain.image)))
    np.testing.assert_array_equal(seen[0][1:], frames)
    event = cases[1]
    with_event, _ = rendered_generator()(event)
    np.testing.assert_array_equal(with_event[:12], rendered_generator()(dataclasses.replace(event, events={}))[0][:12])
    assert not np.array_equal(with_event[12:], rendered_generator()(dataclasses.replace(event, events={}))[0][12:])
    result = run_cases([plain], rendered_generator(), MotionConfig())[0]
    assert [c["commanded"] for c in result["chunks"]] == [str(a) for a in plain.actions]


class _Lossless:
    """A 'VAE' whose round trip returns its input exactly: the benchmarks' reference for one that loses nothing."""

    device = torch.device("cpu")

    def encode(self, x):
        return x

    def decode(self, z):
        return z


def test_vae_report_of_a_lossless_vae_is_the_rendered_reference(capsys):
    """`yume bench vae`: an identity 'VAE' loses nothing, so its IF equals the rendered clips' and PSNR is infinite."""
    from yume.bench.sim import vae_report

    r = vae_report(_Lossless(), clips=3, frames=8, size=64)
    assert r["psnr_frame0"] == r["psnr_video"] == float("inf")
    assert r["if_vae"] == r["if_vae_frames"] == r["if_rendered"] and set(r["if_vae"]) == {"movement", "rotation"}
    # The first three shuffled actions: one only turns, two translate; the estimator measures both groups.
    assert r["parallax_vae"] == r["parallax_rendered"] and set(r["parallax_vae"]) == {"moving", "still"}
    assert r["parallax_rendered"]["moving"] > 0.125 > r["parallax_rendered"]["still"]
    # Parallax grows with the camera's speed: the same clips walked three times as fast (less than threefold: the
    # 80th-percentile residual saturates; 1.8x at 64 px with the estimator's opening and contrast steps).
    fast = vae_report(_Lossless(), clips=3, frames=8, size=64, move_speed=0.3)
    assert fast["move_speed"] == 0.3 and fast["parallax_rendered"]["moving"] > 1.5 * r["parallax_rendered"]["moving"]
    assert fast["parallax_rendered"]["still"] == r["parallax_rendered"]["still"]  # the clip that only turns: no walk
    with pytest.raises(ValueError, match="frames=6 a multiple of 4"):
        vae_report(_Lossless(), frames=6)
    with pytest.raises(ValueError, match="move_speed=0.0 and turn_speed=1.5 must be > 0"):
        vae_report(_Lossless(), move_speed=0.0)
    from yume.cli import main

    assert main(["bench", "vae", "tiny-random", "--clips", "1", "--frames", "4", "--pan-worlds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| tiny-random | PSNR frame 0 |") and out[2].startswith("| 1 held-out clips |")
    # One clip that only turns: no translating clip to average over.
    assert out[3].startswith("IF move / rot with every frame encoded alone (image path, no temporal compression): ")
    assert out[4].startswith("parallax (px/frame at 0.1 m, 1.5 deg per frame), translating clips: rendered -,")
    assert out[-1].startswith("pans (4 clips that only turn, 4 frames), read as standing: rendered 4 (median parallax")


def test_pan_report_reads_rendered_pans_as_standing_and_a_swimming_codec_as_walking():
    """The pan check: rendered pans never translate, so the estimator reads all of them as standing; a 'VAE' that
    slides a band of the picture a pixel a frame against the rest (a non-rigid swim) makes them read as walks."""
    from yume.bench.sim import PAN_TURNS, pan_report

    class Swim(_Lossless):
        def decode(self, z):
            out = z.clone()
            for t in range(z.shape[2]):  # the lower half of each frame drifts right, t px by frame t
                out[:, :, t, z.shape[3] // 2 :] = torch.roll(z[:, :, t, z.shape[3] // 2 :], t, dims=-1)
            return out

    r = pan_report(_Lossless(), worlds=1, frames=8, size=64)
    assert r["pans"] == len(PAN_TURNS) == 4 and r["frames"] == 8
    assert r["rendered"] == r["vae"] == r["vae_frames"] and r["rendered"]["standing"] == 4
    assert r["rendered"]["parallax"] < 0.125
    swim = pan_report(Swim(), worlds=1, frames=8, size=64)
    assert swim["rendered"] == r["rendered"] and swim["vae"]["standing"] == 0 and swim["vae"]["parallax"] > 0.125
    with pytest.raises(ValueError, match="frames=6 a multiple of 4"):
        pan_report(_Lossless(), frames=6)


def test_bench_sim_first_scene_moves_the_worlds_and_refuses_training_seeds(tmp_path, capsys):
    """`--first-scene` confirms a checkpoint on worlds it was not chosen on; training worlds are refused."""
    from yume.cli import main
    from yume.sim.bench import HELD_OUT_SEED, write_benchmark

    cases = json.loads(write_benchmark(tmp_path, 2, first_seed=HELD_OUT_SEED + 100, chunks=1, height=64, width=64,
                                       frames_per_chunk=4).read_text())["cases"]  # fmt: skip
    assert [c["id"] for c in cases] == ["100100-plain", "100100-event", "100101-plain", "100101-event"]
    assert main(["bench", "sim", str(tmp_path / "b"), "--first-scene", "480"]) == 2
    err = capsys.readouterr().err
    assert "--first-scene 480" in err and "choose 100000 or more" in err and not (tmp_path / "b").exists()
    # Bad sampling settings are refused before the model loads, and nothing is written.
    assert main(["bench", "sim", str(tmp_path / "c"), "--shift", "0"]) == 2
    assert "shift must be > 0, got 0.0" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main(["bench", "sim", str(tmp_path / "d"), "--jitter-bands", "0"]) == 2
    assert "jitter_bands=0 must be >= 1" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_bench_walk_scores_each_window_of_a_long_walk_and_refuses_bad_arguments(tmp_path, capsys):
    """`yume bench walk`: N chunks from a held-out rendered start, IF and proxies window by window."""
    from yume import YumeTransformer
    from yume.bench.walk import WALK_CYCLE, walk_actions
    from yume.cli import main
    from yume.train.export import export_builtin
    from yume.vae import WanVAE

    # The walks of sessions 10 and 13 (long.py): world 100300 starts at the cycle's 5th action, 100301 at its 6th.
    assert [str(a) for a in walk_actions(100300, 3)] == ["D", "S+A", "W+D"]
    assert walk_actions(100301, 13)[0] == walk_actions(100301, 13)[12] == Action.parse(WALK_CYCLE[5])
    YumeTransformer.from_config("sim-small", seed=0).save_pretrained(tmp_path / "dit")
    WanVAE.from_config("sim-small", seed=0).save_pretrained(tmp_path / "vae")
    export_builtin(tmp_path / "dit", tmp_path / "vae", tmp_path / "export")
    args = ["bench", "walk", "--weights", str(tmp_path / "export"), "--walks", "1", "--chunks", "3", "--window", "2",
            "--steps", "1", "--out", str(tmp_path / "walk.json")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"1 walks of 3 chunks from worlds 100300-100300 (yume-sim-small, {tmp_path / 'export'})"
    assert out[1].startswith("| chunks | IF move | IF rot |")
    assert [line.split(" | ")[0] for line in out[3:]] == ["| 1-2", "| 3", "| all 3"]
    report = json.loads((tmp_path / "walk.json").read_text())
    assert [(w["first"], w["last"], w["chunks"]) for w in report["windows"]] == [(1, 2, 2), (3, 3, 1)]
    # The first chunk of a walk warms up and is not timed; chunks 2 and 3 are.
    assert all(w["seconds_per_chunk"] > 0 for w in report["windows"])
    moves = [w["movement"] * w["chunks"] for w in report["windows"]]
    assert report["all"]["chunks"] == 3 and report["all"]["movement"] == pytest.approx(sum(moves) / 3)
    assert main(["bench", "walk", "--first-world", "5"]) == 2
    assert "choose 100000 or more" in capsys.readouterr().err
    assert main(["bench", "walk", "--chunks", "4", "--window", "5"]) == 2
    assert "the window between 1 and the chunks" in capsys.readouterr().err


def test_default_model_is_the_shipped_street_world():
    """`yume generate` / `yume serve` without --model load the trained `yume-sim-small` from the package (<= 30 MB)."""
    from yume.world import ASSETS, DEFAULT_MODEL, WorldModel

    assert DEFAULT_MODEL == "yume-sim-small"
    files = [f for f in (ASSETS / "yume-sim-small").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20
    world = WorldModel.load(device="cpu")
    assert world.name == "yume-sim-small" and not world.info.get("random_weights")
    # The stride-free VAE (one latent a frame) and the 8-latent chunks its DiT was trained on: 8 frames a chunk.
    assert world.default_resolution == (128, 128) and world.vae.temporal_stride == 1
    assert world.info["chunk_latents"] == 8
    assert world.dtype == torch.bfloat16 and WorldModel.load(dtype="fp32", device="cpu").dtype == torch.float32
    # The Self-Forcing student of the flow DiT (docs/sim-model.md): 4 steps at shift 7 without guidance.
    assert world.info["sampling"] == "release-4step"
    from yume.session import WorldSession

    session = WorldSession(world, "A street.")
    assert (session.config.steps, session.config.shift, session.config.guidance) == (4, 7.0, 1.0)


def test_shift_pairs_cut_the_same_scene_at_another_phase_of_the_latent_grid():
    """shift_pairs: first the top-left crop of each window, then the crop (dy, dx) px down and right, 1 <= d <= 7."""
    import numpy as np

    from yume.train.vae import SHIFT_MARGIN, shift_pairs

    x = torch.arange(2 * 3 * 5 * 40 * 40, dtype=torch.float32).view(2, 3, 5, 40, 40)
    seen = set()
    for seed in range(20):
        pairs, (dy, dx) = shift_pairs(x, np.random.default_rng(seed), 32)
        assert pairs.shape == (4, 3, 5, 32, 32) and 1 <= dy < SHIFT_MARGIN and 1 <= dx < SHIFT_MARGIN
        assert torch.equal(pairs[:2], x[..., :32, :32]) and torch.equal(pairs[2:], x[..., dy : dy + 32, dx : dx + 32])
        seen.add((dy, dx))
    assert len(seen) > 10  # the offsets are drawn, not fixed


def test_shift_loss_compares_the_pairs_reconstructions_where_both_show_the_same_pixels():
    """vae_loss's shift term: the plain loss over both halves plus w x the L1 of the two reconstructions over their
    common pixels, SHIFT_MARGIN px in from each window's edges; zero for a codec that copies its input."""
    from types import SimpleNamespace as NS

    from yume.train.vae import SHIFT_MARGIN, VAETrainConfig, vae_loss
    from yume.vae import WanVAE

    vae = WanVAE.from_config("sim-small", seed=0)
    x = torch.rand(2, 3, 1, 40, 40) * 2 - 1
    plain, m0 = vae_loss(vae, x, torch.Generator().manual_seed(0), 1e-6)
    both, m1 = vae_loss(vae, x, torch.Generator().manual_seed(0), 1e-6, shift_weight=3.0, shift=(2, 5))
    assert "shift_l1" not in m0 and m1["l1"] == m0["l1"] and m1["shift_l1"] > 0
    assert both.item() == pytest.approx(plain.item() + 3.0 * m1["shift_l1"], rel=1e-6)
    with torch.no_grad():
        post = vae.model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(0))
        a, b = vae.model.decode(z).sample
    m = SHIFT_MARGIN
    assert m1["shift_l1"] == pytest.approx((a[..., 2 + m : 40 - m, 5 + m : 40 - m] - b[..., m : 40 - m - 2, m : 40 - m - 5]).abs().mean().item(), rel=1e-5)
    # A codec that returns its input exactly is phase-free: shifted crops of one picture agree where they overlap.
    scene = torch.rand(1, 3, 1, 48, 48)
    pair = torch.cat([scene[..., :40, :40], scene[..., 2:42, 5:45]])
    copy = NS(model=NS(config=NS(latents_std=[1.0]), decode=lambda z: NS(sample=z),
                       encode=lambda v: NS(latent_dist=NS(mean=v, std=torch.zeros_like(v), var=torch.ones_like(v),
                                                          logvar=torch.zeros_like(v)))))  # fmt: skip
    _, mc = vae_loss(copy, pair, torch.Generator().manual_seed(0), 0.0, shift_weight=1.0, shift=(2, 5))
    assert mc["shift_l1"] == 0.0 and mc["l1"] == 0.0
    with pytest.raises(ValueError, match="shift_weight=-1.0 must be >= 0"):
        VAETrainConfig("d", "o", shift_weight=-1.0)
    with pytest.raises(ValueError, match="crop=16 must be > 16 for shift_weight > 0"):
        VAETrainConfig("d", "o", crop=16, shift_weight=1.0)
