import dataclasses
import re
import shutil

import numpy as np
import pytest
import torch

from yume.condition import StreamEncoder, i2v_condition
from yume.models.clip import WAN_CLIP_FILE, CLIPImageEncoder, wan_clip_to_hf
from yume.models.i2v import YumeI2VTransformer
from yume.models.text import TINY_TOKENIZER, WAN_T5_FILE, WAN_TOKENIZER_DIR, hf_to_wan_t5
from yume.session import SessionConfig, WorldSession
from yume.session_i2v import I2VWorldSession
from yume.vae import WAN21_FILE, WanVAE
from yume.world import WorldModel

FAST = SessionConfig(steps=2, shift=3.0, guidance=1.0, vocab="1.0", chunk_latents=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return WorldModel.load("tiny-i2v-random", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def still(seed=0):
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_two_chunk_image_to_world_session(world):
    session = WorldSession(world, "a street", image=still(), config=FAST)
    assert isinstance(session, I2VWorldSession)
    assert session.history.shape == (1, 16, 5, 8, 8)  # the 17-frame still
    a, b = session.step("W"), session.step("A")
    assert a.frames.shape == b.frames.shape == (8, 64, 64, 3) and a.frames.dtype == np.uint8
    assert session.history.shape[2] == session.known.shape[2] == 9
    assert b.caption.startswith("This video depicts a city walk scene with a first-person view (FPV).Person moves left (A).")
    again = WorldSession(world, "a street", image=still(), config=FAST)
    again.step("W")
    assert np.array_equal(again.step("A").frames, b.frames)


def test_video_to_world_continues_the_newest_1_plus_4k_frames(world):
    clip = torch.rand(1, 3, 11, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    session = WorldSession(world, "", video=clip, config=FAST)
    assert session.history.shape[2] == 3  # frames 2..10 -> 1 + 2·4 -> 3 latents
    torch.testing.assert_close(session.known, world.vae.encode(clip[:, :, 2:]))
    assert session.step("S").frames.shape == (8, 64, 64, 3)


def test_i2v_session_needs_an_image_or_a_video(world):
    with pytest.raises(ValueError, match="exactly one of image= or video="):
        WorldSession(world, "text only", config=FAST)


@pytest.mark.parametrize("start", ["image", "video"])
def test_i2v_save_and_resume_give_the_same_next_chunks(world, tmp_path, start):
    config = dataclasses.replace(FAST, seed=7, guidance=2.0)  # guidance: the negative prompt is re-encoded on resume
    clip = torch.rand(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    source, start_frames = ({"image": still(3)}, 17) if start == "image" else ({"video": clip}, 9)
    first = WorldSession(world, "a street", config=config, **source)
    first.step("W", event="rain")
    first.save(tmp_path / "s.yume")
    resumed = WorldSession.load(tmp_path / "s.yume", world)
    assert type(resumed) is I2VWorldSession and resumed.index == 1 and resumed.event == "rain"
    assert resumed.encoder.frames_encoded == first.encoder.frames_encoded == start_frames + 8
    for action in ("A", "W+→"):  # two chunks: the condition stream and decoder carry on after the resumed one
        a, b = first.step(action), resumed.step(action)
        assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
        assert a.caption == b.caption
    torch.testing.assert_close(resumed.known, first.known, atol=0, rtol=0)


def test_loading_a_text_to_world_file_into_an_i2v_model_is_a_clear_error(world, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    session = WorldSession(world, "", image=still(), config=FAST)
    session.save(tmp_path / "s.yume")  # before any step: the history and the condition latents are the same
    with safe_open(str(tmp_path / "s.yume"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if k not in ("known", "image_tokens")}
    save_file(tensors, str(tmp_path / "t.yume"), metadata=meta)
    with pytest.raises(ValueError, match="no known, image_tokens: it was not saved by a Yume-I2V session"):
        WorldSession.load(tmp_path / "t.yume", world)


def test_stream_encoder_equals_one_shot_encoding_of_history_plus_black_frames():
    vae = WanVAE.from_config("tiny-wan2.1", seed=0)
    video = torch.rand(1, 3, 13, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    black = torch.zeros(1, 3, 8, 32, 32)
    stream = StreamEncoder(vae)
    known = torch.cat([stream.encode(video[:, :, :5]), stream.encode(video[:, :, 5:])], dim=2)
    future = stream.peek(black)
    whole = vae.encode(torch.cat([video, black], dim=2))  # what the release encodes for every chunk
    torch.testing.assert_close(known, whole[:, :, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(future, whole[:, :, 4:], atol=1e-5, rtol=1e-5)
    assert stream.frames_encoded == 13  # peek left the stream where it was
    cond = i2v_condition(known, future)
    assert cond.shape == (1, 20, 6, 4, 4)
    assert cond[:, :4, :4].eq(1).all() and cond[:, :4, 4:].eq(0).all()
    with pytest.raises(ValueError, match="multiple of 4 frames"):
        stream.encode(video[:, :, :3])


# --- checkpoint layouts ------------------------------------------------------------------------------------------


def _wan21_vae_name(key: str) -> str:
    """diffusers AutoencoderKLWan (Wan2.1) key -> `Wan2.1_VAE.pth` key; checked against diffusers' own converter."""
    parts = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6", "conv_shortcut": "shortcut"}
    rules = [
        (r"^quant_conv\.", "conv1."), (r"^post_quant_conv\.", "conv2."),
        (r"^(encoder|decoder)\.conv_in\.", r"\1.conv1."), (r"^(encoder|decoder)\.norm_out\.", r"\1.head.0."),
        (r"^(encoder|decoder)\.conv_out\.", r"\1.head.2."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.middle.1."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(\w+)\.", lambda m: f"{m[1]}.middle.{2 * int(m[2])}.{parts[m[3]]}."),
        (r"^encoder\.down_blocks\.(\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)\.", lambda m: f"encoder.downsamples.{m[1]}.{parts[m[2]]}."),
        (r"^encoder\.down_blocks\.", "encoder.downsamples."),
        (r"^decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(\w+)\.", lambda m: f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.{parts[m[3]]}."),
        (r"^decoder\.up_blocks\.(\d)\.upsamplers\.0\.", lambda m: f"decoder.upsamples.{4 * int(m[1]) + 3}."),
    ]  # fmt: skip
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise KeyError(key)


def _wan_clip_state(encoder: CLIPImageEncoder) -> dict:
    """The inverse of `wan_clip_to_hf`, plus a text-tower key that loading must ignore."""
    hf = {k.removeprefix("vision_model."): v for k, v in encoder.model.state_dict().items()}
    inverse = {v: k for k, v in (("visual.patch_embedding.", "embeddings.patch_embedding."), ("visual.pre_norm.", "pre_layrnorm."),
               ("visual.post_norm.", "post_layernorm."))}  # fmt: skip
    out = {"textual.head.0.weight": torch.zeros(2, 2), "visual.head": torch.zeros(48, 32)}
    for k, v in hf.items():
        if k == "embeddings.class_embedding":
            out["visual.cls_embedding"] = v.view(1, 1, -1)
        elif k == "embeddings.position_embedding.weight":
            out["visual.pos_embedding"] = v[None]
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(\w+)", k):
            i, p = m[1], m[2]
            out[f"visual.transformer.{i}.attn.to_qkv.{p}"] = torch.cat([hf[f"encoder.layers.{i}.self_attn.{n}_proj.{p}"] for n in "qkv"])
        elif re.match(r"encoder\.layers\.\d+\.self_attn\.[kv]_proj", k):
            continue
        elif m := re.match(r"encoder\.layers\.(\d+)\.(\w+)\.(\w+)\.(\w+)$", k):
            name = {"layer_norm1": "norm1", "layer_norm2": "norm2"}.get(m[2])
            sub = {("self_attn", "out_proj"): "attn.proj", ("mlp", "fc1"): "mlp.0", ("mlp", "fc2"): "mlp.2"}.get((m[2], m[3]))
            out[f"visual.transformer.{m[1]}.{name or sub}.{m[4] if sub else m[3] + '.' + m[4]}".replace("..", ".")] = v
        elif m := re.match(r"encoder\.layers\.(\d+)\.(layer_norm[12])\.(\w+)$", k):
            out[f"visual.transformer.{m[1]}.norm{m[2][-1]}.{m[3]}"] = v
        else:
            prefix = next(p for p in inverse if k.startswith(p))
            out[inverse[prefix] + k[len(prefix):]] = v
    return out


def test_wan21_vae_names_are_what_diffusers_converter_reads():
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    vae = WanVAE.from_config("wan2.1")
    state = vae.model.state_dict()
    back = convert_wan_vae_to_diffusers({_wan21_vae_name(k): v for k, v in state.items()})
    assert back.keys() == state.keys()


def test_wan_clip_weights_map_onto_clip_vision_model():
    enc = CLIPImageEncoder.from_config("tiny", seed=3)
    hf = wan_clip_to_hf(_wan_clip_state(enc))
    own = {k.removeprefix("vision_model."): v for k, v in enc.model.state_dict().items()}
    assert hf.keys() == own.keys()
    assert all(torch.equal(hf[k], own[k]) for k in own)


def _authors_dir(root, world):
    """The Yume-I2V-540P layout: Yume-Dit/ shards + index, Wan2.1_VAE.pth, CLIP .pth, T5 .pth, google/umt5-xxl/."""
    world.dit.save_pretrained(root / "Yume-Dit", max_shard_bytes=200_000)
    torch.save({_wan21_vae_name(k): v for k, v in world.vae.model.state_dict().items()}, root / WAN21_FILE)
    torch.save(_wan_clip_state(world.image_encoder), root / WAN_CLIP_FILE)
    torch.save(hf_to_wan_t5(world.text.model.state_dict()), root / WAN_T5_FILE)
    shutil.copytree(TINY_TOKENIZER, root / WAN_TOKENIZER_DIR)
    return root


def _same_world(a, b, tmp_path):
    for mine, theirs in ((a.dit, b.dit), (a.vae.model, b.vae.model), (a.image_encoder.model, b.image_encoder.model)):
        ref = theirs.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in mine.state_dict().items())
    x = still(5)
    torch.testing.assert_close(a.image_encoder.encode(x), b.image_encoder.encode(x))


def test_authors_layout_loads_into_the_same_world(world, tmp_path):
    from yume.inspect import describe

    root = _authors_dir(tmp_path / "Yume-I2V-540P", world)
    assert len(list((root / "Yume-Dit").glob("*.safetensors"))) > 1
    loaded = WorldModel.load(root, device="cpu", dtype="fp32", cache_dir=tmp_path / "cache")
    assert isinstance(loaded.dit, YumeI2VTransformer) and loaded.default_resolution == (544, 960)
    _same_world(loaded, world, tmp_path)
    report = describe(root)
    assert "Yume-I2V (Yume 1.0: Wan2.1-I2V + history patch embeddings)" in report
    assert f"CLIP image encoder: present ({WAN_CLIP_FILE})" in report
    assert "VAE: present (Wan2.1_VAE.pth)" in report


def test_diffusers_layout_loads_into_the_same_world(world, tmp_path):
    root = tmp_path / "diffusers"
    world.dit.save_pretrained(root / "transformer", layout="diffusers")
    world.vae.save_pretrained(root / "vae")
    world.image_encoder.model.save_pretrained(root / "image_encoder")
    world.text.model.save_pretrained(root / "text_encoder")
    world.text.tokenizer.save_pretrained(root / "tokenizer")
    loaded = WorldModel.load(root, device="cpu", dtype="fp32", cache_dir=tmp_path / "cache")
    assert isinstance(loaded.dit, YumeI2VTransformer)
    _same_world(loaded, world, tmp_path)


def test_generate_picks_the_i2v_recipe_from_the_checkpoint(tmp_path, monkeypatch):
    import json

    from PIL import Image

    from yume.cli import main

    monkeypatch.setenv("YUME_CACHE", str(tmp_path / "cache"))
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "start.png")
    out = tmp_path / "w.mp4"
    args = ["generate", "--model", "tiny-i2v-random", "--image", str(tmp_path / "start.png"), "--actions", "W",
            "--steps", "1", "--guidance", "1", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert (record["config"]["shift"], record["config"]["vocab"]) == (3.0, "1.0")
    assert record["config"]["negative_prompt"].startswith("Bright tones, overexposed")
    assert record["chunks"][0]["caption"].startswith("This video depicts a city walk scene")
    assert record["frames"] == 32
