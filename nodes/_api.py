"""The one module that imports ComfyUI's node API; every node imports ``io`` and ``ui`` from here."""
import functools
import inspect
import math

from comfy_api.latest import ComfyExtension, io, ui

CATEGORY = "FewStep"
CATEGORY_SAMPLING = f"{CATEGORY}/sampling"
CATEGORY_INPAINT = f"{CATEGORY}/inpaint"
CATEGORY_EDIT = f"{CATEGORY}/edit"
CATEGORY_MASKS = f"{CATEGORY}/masks"

SEED_MAX = 0xFFFFFFFFFFFFFFFF  # ComfyUI's seed widgets are unsigned 64-bit

# Option enums, shared by the schema (Combo options) and the runtime that checks them.
HOLE_INITS = ("source", "noise")  # FewStep Blended Sampler
KNOWN_NOISES = ("fresh", "start")  # FewStep Blended Sampler
SPACINGS = ("trailing", "lcm")  # FewStep Schedule
INVERSION_METHODS = ("exact", "encoder")  # Iterative Inverter
LOCAL_MASKS = ("auto", "off")  # Edit Sampler
NO_LORA = "none"  # Region-Aware Sampler without a RAD LoRA


def check_option(name: str, value: str, options: tuple) -> str:
    """A Combo value the runtime got (from a graph or a script) must be one of the schema's options."""
    if value not in options:
        raise ValueError(f"{name}: {value!r} is not one of {list(options)}")
    return value


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


__all__ = ["ComfyExtension", "io", "ui", "CATEGORY", "CATEGORY_SAMPLING", "CATEGORY_INPAINT", "CATEGORY_EDIT",
           "CATEGORY_MASKS", "SEED_MAX", "HOLE_INITS", "KNOWN_NOISES", "SPACINGS", "INVERSION_METHODS", "LOCAL_MASKS",
           "NO_LORA", "check_option", "weight_files", "finite_floats"]
