"""core.turboedit: exact inversion replays the input; an edit changes only inside its mask."""
import pytest
import torch

from core.attention_mask import edit_mask, joint_token_attention, to_spatial, token_attention
from core.caption_edit import (
    CaptionEditError,
    apply_edit,
    changed_token_positions,
    conditioning_positions,
    parse_edit,
)
from core.denoiser import EpsDenoiser
from core.schedules import fewstep_sigmas, trailing_timesteps
from core.turboedit import (
    flow_renoise,
    gaussian_kl,
    invert_exact,
    invert_with_encoder,
    reparameterise,
    sample_replay,
    solve_noise,
)

from .support.tiny_models import astronaut, encode, tiny_unet, tiny_vae, unet_eps_fn


@pytest.fixture(scope="module")
def setup():
    unet, vae = tiny_unet(), tiny_vae()
    g = torch.Generator().manual_seed(4)
    source_ctx, target_ctx = torch.randn(1, 6, 32, generator=g), torch.randn(1, 6, 32, generator=g)
    z = encode(vae, astronaut(128))
    sigmas = fewstep_sigmas(trailing_timesteps(4), EpsDenoiser(None).sigma_table)

    def model(ctx):
        return EpsDenoiser(unet_eps_fn(unet, ctx))

    return dict(z=z, sigmas=sigmas, source=model(source_ctx), target=model(target_ctx))


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_exact_inversion_replays_the_input(setup):
    traj = invert_exact(setup["source"], setup["z"], setup["sigmas"], {"seed": 1}, disable=True)
    assert traj.steps == 4 and len(traj.x0s) == 4 and len(traj.noises) == 4
    out = sample_replay(setup["source"], torch.zeros_like(setup["z"]), setup["sigmas"], {}, disable=True,
                        trajectory=traj)
    assert rel_err(out, setup["z"]) <= 1e-4


def test_exact_inversion_of_a_flow_model_replays_the_input():
    """Flow form: states (1 − σ_k)·z + σ_k·ñ_k, noises solved from x_{k+1} = (1 − σ)·x̂0 + σ·ε; the replay reuses the
    trajectory's own re-noise and gives z back (a toy velocity model: x̂0 = x − σ·v, v = tanh of a fixed map)."""
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) / 2

    def flow_model(x, sigma, **_):
        v = torch.tanh(torch.einsum("ij,bjhw->bihw", weight, x))
        return x - sigma.view(-1, 1, 1, 1) * v

    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigmas = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    traj = invert_exact(flow_model, z, sigmas, {"seed": 2}, disable=True, renoise=flow_renoise)
    assert traj.renoise is flow_renoise and traj.to("cpu").renoise is flow_renoise
    out = sample_replay(flow_model, torch.zeros_like(z), sigmas, disable=True, trajectory=traj.to("cpu"))
    assert rel_err(out, z) <= 1e-4
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(solve_noise(flow_renoise, torch.tensor(0.3), flow_renoise(torch.tensor(0.3), eps, x0),
                                           x0), eps, rtol=1e-5, atol=1e-5)


def test_edit_changes_only_inside_the_mask(setup):
    traj = invert_exact(setup["source"], setup["z"], setup["sigmas"], {"seed": 1}, disable=True)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    out = sample_replay(setup["target"], setup["z"], setup["sigmas"], disable=True, trajectory=traj, mask=mask)
    keep, hole = (mask == 0).expand_as(out), (mask == 1).expand_as(out)
    assert torch.equal(out[keep], setup["z"][keep]), "outside the mask the edit keeps the source bit for bit"
    assert rel_err(out[hole], setup["z"][hole]) > 1e-2, "the target prompt changes the masked region"
    unmasked = sample_replay(setup["target"], setup["z"], setup["sigmas"], disable=True, trajectory=traj)
    assert rel_err(unmasked[keep], setup["z"][keep]) > 1e-2, "without a mask the whole image follows the prompt"


def test_replay_refuses_other_steps(setup):
    traj = invert_exact(setup["source"], setup["z"], setup["sigmas"], disable=True)
    two = fewstep_sigmas(trailing_timesteps(2), EpsDenoiser(None).sigma_table)
    with pytest.raises(ValueError, match="sigmas: 2 steps .* do not match the inversion's 4 steps"):
        sample_replay(setup["source"], setup["z"], two, trajectory=traj)
    with pytest.raises(ValueError, match="sigmas"):
        invert_exact(setup["source"], setup["z"], torch.tensor([1.0, 0.5]))


