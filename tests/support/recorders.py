"""Test probes that plug into ComfyUI's model patches."""
from __future__ import annotations


class InputRecorder:
    """UNet function wrapper (``set_model_unet_function_wrapper``) recording the VE model input x and σ of every
    call."""

    def __init__(self):
        self.inputs, self.sigmas = [], []

    def __deepcopy__(self, memo):
        return self  # ModelPatcher.clone deep-copies model_options (0.3.64): a clone keeps recording here

    def __call__(self, apply_model, args):
        self.inputs.append(args["input"].detach().cpu().clone())
        self.sigmas.append(float(args["timestep"][0]))
        return apply_model(args["input"], args["timestep"], **args["c"])
