"""A randomly initialised SAM2.1 tiny at image size 128, saved once per test run as .safetensors and Meta-style .pt."""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
IMAGE_SIZE = 128
OVERRIDES = (f"++model.image_size={IMAGE_SIZE}",)
SEED = 0
# find_spec, not importorskip: importing sam2 would initialise Hydra globally before the tests check it.
requires_sam2 = pytest.mark.skipif(importlib.util.find_spec("sam2") is None,
                                   reason="needs sam2: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0")


@dataclass(frozen=True)
class TinySAM2:
    safetensors: Path  # records image_size in its metadata, so the loaders need no overrides
    pt: Path  # Meta's layout {"model": state_dict}; load with OVERRIDES
    state_dict: dict


@functools.lru_cache(maxsize=None)
def build_tiny_sam2(folder: str) -> TinySAM2:
    """Seeded random SAM2.1 tiny written to ``folder`` (cached: test modules share one build)."""
    from core.segment import build_model
    from core.weights import save_weights

    torch.manual_seed(SEED)
    state_dict = {k: v.clone() for k, v in build_model(CONFIG, OVERRIDES).state_dict().items()}
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    safetensors = save_weights(root / "sam2.1_tiny_random.safetensors", state_dict, {"image_size": str(IMAGE_SIZE)})
    pt = root / "sam2.1_tiny_random.pt"
    torch.save({"model": state_dict}, pt)
    return TinySAM2(safetensors, pt, state_dict)


def shared_tiny_sam2(tmp_path_factory) -> TinySAM2:
    """The run's tiny SAM2 files (test modules' ``tiny_sam2`` fixtures call this)."""
    return build_tiny_sam2(str(tmp_path_factory.getbasetemp() / "tiny_sam2"))


def sample_image(height: int = 150, width: int = 203, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """A smooth random (B,H,W,3) IMAGE in [0,1]: non-square, not a multiple of 16."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 6, 8, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return image.permute(0, 2, 3, 1).contiguous()
