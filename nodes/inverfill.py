"""InverFill nodes: load an inversion network, and build the start NOISE from it (Vu et al., CVPR 2026)."""
from __future__ import annotations

import torch

from ..core.masks import check_finite
from ._api import CATEGORY_INPAINT, SEED_MAX, io, weight_files

InverFillNet = io.Custom("FEWSTEP_INVERFILL")


class InverFillLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepInverFillLoader",
            display_name="InverFill Loader",
            category=CATEGORY_INPAINT,
            description=(
                "Loads an InverFill inversion network (.safetensors from models/fewstep/inverfill) for this MODEL. "
                "Refuses a network trained for another model family or architecture."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The few-step model the network was trained for (its base): a UNet, "
                                                "or FLUX (the network is then a FLUX DiT)."),
                io.Combo.Input("network_name", options=weight_files("inverfill"),
                               tooltip="File in models/fewstep/inverfill (made by python -m trainers.inverfill)."),
            ],
            outputs=[InverFillNet.Output(display_name="inverfill", tooltip="For Inverse Noise Init.")],
        )

    @classmethod
    def execute(cls, model, network_name: str) -> io.NodeOutput:
        from .comfy_inverfill import build_network, check_model
        from .paths import input_named, load_weight_file

        check_model(model)
        with input_named("network_name"):
            state_dict, metadata = load_weight_file("inverfill", network_name)
            return io.NodeOutput(build_network(model, state_dict, metadata, network_name))


class InverseNoiseInit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepInverseNoiseInit",
            display_name="Inverse Noise Init",
            category=CATEGORY_INPAINT,
            description=(
                "InverFill: one pass of the inversion network turns the masked image into a start noise aligned "
                "with it; the hole gets fresh noise (Re-Blend). The sampler then starts exactly there."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The few-step model used for sampling."),
                InverFillNet.Input("inverfill", tooltip="From InverFill Loader."),
                io.Conditioning.Input("positive", tooltip="The prompt (first entry is used; SDXL pooled/size too)."),
                io.Mask.Input("mask", tooltip="1 = hole. An empty mask skips the network (plain seeded noise)."),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Seed of the fresh noise in the hole."),
                io.Image.Input("image", optional=True,
                               tooltip="The image to inpaint; its hole is blacked out and encoded with vae."),
                io.Vae.Input("vae", optional=True, tooltip="VAE to encode the masked image (with image)."),
                io.Latent.Input("masked_latent", optional=True,
                                tooltip="Instead of image + vae: the latent of the image with its hole already black."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="The sampler's SIGMAS; without it the schedule is assumed to start at the "
                                        "model's top noise level (true for FewStep Schedule)."),
            ],
            outputs=[io.Noise.Output(tooltip="NOISE for SamplerCustomAdvanced (or Re-Blend).")],
        )

    @classmethod
    def execute(cls, model, inverfill, positive, mask: torch.Tensor, seed: int, image=None, vae=None,
                masked_latent=None, sigmas=None) -> io.NodeOutput:
        from .comfy_inverfill import InverseNoise, encode_masked_image

        check_finite(mask, "mask")
        latent = None
        if inverfill.masking == "pixel":
            if masked_latent is not None:
                latent = masked_latent["samples"]
            elif image is not None and vae is not None:
                latent = encode_masked_image(vae, image, mask)
            else:
                raise ValueError("Inverse Noise Init: connect image and vae (or masked_latent); "
                                 f"{inverfill.name} was trained on VAE-encoded masked images")
        sigma0 = float(sigmas[0]) if sigmas is not None and len(sigmas) > 0 else None
        return io.NodeOutput(InverseNoise(model, inverfill, positive, mask, seed, latent, sigma0))
