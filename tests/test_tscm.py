import math

import numpy as np
import pytest
import reference
import torch

from yume import YumeTransformer
from yume.config import model_config
from yume.models import history as hist
from yume.models import tscm
from yume.models.weights import CheckpointError


def randomize(model, std=0.1, seed=0):
    """Random weights everywhere except the memory branch (which keeps its init, FC up zero)."""
    return reference.randomize(model, std, seed, skip="memory")


def inputs(frames=13, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, 48, 2, 8, 8, generator=g),
        torch.randn(1, 48, frames, 8, 8, generator=g),
        torch.randn(1, 32, 32, generator=g),
    )


# --- sampler and plan ---------------------------------------------------------------------------------------------


def test_sampler_keeps_newest_frames_and_is_deterministic_at_inference():
    policy = tscm.TSCMPolicy()
    for n in range(1, 600):
        kept = policy.frames(n)
        assert kept[-3:] == list(range(max(0, n - 3), n))
        assert kept[0] == 0 and kept == sorted(set(kept))
        assert kept == policy.frames(n)
    # inference offset 0: the frame just before the newest three, then every 8th back
    assert policy.frames(40) == [0, 4, 12, 20, 28, 36, 37, 38, 39]


def test_sampler_offset_is_random_in_training_and_seeded():
    draws = [tscm.TSCMPolicy(generator=torch.Generator().manual_seed(s)).frames(100) for s in range(20)]
    assert len({tuple(d) for d in draws}) > 1
    for kept in draws:
        assert kept[-3:] == [97, 98, 99] and kept[0] == 0
        older = kept[1:-3]
        assert all(b - a == 8 for a, b in zip(older, older[1:]))
        assert 96 - 8 < older[-1] <= 96
    again = tscm.TSCMPolicy(generator=torch.Generator().manual_seed(3)).frames(100)
    assert again == draws[3]


def test_plan_rates_follow_distance_in_kept_frames():
    policy = tscm.TSCMPolicy(thresholds=(2, 6, 23))
    plan = policy.plan(400)
    kept = policy.frames(400)
    rate = {f: s.embeds[0] for s in plan for f in s.frames}
    assert [s.embeds for s in plan] == [(hist.E16,), (hist.E8,), (hist.E4,), (hist.BASE,)]
    for distance, frame in enumerate(reversed(kept)):
        expected = hist.BASE if distance <= 2 else hist.E4 if distance <= 6 else hist.E8 if distance <= 23 else hist.E16
        assert rate[frame] == expected
    assert hist.history_plan("tscm", 400) == plan


@pytest.mark.parametrize("bad", [dict(thresholds=(2, 2, 5)), dict(thresholds=(1, 2)), dict(stride=0), dict(max_frames=10)])
def test_bad_policy_settings_raise(bad):
    with pytest.raises(ValueError, match="TSCM"):
        tscm.TSCMPolicy(**bad)


def test_token_counts_bounded_up_to_10000_history_latents():
    model = YumeTransformer.from_config("yume-5b", device="meta")
    convs = model.history_convs("tscm")
    h, w = 44, 80  # 704×1280
    per_frame = {name: math.prod(hist.segment_grid(hist.Segment((0,), (name,)), convs, h, w)) for name in tscm.RATE_EMBEDS}
    assert per_frame == {hist.BASE: 880, hist.E4: 220, hist.E8: 60, hist.E16: 15}
    bound = 3 * 880 + 4 * 220 + 17 * 60 + (64 - 24) * 15
    memory_bound = tscm.MEMORY_WINDOWS * 11 * 20
    counts = []
    for n in [*range(1, 1200), *range(1200, 10_000, 37), 10_000]:
        plan = hist.history_plan("tscm", n)
        counts.append(hist.count_tokens(plan, convs, h, w))
        _, offset = hist.plan_positions(plan, convs, 1, 1)
        assert offset <= 64  # the chunk's RoPE frame position stays bounded
        assert len(tscm.memory_windows(n)) * 11 * 20 <= memory_bound
    assert max(counts) == counts[-1] == bound == 5140


def test_memory_tokens_of_10000_latents_are_capped_and_end_at_the_newest():
    conv = tscm.make_memory_embedding(48, 96)
    history = torch.zeros(1, 48, 10_000, 4, 4)
    history[:, :, -8:] = 1.0
    with torch.no_grad():
        tokens = tscm.memory_tokens(history, conv)
        newest = conv(torch.ones(1, 48, 8, 4, 4)).flatten()
    assert tokens.shape == (1, tscm.MEMORY_WINDOWS, 96)
    assert torch.allclose(tokens[0, -1], newest)  # the last window is exactly the newest 8 latents


def test_memory_tokens_pad_the_oldest_window_with_zeros():
    conv = tscm.make_memory_embedding(48, 96)
    history = torch.randn(1, 48, 5, 6, 6)  # 5 image latents, 6×6 -> padded to 8×8
    with torch.no_grad():
        tokens = tscm.memory_tokens(history, conv)
        padded = torch.zeros(1, 48, 8, 8, 8)
        padded[:, :, 3:, :6, :6] = history
        expected = conv(padded).flatten(2).transpose(1, 2)
    assert tokens.shape == (1, 4, 96)
    assert torch.allclose(tokens, expected)


