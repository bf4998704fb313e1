import json

import numpy as np
import pytest
import torch

from yume.actions import Action, caption
from yume.cli import main
from yume.sampling import get_schedule, sample_euler
from yume.session import SessionConfig, WorldSession
from yume.world import WorldModel

SMALL = SessionConfig(height=64, width=64, steps=2, chunk_latents=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def test_release_schedule_values():
    sigmas = get_schedule(4, 7.0)
    assert torch.allclose(sigmas, torch.tensor([1.0, 0.9545, 0.875, 0.7, 0.0]), atol=1e-4)


def test_euler_integrates_a_constant_velocity_exactly():
    x = torch.zeros(1, 2)
    out = sample_euler(lambda x, s: torch.ones_like(x), x, get_schedule(4, 7.0))
    assert torch.allclose(out, torch.full((1, 2), -1.0))  # σ 1 -> 0 with v = 1 moves by −1


def test_three_chunks_with_an_event_condition_each_chunk_on_its_own_caption(world, monkeypatch):
    session = WorldSession(world, "A quiet street", config=SMALL)
    seen = []
    real_encode = world.text.encode

    def spy(texts):
        seen.extend(texts)
        return real_encode(texts)

    monkeypatch.setattr(world.text, "encode", spy)
    # Without the cache every chunk's text reaches the encoder, so we read what conditioned it.
    monkeypatch.setattr(world, "cache", None)
    chunks = list(session.run(["W", "A", "S+→"], events={1: "A ghost appeared."}))
    assert [c.frames.shape for c in chunks] == [(5, 64, 64, 3), (8, 64, 64, 3), (8, 64, 64, 3)]
    expected = [
        caption(Action.parse("W"), "A quiet street."),
        caption(Action.parse("A"), "A quiet street. A ghost appeared."),
        caption(Action.parse("S+→"), "A quiet street. A ghost appeared."),
    ]
    assert seen == expected
    assert [c.caption for c in chunks] == expected
    assert session.history.shape[2] == 6


def test_same_seed_same_world_and_other_seed_differs(world):
    a = WorldSession(world, "street", config=SMALL).step("W").frames
    b = WorldSession(world, "street", config=SMALL).step("W").frames
    c = WorldSession(world, "street", config=SessionConfig(height=64, width=64, steps=2, chunk_latents=2, seed=1)).step("W").frames
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_save_and_resume_give_the_same_next_chunk(world, tmp_path):
    straight = WorldSession(world, "street", config=SMALL)
    straight.step("W")
    straight.step("D", "Snow falls.")
    expected = straight.step("W+←")

    first = WorldSession(world, "street", config=SMALL)
    first.step("W")
    first.step("D", "Snow falls.")
    first.save(tmp_path / "s.yume")
    resumed = WorldSession.load(tmp_path / "s.yume", world)
    got = resumed.step("W+←")
    assert resumed.event == "Snow falls." and resumed.index == 3
    assert got.caption == expected.caption
    assert np.array_equal(got.frames, expected.frames)


def test_streamed_frames_arrive_per_latent(world):
    pieces = []
    chunk = WorldSession(world, "street", config=SMALL).step("W", on_frames=pieces.append)
    assert [p.shape[0] for p in pieces] == [1, 4]
    assert np.array_equal(np.concatenate(pieces), chunk.frames)


def test_image_to_world_starts_from_five_history_latents(world, tmp_path):
    from PIL import Image

    img = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 90, 3), dtype=np.uint8)).save(img)
    session = WorldSession(world, "street", image=img, config=SMALL)
    assert session.history.shape[2] == 5
    chunk = session.step("→")
    assert chunk.frames.shape[0] == 8  # continues the primed stream: 4 frames per latent
    assert session.history.shape[2] == 7


