import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from yume.actions import Action
from yume.data.cache import build_cache
from yume.data.clips import write_clip, write_manifest
from yume.models.wan import YumeTransformer
from yume.train.config import TrainConfig, load_config
from yume.train.dmd import dmd_loss
from yume.train.flow import add_noise, flow_loss, motion_loss
from yume.train.loop import train
from yume.train.self_forcing import (
    Rollout,
    extend_history,
    few_step_sigmas,
    motion_map,
    motion_map_loss,
    real_data_loss,
    real_motion_loss,
    rollout,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from yume.models.text import TextEncoder
    from yume.vae import WanVAE

    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    # A smooth moving gradient, so the clip has structure to learn.
    t, y, x = np.meshgrid(np.arange(17), np.arange(64), np.arange(64), indexing="ij")
    video = np.stack([np.sin(x / 9 + t / 4), np.cos(y / 7 - t / 5), np.sin((x + y) / 11)], -1)
    video = ((video * 0.5 + 0.5) * 255 + rng.normal(0, 4, video.shape)).clip(0, 255).astype(np.uint8)
    clip = write_clip(root, "walk", video, 16, "a sunny square", actions=[Action("W")] * 16)
    write_manifest(root, [clip])
    vae, text = WanVAE.from_config("tiny"), TextEncoder.from_config("tiny", d_model=32, text_len=32)
    build_cache(root, root / "cache", vae, text)
    return root / "cache"


def config(cache, out, *sets) -> TrainConfig:
    base = [f"data.cache={cache}", f"run.out={out}", "data.chunk_latents=2", "data.history_min=1", "data.history_max=3",
            "run.autocast=none", "run.progress=false", "optim.lr=5e-3", "run.save_every=1000"]  # fmt: skip
    return load_config(None, base + list(sets))


def test_config_reads_toml_and_yaml_applies_overrides_and_round_trips(tmp_path):
    (tmp_path / "a.toml").write_text('stage = "flow"\n[data]\ncache = "c"\nmix = [0, 1, 1]\n[run]\nsteps = 7\n')
    (tmp_path / "a.yaml").write_text("data:\n  cache: c\n  mix: [0, 1, 1]\nrun:\n  steps: 7\n")
    a = load_config(tmp_path / "a.toml", ["optim.lr=2e-4", "run.activation_checkpointing=true", "lora.targets=q,v"])
    b = load_config(tmp_path / "a.yaml", ["optim.lr=2e-4", "run.activation_checkpointing=true", "lora.targets=q,v"])
    assert a == b
    assert (a.run.steps, a.optim.lr, a.data.mix, a.lora.targets) == (7, 2e-4, (0.0, 1.0, 1.0), ("q", "v"))
    a.save(tmp_path / "saved.toml")
    assert load_config(tmp_path / "saved.toml") == a


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.steps=ten", "config run.steps = 'ten': expected int"),
        ("run.stepz=10", "unknown keys ['stepz'] in [run]"),
        ("data.mix=1,0", "config data.mix = ['1', '0']: expected 3 values"),
        ("run.parallel=zero", "config run.parallel = 'zero': must be one of"),
        ("optim.lr=0", "config optim.lr = 0.0: must be > 0"),
        ("self_forcing.prefix_chunks=-1", "config self_forcing.prefix_chunks = -1: must be >= 0"),
        ("self_forcing.real_pool=0", "config self_forcing.real_pool = 0: must be >= 1"),
        ("self_forcing.real_motion_weight=-1", "config self_forcing.real_motion_weight = -1.0: must be >= 0"),
        (
            "self_forcing.real_motion_weight=1 data.chunk_latents=1",
            "real_motion_weight = 1.0: must be 0 when data.chunk",
        ),
        ("data.history_stride=0", "config data.history_stride = 0: must be >= 1"),
        ("flow.motion_weight=-0.5", "config flow.motion_weight = -0.5: must be >= 0"),
        ("flow.motion_weight=2 data.chunk_latents=1", "flow.motion_weight = 2.0: must be 0 when data.chunk_latents < 2"),
    ],
)
def test_config_errors_name_the_key_and_value(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, ["data.cache=c", *override.split()])


def test_flow_loss_falls_over_50_steps_on_a_fixed_batch(cache, tmp_path):
    # One clip, v2v only with a fixed history length: the same batch every step (only σ and noise vary).
    cfg = config(cache, tmp_path, "run.steps=50", "data.mix=0,0,1", "data.history_min=2", "data.history_max=2")
    losses = [m["loss"] for m in train(cfg)]
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10])
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == list(range(1, 51))
    assert {"loss", "grad_norm", "lr", "samples_per_s"} <= set(logged[0])


def test_flow_motion_loss_charges_the_implied_chunks_motion_not_its_content():
    torch.manual_seed(0)
    scene = torch.randn(2, 4, 1, 8, 16)
    x = torch.cat([scene.roll(-t, dims=-1) for t in range(4)], dim=2)[..., :8]  # a view panning a column a frame
    noise, sigma = torch.randn_like(x), torch.tensor([0.3, 0.8])
    x_t = add_noise(x, noise, sigma)
    s = sigma.view(-1, 1, 1, 1, 1)

    def velocity(x_hat):  # the velocity whose clean-chunk estimate x_t − σ·v is x_hat
        return (x_t - x_hat) / s

    # Made-up content, the same in every frame: the flow loss sees it, the motion term does not.
    content = velocity(x + torch.randn(2, 4, 1, 8, 8))
    assert motion_loss(content, x, noise, sigma).item() < 1e-10
    assert flow_loss(content, x, noise).item() > 0.5
    # A view that stands still is charged exactly the MSE of the true chunk's frame-to-frame changes ...
    still = velocity(x[:, :, :1].expand_as(x))
    torch.testing.assert_close(motion_loss(still, x, noise, sigma), (x.diff(dim=2) ** 2).mean())
    # ... one that pans the other way more; the exact velocity nothing.
    back = velocity(torch.cat([scene.roll(t, dims=-1) for t in range(4)], dim=2)[..., :8])
    assert motion_loss(still, x, noise, sigma) < motion_loss(back, x, noise, sigma)
    assert motion_loss(noise - x, x, noise, sigma).item() == 0.0


