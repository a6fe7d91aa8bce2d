"""A test-only ComfyUI custom node pack: ``TestTinyFluxCheckpoint`` gives the tiny random FLUX.1-schnell MODEL, its
CLIP-L + T5 CLIP and a 16-channel VAE (tests/support/tiny_flow.py, ComfyUI's own classes), with the outputs of Load
Checkpoint, so the real-host tests run the FLUX templates as shipped with only their loader swapped (a real FLUX
file is 3072 wide with a 4.7 B-parameter T5: no small file loads as one). Never part of the pack."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent.parent
PACKAGE = "fewstep_tiny_flux_support"


def support(name: str):
    """``tests/support/<name>.py`` as a module of a package of its own (its relative imports work)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, SUPPORT / "__init__.py",
                                                      submodule_search_locations=[str(SUPPORT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACKAGE}.{name}")


class TestTinyFluxCheckpoint:
    """Load Checkpoint's outputs for the tiny random FLUX.1-schnell."""

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 (ComfyUI's name)
        return {"required": {}}

    def load(self):
        tiny = support("tiny_flow")
        return tiny.tiny_flow_model("flux_schnell"), tiny.tiny_flow_clip("flux_schnell"), tiny.tiny_flow_vae()


NODE_CLASS_MAPPINGS = {"TestTinyFluxCheckpoint": TestTinyFluxCheckpoint}
