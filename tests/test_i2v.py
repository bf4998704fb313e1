
import pytest
import torch
from reference import diffusers_twin, randomize

from yume.config import MODEL_PRESETS
from yume.models import history as hist
from yume.models.i2v import YumeI2VTransformer

PARITY = MODEL_PRESETS["tiny-i2v"].replace(text_len=512)


@pytest.fixture(scope="module")
def pair():
    model = randomize(YumeI2VTransformer.from_config(PARITY)).float().eval()
    return model, diffusers_twin(model)


def inputs(b=2, f=3, h=8, w=12, history=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 16, f, h, w, generator=g)
    past = torch.randn(b, 16, history, h, w, generator=g) if history else None
    cond = torch.randn(b, 20, history + f, h, w, generator=g)
    ctx = torch.randn(b, 512, PARITY.text_dim, generator=g)
    clip = torch.randn(b, 257, PARITY.image_dim, generator=g)
    return x, past, cond, ctx, clip


def test_matches_diffusers_wan21_i2v(pair):
    model, ref = pair
    x, _, cond, ctx, clip = inputs()
    sigma = torch.tensor([0.7, 0.25])
    with torch.no_grad():
        ours = model(x, sigma, ctx, cond=cond, image=clip)
        theirs = ref(torch.cat([x, cond], 1), sigma * 1000, ctx, encoder_hidden_states_image=clip).sample
    assert ours.shape == (2, 16, 3, 8, 12)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_window_without_packing_is_plain_i2v_on_the_whole_sequence(pair):
    # Up to 9 latents in all, nothing is packed: history + chunk are one Wan2.1-I2V sequence, one σ for all tokens.
    model, ref = pair
    x, past, cond, ctx, clip = inputs(b=1, f=2, history=3)
    with torch.no_grad():
        ours = model(x, torch.tensor([0.4]), ctx, past, cond=cond, image=clip)
        full = torch.cat([torch.cat([past, x], 2), cond], 1)
        theirs = ref(full, torch.tensor([400.0]), ctx, encoder_hidden_states_image=clip).sample[:, :, -2:]
    assert (ours - theirs).abs().max().item() < 1e-5


# --- the 14B preset ----------------------------------------------------------------------------------------------


def test_14b_preset_key_set_and_parameter_count_on_meta():
    # Per block: self-attn q,k,v,o + cross-attn q,k,v,o + k_img,v_img (10 d² + 10 d), qk/k_img norms (5 d), affine
    # norm3 (2 d), FFN (2 d·f + f + d), modulation (6 d) = 10 d² + 2 d·f + f + 24 d = 403,838,464 at d=5120, f=13824.
    d, f, c = 5120, 13824, 1280
    block = 10 * d * d + 2 * d * f + f + 24 * d
    outside = (
        (36 * 4 * d + d)  # patch_embedding (1,2,2) over 36 channels
        + (4096 * d + d + d * d + d)  # text_embedding
        + (256 * d + d + d * d + d)  # time_embedding
        + (d * 6 * d + 6 * d)  # time_projection
        + (d * 64 + 64 + 2 * d)  # head (16 channels × 2×2) + its modulation
        + (2 * c + c * c + c + c * d + d + 2 * d)  # img_emb: LayerNorm, Linear, Linear, LayerNorm
    )
    history = 36 * d * (4**2 + 8**2 + 16**2 + 32**2) + 4 * d + (36 * 36 * 16 + 36)
    assert (block, 40 * block + outside, history) == (403_838_464, 16_394_878_784, 250_716_452)
    for name, params, keys in [("wan2.1-i2v-14b", 16_394_878_784, 40 * 32 + 23), ("yume-i2v-540p-14b", 16_645_595_236, 40 * 32 + 33)]:
        with torch.device("meta"):
            model = YumeI2VTransformer(name)
        state = model.state_dict()
        assert sum(v.numel() for v in state.values()) == params
        assert len(state) == keys
    assert state["patch_embedding_2x_f.weight"].shape == (36, 36, 1, 4, 4)
    assert state["patch_embedding_16x.weight"].shape == (5120, 36, 1, 32, 32)
    assert state["img_emb.proj.1.weight"].shape == (1280, 1280)
    assert {k.removeprefix("blocks.0.cross_attn.") for k in state if k.startswith("blocks.0.cross_attn.")} >= {
        "k_img.weight", "v_img.weight", "norm_k_img.weight"
    }


def test_i2v_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="image_dim=0"):
        YumeI2VTransformer(MODEL_PRESETS["tiny-i2v"].replace(image_dim=0))
    with pytest.raises(ValueError, match="2·out_dim"):
        YumeI2VTransformer(MODEL_PRESETS["tiny-i2v"].replace(in_dim=48, out_dim=48))


def test_older_history_is_packed_with_the_release_table():
    model = randomize(YumeI2VTransformer.from_config("tiny-i2v")).eval()
    calls = {}
    for name in ("patch_embedding", "patch_embedding_2x", "patch_embedding_4x", "patch_embedding_8x"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: calls.setdefault(name, []).append(i[0].shape[2]))
    x, past, cond, _, _ = inputs(b=1, f=8, h=8, w=8, history=12)
    ctx, clip = torch.randn(1, 32, 32), torch.randn(1, 5, 48)
    with torch.no_grad():
        out = model(x, torch.tensor([0.5]), ctx, past, cond=cond, image=clip)
    assert out.shape == (1, 16, 8, 8, 8)
    # 20 latents: the newest 9 at 2×2; the 11 older ones by the table's F_h ≤ 22 row: frame 0 and the last 3 at 2×2,
    # [1:-5] (5 frames) at 8×8 (`_4x`), [-5:-3] at 4×4 (`_2x`); `_8x` is not used yet.
    assert calls == {"patch_embedding": [9, 1, 3], "patch_embedding_4x": [5], "patch_embedding_2x": [2]}
    plan = hist.release_plan(11)
    assert model.num_history_tokens(12, 8, 8, chunk_latents=8) == hist.count_tokens(plan, model.history_convs(), 8, 8)


# --- the release sampler -----------------------------------------------------------------------------------------


def test_renoised_history_sampler_matches_its_formula():
    from yume.sampling import get_schedule, sample_euler_renoised_history

    g = torch.Generator().manual_seed(0)
    history, eps, x0 = (torch.randn(1, 2, 3, 2, 2, generator=g) for _ in range(3))
    sigmas = get_schedule(50, 3.0)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and len(sigmas) == 51
    # The release's `get_sampling_sigmas(50, 3.0)`: linspace(1, 0, 51)[:50] shifted by 3.
    lin = torch.linspace(1, 0, 51, dtype=torch.float64)[:50]
    torch.testing.assert_close(sigmas[:50], (3 * lin / (1 + 2 * lin)).float())
    seen = []

    def model(x, sigma, past):
        seen.append(past)
        return 0.5 * x + past.mean() * torch.ones_like(x)

    out = sample_euler_renoised_history(model, x0, sigmas, history, eps)
    x = x0
    for i in range(50):
        s, s_next = sigmas[i], sigmas[i + 1]
        expected_past = s * eps + (1 - s) * history  # pure noise at step 0, σ_{i+1} after step i
        torch.testing.assert_close(seen[i], expected_past)
        x = x + (s_next - s) * (0.5 * x + expected_past.mean())
    torch.testing.assert_close(out, x)
