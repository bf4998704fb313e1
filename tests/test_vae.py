"""The Wan2.2 VAE wrapper: streaming decode, key layouts, loading errors, encoding (tiny random VAE)."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from yume.vae import WanVAE, original_key_map


@pytest.fixture(scope="module")
def vae():
    return WanVAE.from_config("tiny", seed=0)


def _latents(frames, h=2, w=2, seed=0):
    return torch.randn(1, 48, frames, h, w, generator=torch.Generator().manual_seed(seed))


def _assert_same_weights(a: WanVAE, b: WanVAE):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_stream_decode_of_three_chunks_equals_one_shot_decode(vae):
    z = _latents(24)
    stream = vae.stream_decoder()
    chunks = [stream.decode(z[:, :, 8 * k : 8 * k + 8]) for k in range(3)]
    assert [c.shape[2] for c in chunks] == [29, 32, 32]
    assert chunks[0].shape == (1, 3, 29, 32, 32)
    full = vae.decode(z)
    assert full.shape[2] == 29 + 32 + 32
    assert (torch.cat(chunks, dim=2) - full).abs().max() < 1e-4
    assert stream.latents_decoded == 24
    assert full.abs().max() <= 1.0 and full.std() > 0.05  # clamped, and not saturated or constant


def test_decode_matches_diffusers_decode_of_denormalised_latents(vae):
    z = _latents(3)
    mean, std = vae.latent_stats()
    reference = vae.model.decode(z * std + mean).sample
    assert (vae.decode(z) - reference).abs().max() < 1e-5


def test_stream_num_frames_counts_first_latent_as_one_frame(vae):
    stream = vae.stream_decoder()
    assert stream.num_frames(8) == 29
    stream.decode(_latents(1))
    assert stream.num_frames(8) == 32


@pytest.mark.parametrize("first", [1, 3])  # after 1 latent the cache still holds diffusers' "Rep" markers
def test_stream_state_save_restore_continues_identically(vae, tmp_path, first):
    z = _latents(first + 4)
    stream = vae.stream_decoder()
    stream.decode(z[:, :, :first])
    save_file(stream.state_dict(), tmp_path / "stream.safetensors")
    expected = stream.decode(z[:, :, first:])

    resumed = vae.stream_decoder()
    resumed.load_state_dict(load_file(tmp_path / "stream.safetensors"))
    assert resumed.latents_decoded == first
    assert torch.equal(resumed.decode(z[:, :, first:]), expected)


def test_stream_reset_starts_a_new_stream(vae):
    z = _latents(2)
    stream = vae.stream_decoder()
    first = stream.decode(z)
    stream.decode(z)
    stream.reset()
    assert torch.equal(stream.decode(z), first)


def test_stream_state_from_another_vae_is_refused(vae):
    state = vae.stream_decoder().state_dict()
    with pytest.raises(ValueError, match="latents_decoded"):
        vae.stream_decoder().load_state_dict({k: v for k, v in state.items() if k != "latents_decoded"})
    stream = vae.stream_decoder()
    stream.decode(_latents(1))
    state = {k: (v[:-1] if k.endswith(".rep") else v) for k, v in stream.state_dict().items()}
    with pytest.raises(ValueError, match="cached convs"):
        vae.stream_decoder().load_state_dict(state)


def test_tiled_stream_equals_tiled_one_shot_and_diffusers_tiling():
    vae = WanVAE.from_config("tiny", seed=1)
    vae.enable_tiling(tile_size=64, tile_stride=32)
    z = _latents(3, h=6, w=6)
    full = vae.decode(z)
    stream = vae.stream_decoder()
    chunked = torch.cat([stream.decode(z[:, :, :1]), stream.decode(z[:, :, 1:])], dim=2)
    assert torch.equal(chunked, full)
    mean, std = vae.latent_stats()
    assert (full - vae.model.decode(z * std + mean).sample).abs().max() < 1e-5
    vae.disable_tiling()
    assert vae.decode(z).shape == full.shape == (1, 3, 9, 96, 96)


def test_enable_tiling_rejects_sizes_off_the_latent_grid(vae):
    with pytest.raises(ValueError, match="multiples of 16"):
        vae.enable_tiling(tile_size=100, tile_stride=64)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_original_key_map_round_trips_exactly(vae, tmp_path, suffix):
    path = tmp_path / f"Wan2.2_VAE{suffix}"
    vae.save_original(path)
    keys = set(load_file(path) if suffix == ".safetensors" else torch.load(path, weights_only=True))
    # Names of Wan2.2's vae2_2.py: resample after the encoder's 2 / the decoder's 3 resnets, quant convs at top level.
    for name in [
        "conv1.weight",
        "conv2.bias",
        "encoder.conv1.weight",
        "encoder.downsamples.1.downsamples.0.shortcut.weight",
        "encoder.downsamples.1.downsamples.2.time_conv.weight",
        "encoder.downsamples.0.downsamples.2.resample.1.weight",
        "encoder.middle.1.to_qkv.weight",
        "decoder.middle.2.residual.6.weight",
        "decoder.upsamples.0.upsamples.3.time_conv.bias",
        "decoder.upsamples.2.upsamples.3.resample.1.weight",
        "decoder.head.0.gamma",
    ]:
        assert name in keys, name
    assert len(keys) == len(original_key_map(vae.model)) == 196
    loaded = WanVAE.from_pretrained(path, config="tiny")
    _assert_same_weights(vae, loaded)
    assert torch.equal(loaded.decode(_latents(2)), vae.decode(_latents(2)))


def test_diffusers_layout_round_trips_and_model_directories_resolve(vae, tmp_path):
    vae.save_pretrained(tmp_path / "model" / "vae")
    for path in (tmp_path / "model" / "vae", tmp_path / "model"):
        loaded = WanVAE.from_pretrained(path)
        _assert_same_weights(vae, loaded)
        assert loaded.config["latents_std"] == vae.config["latents_std"]
    # A release directory: the DiT's config.json + safetensors beside Wan2.2_VAE.pth.
    release = tmp_path / "release"
    release.mkdir()
    (release / "config.json").write_text('{"_class_name": "WanModel", "dim": 3072}')
    save_file({"x": torch.zeros(1)}, release / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="no VAE in .*describes a WanModel, not the VAE"):
        WanVAE.from_pretrained(release)
    vae.save_original(release / "Wan2.2_VAE.pth")
    _assert_same_weights(vae, WanVAE.from_pretrained(release, config="tiny"))


def test_from_pretrained_loads_in_the_requested_dtype(vae, tmp_path):
    vae.save_original(tmp_path / "vae.safetensors")
    loaded = WanVAE.from_pretrained(tmp_path / "vae.safetensors", dtype=torch.bfloat16, config="tiny")
    assert loaded.dtype == torch.bfloat16
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_truncated_file_names_the_file_and_the_fix(vae, tmp_path):
    path = tmp_path / "Wan2.2_VAE.pth"
    vae.save_original(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"Wan2\.2_VAE\.pth.*truncated.*download it again"):
        WanVAE.from_pretrained(path, config="tiny")


def test_wrong_keys_report_counts_names_and_fix(vae, tmp_path):
    weights = {original_key_map(vae.model)[k]: v for k, v in vae.model.state_dict().items()}
    del weights["decoder.head.2.weight"], weights["conv1.bias"]
    weights["decoder.extra.weight"] = torch.zeros(1)
    save_file(weights, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError) as err:
        WanVAE.from_pretrained(tmp_path / "bad.safetensors", config="tiny")
    message = str(err.value)
    assert "bad.safetensors" in message and "195 tensors, expected 196" in message
    assert "missing 2: conv1.bias, decoder.head.2.weight" in message
    assert "unexpected 1: decoder.extra.weight" in message
    assert "config=" in message


def test_checkpoint_of_another_size_reports_shape_mismatches(vae, tmp_path):
    vae.save_original(tmp_path / "Wan2.2_VAE.pth")
    with pytest.raises(ValueError, match=r"wrong shape 19\d: .*: file \(.*\) vs model"):
        WanVAE.from_pretrained(tmp_path / "Wan2.2_VAE.pth")  # default config: the full-size Wan2.2 VAE


def test_missing_path_says_which_file_to_get(tmp_path):
    with pytest.raises(FileNotFoundError, match="Wan2.2_VAE.pth"):
        WanVAE.from_pretrained(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no VAE in"):
        WanVAE.from_pretrained(tmp_path)


def test_encode_image_builds_the_17_frame_still_and_gives_5_latents(vae):
    image = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents = vae.encode_image(image)
    assert latents.shape == (2, 48, 5, 2, 3)
    assert torch.allclose(latents, vae.encode(image.unsqueeze(2).repeat(1, 1, 17, 1, 1)))


def test_encode_normalises_with_the_per_channel_stats(vae):
    video = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    raw = vae.model.encode(video).latent_dist.mode()
    mean, std = vae.latent_stats()
    assert torch.allclose(vae.encode(video), (raw - mean) / std, atol=1e-6)
    assert not torch.allclose(mean, torch.zeros_like(mean))  # the tiny preset's stats are not an identity


def test_encode_rejects_frame_counts_and_sizes_off_the_strides(vae):
    with pytest.raises(ValueError, match=r"16 frames at 32x32.*1 \+ 4k"):
        vae.encode(torch.zeros(1, 3, 16, 32, 32))
    with pytest.raises(ValueError, match="multiples of 16"):
        vae.encode(torch.zeros(1, 3, 5, 40, 32))
    with pytest.raises(ValueError, match=r"latents must be \[B, 48"):
        vae.decode(torch.zeros(1, 16, 2, 2, 2))


def test_tiny_preset_is_deterministic_for_a_seed_and_has_the_wan22_strides():
    a, b, c = (WanVAE.from_config("tiny", seed=s) for s in (0, 0, 1))
    _assert_same_weights(a, b)
    assert not torch.equal(a.model.decoder.conv_in.weight, c.model.decoder.conv_in.weight)
    assert (a.z_dim, a.temporal_stride, a.spatial_stride) == (48, 4, 16)
    assert a.config["patch_size"] == 2 and a.config["is_residual"]
    assert a.to(dtype=torch.bfloat16).dtype == torch.bfloat16 and a.device.type == "cpu"
    with pytest.raises(ValueError, match="unknown VAE preset 'huge'"):
        WanVAE.from_config("huge")


# --- a 2x temporal stride (the sim-small-t2 preset) ----------------------------------------------------------------


def test_a_2x_temporal_vae_encodes_streams_and_decodes_1_plus_2k_frames():
    from yume.condition import StreamEncoder

    vae = WanVAE.from_config("sim-small-t2", seed=0)
    assert (vae.temporal_stride, vae.spatial_stride, vae.z_dim) == (2, 8, 32)
    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = vae.encode(video)  # 1 + 4k frames: diffusers' own encode
    assert whole.shape == (1, 32, 5, 4, 4)
    # 7 = 1 + 2 x 3 frames, which diffusers' 4-frame loop would cut short: the causal encoder, one stride at a time.
    torch.testing.assert_close(vae.encode(video[:, :, :7]), whole[:, :, :4], atol=1e-5, rtol=1e-5)
    stream = StreamEncoder(vae)
    parts = [stream.encode(video[:, :, :3]), stream.encode(video[:, :, 3:5]), stream.encode(video[:, :, 5:])]
    assert [p.shape[2] for p in parts] == [2, 1, 2]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="a multiple of 2 frames"):
        stream.encode(video[:, :, :3])
    with pytest.raises(ValueError, match=r"6 frames at 32x32.*1 \+ 2k"):
        vae.encode(video[:, :, :6])
    decoder = vae.stream_decoder()
    assert decoder.num_frames(5) == 9
    chunks = [decoder.decode(whole[:, :, :2]), decoder.decode(whole[:, :, 2:])]
    assert [c.shape[2] for c in chunks] == [3, 6]
    torch.testing.assert_close(torch.cat(chunks, dim=2), vae.decode(whole), atol=1e-4, rtol=1e-4)


def test_stream_encoder_patchifies_like_encode_for_the_wan22_structure(vae):
    from yume.condition import StreamEncoder

    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    stream = StreamEncoder(vae)
    streamed = torch.cat([stream.encode(video[:, :, :5]), stream.encode(video[:, :, 5:])], dim=2)
    torch.testing.assert_close(streamed, vae.encode(video), atol=1e-5, rtol=1e-5)


def test_restructure_carries_an_image_trained_vae_into_the_2x_stride_but_for_two_time_convs():
    from yume.train.vae import restructure

    src = WanVAE.from_config("sim-small", seed=1)
    dst = restructure(src, "sim-small-t2")
    a, b = src.model.state_dict(), dst.model.state_dict()
    assert set(b) <= set(a) and all(torch.equal(a[k], b[k]) for k in b)
    dropped = sorted(set(a) - set(b))
    assert len(dropped) == 4 and all(".time_conv." in k for k in dropped)  # weight + bias, encoder and decoder
    with pytest.raises(ValueError, match="does not fit preset 'tiny'.*drop --preset"):
        restructure(src, "tiny")