def test_flow_stage_with_a_motion_term_logs_both_parts(cache, tmp_path):
    history = train(config(cache, tmp_path, "run.steps=3", "flow.motion_weight=2"))
    for m in history:
        assert m["motion_loss"] > 0 and m["flow_loss"] > 0
        assert m["loss"] == pytest.approx(m["flow_loss"] + 2 * m["motion_loss"], rel=1e-5)
    logged = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert {"flow_loss", "motion_loss"} <= set(logged)


class Kill(Exception):
    pass


def test_killed_and_resumed_run_gives_the_same_losses(cache, tmp_path):
    sets = ("run.steps=6", "run.ema_decay=0.9", "optim.warmup_steps=3")
    straight = [m["loss"] for m in train(config(cache, tmp_path / "a", *sets))]

    def kill_at_5(m):
        if m["step"] == 5:
            raise Kill

    with pytest.raises(Kill):
        train(config(cache, tmp_path / "b", *sets, "run.save_every=2"), callback=kill_at_5)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    resumed = train(config(cache, tmp_path / "b", *sets, "run.save_every=2"))
    assert [m["step"] for m in resumed] == [5, 6]
    assert [m["loss"] for m in resumed] == straight[4:]
    final_a = YumeTransformer.from_pretrained(
        tmp_path / "a/checkpoints/step-0000006/generator/ema", dtype=torch.float32
    )
    final_b = YumeTransformer.from_pretrained(
        tmp_path / "b/checkpoints/step-0000006/generator/ema", dtype=torch.float32
    )
    for (k, p), q in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        assert torch.equal(p, q), k


def test_run_stops_at_max_minutes_with_a_checkpoint_and_resumes_from_it(cache, tmp_path):
    import time

    sets = ("run.steps=1000", "run.max_minutes=0.002")  # 120 ms; each step below takes at least 50 ms
    done = train(config(cache, tmp_path, *sets), callback=lambda m: time.sleep(0.05))
    last = done[-1]["step"]
    assert 1 <= last < 50  # stopped long before step 1000, however slow the machine
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [f"step-{last:07d}"]
    resumed = train(config(cache, tmp_path, "run.steps=" + str(last + 2)))
    assert [m["step"] for m in resumed] == [last + 1, last + 2]


def test_run_stops_when_its_stop_file_appears(cache, tmp_path):
    stop = tmp_path / "STOP"

    def touch_at_3(m):
        if m["step"] == 3:
            stop.touch()

    done = train(config(cache, tmp_path / "run", "run.steps=1000", f"run.stop_file={stop}"), callback=touch_at_3)
    assert done[-1]["step"] == 3
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-0000003"]


def test_lora_trains_adapters_and_exports_merged_weights(cache, tmp_path):
    # LoRA starts from trained weights; a random init's zero output layer would pass no gradient to the blocks.
    init = YumeTransformer.from_config("tiny", seed=0)
    torch.nn.init.normal_(init.head.head.weight, std=0.05)
    init.save_pretrained(tmp_path / "base")
    cfg = config(cache, tmp_path, "run.steps=3", "lora.rank=4", "lora.alpha=8", "lora.targets=q,v,ffn.0",
                 f"model.weights={tmp_path / 'base'}")  # fmt: skip
    assert train(cfg)[-1]["grad_norm"] > 0
    out = tmp_path / "checkpoints/step-0000003/generator"
    merged = YumeTransformer.from_pretrained(out / "original", dtype=torch.float32)
    diffusers = YumeTransformer.from_pretrained(out / "diffusers", dtype=torch.float32)
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, init.state_dict()[k])}
    targets = ("self_attn.q", "self_attn.v", "cross_attn.q", "cross_attn.v", "ffn.0")
    assert changed == {f"blocks.{i}.{n}.weight" for i in range(2) for n in targets}
    for k, v in merged.state_dict().items():
        assert torch.equal(v, diffusers.state_dict()[k]), k


