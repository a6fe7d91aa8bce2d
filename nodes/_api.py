"""The one module that imports ComfyUI's node API; every node imports ``io`` and ``ui`` from here."""
from comfy_api.latest import ComfyExtension, io, ui

CATEGORY = "FewStep"
CATEGORY_SAMPLING = f"{CATEGORY}/sampling"
CATEGORY_INPAINT = f"{CATEGORY}/inpaint"

__all__ = ["ComfyExtension", "io", "ui", "CATEGORY", "CATEGORY_SAMPLING", "CATEGORY_INPAINT"]
