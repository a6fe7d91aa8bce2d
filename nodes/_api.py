"""The one module that imports ComfyUI's node API; every node imports ``io`` and ``ui`` from here."""
import functools
import inspect
import math

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


def finite_floats(execute):
    """Decorate a node's ``execute``: every FLOAT input must be a finite number (ComfyUI's min/max checks let NaN
    through, and a NaN cfg or strength gives a black image or a silently skipped edit)."""
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def checked(cls, *args, **kwargs):
        bound = signature.bind_partial(cls, *args, **kwargs).arguments
        for spec in cls.define_schema().inputs:
            value = bound.get(spec.id)
            if isinstance(spec, io.Float.Input) and value is not None and not math.isfinite(float(value)):
                low, high = getattr(spec, "min", None), getattr(spec, "max", None)
                span = f" between {low} and {high}" if low is not None and high is not None else ""
                raise ValueError(f"{spec.id}: got {value}; give a finite number{span}")
        return execute(cls, *args, **kwargs)

    return checked


__all__ = ["ComfyExtension", "io", "ui", "CATEGORY", "CATEGORY_SAMPLING", "CATEGORY_INPAINT", "weight_files",
           "finite_floats"]
