import numpy as np
import pytest
import torch

from yume.sampling import get_schedule, sample_euler_renoised_history, sample_tts_sde
from yume.session import SessionConfig, WorldSession


def tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 2, 3, 2, 2, generator=g) for _ in range(3)]  # x, history, history noise


def toy(x, sigma, past):
    return 0.5 * x + past.mean() * torch.ones_like(x) - sigma.view(-1, 1, 1, 1, 1)


def test_one_sde_step_matches_its_formula():
    x, history, eps = tensors()
    sigmas = torch.tensor([0.8, 0.3, 0.0])
    out = sample_tts_sde(toy, x, sigmas[:2], history, eps, eta=0.4, travel_interval=0,
                         generator=torch.Generator().manual_seed(5))  # fmt: skip
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    v = toy(x, sigmas[:1], 0.8 * eps + 0.2 * history)
    noise_hat = x + 0.2 * v  # ε̂ = x + (1 − σ)·v; the score is −ε̂/σ
    expected = x + (0.3 - 0.8) * (v + 0.5 * 0.4**2 * noise_hat / 0.8) + 0.4 * 0.5**0.5 * z
    torch.testing.assert_close(out, expected)


def test_the_step_to_zero_adds_no_noise_but_keeps_the_score_drift():
    x, history, eps = tensors()
    sigmas = torch.tensor([0.25, 0.0])
    a = sample_tts_sde(toy, x, sigmas, history, eps, eta=0.3, generator=torch.Generator().manual_seed(1))
    b = sample_tts_sde(toy, x, sigmas, history, eps, eta=0.3, generator=torch.Generator().manual_seed(2))
    v = toy(x, sigmas[:1], 0.25 * eps + 0.75 * history)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, x - 0.25 * (v + 0.5 * 0.09 * (x + 0.75 * v) / 0.25))


def test_travel_steps_evaluate_ahead_and_retake_the_step_with_the_far_velocity():
    x, history, eps = tensors(1)
    sigmas = get_schedule(5, 3.0)
    calls = []

    def model(z, sigma, past):
        calls.append((sigma.item(), z.clone()))
        torch.testing.assert_close(past, sigma * eps + (1 - sigma) * history)  # history at the evaluated σ
        return toy(z, sigma, past)

    steps = []
    out = sample_tts_sde(model, x, sigmas, history, eps, eta=0.3, travel_interval=2, travel_depth=2,
                         generator=torch.Generator().manual_seed(3), callback=steps.append)  # fmt: skip
    # Steps 0 and 2 look 2 steps ahead; step 4 is the last one (no σ > 0 after it) and does not travel.
    order = [0, 1, 2, 1, 2, 3, 4, 3, 4]
    torch.testing.assert_close(torch.tensor([s for s, _ in calls]), sigmas[order])
    assert [s["travel"] for s in steps] == [True, False, True, False, False]

    # The same run written out: noise draws in the order the SDE steps take them.
    g = torch.Generator().manual_seed(3)

    def sde(z, v, s, s_next):
        z_next = z + (s_next - s) * (v + 0.045 * (z + (1 - s) * v) / s)
        return z_next + 0.3 * (s - s_next).sqrt() * torch.randn(z.shape, generator=g) if s_next > 0 else z_next

    def v_at(z, j):
        return toy(z, sigmas[j : j + 1], sigmas[j] * eps + (1 - sigmas[j]) * history)

    z = x
    for i in range(5):
        v = v_at(z, i)
        nxt = sde(z, v, sigmas[i], sigmas[i + 1])
        if i in (0, 2):
            ahead = sde(nxt, v_at(nxt, i + 1), sigmas[i + 1], sigmas[i + 2])  # SDE on to σ_{i+2}
            nxt = z + (sigmas[i + 1] - sigmas[i]) * v_at(ahead, i + 2)
        z = nxt
    torch.testing.assert_close(out, z)


def test_without_noise_and_travel_it_is_the_deterministic_release_sampler():
    x, history, eps = tensors(2)
    sigmas = get_schedule(7, 3.0)
    a = sample_tts_sde(toy, x, sigmas, history, eps, eta=0.0, travel_interval=0)
    torch.testing.assert_close(a, sample_euler_renoised_history(toy, x, sigmas, history, eps), atol=0, rtol=0)
    travelled = sample_tts_sde(toy, x, sigmas, history, eps, eta=0.0)  # eta=0 alone: deterministic time travel
    assert not torch.equal(travelled, a)
    torch.testing.assert_close(travelled, sample_tts_sde(toy, x, sigmas, history, eps, eta=0.0), atol=0, rtol=0)


def test_the_same_generator_seed_gives_the_same_sample():
    x, history, eps = tensors(3)
    sigmas = get_schedule(6, 3.0)

    def run(seed):
        return sample_tts_sde(toy, x, sigmas, history, eps, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(run(4), run(4), atol=0, rtol=0)
    assert not torch.allclose(run(4), run(5))


@pytest.mark.parametrize("kwargs", [{"eta": -0.1}, {"travel_interval": -1}, {"travel_depth": 0}])
def test_bad_tts_settings_are_clear_errors(kwargs):
    x, history, eps = tensors()
    with pytest.raises(ValueError, match="TTS-SDE needs eta >= 0"):
        sample_tts_sde(toy, x, get_schedule(2), history, eps, **kwargs)


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="sampler must be one of euler, tts-sde, got 'heun'"):
        SessionConfig(sampler="heun")


# --- in a session ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i2v_world(tmp_path_factory):
    from yume.world import WorldModel

    return WorldModel.load("tiny-i2v-random", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def test_an_i2v_session_samples_with_tts_sde_deterministically_for_a_seed(i2v_world):
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def chunk(sampler, seed=0):
        config = SessionConfig(steps=3, shift=3.0, guidance=1.0, vocab="1.0", chunk_latents=2, seed=seed,
                               sampler=sampler)  # fmt: skip
        return WorldSession(i2v_world, "a street", image=image, config=config).step("W")

    a, b, euler = chunk("tts-sde"), chunk("tts-sde"), chunk("euler")
    assert a.frames.shape == (8, 64, 64, 3) and a.frames.dtype == np.uint8
    assert torch.equal(a.latents, b.latents) and np.array_equal(a.frames, b.frames)
    assert not torch.equal(a.latents, euler.latents)
    assert not torch.equal(a.latents, chunk("tts-sde", seed=1).latents)


def test_tts_sde_on_a_text_to_world_model_is_a_clear_error(tmp_path):
    from yume.world import WorldModel

    world = WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="sampler 'tts-sde' is the Yume-I2V-540P release's"):
        WorldSession(world, "a street", config=SessionConfig(sampler="tts-sde"))
