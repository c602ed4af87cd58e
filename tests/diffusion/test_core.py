"""Diffusion core: samplers with an oracle denoiser, the masked loss, condition dropout."""

import pytest
import torch

from handcast.diffusion import DiffusionConfig, condition_dropout, diffusion_loss, make_scheduler, noisy_input, sample
from handcast.errors import HandcastError


@pytest.mark.parametrize("sampler,steps", [("ddim", 10), ("dpm", 10), ("ddim", 1), ("ddpm", 1000)])
def test_oracle_denoiser_recovers_target(sampler, steps):
    target = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(0))

    def oracle(x_t, t, conditioned):
        return target

    out = sample(oracle, target.shape, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(1))
    # The last step of every sampler returns the x0 prediction up to the final (tiny) posterior noise.
    tol = 0.05 if sampler == "ddpm" else 1e-4
    assert torch.allclose(out, target, atol=tol), (out - target).abs().max()


def test_guidance_extrapolates_conditional_prediction():
    cond, uncond = torch.ones(2, 4, 3), torch.zeros(2, 4, 3)

    def den(x_t, t, conditioned):
        return cond if conditioned else uncond

    out = sample(den, (2, 4, 3), sampler="ddim", steps=5, guidance=2.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.full_like(out, 2.5), atol=1e-4)


def test_schedule_is_cosine_and_predicts_x0():
    s = make_scheduler("ddim")
    assert s.config.beta_schedule == "squaredcos_cap_v2"
    assert s.config.prediction_type == "sample"
    assert s.config.clip_sample is False
    s.set_timesteps(10)
    assert int(s.timesteps[0]) == 999  # trailing spacing starts from pure noise
    with pytest.raises(HandcastError, match="unknown sampler"):
        make_scheduler("euler")


def test_noisy_input_at_extremes():
    s = make_scheduler("ddpm")
    x0 = torch.randn(4, 6, 2)
    xt, t, noise = noisy_input(s, x0, generator=torch.Generator().manual_seed(0))
    assert xt.shape == x0.shape and t.shape == (4,)
    # q(x_t | x0) = sqrt(a) x0 + sqrt(1-a) eps
    a = s.alphas_cumprod[t].view(-1, 1, 1)
    assert torch.allclose(xt, a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-5)


def test_masked_loss_ignores_masked_entries():
    x0 = torch.zeros(2, 3, 4)
    pred = torch.zeros(2, 3, 4)
    pred[0, 2] = 100.0  # masked frame: must not count
    pred[1, 0] = 2.0
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    loss = diffusion_loss(pred, x0, mask)
    assert torch.isclose(loss, torch.tensor(4.0 * 4 / (5 * 4)))
    assert diffusion_loss(pred, x0, torch.zeros(2, 3, dtype=torch.bool)) == 0


def test_condition_dropout_rates():
    tok = torch.ones(2000, 10, 3)
    g = torch.Generator().manual_seed(0)
    out = condition_dropout(tok, p_token=0.1, generator=g)
    dropped = (out.abs().sum(-1) == 0).float().mean()
    assert abs(dropped.item() - 0.1) < 0.01
    out = condition_dropout(tok, p_token=0.0, p_all=0.5, generator=g)
    per_item = (out.abs().sum(dim=(1, 2)) == 0).float().mean()
    assert abs(per_item.item() - 0.5) < 0.05
    # whole-item dropout drops all tokens of an item or none
    zeros_per_item = (out.abs().sum(-1) == 0).sum(1)
    assert set(zeros_per_item.tolist()) <= {0, 10}
    assert condition_dropout(tok, 0.0, 0.0) is tok


def test_config_defaults_are_motion_settings():
    c = DiffusionConfig()
    assert (c.num_train_timesteps, c.beta_schedule, c.prediction_type) == (1000, "squaredcos_cap_v2", "sample")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers vs numpy 2 in DPM-Solver