# --- linear attention ---------------------------------------------------------------------------------------------


def test_linear_attention_equals_quadratic_form_in_float64():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 3, 5, generator=g, dtype=torch.float64) for n in (7, 11, 11))
    a = torch.einsum("bqhd,bkhd->bhqk", q.relu(), k.relu())  # explicit [Lq, Lk] scores
    expected = torch.einsum("bhqk,bkhd->bqhd", a / (a.sum(-1, keepdim=True) + 1e-6), v)
    out = tscm.linear_attention(q, k, v, eps=1e-6)
    assert out.dtype == torch.float64 and (a.sum(-1) == 0).any()  # includes a query that sees no key
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_linear_attention_is_stable_in_bf16_over_many_large_keys():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, n, 1, 96, generator=g) * 300 for n in (16, 50_000, 50_000))
    out = tscm.linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    ref = tscm.linear_attention(q.bfloat16().double(), k.bfloat16().double(), v.bfloat16().double())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.double() - ref).abs().max() <= 0.02 * ref.abs().max()


def test_linear_attention_query_seeing_no_key_gives_zero():
    q = -torch.ones(1, 2, 1, 4)
    k, v = torch.ones(1, 3, 1, 4), torch.randn(1, 3, 1, 4)
    assert torch.equal(tscm.linear_attention(q, k, v), torch.zeros(1, 2, 1, 4))


# --- the memory branch in the model -------------------------------------------------------------------------------


def test_zero_init_memory_branch_is_identity_on_release_policy():
    model = randomize(YumeTransformer.from_config("tiny")).eval()
    x, history, ctx = inputs()
    with torch.no_grad():
        release = model(x, 0.5, ctx, history, policy="release")
        tscm.enable_memory(model, dim=96)
        with_memory = model(x, 0.5, ctx, history, policy="release")
        memory_read = model.blocks[0].memory.down.weight.abs().sum()
    assert model.config.memory_dim == 96 and memory_read > 0
    assert torch.equal(release, with_memory)


def test_memory_on_from_config_equals_memory_off_with_same_weights():
    on = randomize(YumeTransformer.from_config(model_config("tiny").replace(memory_dim=96)))
    off = YumeTransformer.from_config("tiny")
    off.load_state_dict({k: v for k, v in on.state_dict().items() if "memory" not in k})
    x, history, ctx = inputs()
    with torch.no_grad():
        assert torch.equal(on(x, 0.5, ctx, history, policy="tscm"), off(x, 0.5, ctx, history, policy="tscm"))
        assert not torch.equal(off(x, 0.5, ctx, history, policy="tscm"), off(x, 0.5, ctx, history))


