"""FewStep Fill & Edit: ComfyUI nodes for inpainting and text-guided editing in 1–4 diffusion steps.

ComfyUI imports this package under a mangled name from any folder in ``custom_nodes/``; every
import inside the pack is relative. Nothing is loaded or downloaded at import time: the node
modules are imported when ComfyUI calls :func:`comfy_entrypoint`.
"""
import logging

__version__ = "0.1.0"


async def comfy_entrypoint():
    """V3 entry point (ComfyUI ≥ 0.3.48): returns the pack's ``ComfyExtension``."""
    try:
        from .nodes.extension import FewStepExtension
    except Exception:
        logging.getLogger(__name__).exception("FewStep Fill & Edit: the node modules failed to import")
        raise
    return FewStepExtension()
