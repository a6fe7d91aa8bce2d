"""FewStep Schedule: exact SIGMAS for the discrete timesteps few-step models were distilled on."""
from __future__ import annotations

from ..core.schedules import fewstep_sigmas, lcm_timesteps, parse_timesteps, trailing_timesteps
from ._api import CATEGORY_SAMPLING, SPACINGS, check_option, io


def discrete_sigma_table(model):
    """The σ table of a discrete-time (EPS / V-prediction) MODEL, or a clear error naming ``model``."""
    sampling = model.get_model_object("model_sampling")
    table = getattr(sampling, "sigmas", None)
    kinds = {cls.__name__ for cls in type(sampling).__mro__}
    if table is None or "CONST" in kinds or "ModelSamplingDiscreteFlow" in kinds:
        raise ValueError(
            f"model: FewStep Schedule needs a discrete-time (EPS or v-prediction) model such as "
            f"SD1.5/SD2.1/SDXL and their Turbo/Lightning/DMD2/LCM variants; got {type(sampling).__name__}"
        )
    return table.detach().cpu()


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
                "4 steps = 999, 749, 499, 249 (core SDTurboScheduler gives 999, 899, 799, 699). "
                "Use with SamplerCustomAdvanced."
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
                    tooltip="Optional explicit list, e.g. '999, 749, 499, 249'; overrides steps and spacing.",
                ),
            ],
            outputs=[io.Sigmas.Output(tooltip="σ(t) for each timestep, then 0.")],
        )

    @classmethod
    def execute(cls, model, steps: int, spacing: str, timesteps: str = "") -> io.NodeOutput:
        table = discrete_sigma_table(model)
        chosen = schedule_timesteps(steps, spacing, timesteps or "", table.shape[0])
        return io.NodeOutput(fewstep_sigmas(chosen, table))
