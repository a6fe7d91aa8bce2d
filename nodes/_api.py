"""The one module that imports ComfyUI's node API; every node imports ``io`` and ``ui`` from here."""
from comfy_api.latest import ComfyExtension, io, ui

CATEGORY = "FewStep"
CATEGORY_SAMPLING = f"{CATEGORY}/sampling"
CATEGORY_INPAINT = f"{CATEGORY}/inpaint"



def weight_files(kind: str) -> list[str]:
    """File names for a weight Combo (empty where ComfyUI's folder_paths is unavailable, e.g. schema tests)."""
    try:
        import folder_paths
    except ImportError:
        return []
    try:
        return folder_paths.get_filename_list(f"fewstep_{kind}")
    except KeyError:
        return []


__all__ = ["ComfyExtension", "io", "ui", "CATEGORY", "CATEGORY_SAMPLING", "CATEGORY_INPAINT", "weight_files"]