def test_gradients_reach_the_memory_parameters():
    model = tscm.enable_memory(randomize(YumeTransformer.from_config("tiny")))
    x, history, ctx = inputs()
    params = {k: p for k, p in model.named_parameters() if "memory" in k}
    assert len(params) == 2 + model.config.num_layers * 10

    model(x, 0.5, ctx, history, policy="tscm").square().mean().backward()
    # FC up starts at zero, so only it gets a gradient at first: that is what lets training leave the identity.
    assert all(params[f"blocks.{i}.memory.up.weight"].grad.abs().sum() > 0 for i in range(model.config.num_layers))
    with torch.no_grad():
        for p in params.values():
            p -= 1.0 * p.grad
    model.zero_grad()
    model(x, 0.5, ctx, history, policy="tscm").square().mean().backward()
    no_grad = [k for k, p in params.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []


def test_memory_branch_runs_in_bf16():
    model = tscm.enable_memory(randomize(YumeTransformer.from_config("tiny")))
    with torch.no_grad():
        for block in model.blocks:
            block.memory.up.weight.normal_(std=0.1)
    model = model.to(torch.bfloat16).eval()
    assert model.memory_embedding.weight.dtype == torch.bfloat16
    x, history, ctx = inputs(frames=40)
    with torch.no_grad():
        out = model(x, 0.5, ctx, history, policy="tscm")
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_enable_memory_twice_raises():
    model = tscm.enable_memory(YumeTransformer.from_config("tiny"))
    with pytest.raises(ValueError, match="already on"):
        tscm.enable_memory(model)


def test_no_history_skips_memory_so_the_model_is_plain_wan():
    model = randomize(YumeTransformer.from_config("tiny"))
    x, _, ctx = inputs()
    with torch.no_grad():
        before = model(x, 0.5, ctx)
        tscm.enable_memory(model)
        for block in model.blocks:
            block.memory.up.weight.normal_()
        assert torch.equal(before, model(x, 0.5, ctx))


# --- kernels ------------------------------------------------------------------------------------------------------


def test_plain_wan_runs_tscm_with_interpolated_kernels_equal_to_yume_init():
    yume = randomize(YumeTransformer.from_config("tiny")).eval()
    yume.init_history_embeddings()  # coarse embeddings interpolated from the base kernel, as the release did
    wan = YumeTransformer.from_config("tiny-wan").eval()
    wan.load_state_dict({k: v for k, v in yume.state_dict().items() if not k.startswith("patch_embedding_")})
    x, history, ctx = inputs(frames=60)
    with torch.no_grad():
        a = yume(x, 0.5, ctx, history, policy="tscm")
        b = wan(x, 0.5, ctx, history, policy="tscm")
        assert torch.allclose(a, b, atol=1e-5)
        yume.patch_embedding_4x.weight.mul_(3.0)  # a checkpoint's own coarse kernel is used when present
        assert not torch.allclose(a, yume(x, 0.5, ctx, history, policy="tscm"), atol=1e-3)
    assert sum(p.numel() for p in wan.parameters()) == sum(p.numel() for p in YumeTransformer("tiny-wan").parameters())


# --- checkpoints --------------------------------------------------------------------------------------------------


def test_save_load_round_trip_with_memory_on(tmp_path):
    model = tscm.enable_memory(randomize(YumeTransformer.from_config("tiny")).eval())
    with torch.no_grad():
        for block in model.blocks:
            block.memory.up.weight.normal_(std=0.1)
    model.save_pretrained(tmp_path)
    loaded = YumeTransformer.from_pretrained(tmp_path, dtype=torch.float32)
    assert loaded.config.memory_dim == 96
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert "memory_embedding.weight" in loaded.state_dict() and "blocks.1.memory.up.weight" in loaded.state_dict()
    x, history, ctx = inputs()
    with torch.no_grad():
        assert torch.equal(model(x, 0.5, ctx, history, policy="tscm"), loaded(x, 0.5, ctx, history, policy="tscm"))


def test_release_checkpoint_loads_memory_off_and_switches_on_after(tmp_path):
    release = randomize(YumeTransformer.from_config("tiny")).eval()
    release.save_pretrained(tmp_path)
    loaded = YumeTransformer.from_pretrained(tmp_path, dtype=torch.float32)
    assert loaded.config.memory_dim == 0 and not any("memory" in k for k in loaded.state_dict())
    with pytest.raises(CheckpointError, match="no TSCM memory branch"):
        YumeTransformer.from_pretrained(tmp_path, config=loaded.config.replace(memory_dim=96))
    x, history, ctx = inputs()
    with torch.no_grad():
        expected = release(x, 0.5, ctx, history)
        tscm.enable_memory(loaded)
        assert torch.equal(loaded(x, 0.5, ctx, history), expected)


# --- benchmark ----------------------------------------------------------------------------------------------------


def test_bench_history_writes_table_csv_and_png(tmp_path):
    from yume.bench.history import bench_history, format_table, growth, plot, write_csv

    rows = bench_history("tiny", height=64, width=96, chunks=3, dtype=torch.float32)
    assert [(r.policy, r.chunk, r.history_frames) for r in rows][:3] == [("full", 1, 5), ("full", 2, 13), ("full", 3, 21)]
    full = [r.attention_tokens for r in rows if r.policy == "full"]
    assert full == [(5 + 8 * i) * 2 * 3 + 8 * 2 * 3 for i in range(3)]
    assert all(r.memory_tokens > 0 for r in rows if r.policy == "tscm")
    assert all(r.memory_tokens == 0 for r in rows if r.policy != "tscm")
    table = format_table(rows)
    assert "| chunk 3/2 |" in table and "tscm s" in table
    assert set(growth(rows)) == {"full", "release", "tscm"}
    write_csv(rows, tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == (
        "policy,chunk,history_frames,attention_tokens,memory_tokens,seconds,cpu_seconds"
    )
    pytest.importorskip("matplotlib")
    plot(rows, tmp_path / "h.png", "tiny")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_cli_parses_history_subcommand():
    from yume.cli import build_parser

    args = build_parser().parse_args(["bench", "history", "--config", "tiny", "--chunks", "4"])
    assert args.bench == "history" and args.chunks == 4 and args.config == "tiny"


# --- session ------------------------------------------------------------------------------------------------------


def test_world_session_runs_with_tscm_history_and_memory_on(tmp_path, monkeypatch):
    from yume.session import SessionConfig, WorldSession
    from yume.world import WorldModel

    world = WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path)
    tscm.enable_memory(world.dit)
    packed = []
    real_tokens = tscm.memory_tokens
    monkeypatch.setattr(tscm, "memory_tokens", lambda h, conv: packed.append(h.shape[2]) or real_tokens(h, conv))
    config = SessionConfig(height=64, width=64, steps=2, chunk_latents=2, history="tscm")
    chunks = list(WorldSession(world, "A quiet street", config=config).run(["W", "A", "D"]))
    assert [c.frames.shape for c in chunks] == [(5, 64, 64, 3), (8, 64, 64, 3), (8, 64, 64, 3)]
    assert all(np.isfinite(c.frames).all() for c in chunks)
    assert sorted(set(packed)) == [2, 4]  # chunks 2 and 3 read the memory of 2 and 4 history latents
