"""core.schedules: few-step timestep lists and their sigmas."""
import pytest
import torch

from core.schedules import (
    fewstep_sigmas,
    lcm_timesteps,
    parse_timesteps,
    scaled_linear_alphas_cumprod,
    sigmas_from_alphas_cumprod,
    timestep_from_sigma,
    trailing_timesteps,
)

SIGMA_TABLE = sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod()).float()


def test_trailing_timesteps_for_distilled_step_counts():
    assert trailing_timesteps(1) == [999]
    assert trailing_timesteps(2) == [999, 499]
    assert trailing_timesteps(4) == [999, 749, 499, 249]
    assert trailing_timesteps(8) == [999, 874, 749, 624, 499, 374, 249, 124]


@pytest.mark.parametrize("steps", range(1, 51))
def test_trailing_matches_diffusers(steps):
    from diffusers import EulerAncestralDiscreteScheduler

    sched = EulerAncestralDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"
    )
    sched.set_timesteps(steps)
    assert trailing_timesteps(steps) == [int(t) for t in sched.timesteps]


@pytest.mark.parametrize("steps", range(1, 51))
def test_lcm_matches_diffusers(steps):
    from diffusers import LCMScheduler

    sched = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sched.set_timesteps(steps)
    assert lcm_timesteps(steps) == [int(t) for t in sched.timesteps]


def test_lcm_four_steps():
    assert lcm_timesteps(4) == [999, 759, 499, 259]


def test_fewstep_sigmas_values():
    sigmas = fewstep_sigmas([999, 749, 499, 249], SIGMA_TABLE)
    expected = torch.tensor([14.6146, 4.0817, 1.6129, 0.6932, 0.0])
    assert sigmas.dtype == torch.float32 and sigmas.shape == (5,)
    torch.testing.assert_close(sigmas, expected, atol=2e-3, rtol=1e-3)
    assert sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())


def test_fewstep_sigmas_are_table_entries():
    ts = trailing_timesteps(8)
    sigmas = fewstep_sigmas(ts, SIGMA_TABLE)
    assert torch.equal(sigmas[:-1], SIGMA_TABLE[torch.tensor(ts)])


def test_sdturbo_spacing_differs():
    """core's SDTurboScheduler(4) picks 999/899/799/699: not what DMD2/SDXL-Turbo were trained on."""
    assert trailing_timesteps(4) != [999, 899, 799, 699]


def test_timestep_from_sigma_inverts_table():
    ts = torch.tensor([0, 1, 124, 249, 499, 749, 999])
    back = timestep_from_sigma(SIGMA_TABLE[ts], SIGMA_TABLE)
    torch.testing.assert_close(back, ts.float(), atol=1e-3, rtol=0)


def test_timestep_from_sigma_keeps_shape_and_interpolates():
    mid = (SIGMA_TABLE[499].log() + SIGMA_TABLE[500].log()).div(2).exp()
    sigma = torch.stack([SIGMA_TABLE[10], mid]).reshape(1, 1, 2, 1)
    t = timestep_from_sigma(sigma, SIGMA_TABLE)
    assert t.shape == (1, 1, 2, 1)
    assert abs(float(t.flatten()[1]) - 499.5) < 1e-3


@pytest.mark.parametrize("text, expected", [("999, 749, 499, 249", [999, 749, 499, 249]), ("999", [999]),
                                            ("999;500 ,10", [999, 500, 10])])
def test_parse_timesteps(text, expected):
    assert parse_timesteps(text) == expected


@pytest.mark.parametrize("text, message", [("abc", "integers"), ("", "empty"), ("249, 499", "decreasing"),
                                           ("1000", "0..999"), ("-1", "0..999")])
def test_parse_timesteps_errors_name_the_input(text, message):
    with pytest.raises(ValueError, match="timesteps") as err:
        parse_timesteps(text)
    assert message in str(err.value)


@pytest.mark.parametrize("bad", [0, -1, 1001, 2.5, True])
def test_trailing_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="steps"):
        trailing_timesteps(bad)


def test_lcm_rejects_more_steps_than_origin():
    with pytest.raises(ValueError, match="1..50"):
        lcm_timesteps(51)


def test_fewstep_sigmas_rejects_timesteps_outside_table():
    with pytest.raises(ValueError, match="outside"):
        fewstep_sigmas([1000], SIGMA_TABLE)


def test_flow_grid_is_diffusers_linspace_and_flow_timesteps_parse_as_t_times_1000():
    from core.schedules import flow_grid, flow_sigmas, parse_flow_timesteps

    assert flow_grid(4) == [1.0, 0.75, 0.5, 0.25] and flow_grid(1) == [1.0]
    assert parse_flow_timesteps("1000, 750 500;250") == [1.0, 0.75, 0.5, 0.25]
    for bad, message in (("1001", "lie in 1..1000"), ("0", "lie in 1..1000"), ("500, 750", "strictly decreasing"),
                         ("", "empty"), ("1000, x", "not a comma-separated list")):
        with pytest.raises(ValueError, match=message):
            parse_flow_timesteps(bad)
    sigmas = flow_sigmas([1.0, 0.5], lambda t: 3 * t / (1 + 2 * t))
    assert torch.allclose(sigmas, torch.tensor([1.0, 0.75, 0.0]))
    with pytest.raises(ValueError, match="steps must be an integer"):
        flow_grid(0)