def test_unreadable_image_is_a_clear_error(world, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        WorldSession(world, "x", image=bad, config=SMALL)


def test_bad_session_config_and_action_messages(world):
    with pytest.raises(ValueError, match="multiples of 32"):
        SessionConfig(height=100, width=64)
    with pytest.raises(ValueError, match="prompt_mode"):
        SessionConfig(prompt_mode="both")
    with pytest.raises(ValueError, match="Q"):
        WorldSession(world, "x", config=SMALL).step("Q")


def test_decomposed_prompt_mode_runs(world):
    cfg = SessionConfig(height=64, width=64, steps=1, chunk_latents=2, prompt_mode="decomposed")
    assert WorldSession(world, "street", config=cfg).step("W").frames.shape == (5, 64, 64, 3)


def test_guidance_uses_the_negative_prompt(world):
    cfg = SessionConfig(height=64, width=64, steps=1, chunk_latents=1, guidance=3.0, negative_prompt="blurry")
    plain = WorldSession(world, "street", config=SessionConfig(height=64, width=64, steps=1, chunk_latents=1))
    guided = WorldSession(world, "street", config=cfg)
    assert not torch.equal(plain.step("W").latents, guided.step("W").latents)


# --- the CLI ------------------------------------------------------------------------------------------------------


def read_frames(path):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    return frames, rate


def test_generate_writes_a_playable_mp4_and_sidecar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YUME_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "w.mp4"
    code = main(["generate", "--model", "tiny-random", "--prompt", "A street", "--actions", "W*2 →", "--event",
                 "1:Rain starts.", "--resolution", "64x64", "--steps", "1", "-o", str(out)])  # fmt: skip
    assert code == 0
    frames, rate = read_frames(out)
    assert len(frames) == 29 + 32 + 32 and rate == 16
    assert frames[0].shape[1] == 64 and frames[0].shape[0] > 64  # control strip under the frame
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["random_weights"] is True and meta["model"] == "tiny-random"
    assert [c["action"] for c in meta["chunks"]] == ["W", "W", "→"]
    assert [c["event"] for c in meta["chunks"]] == [None, "Rain starts.", "Rain starts."]
    assert set(meta["chunks"][0]["seconds"]) == {"text", "denoise", "decode"}
    assert "random weights" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "x", "--actions", "W*2 Q"], "Q"),
        (["--prompt", "x", "--resolution", "100x64"], "multiples of 32"),
        (["--image", "/nonexistent.png"], "cannot read image"),
        (["--prompt", "x", "--model", "/no/such/model"], "neither a built-in model"),
        (["--actions", "W"], "give --prompt"),
        (["--prompt", "x", "--event", "soon:rain"], "soon"),
    ],
)
def test_generate_bad_input_messages(tmp_path, capsys, args, message):
    code = main(["generate", *args, "-o", str(tmp_path / "x.mp4")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_with_a_model_folder_missing_its_vae_says_which_file_and_where(tmp_path, capsys):
    from yume import YumeTransformer

    YumeTransformer.from_config("tiny").save_pretrained(tmp_path / "model")
    assert main(["generate", "--model", str(tmp_path / "model"), "--prompt", "x", "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "no VAE in" in err and "Wan2.2_VAE.pth" in err and "stdstu123/Yume-5B-720P" in err


def test_a_model_that_states_its_chunk_prompt_mode_and_image_start_is_sampled_that_way(tmp_path):
    """The built-in street world was trained on 4-latent chunks, decomposed prompts and single-latent image starts:
    a session takes those from the model unless the config says otherwise."""
    world = WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path)
    image = torch.zeros(1, 3, 64, 64)
    release = WorldSession(world, "street", image=image, config=SessionConfig(height=64, width=64, steps=1))
    assert release.history.shape[2] == 5 and release.config.chunk_latents == 8  # the release's 17-frame still
    assert release.config.prompt_mode == "joined"
    world.info.update(chunk_latents=2, prompt_mode="decomposed", image_start="frame")
    own = WorldSession(world, "street", image=image, config=SessionConfig(height=64, width=64, steps=1))
    assert own.history.shape[2] == 1 and own.config.prompt_mode == "decomposed"
    assert own.step("W").latents.shape[2] == 2
    told = WorldSession(world, "street", config=SessionConfig(height=64, width=64, steps=1, chunk_latents=1,
                                                              prompt_mode="joined"))  # fmt: skip
    assert told.config.chunk_latents == 1 and told.config.prompt_mode == "joined"


def test_unset_sampling_is_the_models_recipe_and_explicit_values_win(world, monkeypatch):
    assert WorldSession(world, "a street").config.steps == 4  # no recipe in the model: the release's 4 steps
    release = WorldSession(world, "a street").config
    assert (release.steps, release.shift, release.guidance) == (4, 7.0, 1.0)
    monkeypatch.setitem(world.info, "sampling", "release-50step")
    own = WorldSession(world, "a street").config
    assert (own.steps, own.shift, own.guidance) == (50, 5.0, 1.0)
    mixed = WorldSession(world, "a street", config=SessionConfig(steps=2)).config
    assert (mixed.steps, mixed.shift) == (2, 5.0)


@pytest.mark.parametrize("shift", [0.0, -3.0])
def test_a_shift_that_is_not_positive_is_a_clear_error(shift):
    with pytest.raises(ValueError, match=rf"shift must be > 0, got {shift} \(3 to 7 are usual; 1 = no shift\)"):
        SessionConfig(shift=shift)
    assert SessionConfig(shift=1.0).shift == 1.0
