import math
from pathlib import Path

import pytest
import torch
from reference import diffusers_twin, randomize

from yume import YumeTransformer
from yume.config import ModelConfig
from yume.models import history as hist

# The release's key list (a copy of shared/spec/yume-5b-720p-keys.tsv, read from the published checkpoint).
SPEC = Path(__file__).resolve().parent / "data" / "yume-5b-720p-keys.tsv"


@pytest.fixture(scope="module")
def pair():
    model = randomize(YumeTransformer.from_config("tiny-wan"), std=0.1).float().eval()
    ref = diffusers_twin(model)
    return model, ref


def test_matches_diffusers_scalar_timestep(pair):
    model, ref = pair
    x = torch.randn(2, 48, 3, 8, 12)
    ctx = torch.randn(2, model.config.text_len, model.config.text_dim)
    sigma = torch.tensor([0.7, 0.25])
    with torch.no_grad():
        ours = model(x, sigma, ctx)
        theirs = ref(x, sigma * 1000, ctx, return_dict=False)[0]
    assert ours.shape == x.shape
    assert (ours - theirs).abs().max() < 1e-5


def test_matches_diffusers_per_token_timestep(pair):
    model, ref = pair
    x = torch.randn(1, 48, 3, 8, 12)
    ctx = torch.randn(1, model.config.text_len, model.config.text_dim)
    n = 3 * 4 * 6
    sigma = torch.rand(1, n)
    sigma[:, : n // 3] = 0  # TI2V: first latent frame clean
    with torch.no_grad():
        ours = model(x, sigma, ctx)
        theirs = ref(x, sigma * 1000, ctx, return_dict=False)[0]
    assert (ours - theirs).abs().max() < 1e-5


def test_per_frame_timestep_equals_per_token(pair):
    model, _ = pair
    x = torch.randn(1, 48, 3, 8, 12)
    ctx = [torch.randn(7, model.config.text_dim)]
    per_frame = torch.tensor([[0.0, 0.5, 0.5]])
    with torch.no_grad():
        a = model(x, per_frame, ctx)
        b = model(x, per_frame.repeat_interleave(24, dim=1), ctx)
    assert torch.equal(a, b)


def test_variable_length_text_list_equals_zero_padded_tensor(pair):
    model, _ = pair
    x = torch.randn(2, 48, 1, 4, 4)
    a_txt, b_txt = torch.randn(5, 32), torch.randn(9, 32)
    padded = torch.zeros(2, 32, 32)
    padded[0, :5], padded[1, :9] = a_txt, b_txt
    with torch.no_grad():
        assert torch.equal(model(x, 0.5, [a_txt, b_txt]), model(x, 0.5, padded))


def test_batch_matches_single_samples_with_history():
    model = randomize(YumeTransformer.from_config("tiny"), std=0.1).eval()
    x, history = torch.randn(2, 48, 2, 8, 8), torch.randn(2, 48, 13, 8, 8)
    ctx = torch.randn(2, 32, 32)
    with torch.no_grad():
        both = model(x, torch.tensor([0.9, 0.4]), ctx, history)
        one = model(x[1:], torch.tensor([0.4]), ctx[1:], history[1:])
    assert (both[1:] - one).abs().max() < 1e-5


def test_history_changes_output_and_full_policy_runs():
    model = randomize(YumeTransformer.from_config("tiny"), std=0.1).eval()
    x, history, ctx = torch.randn(1, 48, 2, 8, 8), torch.randn(1, 48, 4, 8, 8), torch.randn(1, 32, 32)
    with torch.no_grad():
        plain = model(x, 0.5, ctx)
        rel = model(x, 0.5, ctx, history)
        full = model(x, 0.5, ctx, history, policy="full")
    assert not torch.allclose(plain, rel) and not torch.allclose(rel, full)


def test_plain_wan_rejects_release_policy():
    model = YumeTransformer.from_config("tiny-wan").eval()
    x, history, ctx = torch.randn(1, 48, 1, 4, 4), torch.randn(1, 48, 3, 4, 4), torch.randn(1, 32, 32)
    with pytest.raises(ValueError, match="patch_embedding_2x"):
        model(x, 0.5, ctx, history, policy="release")
    assert model(x, 0.5, ctx, history).shape == x.shape  # a plain Wan model defaults to the 'full' policy


def test_bad_inputs_name_the_problem():
    model = YumeTransformer.from_config("tiny").eval()
    with pytest.raises(ValueError, match=r"\[B, 48, F, H, W\]"):
        model(torch.randn(1, 16, 1, 4, 4), 0.5, torch.randn(1, 32, 32))
    with pytest.raises(ValueError, match="more than text_len=32"):
        model(torch.randn(1, 48, 1, 4, 4), 0.5, [torch.randn(40, 32)])
    with pytest.raises(ValueError, match="timesteps of shape"):
        model(torch.randn(1, 48, 2, 4, 4), torch.rand(1, 5), torch.randn(1, 32, 32))
    with pytest.raises(ValueError, match="multiples of the patch size"):
        model(torch.randn(1, 48, 1, 5, 4), 0.5, torch.randn(1, 32, 32))


def test_rope_positions_past_1024_frames():
    from yume.models.layers import rope_angles

    pos = torch.tensor([[5000, 3, 7]])
    angles = rope_angles(pos, 128)
    assert angles.shape == (1, 64)
    assert angles[0, 0].item() == 5000.0  # the first frame frequency is θ^0 = 1


def read_spec():
    keys = {}
    for line in SPEC.read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape, _ = line.split("\t")
        keys[key] = tuple(int(s) for s in shape.split("x"))
    return keys


def test_yume_5b_on_meta_has_the_released_keys_and_shapes():
    model = YumeTransformer.from_config("yume-5b", device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == read_spec()
    assert sum(p.numel() for p in model.parameters()) == 5_200_377_072


def test_yume_5b_parameter_split():
    wan = YumeTransformer.from_config("wan2.2-ti2v-5b", device="meta")
    assert sum(p.numel() for p in wan.parameters()) == 4_999_787_712


# --- release packing ----------------------------------------------------------------------------------------------


def reference_kernels(n):
    """Per-segment (frames, total kernel) straight from release.md's table, written independently of history.py."""
    if n <= 2:
        return [([0], 2), ([n - 1], 4), ([n - 1], 2)]
    if n <= 6:
        return [([0], 2), (list(range(1, n - 1)), 4), ([n - 1], 2)]
    last = [(list(range(n - 5, n - 3)), 4), (list(range(n - 3, n)), 2)]
    if n <= 22:
        return [([0], 2), (list(range(1, n - 5)), 8)] + last
    last = [(list(range(n - 21, n - 5)), 8)] + last
    if n <= 86:
        return [([0], 2), (list(range(1, n - 21)), 16)] + last
    last = [(list(range(n - 85, n - 21)), 16)] + last
    if n <= 342:
        return [([0], 4), (list(range(1, n - 85)), 32)] + last
    return [([0], 4), (list(range(1, n - 341)), "4+32"), (list(range(n - 341, n - 85)), 32)] + last


def tokens_per_frame(kernel, h, w):
    if kernel == "4+32":
        h, w = math.ceil(h / 4), math.ceil(w / 4)
        kernel = 32
    return math.ceil(h / kernel) * math.ceil(w / kernel)


FRAME_COUNTS = [1, 2, 3, 5, 6, 7, 13, 22, 23, 85, 86, 87, 341, 342, 343, 1365, 1366, 1367, 5000]


@pytest.mark.parametrize("resolution", [(704, 1280), (544, 960)])
def test_release_packing_counts_and_positions(resolution):
    model = YumeTransformer.from_config("yume-5b", device="meta")
    h, w = resolution[0] // 16, resolution[1] // 16
    convs = model.history_convs()
    for n in FRAME_COUNTS:
        plan = hist.release_plan(n)
        positions, offset = hist.plan_positions(plan, convs, h, w)
        if n > 1366:
            assert hist.count_tokens(plan, convs, h, w) == model.num_history_tokens(1366, h, w)
            assert offset == 1366
            frames = [f for s in plan for f in s.frames]
            assert frames[0] == 0 and frames[-341:] == list(range(n - 341, n)) and frames == sorted(set(frames))
            continue
        expected_segments = reference_kernels(n)
        expected_segments = [(f, k) for f, k in expected_segments if f]
        assert [list(s.frames) for s in plan] == [f for f, _ in expected_segments]
        expected = sum(len(f) * tokens_per_frame(k, h, w) for f, k in expected_segments)
        assert model.num_history_tokens(n, h, w) == expected
        assert positions.shape == (expected, 3)
        # frame positions count segments' frames in order; rows/cols index each segment's own grid
        frame_pos = 0
        start = 0
        for frames, k in expected_segments:
            per = tokens_per_frame(k, h, w)
            block = positions[start : start + len(frames) * per]
            assert block[:, 0].tolist() == [frame_pos + i for i in range(len(frames)) for _ in range(per)]
            assert block[:, 1].max().item() + 1 == (math.ceil(h / (4 if k == "4+32" else 1) / (32 if k == "4+32" else k)))
            start += len(frames) * per
            frame_pos += len(frames)
        assert offset == frame_pos
        if n not in (1, 2):
            assert offset == n  # no frame is duplicated, so positions equal latent indices


def test_release_token_counts_of_release_md():
    model = YumeTransformer.from_config("yume-5b", device="meta")
    counts = {n: model.num_history_tokens(n, 44, 80) for n in (5, 13, 85, 341, 1365)}
    assert counts == {5: 2420, 13: 4380, 85: 5865, 341: 6750, 1365: 7779}


def test_history_token_count_is_bounded():
    model = YumeTransformer.from_config("yume-5b", device="meta")
    bound = model.num_history_tokens(1366, 44, 80)
    assert all(model.num_history_tokens(n, 44, 80) <= bound for n in (2000, 10_000, 100_000))


def test_coarse_kernel_init_keeps_flat_response():
    model = YumeTransformer.from_config(ModelConfig(dim=32, ffn_dim=64, num_layers=1, num_heads=2, text_dim=8, freq_dim=8))
    flat = torch.ones(1, 48, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        base = model.patch_embedding.double()(flat)[0, :, 0, 0, 0]
        coarse = model.patch_embedding_16x.double()(flat)[0, :, 0, 0, 0]
    assert torch.allclose(base, coarse, atol=1e-6)
