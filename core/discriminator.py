"""LADD-style discriminator heads on a frozen teacher UNet's features (Sauer et al. 2024; docs/methods.md §1.5)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class DiscHead(nn.Module):
    """Per-token logits for one (B,C,H,W) feature map: SN-conv → GN → LeakyReLU → residual k9 block → SN-conv."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        groups = 8 if hidden % 8 == 0 else 1
        self.stem = nn.Sequential(spectral_norm(nn.Conv1d(channels, hidden, 1)), nn.GroupNorm(groups, hidden),
                                  nn.LeakyReLU(0.2))
        self.block = nn.Sequential(spectral_norm(nn.Conv1d(hidden, hidden, 9, padding=4, padding_mode="circular")),
                                   nn.GroupNorm(groups, hidden), nn.LeakyReLU(0.2))
        self.out = spectral_norm(nn.Conv1d(hidden, 1, 1))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        tokens = feature.flatten(2).float()  # (B,C,N)
        h = self.stem(tokens)
        h = (self.block(h) + h) / 2**0.5
        return self.out(h).flatten(1)  # (B,N)


class FeatureDiscriminator(nn.Module):
    """One head per hooked teacher feature map; logits of all heads concatenated to (B, ΣN)."""

    def __init__(self, feature_channels: list[int], hidden: int = 64):
        super().__init__()
        self.heads = nn.ModuleList(DiscHead(c, hidden) for c in feature_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([head(f) for head, f in zip(self.heads, features)], dim=1)


class FeatureTap:
    """Collects the outputs of chosen submodules, only inside ``with tap.capture():`` (forward hooks)."""

    def __init__(self, modules: list[nn.Module]):
        self.features: list[torch.Tensor] = []
        self.active = False
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module, args, output):
        if self.active:
            self.features.append(output[0] if isinstance(output, tuple) else output)

    def capture(self):
        tap = self

        class _Capture:
            def __enter__(self):
                tap.features, tap.active = [], True
                return tap

            def __exit__(self, *exc):
                tap.active = False

        return _Capture()

    def take(self) -> list[torch.Tensor]:
        out, self.features = self.features, []
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5·(E[ReLU(1 − D(real))] + E[ReLU(1 + D(fake))]) (Lim & Ye 2017)."""
    return 0.5 * (torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """−E[D(fake)]."""
    return -fake_logits.mean()