def test_lazy_mask_from_the_first_step(setup):
    traj = invert_exact(setup["source"], setup["z"], setup["sigmas"], disable=True)
    calls = []

    def mask_at(k, x0):
        calls.append(k)
        m = torch.zeros(1, 1, 16, 16)
        m[..., :8, :] = 1
        return m

    out = sample_replay(setup["target"], setup["z"], setup["sigmas"], disable=True, trajectory=traj, mask_at=mask_at)
    assert calls == [0]
    assert torch.equal(out[..., 8:, :], setup["z"][..., 8:, :])
    assert rel_err(out[..., :8, :], setup["z"][..., :8, :]) > 1e-2, "inside the lazy mask the target prompt acts"


def test_encoder_inversion_uses_2n_passes(setup):
    calls = {"encoder": 0, "model": 0}

    def encoder(z, previous, sigma):
        calls["encoder"] += 1
        return torch.zeros_like(z) if calls["encoder"] == 1 else (z - previous) * 0.1

    def model(x, sigma, **kw):
        calls["model"] += 1
        return setup["source"](x, sigma)

    traj = invert_with_encoder(model, encoder, setup["z"], setup["sigmas"], disable=True)
    assert calls == {"encoder": 4, "model": 4} and torch.equal(traj.residual, torch.zeros_like(setup["z"]))
    exact = invert_with_encoder(model, encoder, setup["z"], setup["sigmas"], exact_residual=True, disable=True)
    out = sample_replay(setup["source"], setup["z"], setup["sigmas"], disable=True, trajectory=exact)
    assert rel_err(out, setup["z"]) <= 1e-4


def test_encoder_edit_with_a_soft_mask_has_no_seam_at_its_edge(setup):
    """The encoder inversion stores no residual, so its reconstruction differs from the source; just inside a
    blurred mask the edit must still meet the source continuously (|out − z| ∝ m), not jump by that error."""
    def encoder(z, previous, sigma):
        return (z - previous) * 0.1

    traj = invert_with_encoder(setup["source"], encoder, setup["z"], setup["sigmas"], disable=True)
    recon_error = float((traj.x0s[-1] - setup["z"]).abs().max())
    assert recon_error > 0.5, "the dummy encoder reconstructs the source only roughly"
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    mask = ((6.0 - ((yy - 8) ** 2 + (xx - 8) ** 2).sqrt()) / 4).clamp(0, 1)[None, None]  # soft ring 2 px → 6 px
    out = sample_replay(setup["target"], setup["z"], setup["sigmas"], disable=True, trajectory=traj, mask=mask)
    keep, edge = (mask == 0).expand_as(out), ((mask > 0) & (mask <= 0.25)).expand_as(out)
    assert torch.equal(out[keep], setup["z"][keep]) and edge.any()
    gap = (out - setup["z"]).abs()
    assert float(gap[edge].max()) <= 0.25 * float(gap[(mask == 1).expand_as(out)].max()), "no jump at the edge"


def test_kl_and_reparameterisation():
    mean, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    assert float(gaussian_kl(mean, logvar)) == 0.0
    assert float(gaussian_kl(mean + 1, logvar)) == pytest.approx(0.5)
    sample = reparameterise(torch.zeros(4000), torch.zeros(4000), torch.Generator().manual_seed(0))
    assert abs(float(sample.std()) - 1) < 0.05


# ----------------------------------------------------------------------------- caption edits

def test_arrow_edits_replace_whole_words_case_insensitively():
    e = apply_edit("A Red car next to a red, bored cat.", "red → blue")
    assert e.target == "A blue car next to a blue, bored cat."
    assert e.old == "red" and e.new == "blue" and len(e.spans) == 2
    for arrow in ("->", "=>"):
        assert apply_edit("a red car", f"red {arrow} green").target == "a green car"


def test_phrases_occurrences_and_whitespace():
    e = apply_edit("a  wooden   chair and a wooden table", "wooden chair -> metal chair")
    assert e.source == "a wooden chair and a wooden table" and e.target == "a metal chair and a wooden table"
    assert apply_edit("red cup, red box", "red → blue", occurrence=2).target == "red cup, blue box"
    assert apply_edit("a red car", "red →").target == "a car", "an empty replacement removes the words"


