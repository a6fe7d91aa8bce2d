"""Local edit masks from attention to the changed tokens (TurboEdit Sec. 3.3; P2P-style maps): a UNet's
cross-attention, or the image-to-text part of a DiT's joint attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .masks import gaussian_blur


def token_attention(q: torch.Tensor, k: torch.Tensor, heads: int, tokens: list[int]) -> torch.Tensor:
    """Mean over heads of softmax(q·kᵀ/√d) restricted to ``tokens``: (B, N) from q (B,N,H·d), k (B,T,H·d).

    One head at a time, so a DiT's joint attention (T = text + image tokens) never holds all heads' N×T scores."""
    b, n, inner = q.shape
    d = inner // heads
    valid = [t for t in tokens if t < k.shape[1]]
    total = q.new_zeros(b, n, dtype=torch.float32)
    if not valid:
        return total
    qh = q.reshape(b, n, heads, d).float()
    kh = k.reshape(b, k.shape[1], heads, d).float()
    for h in range(heads):
        scores = qh[:, :, h] @ kh[:, :, h].transpose(-1, -2) / math.sqrt(d)  # (B,N,T)
        total += (scores[..., valid] - scores.logsumexp(-1, keepdim=True)).exp().sum(-1)
    return total / heads


def joint_token_attention(q: torch.Tensor, k: torch.Tensor, heads: int, tokens: list[int], text_len: int,
                          image_len: int, *, heads_first: bool) -> torch.Tensor:
    """(B, image_len) attention of the image queries to text ``tokens`` in a DiT's joint attention over the sequence
    [text (text_len) ; image (image_len) ; …] (Flux, Qwen-Image, Lumina2 put the text first): the softmax runs over
    every key, text and image, as the model's own does. q, k: (B,H,L,d) if ``heads_first`` else (B,L,H·d)."""
    if heads_first:
        q, k = q.transpose(1, 2).flatten(2), k.transpose(1, 2).flatten(2)
    end = text_len + image_len
    return token_attention(q[:, text_len:end], k[:, :end], heads, [t for t in tokens if t < text_len])


def to_spatial(values: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(B, N) per-token values of a feature map with the latent's aspect ratio → (B,1,h,w) at latent size."""
    h, w = latent_hw
    n = values.shape[1]
    rh = max(1, round(math.sqrt(n * h / w)))
    rw = n // rh
    if rh * rw != n:
        raise ValueError(f"attention over {n} positions does not tile a {h}×{w} latent")
    grid = values.reshape(values.shape[0], 1, rh, rw)
    return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)


def blur_radius(blur: int | None, latent_hw: tuple[int, int]) -> int:
    """The local mask's Gaussian blur radius in latent pixels: None or < 0 → 1/16 of the short side, 0 → none."""
    if blur is None or blur < 0:
        return max(1, min(latent_hw) // 16)
    return int(blur)


def soften_local_mask(mask_b1hw: torch.Tensor, blur: int | None) -> torch.Tensor:
    """TurboEdit's local mask treatment (Wu et al. 2024, Sec. 4: "Gaussian blur the mask, then resize it"), for a
    user's MASK and a noise mask as for the attention mask; values stay in [0, 1]."""
    return gaussian_blur(mask_b1hw, blur_radius(blur, tuple(mask_b1hw.shape[-2:]))).clamp(0.0, 1.0)


def edit_mask(maps: list[torch.Tensor], latent_hw: tuple[int, int], *, threshold: float = 0.4,
              blur: int | None = None) -> torch.Tensor:
    """Average attention maps, normalise to [0, 1] per sample, threshold, Gaussian-blur (≈ 1/16 of the side)."""
    if not maps:
        raise ValueError("no attention to the changed tokens was recorded")
    mean = torch.stack([to_spatial(m, latent_hw) for m in maps]).mean(0)
    lo = mean.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = mean.flatten(1).max(1).values.view(-1, 1, 1, 1)
    norm = (mean - lo) / (hi - lo).clamp_min(1e-8)
    return soften_local_mask((norm >= threshold).float(), blur)