def test_dmd_generator_update_moves_a_gaussian_toward_the_real_one():
    # Real data N(2, 0.5²); generator x = a + b·z starts at N(0, 1). The denoisers are exact for Gaussians:
    # E[x0 | x_t] = m + (1 − t)s² / ((1 − t)²s² + t²) · (x_t − (1 − t)m) for data N(m, s²).
    def x0(x_t, t, m, s):
        return m + (1 - t) * s**2 / ((1 - t) ** 2 * s**2 + t**2) * (x_t - (1 - t) * m)

    a, log_b = torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([a, log_b], lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        x = a + log_b.exp() * torch.randn(512, 1, generator=g)
        t = torch.rand(512, 1, generator=g) * 0.96 + 0.02
        x_t = (1 - t) * x.detach() + t * torch.randn(512, 1, generator=g)
        real, fake = x0(x_t, t, 2.0, 0.5), x0(x_t, t, a.detach(), log_b.exp().detach())
        opt.zero_grad()
        dmd_loss(x, real, fake).backward()
        opt.step()
    assert abs(a.item() - 2.0) < 0.02, a.item()
    assert abs(log_b.exp().item() - 0.5) < 0.02, log_b.exp().item()


def spied_model():
    """A tiny DiT, a wrapper that calls it, and the list of (grad enabled, history latents) of each call."""
    model, calls = YumeTransformer.from_config("tiny", seed=0), []

    def spy(x, sigma, context, history, policy):
        calls.append((torch.is_grad_enabled(), 0 if history is None else history.shape[2]))
        return model(x, sigma, context, history, policy=policy)

    return model, spy, calls


def test_rollout_keeps_the_graph_of_one_step_per_chunk_and_feeds_its_own_outputs_back():
    _, spy, calls = spied_model()
    noise = [torch.randn(1, 48, 2, 4, 4) for _ in range(3)]
    ctx = [[torch.randn(5, 32)]] * 3
    out = rollout(spy, noise, ctx, torch.randn(1, 48, 1, 4, 4), few_step_sigmas(4, 7.0), [3, 0, 1], policy="release")
    assert calls == [(False, 1), (False, 1), (False, 1), (True, 1), (True, 3), (False, 5), (True, 5)]
    assert all(c.requires_grad for c in out.chunks)
    assert not out.histories[2].requires_grad
    torch.testing.assert_close(out.histories[2][:, :, 1:3], out.chunks[0].detach())
    torch.testing.assert_close(
        few_step_sigmas(4, 7.0)[:4], torch.tensor([1.0, 0.954545, 0.875, 0.7]), atol=1e-5, rtol=0
    )


def test_extend_history_appends_fully_denoised_chunks_without_gradient():
    model, spy, calls = spied_model()
    noise = [torch.randn(1, 48, 2, 4, 4) for _ in range(2)]
    ctx = [[torch.randn(5, 32)]] * 2
    history = torch.randn(1, 48, 1, 4, 4)
    sigmas = few_step_sigmas(4, 7.0)
    out = extend_history(spy, noise, ctx, history, sigmas, policy="release")
    assert calls == [(False, 1)] * 4 + [(False, 3)] * 4
    assert out.shape[2] == 5 and not out.requires_grad
    torch.testing.assert_close(out[:, :, :1], history)
    # The first appended chunk is what the 4-step Euler sampler of inference makes from its noise on that history.
    x = noise[0]
    with torch.no_grad():
        for i in range(4):
            x = x + (sigmas[i + 1] - sigmas[i]) * model(x, sigmas[i].expand(1), ctx[0], history, policy="release")
    torch.testing.assert_close(out[:, :, 1:3], x)
    assert extend_history(spy, [], [], history, sigmas, policy="release") is history


def test_self_forcing_stage_trains_generator_and_critic(cache, tmp_path):
    cfg = config(cache, tmp_path, "run.steps=3", "self_forcing.chunks=2", "self_forcing.critic_ratio=2",
                 "self_forcing.guidance=3")  # fmt: skip
    history = train(cfg.replace(stage="self-forcing"))
    assert ["dmd_loss" in m for m in history] == [True, False, True]
    assert all(np.isfinite(m["loss"]) for m in history)
    # Step 1 starts with fake = real, so the DMD gradient is exactly 0; by step 3 the critic has moved.
    assert history[0]["grad_norm"] == 0.0 and history[2]["grad_norm"] > 0
    assert YumeTransformer.from_pretrained(tmp_path / "checkpoints/step-0000003/generator/original").config.dim == 64


def test_real_data_loss_sees_where_things_are_not_their_detail():
    torch.manual_seed(0)
    target = torch.randn(1, 4, 2, 8, 8)
    out = Rollout([target.clone(), target + 0.5], [None, None], [0, 0])
    # Chunk 1 is exact (0), chunk 2 is off by 0.5 everywhere (0.25): the mean over chunks is 0.125.
    torch.testing.assert_close(real_data_loss(out, [target, target], pool=2), torch.tensor(0.125))
    # Detail moved inside each 2 x 2 cell leaves the pooled chunk, and the loss, unchanged ...
    swapped = target.clone()
    swapped[..., 0::2, :], swapped[..., 1::2, :] = target[..., 1::2, :], target[..., 0::2, :]
    out = Rollout([swapped], [None], [0])
    assert real_data_loss(out, [target], pool=2).item() < 1e-12
    # ... but not without pooling, and a view shifted by a whole cell is a loss either way.
    assert real_data_loss(out, [target], pool=1).item() > 0.5
    assert real_data_loss(Rollout([target.roll(2, dims=-1)], [None], [0]), [target], pool=2).item() > 0.1


def test_real_motion_loss_sees_the_motion_not_the_content():
    torch.manual_seed(0)
    scene = torch.randn(1, 4, 1, 8, 16)
    # The true chunk: a view panning one latent column a frame; kept to the first 8 columns so it has no wrap seam.
    target = torch.cat([scene.roll(-t, dims=-1) for t in range(4)], dim=2)[..., :8]
    # Content the rollout made up (the same offset in every frame) moves as the truth does: no motion loss, though
    # the frame term sees it.
    offset = target + torch.randn(1, 4, 1, 8, 8)
    out = Rollout([offset], [None], [0])
    assert real_motion_loss(out, [target], pool=1).item() < 1e-10
    assert real_data_loss(out, [target], pool=1).item() > 0.5
    # A view that stands still, or pans the other way, is a loss; the wrong way more than standing.
    still = Rollout([target[:, :, :1].expand_as(target)], [None], [0])
    back = Rollout([torch.cat([scene.roll(t, dims=-1) for t in range(4)], dim=2)[..., :8]], [None], [0])
    assert 0.1 < real_motion_loss(still, [target], pool=1) < real_motion_loss(back, [target], pool=1)
    # Pooled like the frame term: the change of each 2 x 2 cell's mean.
    pooled = F.avg_pool3d(target, (1, 2, 2))
    expected = F.mse_loss(torch.zeros_like(pooled[:, :, 1:]), pooled[:, :, 1:] - pooled[:, :, :-1])
    torch.testing.assert_close(real_motion_loss(still, [target], pool=2), expected)


def test_motion_map_loss_sees_where_the_view_moves_not_what_it_shows():
    torch.manual_seed(0)

    def pan(scene: torch.Tensor, rows: slice) -> torch.Tensor:
        """4 latent frames of `scene` [1, 4, 1, 16, 24] whose rows `rows` pan one column a frame, the rest still."""
        frames = []
        for t in range(4):
            frame = scene.clone()
            frame[..., rows, :] = scene[..., rows, :].roll(-t, dims=-1)
            frames.append(frame)
        return torch.cat(frames, dim=2)[..., :16]

    scene, other = torch.randn(1, 4, 1, 16, 24), torch.randn(1, 4, 1, 16, 24)
    turn, step = pan(scene, slice(None)), pan(scene, slice(8, None))  # a turn moves it all; a step the near half
    # Other content moving in the same regions costs little; the far view moving where it should stand costs a lot.
    same_motion = motion_map_loss(Rollout([pan(other, slice(8, None))], [None], [0]), [step])
    far_moved = motion_map_loss(Rollout([turn], [None], [0]), [step])
    assert motion_map_loss(Rollout([step], [None], [0]), [step]).item() == 0.0
    assert same_motion < 0.1 and far_moved > 10 * same_motion and far_moved > 1.0
    # The map itself: log of the mean square change of each of the 4 x 4 regions (the step's far rows: 0 + eps).
    assert motion_map(step).shape == (1, 4, 4)
    torch.testing.assert_close(motion_map(step)[0, :2], torch.full((2, 4), math.log(1e-3)))
    change = (step[:, :, 1:] - step[:, :, :-1]).pow(2).mean(dim=(1, 2))[0, 8:12, 4:8].mean()
    torch.testing.assert_close(motion_map(step)[0, 2, 1], torch.log(change + 1e-3))


def test_self_forcing_real_term_rolls_out_the_clips_own_actions_against_their_continuation(cache, tmp_path):
    from yume.data.cache import LatentCache
    from yume.data.loader import LatentLoader

    lc = LatentCache(cache)
    loader = LatentLoader(lc, batch_size=1, chunk=2, history_min=1, history_max=3, mix=(0, 0, 1), lookahead=2)
    batch = loader.batch(0)
    targets, contexts = loader.continuation(batch, 2)
    clip = lc.clips[0]
    x = lc.latents(clip)
    for k in range(2):
        begin = batch.start + 2 * k
        torch.testing.assert_close(targets[k][0], x[:, begin : begin + 2])
        torch.testing.assert_close(contexts[k][0], lc.compose(loader.chunk_action(clip, begin), batch.scenes[0]))
    torch.testing.assert_close(targets[0], batch.latents)  # the first chunk is the batch's own
    with pytest.raises(ValueError, match="3 chunks of continuation asked of a loader built with lookahead=2"):
        loader.continuation(batch, 3)
    # In training: the real term is logged on the generator's turns (every step here), beside the DMD loss.
    cfg = config(cache, tmp_path, "run.steps=2", "self_forcing.chunks=2", "self_forcing.critic_ratio=1",
                 "self_forcing.real_weight=1", "self_forcing.real_motion_weight=2",
                 "self_forcing.real_motion_map_weight=0.5", "data.mix=0,1,1")  # fmt: skip
    history = train(cfg.replace(stage="self-forcing"))
    assert all(m["real_loss"] > 0 and m["real_motion_loss"] > 0 and np.isfinite(m["dmd_loss"]) for m in history)
    assert all(m["motion_map_loss"] > 0 for m in history)
    with pytest.raises(ValueError, match=r"map_weight = \(0.0, 1.0, 0.0\): must be all 0 when self_forcing"):
        load_config(None, ["data.cache=c", "self_forcing.real_motion_weight=1", "self_forcing.prefix_chunks=2"])
    with pytest.raises(ValueError, match=r"= \(0.0, 0.0, 2.0\): must be all 0 when self_forcing.prefix"):
        load_config(None, ["data.cache=c", "self_forcing.real_motion_map_weight=2", "self_forcing.prefix_chunks=2"])


def test_self_forcing_with_prefix_chunks_trains_after_its_own_rollout(cache, tmp_path):
    cfg = config(cache, tmp_path, "run.steps=4", "self_forcing.chunks=1", "self_forcing.critic_ratio=2",
                 "self_forcing.prefix_chunks=2")  # fmt: skip
    history = train(cfg.replace(stage="self-forcing"))
    # The prefix length is drawn after the exit steps from the step's shared generator, the same on every rank.
    drawn = []
    for m in history:
        shared = np.random.default_rng([0, m["step"] - 1, 3])
        shared.integers(0, 4, 1)
        drawn.append(int(shared.integers(0, 3)))
    assert [m["prefix"] for m in history] == drawn and len(set(drawn)) > 1
    assert all(np.isfinite(m["loss"]) for m in history)


def test_torchrun_fsdp_two_processes_and_its_checkpoint_loads_in_one(cache, tmp_path):
    args = [f"--set=data.cache={cache}", f"--set=run.out={tmp_path}", "--set=data.chunk_latents=2",
            "--set=data.history_min=1", "--set=run.autocast=none", "--set=run.progress=false", "--set=run.steps=2",
            "--set=run.parallel=fsdp", "--set=run.ema_decay=0.5"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29533", "-m", "yume.cli",
           "train", "flow", *args]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 2/2" in done.stdout
    step = tmp_path / "checkpoints/step-0000002"
    assert sorted(p.name for p in (step / "state").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    full = YumeTransformer.from_pretrained(step / "generator/original", dtype=torch.float32)
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in YumeTransformer("tiny").parameters())
    # The sharded training state resumes in one process: it continues from step 2 with the gathered weights.
    resumed = train(load_config(None, [a.removeprefix("--set=") for a in args] + ["run.steps=3", "run.parallel=none"]))
    assert [m["step"] for m in resumed] == [3]
    before = YumeTransformer.from_pretrained(step / "generator/original", dtype=torch.float32).state_dict()
    after = YumeTransformer.from_pretrained(
        tmp_path / "checkpoints/step-0000003/generator/original", dtype=torch.float32
    )
    assert not torch.equal(before["blocks.0.self_attn.q.weight"], after.state_dict()["blocks.0.self_attn.q.weight"])


def test_torchrun_fsdp_with_lora_changes_only_the_adapted_layers(cache, tmp_path):
    init = YumeTransformer.from_config("tiny", seed=0)
    with torch.no_grad():  # a zero output layer (Wan's init) would pass no gradient to the adapters
        init.head.head.weight.normal_(0, 0.02)
    init.save_pretrained(tmp_path / "init")
    sets = [f"data.cache={cache}", f"run.out={tmp_path / 'run'}", "data.chunk_latents=2", "data.history_min=1",
            "run.autocast=none", "run.progress=false", "run.steps=2", "run.parallel=fsdp", "lora.rank=4",
            "lora.targets=q,v", f"model.weights={tmp_path / 'init'}", "optim.lr=1e-2", "optim.warmup_steps=0",
            f"run.stop_file={tmp_path / 'never'}"]  # fmt: skip  (rank 0 broadcasts 'go on' each step)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29535", "-m", "yume.cli",
           "train", "flow", *(f"--set={s}" for s in sets)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    before = YumeTransformer.from_pretrained(tmp_path / "init", dtype=torch.float32).state_dict()
    merged = YumeTransformer.from_pretrained(tmp_path / "run/checkpoints/step-0000002/generator/original",
                                             dtype=torch.float32).state_dict()  # fmt: skip
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    adapted = {k for k in before if k.endswith((".q.weight", ".v.weight")) and k.startswith("blocks.")}
    assert changed == adapted


def test_torchrun_self_forcing_with_fsdp_and_activation_checkpointing(cache, tmp_path):
    sets = [f"data.cache={cache}", f"run.out={tmp_path}", "data.chunk_latents=2", "data.history_min=1",
            "run.autocast=none", "run.progress=false", "run.steps=3", "run.parallel=fsdp", "optim.lr=5e-3",
            "run.activation_checkpointing=true", "self_forcing.chunks=2", "self_forcing.critic_ratio=2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29534", "-m", "yume.cli",
           "train", "self-forcing", *(f"--set={s}" for s in sets)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [("dmd_loss" in m, m["step"]) for m in logged] == [(True, 1), (False, 2), (True, 3)]
    assert logged[2]["grad_norm"] > 0
    assert (tmp_path / "checkpoints/step-0000003/config.toml").read_text().startswith('stage = "self-forcing"')


def test_action_probe_is_exactly_1_without_a_text_path_and_moves_with_one(cache, tmp_path, capsys):
    """`yume train probe`: the flow loss with the true vs another action caption, same noise and history."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference import randomize

    from yume.cli import main
    from yume.data.cache import LatentCache
    from yume.train.probe import action_probe

    reads = randomize(YumeTransformer.from_config("tiny", seed=0), std=0.1).eval()
    blind = randomize(YumeTransformer.from_config("tiny", seed=0), std=0.1).eval()
    with torch.no_grad():
        for block in blind.blocks:  # cut the only path from the caption to the output
            block.cross_attn.o.weight.zero_()
            block.cross_attn.o.bias.zero_()
    kw = dict(mode="v2v", chunk=2, batches=2, batch_size=2, history_max=3, policy="full")
    assert all(r.ratio == 1.0 for r in action_probe(blind, LatentCache(cache), **kw))
    rows = action_probe(reads, LatentCache(cache), **kw)
    assert [r.sigma for r in rows] == [0.5, 0.8, 0.95] and all(r.loss_true > 0 for r in rows)
    assert all(abs(r.ratio - 1.0) > 1e-4 for r in rows)
    reads.save_pretrained(tmp_path / "dit")
    assert main(["train", "probe", str(tmp_path / "dit"), str(cache), "--mode", "v2v", "--chunk", "2", "--batches", "1",
                 "--history", "full"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("| σ | loss, true action | loss, other action | other / true |") and out.count("\n") == 5
    with pytest.raises(ValueError, match="mode 'x2v'"):
        action_probe(reads, LatentCache(cache), mode="x2v")


def perturbed_model(seed: int) -> YumeTransformer:
    """A tiny DiT whose weights (its zero-initialised output head too) are all off zero, so its velocity is not."""
    model = YumeTransformer.from_config("tiny", seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_teacher_solution_is_the_guided_euler_sampler_of_inference():
    from yume.sampling import cfg_denoiser, get_schedule, sample_euler
    from yume.train.ode import teacher_solution

    model = perturbed_model(0).eval()
    torch.manual_seed(0)
    noise, history = torch.randn(1, 48, 2, 4, 4), torch.randn(1, 48, 1, 4, 4)
    cond, uncond = [torch.randn(5, 32)], [torch.zeros(1, 32)]
    sigmas = get_schedule(6, 3.0)
    got = teacher_solution(model, noise, cond, uncond, history, sigmas, policy="release", guidance=3.0)
    with torch.no_grad():
        want = sample_euler(
            cfg_denoiser(lambda x, s, text: model(x, s, text, history, policy="release"), cond, uncond, 3.0),
            noise, sigmas,
        )  # fmt: skip
    torch.testing.assert_close(got, want)
    unguided = teacher_solution(model, noise, cond, uncond, history, sigmas, policy="release", guidance=1.0)
    assert (unguided - got).abs().max() > 1e-3


def test_ode_pairs_round_trip_resume_and_the_stage_regresses_the_student_onto_them(cache, tmp_path):
    from yume.train.ode import PairSet, done_indices, ode_loss, teacher_solution, write_pairs

    perturbed_model(1).save_pretrained(tmp_path / "teacher")
    perturbed_model(2).save_pretrained(tmp_path / "student")
    cfg = config(cache, tmp_path / "run", "run.steps=40", f"model.weights={tmp_path / 'student'}", f"self_forcing.teacher={tmp_path / 'teacher'}",
                 "self_forcing.guidance=2", f"ode.pairs={tmp_path / 'pairs'}", "data.mix=0,1,1").replace(stage="ode")  # fmt: skip
    ticks = []
    write_pairs(cfg, 3, teacher_steps=4, shard=2, progress=ticks.append)
    shards = sorted(p.name for p in (tmp_path / "pairs").iterdir())
    assert shards == ["pairs-000000-000002.pt", "pairs-000002-000003.pt"] and sum(ticks) == 3
    assert done_indices(tmp_path / "pairs") == {0, 1, 2}
    # Resuming skips whole shards already written (the files are not rewritten) and writes the rest.
    before = (tmp_path / "pairs/pairs-000000-000002.pt").stat().st_mtime_ns
    write_pairs(cfg, 4, teacher_steps=4, shard=2)
    assert (tmp_path / "pairs/pairs-000000-000002.pt").stat().st_mtime_ns == before
    assert done_indices(tmp_path / "pairs") == {0, 1, 2, 3}

    # A pair read back (noise from the seed, history from the cache) is what the teacher solved.
    from yume.data.cache import LatentCache

    pairs = PairSet(tmp_path / "pairs", LatentCache(cache), seed=0)
    teacher = YumeTransformer.from_pretrained(tmp_path / "teacher", dtype=torch.float32)
    sigmas = few_step_sigmas(4, 3.0)
    empty = [LatentCache(cache).empty]
    for k in range(len(pairs)):
        p = pairs.pair(k)
        assert p.history is not None and p.history.shape[2] >= 1
        again = teacher_solution(teacher, p.noise, p.context, empty, p.history, sigmas, policy="release", guidance=2)
        torch.testing.assert_close(again, p.x0, atol=1e-4, rtol=1e-4)

    # The stage pulls the student's few-step x̂₀ towards the teacher's solutions, at every exit step.
    student = YumeTransformer.from_pretrained(tmp_path / "student", dtype=torch.float32)
    sigmas = few_step_sigmas(4, 7.0)

    def mean_loss(model):
        with torch.no_grad():
            return np.mean([ode_loss(model, pairs.pair(k), sigmas, e, policy="release", device="cpu").item()
                            for k in range(len(pairs)) for e in range(4)])  # fmt: skip

    history = train(cfg.replace(**{"optim.lr": 2e-3}))
    assert [m["exit"] for m in history[:8]] != [history[0]["exit"]] * 8
    trained = YumeTransformer.from_pretrained(tmp_path / "run/checkpoints/step-0000040/generator/original",
                                              dtype=torch.float32)
    assert mean_loss(trained) < 0.7 * mean_loss(student)

    # open_pairs (the analysis scripts' setup) reads the same pairs back through the run's saved config.
    from yume.train.ode import open_pairs

    cfg2, again, loader = open_pairs(tmp_path / "run/config.toml", tmp_path / "pairs")
    assert (cfg2.stage, len(again)) == ("ode", len(pairs))
    assert loader.batch(0).clip_ids == again.records[0]["clip_ids"]
    # data_chunks: per sample of each pair, the action asked and the data's own chunk decoded after its history.
    from yume.train.ode import asked_actions, data_chunks, decode_window
    from yume.vae import WanVAE

    vae = WanVAE.from_config("tiny")
    chunks = data_chunks(vae, again, loader, 2)
    asked = [a for r in again.records[:2] for a in asked_actions(loader, again.clips, r)]
    assert [a for a, _ in chunks] == asked and len(chunks) == sum(len(r["clip_ids"]) for r in again.records[:2])
    first = again.pair(0)
    want = decode_window(vae, first.data[:1], None if first.history is None else first.history[:1])
    assert np.array_equal(chunks[0][1], want) and want.dtype == np.uint8

    # ode.target = "data": the same rollout's x̂₀ charged against the clips' own chunk after that history instead.
    from yume.train.self_forcing import rollout

    p = pairs.pair(0)
    assert p.data.shape == p.x0.shape and not torch.equal(p.data, p.x0)
    with torch.no_grad():
        x0_hat = rollout(student, [p.noise], [p.context], p.history, sigmas, [2], policy="release").chunks[0]
        got = ode_loss(student, p, sigmas, 2, policy="release", device="cpu", target="data")
    torch.testing.assert_close(got, F.mse_loss(x0_hat, p.data))
    with pytest.raises(ValueError, match="ODE target must be 'teacher' or 'data', got 'clips'"):
        ode_loss(student, p, sigmas, 2, policy="release", device="cpu", target="clips")


def test_ode_stage_errors_name_the_fix(cache, tmp_path, capsys):
    from yume.cli import main
    from yume.data.cache import LatentCache
    from yume.train.ode import PairSet, write_pairs

    assert main(["train", "ode-pairs", "--set", f"data.cache={cache}", "--set", f"ode.pairs={tmp_path / 'p'}",
                 "--count", "1"]) == 2  # fmt: skip
    assert "yume train: error: ODE pairs need a teacher: set self_forcing.teacher" in capsys.readouterr().err

    with pytest.raises(ValueError, match=r"config ode.pairs = '': must be the folder `yume train ode-pairs` wrote"):
        load_config(None, [f"data.cache={cache}", "stage=ode"])
    cfg = config(cache, tmp_path / "run", f"ode.pairs={tmp_path / 'pairs'}").replace(stage="ode")
    with pytest.raises(ValueError, match="ODE pairs need a teacher: set self_forcing.teacher"):
        write_pairs(cfg, 1)
    with pytest.raises(FileNotFoundError, match="no ODE pairs in .*yume train ode-pairs"):
        PairSet(tmp_path / "pairs", LatentCache(cache), seed=0)
    with pytest.raises(FileNotFoundError, match="no ODE pairs in"):
        train(cfg)
    YumeTransformer.from_config("tiny", seed=1).save_pretrained(tmp_path / "teacher")
    write_pairs(cfg.replace(**{"self_forcing.teacher": str(tmp_path / "teacher")}), 1, teacher_steps=2)
    with pytest.raises(ValueError, match="written with run.seed=0, this run has 3"):
        PairSet(tmp_path / "pairs", LatentCache(cache), seed=3)


def test_ode_verify_reads_each_teacher_chunk_once_and_keep_followed_drops_the_misread(cache, tmp_path, monkeypatch,
                                                                                      capsys):  # fmt: skip
    import yume.eval.motion as motion
    from yume.cli import main
    from yume.data.cache import LatentCache
    from yume.session import to_uint8
    from yume.train.ode import PairSet, verify_pairs, write_pairs
    from yume.vae import WanVAE

    perturbed_model(1).save_pretrained(tmp_path / "teacher")
    cfg = config(cache, tmp_path / "run", "run.steps=2", f"self_forcing.teacher={tmp_path / 'teacher'}",
                 f"ode.pairs={tmp_path / 'pairs'}", "data.mix=0,0,1", "data.history_min=3").replace(stage="ode")  # fmt: skip
    write_pairs(cfg, 3, teacher_steps=2, shard=2)
    vae = WanVAE.from_config("tiny")
    windows = []

    def estimate(frames, cfg=None):  # the clip walks forward; pair 1's teacher chunk is read as a strafe
        windows.append(frames)  # per pair: the teacher's chunk, then the data's own continuation (stepping 0.8 as far)
        teacher = len(windows) % 2 == 1
        move = "D" if len(windows) == 3 else "W"
        return motion.ChunkMotion(0.0, 0.0, 0.0, 1.0, 1.0 if teacher else 0.8, 4, move, "")

    monkeypatch.setattr(motion, "estimate_chunk", estimate)
    verdicts = verify_pairs(cfg, vae)
    assert sorted(verdicts) == ["0", "1", "2"] and len(windows) == 6
    assert verdicts["1"] == [{"asked": "W", "read": "D", "move_ok": False, "rotate_ok": True, "parallax": 1.0,
                              "data_parallax": 0.8}]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "pairs").glob("*.json")) == [
        "pairs-000000-000002.followed.json", "pairs-000002-000003.followed.json"]  # fmt: skip
    # The windows: the chunk's frames and the history's last one, decoded with the latent before it as context; the
    # teacher's chunk, then the clip's own latents where the pair's chunk starts.
    lc = LatentCache(cache)
    pairs = PairSet(tmp_path / "pairs", lc, seed=0)
    p, record = pairs.pair(0), pairs.records[0]
    clip = {c.id: c for c in lc.clips}[record["clip_ids"][0]]
    true = lc.latents(clip)[:, record["start"] : record["start"] + p.x0.shape[2]][None]
    assert torch.equal(p.data, true)  # the pair carries the data's own chunk after its history
    chunk_frames = p.x0.shape[2] * vae.temporal_stride
    with torch.no_grad():
        for window, chunk in ((windows[0], p.x0), (windows[1], true)):
            want = to_uint8(vae.decode(torch.cat([p.history[:, :, -2:], chunk], dim=2)))
            np.testing.assert_array_equal(window, want[-(chunk_frames + 1) :])
    # Read once: a second call re-reads nothing, and the kept pairs are the ones read as asked.
    assert verify_pairs(cfg, vae) == verdicts and len(windows) == 6
    cfg.save(tmp_path / "ode.toml")  # the command reads nothing again either, and sums the verdicts up
    vae.save_pretrained(tmp_path / "vae")
    capsys.readouterr()
    assert main(["train", "ode-verify", "--config", str(tmp_path / "ode.toml"), "--vae", str(tmp_path / "vae")]) == 0
    out = capsys.readouterr().out
    assert len(windows) == 6
    assert "of 3 teacher chunks, 2 move as asked, 3 turn as asked; 2 follow their keys" in out
    assert "the teacher steps a median 1.250 times as far as the data's own continuation (2 chunks;" in out
    kept = PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, keep="followed")
    assert [r["index"] for r in kept.records] == [0, 2]
    # A bound on the step against the data's: every teacher chunk here steps 1.25 times as far, so 1.25 keeps the
    # same pairs and 1.3 none.
    kept = PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, keep="followed", min_step_ratio=1.25)
    assert [r["index"] for r in kept.records] == [0, 2]
    with pytest.raises(ValueError, match="follows its keys with a step of at least 1.3 times the data's; .*ode.min_step"):
        PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, keep="followed", min_step_ratio=1.3)
    # Sideways weighting reads the keys from the verdicts: every pair here asks W (uniform draws), so pair 0's
    # verdict is rewritten to ask A, which then weighs 3 against pair 2's 1.
    assert PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, keep="followed", sideways_weight=3.0).draw_p is None
    first = tmp_path / "pairs" / "pairs-000000-000002.followed.json"
    rewritten = json.loads(first.read_text())
    rewritten["0"][0]["asked"] = "A"
    first.write_text(json.dumps(rewritten))
    weighted = PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, keep="followed", sideways_weight=3.0)
    assert [r["index"] for r in weighted.records] == [0, 2]
    np.testing.assert_allclose(weighted.draw_p, [0.75, 0.25])
    history = train(cfg.replace(**{"ode.keep": "followed", "ode.sideways_weight": 3.0}))
    assert len(history) == 2


def test_ode_keep_followed_without_verdicts_says_to_verify(cache, tmp_path):
    from yume.data.cache import LatentCache
    from yume.train.ode import PairSet, follows, write_pairs

    # A chunk follows its keys when it turns as asked and moves as asked; a turn in place is judged on its turn.
    assert follows({"asked": "W+←", "move_ok": True, "rotate_ok": True})
    assert not follows({"asked": "W+←", "move_ok": False, "rotate_ok": True})
    assert not follows({"asked": "A", "move_ok": True, "rotate_ok": False})
    assert follows({"asked": "↑←", "move_ok": False, "rotate_ok": True})
    assert not follows({"asked": "↑←", "move_ok": False, "rotate_ok": False})
    # min_step_ratio: a step asked must also be long enough against the data's; a turn in place is not judged on it.
    step = {"asked": "W+←", "move_ok": True, "rotate_ok": True, "parallax": 0.6, "data_parallax": 0.5}
    assert follows(step, 1.2) and not follows(step, 1.3)
    assert not follows({**step, "move_ok": False}, 1.0)
    assert follows({"asked": "↑←", "move_ok": False, "rotate_ok": True, "parallax": 0.1, "data_parallax": 0.9}, 1.0)
    with pytest.raises(ValueError, match="carry no data_parallax.*ode-verify.*ode.min_step_ratio = 0"):
        follows({"asked": "W", "move_ok": True, "rotate_ok": True, "parallax": 0.5}, 0.5)

    perturbed_model(1).save_pretrained(tmp_path / "teacher")
    cfg = config(cache, tmp_path / "run", f"self_forcing.teacher={tmp_path / 'teacher'}",
                 f"ode.pairs={tmp_path / 'pairs'}").replace(stage="ode")  # fmt: skip
    write_pairs(cfg, 1, teacher_steps=2)
    with pytest.raises(FileNotFoundError, match="needs .*pairs-000000-000001.followed.json: .*yume train ode-verify"):
        PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, keep="followed")
    with pytest.raises(ValueError, match="config ode.keep = 'some': must be 'all' or 'followed'"):
        cfg.replace(**{"ode.keep": "some"})
    with pytest.raises(ValueError, match="config ode.min_step_ratio = 0.5: must be 0 unless ode.keep = 'followed'"):
        cfg.replace(**{"ode.min_step_ratio": 0.5})
    with pytest.raises(ValueError, match="config ode.target = 'clips': must be 'teacher' or 'data'"):
        cfg.replace(**{"ode.target": "clips"})
    with pytest.raises(ValueError, match="config ode.min_step_ratio = -1.0: must be >= 0"):
        cfg.replace(**{"ode.keep": "followed", "ode.min_step_ratio": -1.0})
    with pytest.raises(ValueError, match="config ode.sideways_weight = 2.0: must be 1 unless ode.keep = 'followed'"):
        cfg.replace(**{"ode.sideways_weight": 2.0})
    with pytest.raises(ValueError, match="config ode.sideways_weight = 0.0: must be > 0"):
        cfg.replace(**{"ode.keep": "followed", "ode.sideways_weight": 0.0})
    with pytest.raises(ValueError, match="ode.sideways_weight reads the keys .*ode.keep = 'followed'"):
        PairSet(tmp_path / "pairs", LatentCache(cache), seed=0, sideways_weight=2.0)


def test_sideways_weights_draw_sideways_pairs_more_often():
    from yume.train.ode import PairSet, sideways_weights

    # A pair weighs `weight` when any of its rows asks A or D (alone or in a diagonal); turns and W/S weigh 1.
    asked = [["W"], ["A"], ["S+D+↑"], ["↑←"], ["W", "W+A"]]
    p = sideways_weights(asked, 3.0)
    np.testing.assert_allclose(p, np.array([1, 3, 3, 1, 3]) / 11)
    assert sideways_weights(asked, 1.0) is None  # unweighted: uniform draws, as before the option
    assert sideways_weights([["A"], ["D"]], 3.0) is None  # every pair weighs the same
    # PairSet.draw follows the probabilities (a bare set: its records and draw_p are all draw reads).
    pairs = PairSet.__new__(PairSet)
    pairs.records, pairs.draw_p = [{}] * 5, p
    rng = np.random.default_rng(0)
    counts = np.bincount([pairs.draw(rng) for _ in range(11_000)], minlength=5)
    np.testing.assert_allclose(counts / 11_000, p, atol=0.02)
    pairs.draw_p = None
    rng, again = np.random.default_rng(7), np.random.default_rng(7)
    assert [pairs.draw(rng) for _ in range(20)] == [int(again.integers(5)) for _ in range(20)]
