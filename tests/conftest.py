"""Shared test set-up: CPU threads, offline hubs, and ComfyUI (real checkout or schema stand-in).

With ``COMFYUI_DIR`` pointing at a ComfyUI checkout whose requirements this interpreter has,
ComfyUI is imported in-process (``--cpu``) and node tests run against it. Otherwise the schema
stand-in in ``tests/stubs`` is used and tests that need the real host are skipped.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
PACK_NAME = "fewstep_pack"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _import_real_comfyui() -> bool:
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        return False
    sys.path.insert(0, os.path.abspath(comfy_dir))
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        import comfy_api.latest  # noqa: F401
    except ImportError:
        sys.path.remove(os.path.abspath(comfy_dir))
        for name in [m for m in sys.modules if m == "comfy" or m.startswith(("comfy.", "comfy_api"))]:
            del sys.modules[name]
        return False
    return True


REAL_COMFYUI = _import_real_comfyui()
if not REAL_COMFYUI:
    sys.path.insert(0, str(REPO / "tests" / "stubs"))

requires_comfyui = pytest.mark.skipif(
    not REAL_COMFYUI, reason="needs COMFYUI_DIR with ComfyUI importable in this interpreter"
)


def load_pack(name: str = PACK_NAME):
    """Import the repo root as a package under ``name``, the way ComfyUI's loader does."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def pack_nodes(pack):
    import importlib

    return importlib.import_module(f"{PACK_NAME}.nodes.extension")