@pytest.mark.parametrize("sampler,steps", [("ddim", 1), ("ddim", 4), ("dpm", 3), ("ddpm", 5)])
def test_cached_scheduler_gives_what_a_fresh_one_gives(sampler, steps):
    """sample() reuses one scheduler per thread; every call equals a loop over a freshly built scheduler."""
    from handcast.diffusion import make_scheduler, sample

    w = torch.randn(3, 3)

    def denoise(x, t, conditioned=True):
        return torch.tanh(x @ w) * (1 + t[:, None, None] / 1000)

    g = torch.Generator().manual_seed(0)
    sch = make_scheduler(sampler)
    sch.set_timesteps(steps)
    x = torch.randn((2, 5, 3), generator=g) * sch.init_noise_sigma
    kw = {"generator": g} if sampler in ("ddpm", "ddim") else {}
    for t in sch.timesteps:
        x = sch.step(denoise(x, torch.full((2,), int(t))), t, x, **kw).prev_sample
    for _ in range(2):  # the cached scheduler is reusable
        b = sample(denoise, (2, 5, 3), sampler, steps, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(x, b, rtol=0, atol=0)


def test_sample_per_input_repeats_each_inputs_condition_for_its_samples():
    from handcast.diffusion import sample_per_input

    cond = torch.arange(3.0).view(3, 1, 1)  # input b's condition: the value b

    def den(x_t, t, c, nothing, conditioned=True):
        assert nothing is None
        return c.expand_as(x_t) if conditioned else torch.zeros_like(x_t)

    x = sample_per_input(den, (cond, None), (4, 2), num_samples=5, sampler="ddim", steps=2,
                         generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 5, 4, 2)
    torch.testing.assert_close(x, cond.view(3, 1, 1, 1).expand_as(x), atol=1e-4, rtol=0)
    guided = sample_per_input(den, (cond, None), (4, 2), 2, "ddim", 2, guidance=2.0,
                              generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(guided, 2 * cond.view(3, 1, 1, 1).expand_as(guided), atol=1e-4, rtol=0)


def test_conditional_diffusion_sample_uses_the_hooks():
    from handcast.diffusion import SAMPLERS, ConditionalDiffusion

    class Toy(ConditionalDiffusion):
        diffusion = DiffusionConfig()

        def sampling_condition(self, inputs):
            return (inputs,), (3,)

        def denoise(self, x_t, t, c, conditioned=True):
            return c.expand_as(x_t)

        def decode(self, x0):
            return x0.sum(-1)

    inputs = torch.tensor([[1.0], [-2.0]])
    for name in SAMPLERS:  # every listed sampler runs
        out = Toy().sample(inputs, num_samples=4, sampler=name, steps=3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 4)
        torch.testing.assert_close(out, 3 * inputs.expand(2, 4), atol=0.1 if name == "ddpm" else 1e-4, rtol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("sampler,steps", [("ddim", 10), ("dpm", 10), ("ddpm", 50), ("ddim", 1)])
def test_known_prefix_is_reproduced_exactly_and_the_rest_still_varies(sampler, steps):
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))

    def den(x_t, t, conditioned=True):  # a nonlinear x0 predictor that mixes frames
        return torch.tanh(x_t @ w) + x_t.mean(1, keepdim=True)

    known = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, :2] = True  # frames 0 and 1 known
    mask[1, 2] = True  # and frame 2 of the second sample
    a = sample(den, (2, 6, 4), sampler, steps, generator=torch.Generator().manual_seed(0), known=known, known_mask=mask)
    b = sample(den, (2, 6, 4), sampler, steps, generator=torch.Generator().manual_seed(1), known=known, known_mask=mask)
    torch.testing.assert_close(a[mask], known[mask], rtol=0, atol=0)
    torch.testing.assert_close(b[mask], known[mask], rtol=0, atol=0)
    assert (a[~mask] - b[~mask]).abs().min() > 0  # every free entry depends on the seed


def test_known_entries_can_be_masked_per_dimension_and_steer_the_free_ones():
    from handcast.diffusion import make_scheduler

    abar = make_scheduler("ddim").alphas_cumprod

    def den(x_t, t, conditioned=True):  # every entry's x0 estimate: entry 0 of frame 0, un-noised
        return (x_t[:, :1, :1] / abar[t].sqrt().view(-1, 1, 1)).expand_as(x_t)

    known = torch.full((64, 3, 2), 2.0)
    mask = torch.zeros(64, 3, 2, dtype=torch.bool)
    mask[:, 0, 0] = True  # one entry known
    g = torch.Generator().manual_seed(0)
    out = sample(den, (64, 3, 2), "ddim", 10, generator=g, known=known, known_mask=mask)
    assert (out[:, 0, 0] == 2.0).all()
    free = sample(den, (64, 3, 2), "ddim", 10, generator=torch.Generator().manual_seed(0))
    # the free entries follow the known one (up to the last step's noise), not the unconstrained samples
    assert (out[:, 1:] - 2.0).abs().mean() < 0.3 < (free[:, 1:] - 2.0).abs().mean()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("sampler", ["ddim", "dpm", "ddpm"])
def test_no_known_entry_is_bit_identical_to_the_plain_loop(sampler):
    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(5))

    def den(x_t, t, conditioned=True):
        return torch.tanh(x_t @ w)

    plain = sample(den, (2, 5, 3), sampler, 8, generator=torch.Generator().manual_seed(0))
    none = sample(den, (2, 5, 3), sampler, 8, generator=torch.Generator().manual_seed(0),
                  known=torch.randn(2, 5, 3), known_mask=torch.zeros(2, 5, dtype=torch.bool))
    torch.testing.assert_close(plain, none, rtol=0, atol=0)


def test_known_shape_errors_are_one_line():
    den = lambda x, t, c=True: x  # noqa: E731
    with pytest.raises(HandcastError, match="shape"):
        sample(den, (2, 5, 3), "ddim", 2, known=torch.zeros(2, 4, 3), known_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(HandcastError, match="known_mask"):
        sample(den, (2, 5, 3), "ddim", 2, known=torch.zeros(2, 5, 3))


def test_sample_per_input_shares_each_inputs_known_values_with_its_samples():
    from handcast.diffusion import sample_per_input

    def den(x_t, t, c, conditioned=True):
        return torch.tanh(x_t) + c

    cond = torch.randn(3, 1, 1)
    known = torch.randn(3, 4, 2)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    x = sample_per_input(den, (cond,), (4, 2), num_samples=5, sampler="ddim", steps=3,
                         generator=torch.Generator().manual_seed(0), known=known, known_mask=mask)
    assert x.shape == (3, 5, 4, 2)
    for b in range(3):
        for s in range(5):
            torch.testing.assert_close(x[b, s][mask[b]], known[b][mask[b]], rtol=0, atol=0)
    assert (x[2, :, 0] != known[2, 0]).all()
