"""FewStep Schedule: exact SIGMAS for the discrete timesteps few-step models were distilled on."""
from __future__ import annotations

from ..core.schedules import (
    fewstep_sigmas,
    flow_grid,
    flow_sigmas,
    lcm_timesteps,
    parse_flow_timesteps,
    parse_timesteps,
    trailing_timesteps,
)
from ._api import CATEGORY_SAMPLING, SPACINGS, check_option, io

# Flow-matching families with few-step distilled models, by ComfyUI's model class (comfy.model_base)
FLOW_FAMILIES = {
    "Flux": "FLUX.1-schnell, 1–4 steps",
    "QwenImage": "Qwen-Image with the 4/8-step Lightning LoRAs",
    "Lumina2": "Lumina2-family turbo DiTs",
}
VIDEO_FAMILIES = ("WAN21", "WAN22", "HunyuanVideo", "LTXV", "GenmoMochi", "CosmosVideo", "CosmosPredict2")


def is_flow(sampling) -> bool:
    """True for a rectified-flow MODEL (ComfyUI's CONST parameterisation: x_σ = (1 − σ)·x0 + σ·ε)."""
    return any(cls.__name__ == "CONST" for cls in type(sampling).__mro__)


def discrete_sigma_table(model):
    """The σ table of a discrete-time (EPS / V-prediction) MODEL, or a clear error naming ``model``."""
    sampling = model.get_model_object("model_sampling")
    table = getattr(sampling, "sigmas", None)
    if table is None or is_flow(sampling):
        raise ValueError(
            f"model: FewStep Schedule needs a discrete-time (EPS or v-prediction) model such as "
            f"SD1.5/SD2.1/SDXL and their Turbo/Lightning/DMD2/LCM variants; got {type(sampling).__name__}"
        )
    return table.detach().cpu()


def flow_family(model) -> str:
    """The few-step flow family of a MODEL (``FLOW_FAMILIES``), or an error naming ``model`` and what it is."""
    import comfy.model_base

    inner = getattr(model, "model", None)
    for name in FLOW_FAMILIES:
        family = getattr(comfy.model_base, name, None)
        if family is not None and isinstance(inner, family):
            return name
    kind = type(inner).__name__
    supported = "; ".join(f"{name} ({what})" for name, what in FLOW_FAMILIES.items())
    if kind in VIDEO_FAMILIES:
        raise ValueError(f"model: {kind} is a video model; FewStep nodes sample images ({supported})")
    raise ValueError(f"model: {kind} is a flow-matching model without a distilled few-step grid here; "
                     f"FewStep Schedule knows {supported}")


def flow_schedule(model, steps: int, spacing: str, timesteps: str):
    """SIGMAS of a few-step flow MODEL: the grid t = 1, 1 − 1/N, …, 1/N (or ``timesteps`` as t × 1000) through the
    model's own shift (``model_sampling.percent_to_sigma``, so ModelSamplingAuraFlow/Flux patches apply)."""
    flow_family(model)
    check_option("spacing", spacing, SPACINGS)
    if not timesteps.strip() and spacing == "lcm":
        raise ValueError("spacing: 'lcm' is LCM's grid for UNets; flow models sample on 'trailing' "
                         "(t = 1, 1 − 1/N, …, 1/N), or give timesteps")
    sampling = model.get_model_object("model_sampling")
    times = parse_flow_timesteps(timesteps) if timesteps.strip() else flow_grid(steps)
    return flow_sigmas(times, lambda t: sampling.percent_to_sigma(1.0 - t))


def schedule_timesteps(steps: int, spacing: str, timesteps: str, num_train_timesteps: int) -> list[int]:
    """The timestep list the node uses: the override string if given, else ``spacing`` at ``steps``."""
    if timesteps.strip():
        return parse_timesteps(timesteps, num_train_timesteps)
    if check_option("spacing", spacing, SPACINGS) == "trailing":
        return trailing_timesteps(steps, num_train_timesteps)
    return lcm_timesteps(steps, num_train_timesteps=num_train_timesteps)


class FewStepSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepSchedule",
            display_name="FewStep Schedule",
            category=CATEGORY_SAMPLING,
            description=(
                "Exact SIGMAS for the timesteps few-step checkpoints were distilled on: "
                "4 steps = 999, 749, 499, 249 (core SDTurboScheduler gives 999, 899, 799, 699). Flow models "
                "(FLUX.1-schnell, Qwen-Image + Lightning, Lumina2 turbo): t = 1, 0.75, 0.5, 0.25 through the model's "
                "own shift. Use with SamplerCustomAdvanced."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The few-step model; its own noise schedule converts timesteps to sigmas.",
                ),
                io.Int.Input(
                    "steps", default=4, min=1, max=50,
                    tooltip="Number of sampling steps: 1, 2, 4 or 8 are what distilled models were trained for.",
                ),
                io.Combo.Input(
                    "spacing", options=list(SPACINGS), default="trailing",
                    tooltip=(
                        "trailing: DMD2, SDXL-Turbo, SD-Turbo, SDXL-Lightning, Hyper-SD (4 steps: 999/749/499/249; "
                        "2: 999/499; 1: 999). lcm: LCM and LCM-LoRA (4 steps: 999/759/499/259)."
                    ),
                ),
                io.String.Input(
                    "timesteps", default="", optional=True,
                    tooltip=("Optional explicit list, e.g. '999, 749, 499, 249' (flow models: t × 1000, e.g. "
                             "'1000, 750, 500, 250'); overrides steps and spacing."),
                ),
            ],
            outputs=[io.Sigmas.Output(tooltip="σ(t) for each timestep, then 0.")],
        )

    @classmethod
    def execute(cls, model, steps: int, spacing: str, timesteps: str = "") -> io.NodeOutput:
        if is_flow(model.get_model_object("model_sampling")):
            return io.NodeOutput(flow_schedule(model, steps, spacing, timesteps or ""))
        table = discrete_sigma_table(model)
        chosen = schedule_timesteps(steps, spacing, timesteps or "", table.shape[0])
        return io.NodeOutput(fewstep_sigmas(chosen, table))
