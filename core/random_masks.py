"""Random training holes: brush strokes, shapes (docs/methods.md §0.5) and Perlin masks (RAD).

Every generator takes an explicit ``torch.Generator`` so training data is reproducible per step.
Masks are float (1,H,W) or (B,1,H,W) with 1 = hole.
"""
from __future__ import annotations

import math

import torch


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    return ys, xs


def _segment_distance(ys, xs, p0, p1) -> torch.Tensor:
    """Distance of every pixel to the segment p0→p1 (points as (y, x))."""
    (y0, x0), (y1, x1) = p0, p1
    dy, dx = y1 - y0, x1 - x0
    length2 = dy * dy + dx * dx
    if length2 == 0:
        return torch.sqrt((ys - y0) ** 2 + (xs - x0) ** 2)
    t = (((ys - y0) * dy + (xs - x0) * dx) / length2).clamp(0.0, 1.0)
    return torch.sqrt((ys - (y0 + t * dy)) ** 2 + (xs - (x0 + t * dx)) ** 2)


def brush_mask(h: int, w: int, generator: torch.Generator, *, max_tries: int = 4, max_vertices: int = 8,
               width_range: tuple[float, float] = (0.05, 0.15)) -> torch.Tensor:
    """Free-form strokes in the style of BrushNet's ``random_brush_gen``: polylines with round joints.

    Each try draws up to ``max_vertices`` vertices, mean turning angle 2π/5 ± U(0, 2π/15), segment
    length ~ N(r̄, r̄/2) clipped to [0, 2r̄] with r̄ = √(H² + W²)/8, width U(width_range)·H.
    """
    ys, xs = _grid(h, w)
    mask = torch.zeros(h, w)
    r_mean = math.sqrt(h * h + w * w) / 8
    for _ in range(_randint(generator, 1, max_tries)):
        width = _uniform(generator, *width_range) * h
        angle_mean = 2 * math.pi / 5 + _uniform(generator, -2 * math.pi / 15, 2 * math.pi / 15)
        y, x = _uniform(generator, 0, h), _uniform(generator, 0, w)
        for i in range(_randint(generator, 1, max_vertices)):
            angle = angle_mean if i % 2 == 0 else 2 * math.pi - angle_mean
            angle += _uniform(generator, -0.5, 0.5)
            length = min(max(r_mean + r_mean / 2 * float(torch.randn((), generator=generator)), 0.0), 2 * r_mean)
            ny = min(max(y + length * math.sin(angle), 0.0), h - 1.0)
            nx = min(max(x + length * math.cos(angle), 0.0), w - 1.0)
            mask = torch.maximum(mask, (_segment_distance(ys, xs, (y, x), (ny, nx)) <= width / 2).float())
            y, x = ny, nx
    if float(torch.rand((), generator=generator)) < 0.5:
        mask = mask.flip(1)
    if float(torch.rand((), generator=generator)) < 0.5:
        mask = mask.flip(0)
    return mask[None]


def shape_mask(h: int, w: int, generator: torch.Generator, *, count: tuple[int, int] = (1, 4),
               area: tuple[float, float] = (0.1, 0.5)) -> torch.Tensor:
    """1–4 random axis-aligned rectangles or ellipses, each covering area[0]..area[1]/count of the image."""
    ys, xs = _grid(h, w)
    mask = torch.zeros(h, w)
    n = _randint(generator, *count)
    for _ in range(n):
        frac = _uniform(generator, *area) / n
        aspect = math.exp(_uniform(generator, -0.7, 0.7))
        bh = min(h, math.sqrt(frac * h * w / aspect))
        bw = min(w, bh * aspect)
        cy, cx = _uniform(generator, bh / 2, h - bh / 2), _uniform(generator, bw / 2, w - bw / 2)
        if float(torch.rand((), generator=generator)) < 0.5:
            shape = ((ys - cy).abs() <= bh / 2) & ((xs - cx).abs() <= bw / 2)
        else:
            shape = ((ys - cy) / (bh / 2)) ** 2 + ((xs - cx) / (bw / 2)) ** 2 <= 1
        mask = torch.maximum(mask, shape.float())
    return mask[None]


def perlin_noise(h: int, w: int, res: int, generator: torch.Generator) -> torch.Tensor:
    """2-D gradient (Perlin) noise with ``res`` periods per axis, quintic fade 6t⁵ − 15t⁴ + 10t³."""
    angles = 2 * math.pi * torch.rand(res + 1, res + 1, generator=generator)
    grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    ys = torch.linspace(0, res, h + 1)[:-1]
    xs = torch.linspace(0, res, w + 1)[:-1]
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    iy, ix = gy.floor().long().clamp(max=res - 1), gx.floor().long().clamp(max=res - 1)
    fy, fx = gy - iy, gx - ix

    def corner(dy: int, dx: int) -> torch.Tensor:
        g = grads[iy + dy, ix + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    uy, ux = fade(fy), fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), ux)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), ux)
    return math.sqrt(2) * torch.lerp(top, bottom, uy)


def perlin_mask(h: int, w: int, generator: torch.Generator, *,
                fraction: tuple[float, float] = (0.1, 0.9)) -> torch.Tensor:
    """RAD-style Perlin hole (Kim et al. 2025, §4.2): random cell size, the lowest-valued pixels are masked.

    The masked fraction is drawn from U(fraction); exactly round(fraction·H·W) pixels are holes.
    """
    res = _randint(generator, 1, max(1, min(h, w) // 4))
    values = perlin_noise(h, w, res, generator).flatten()
    k = max(1, round(_uniform(generator, *fraction) * h * w))
    threshold = values.kthvalue(k).values
    return (values <= threshold).float().view(1, h, w)


def pixel_mask(h: int, w: int, generator: torch.Generator, *,
               fraction: tuple[float, float] = (0.1, 0.9)) -> torch.Tensor:
    """Independent-pixel hole, the ablation RAD compares Perlin masks with (Kim et al. 2025, §4.2): each pixel
    is a hole with probability p ~ U(fraction); exactly round(p·H·W) pixels, as :func:`perlin_mask`."""
    k = max(1, round(_uniform(generator, *fraction) * h * w))
    order = torch.randperm(h * w, generator=generator)
    out = torch.zeros(h * w)
    out[order[:k]] = 1.0
    return out.view(1, h, w)


MASK_KINDS = {"brush": brush_mask, "shape": shape_mask, "perlin": perlin_mask, "pixel": pixel_mask}


def random_hole_masks(batch: int, h: int, w: int, generator: torch.Generator,
                      probs: dict[str, float] | None = None) -> torch.Tensor:
    """(B,1,H,W) holes, each of a kind drawn with ``probs`` (default brush 0.45, shape 0.45, perlin 0.1)."""
    probs = probs or {"brush": 0.45, "shape": 0.45, "perlin": 0.1}
    unknown = set(probs) - set(MASK_KINDS)
    if unknown:
        raise ValueError(f"mask kinds {sorted(unknown)} unknown; choose from {sorted(MASK_KINDS)}")
    kinds = [k for k, p in probs.items() if p > 0]
    if not kinds:
        raise ValueError("mask probabilities: at least one kind needs a positive probability")
    weights = torch.tensor([probs[k] for k in kinds], dtype=torch.float64)
    picks = torch.multinomial(weights, batch, replacement=True, generator=generator)
    return torch.stack([MASK_KINDS[kinds[int(i)]](h, w, generator) for i in picks])