def test_attribute_value_pairs():
    assert apply_edit("a red car in winter", "color: blue").target == "a blue car in winter"
    assert apply_edit("a red car in winter", "season: summer").target == "a red car in summer"
    with pytest.raises(CaptionEditError, match="several colors"):
        apply_edit("a red car and a green bus", "color: blue")
    with pytest.raises(CaptionEditError, match="names no weather"):
        apply_edit("a red car", "weather: rainy")
    with pytest.raises(CaptionEditError, match="unknown attribute 'mood'"):
        apply_edit("a red car", "mood: happy")


@pytest.mark.parametrize("caption, edit, message", [
    ("a red car", "green → blue", "'green' does not occur in the caption"),
    ("a bored cat", "red → blue", "'red' does not occur"),
    ("", "red → blue", "caption: empty"),
    ("a red car", "", "edit: empty"),
    ("a red car", "make it blue", "neither 'old → new' nor 'attribute: value'"),
    ("a red car", "→ blue", "nothing to replace"),
])
def test_edit_errors_name_the_input(caption, edit, message):
    with pytest.raises(CaptionEditError, match=message):
        apply_edit(caption, edit)
    assert parse_edit("x → y", "x") == ("x", "y")


def test_occurrence_out_of_range():
    with pytest.raises(CaptionEditError, match="occurrence: 3"):
        apply_edit("red red", "red → blue", occurrence=3)


def test_changed_token_positions():
    src = [49406, 320, 736, 1615, 49407]
    tgt = [49406, 320, 1746, 1615, 49407]
    assert changed_token_positions(src, tgt) == ([2], [2])
    assert changed_token_positions([1, 2, 3], [1, 5, 6, 3]) == ([1], [1, 2])
    assert changed_token_positions([1, 2], [1, 2]) == ([], [])


# ----------------------------------------------------------------------------- attention masks

def test_token_attention_and_mask():
    torch.manual_seed(0)
    b, n, heads, d, t = 1, 64, 2, 8, 5
    q = torch.randn(b, n, heads * d)
    k = torch.randn(b, t, heads * d)
    k[:, 3] = 0
    k[:, 3, :d] = 20.0  # token 3 dominates where q·k is large
    q[:, :32, :d] = 1.0  # the top half of the 8×8 map looks at token 3
    q[:, 32:, :d] = -1.0
    att = token_attention(q, k, heads, [3])
    assert att.shape == (1, 64) and float(att[0, :32].mean()) > float(att[0, 32:].mean())
    grid = to_spatial(att, (8, 8))
    assert grid.shape == (1, 1, 8, 8)
    mask = edit_mask([att], (16, 16), threshold=0.5, blur=1)
    assert mask.shape == (1, 1, 16, 16) and float(mask[..., :6, :].mean()) > 0.9 and float(mask[..., 12:, :].max()) == 0
    with pytest.raises(ValueError, match="no attention to the changed tokens"):
        edit_mask([], (8, 8))


@pytest.mark.parametrize("heads_first", [True, False])
def test_joint_token_attention_reads_the_image_queries_over_text_and_image_keys(heads_first):
    """A DiT's joint sequence [text (5) ; image (16) ; padding (3)]: the result is the naive softmax over the text and
    image keys, read at the image queries and the chosen text tokens; the image rows that look at token 2 show."""
    torch.manual_seed(1)
    b, heads, d, text, image = 2, 3, 4, 5, 16
    q = torch.randn(b, heads, text + image + 3, d)
    k = torch.randn(b, heads, text + image + 3, d)
    k[:, :, 2] = 0
    k[:, :, 2, 0] = 12.0
    q[:, :, text:text + 8, 0] = 2.0  # the first 8 image tokens look at text token 2
    q[:, :, text + 8:text + image, 0] = -2.0
    scores = q[:, :, :text + image] @ k[:, :, :text + image].transpose(-1, -2) / d**0.5
    naive = scores.softmax(-1)[:, :, text:, [1, 2]].sum(-1).mean(1)
    layout = (lambda t: t) if heads_first else (lambda t: t.transpose(1, 2).flatten(2))
    got = joint_token_attention(layout(q), layout(k), heads, [1, 2, 7], text, image, heads_first=heads_first)
    torch.testing.assert_close(got, naive)  # token 7 lies in the image part: not a text token, left out
    assert float(got[:, :8].min()) > 0.5 > float(got[:, 8:].max())


def test_conditioning_positions_follow_a_dropped_prefix():
    """Qwen-Image's encoder returns the tokens after its chat template: positions shift by the tokens dropped."""
    assert conditioning_positions([3, 40, 41], 43, 9) == [6, 7]
    assert conditioning_positions([2, 5], 77, 77) == [2, 5]
