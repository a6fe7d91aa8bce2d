"""TurboFill nodes (Xie et al., CVPR 2025): load a BrushNet-style adapter and attach it to the conditioning."""
from __future__ import annotations

from ._api import CATEGORY_INPAINT, finite_floats, io, weight_files

Adapter = io.Custom("FEWSTEP_TURBOFILL")


class TurboFillLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepTurboFillLoader",
            display_name="TurboFill Loader",
            category=CATEGORY_INPAINT,
            description=(
                "Loads a TurboFill adapter (.safetensors from models/fewstep/turbofill) for this MODEL. Refuses an "
                "adapter trained for another model family or UNet layout."
            ),
            inputs=[
                io.Model.Input("model",
                               tooltip="The few-step model the adapter was trained on (e.g. DMD2 / SDXL-Turbo)."),
                io.Combo.Input("adapter_name", options=weight_files("turbofill"),
                               tooltip="File in models/fewstep/turbofill (made by python -m trainers.turbofill)."),
            ],
            outputs=[Adapter.Output(display_name="adapter", tooltip="For TurboFill Adapter Apply.")],
        )

    @classmethod
    def execute(cls, model, adapter_name: str) -> io.NodeOutput:
        from .comfy_turbofill import build_adapter
        from .paths import input_named, load_weight_file

        with input_named("adapter_name"):
            state_dict, metadata = load_weight_file("turbofill", adapter_name)
            return io.NodeOutput(build_adapter(model, state_dict, metadata, adapter_name))


class TurboFillAdapterApply(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepTurboFillAdapterApply",
            display_name="TurboFill Adapter Apply",
            category=CATEGORY_INPAINT,
            description=(
                "Attaches the TurboFill adapter to the conditioning, like Apply ControlNet: at every step it sees the "
                "noisy latent, the VAE-encoded image with its hole blacked out and the hole mask, and adds its "
                "residuals to every encoder, middle and decoder layer of the UNet. Works with KSampler, "
                "SamplerCustomAdvanced, FewStep samplers, other ControlNets and model patches (LoRAs)."
            ),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Prompt for the filled region."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (unused at cfg 1, but kept in step)."),
                Adapter.Input("adapter", tooltip="From TurboFill Loader."),
                io.Vae.Input("vae", tooltip="The model's VAE: encodes the masked image for the adapter."),
                io.Image.Input("image", tooltip="The image to inpaint (its hole is blacked out before encoding)."),
                io.Mask.Input("mask", tooltip="1 = hole (thresholded at 0.5; resized to the image if needed)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="Scale of the adapter's residuals; 0 = the base model exactly."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="First part of the schedule where the adapter acts."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Last part of the schedule where the adapter acts."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive", tooltip="The prompt with the adapter attached."),
                     io.Conditioning.Output(display_name="negative",
                                            tooltip="The negative prompt with the adapter attached.")],
        )

    @classmethod
    @finite_floats
    def execute(cls, positive, negative, adapter, vae, image, mask, strength: float = 1.0, start_percent: float = 0.0,
                end_percent: float = 1.0) -> io.NodeOutput:
        from .comfy_turbofill import apply_adapter, hint_inputs

        if strength == 0:
            return io.NodeOutput(positive, negative)
        if start_percent > end_percent:
            raise ValueError(f"start_percent ({start_percent}) must not exceed end_percent ({end_percent})")
        hint, hole = hint_inputs(image, mask)
        cache: dict = {}
        percent = (start_percent, end_percent)
        return io.NodeOutput(apply_adapter(positive, adapter, vae, hint, hole, strength, percent, cache),
                             apply_adapter(negative, adapter, vae, hint, hole, strength, percent, cache))
