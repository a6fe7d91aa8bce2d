"""core.blend: Re-Blend statistics and the x̂0 blend."""
import torch

from core.blend import blend_known, clear_hole, is_empty_mask, reblend_noise


def _mask(h=64, w=64, soft=False):
    m = torch.zeros(1, 1, h, w)
    m[..., h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
    if soft:
        m = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(m, (4, 4, 4, 4), mode="replicate"), 9, 1)
    return m


def test_reblend_hole_is_fresh_and_known_region_unchanged():
    g = torch.Generator().manual_seed(0)
    kept = torch.randn(4, 4, 64, 64, generator=g) * 3 + 5  # deliberately not N(0, 1)
    fresh = torch.randn(4, 4, 64, 64, generator=g)
    mask = _mask().expand(4, 1, 64, 64)
    out = reblend_noise(kept, fresh, mask)
    known = (mask == 0).expand_as(out)
    hole = (mask == 1).expand_as(out)
    assert torch.equal(out[known], kept[known])
    assert torch.equal(out[hole], fresh[hole])
    assert abs(float(out[hole].mean())) < 0.02 and abs(float(out[hole].std()) - 1) < 0.02


def test_reblend_soft_edges_keep_unit_variance():
    g = torch.Generator().manual_seed(1)
    kept = torch.randn(64, 4, 64, 64, generator=g)
    fresh = torch.randn(64, 4, 64, 64, generator=g)
    mask = _mask(soft=True).expand(64, 1, 64, 64)
    out = reblend_noise(kept, fresh, mask)
    edge = ((mask > 0) & (mask < 1)).expand_as(out)
    assert edge.sum() > 10000
    assert abs(float(out[edge].mean())) < 0.02
    assert abs(float(out[edge].std()) - 1) < 0.02
    naive = torch.lerp(kept, fresh, mask)
    assert float(naive[edge].std()) < 0.95, "without the normalisation soft edges lose variance"


def test_blend_known_pastes_source_exactly_even_over_nan():
    source = torch.randn(1, 4, 8, 8)
    generated = torch.full_like(source, float("nan"))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    out = blend_known(generated, source, mask)
    assert torch.equal(out[..., 4:, :], source[..., 4:, :])
    assert torch.isnan(out[..., :4, :]).all()


def test_blend_known_soft_values():
    out = blend_known(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.25))
    assert float(out) == 0.25


def test_clear_hole_and_empty_mask():
    source = torch.ones(1, 4, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    assert torch.equal(clear_hole(source, mask)[0, 0], torch.tensor([[0.0, 1.0], [0.5, 1.0]]))
    assert is_empty_mask(torch.zeros(1, 1, 2, 2)) and not is_empty_mask(mask) and not is_empty_mask(None)
