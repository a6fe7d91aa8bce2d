"""TurboEdit nodes: Caption Editor, Iterative Inverter, TurboEdit Encoder Loader, TurboEdit Edit Sampler
(Wu et al., ECCV 2024)."""
from __future__ import annotations

import json

from ..core.caption_edit import apply_edit, changed_token_positions
from ._api import CATEGORY_EDIT, INVERSION_METHODS, LOCAL_MASKS, SEED_MAX, finite_floats, io, weight_files

Inversion = io.Custom("FEWSTEP_INVERSION")
EditTokens = io.Custom("FEWSTEP_EDIT_TOKENS")
Encoder = io.Custom("FEWSTEP_TURBOEDIT")


class CaptionEditor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepCaptionEditor",
            display_name="Caption Editor",
            category=CATEGORY_EDIT,
            description=(
                "Changes one attribute of a detailed caption ('red → blue', or 'color: blue') and encodes both "
                "captions. Matching is case-insensitive on whole words; every occurrence is replaced unless "
                "occurrence is set. Reports which tokens changed (for the local edit mask)."
            ),
            inputs=[
                io.Clip.Input("clip", tooltip="Text encoder of the model you edit with."),
                io.String.Input("caption", multiline=True, default="",
                                tooltip="A detailed caption of the image (by hand or from any captioning node)."),
                io.String.Input("edit", default="red → blue",
                                tooltip="'old → new' (-> and => work too), or 'attribute: value' for color, material, "
                                        "season, time of day, weather."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="Edit strength: target = source + strength·(target − source) on the text "
                                       "embeddings (1 = the new caption)."),
                io.Int.Input("occurrence", default=0, min=0, max=64,
                             tooltip="0 replaces every occurrence; n replaces only the n-th."),
                io.String.Input("prefix", default="", optional=True,
                                tooltip="Text put before both captions and never edited, e.g. Lumina2's system prompt "
                                        "ending in '<Prompt Start>' (as CLIP Text Encode for Lumina2 writes it)."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="source", tooltip="The caption as given (for inversion)."),
                io.Conditioning.Output(display_name="target", tooltip="The edited caption (for the edit)."),
                io.String.Output(display_name="source_caption", tooltip="Caption with whitespace normalised."),
                io.String.Output(display_name="target_caption", tooltip="The edited caption."),
                EditTokens.Output(display_name="tokens", tooltip="Changed token positions, for the edit's mask."),
                io.String.Output(display_name="report", tooltip="What changed, as JSON."),
            ],
        )

    @classmethod
    @finite_floats
    def execute(cls, clip, caption: str, edit: str, strength: float = 1.0, occurrence: int = 0,
                prefix: str = "") -> io.NodeOutput:
        from .comfy_turboedit import encode_caption, interpolate_conditioning

        change = apply_edit(caption, edit, occurrence)
        source, src_ids, src_positions = encode_caption(clip, " ".join(f"{prefix or ''} {change.source}".split()))
        target, tgt_ids, tgt_positions = encode_caption(clip, " ".join(f"{prefix or ''} {change.target}".split()))
        src_changed, tgt_changed = changed_token_positions(src_ids, tgt_ids)
        src_changed = [src_positions[i] for i in src_changed]
        tgt_changed = [tgt_positions[i] for i in tgt_changed]
        target = interpolate_conditioning(source, target, strength)
        tokens = {"source": src_changed, "target": tgt_changed, "old": change.old, "new": change.new}
        report = json.dumps({**tokens, "occurrences": len(change.spans), "caption_tokens": len(tgt_ids)})
        return io.NodeOutput(source, target, change.source, change.target, tokens, report)


class TurboEditEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepTurboEditLoader",
            display_name="TurboEdit Encoder Loader",
            category=CATEGORY_EDIT,
            description="Loads a TurboEdit inversion encoder (models/fewstep/turboedit) for this MODEL.",
            inputs=[
                io.Model.Input("model", tooltip="The few-step model the encoder was trained for."),
                io.Combo.Input("encoder_name", options=weight_files("turboedit"),
                               tooltip="File in models/fewstep/turboedit (made by python -m trainers.turboedit)."),
            ],
            outputs=[Encoder.Output(display_name="encoder", tooltip="For Iterative Inverter (method encoder).")],
        )

    @classmethod
    def execute(cls, model, encoder_name: str) -> io.NodeOutput:
        from .comfy_turboedit import build_encoder
        from .paths import input_named, load_weight_file

        with input_named("encoder_name"):
            state_dict, metadata = load_weight_file("turboedit", encoder_name)
            return io.NodeOutput(build_encoder(model, state_dict, metadata, encoder_name))


class IterativeInverter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepIterativeInverter",
            display_name="Iterative Inverter",
            category=CATEGORY_EDIT,
            description=(
                "Inverts an image into the noises of a few-step trajectory (TurboEdit). exact: solves each step's "
                "noise so the trajectory reproduces the image exactly (no weights, N model passes). encoder: "
                "TurboEdit's encoder predicts them (2N passes)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The few-step model (the same one edits)."),
                io.Conditioning.Input("conditioning", tooltip="The source caption (Caption Editor: source)."),
                io.Int.Input("steps", default=4, min=1, max=50, tooltip="Trajectory length (trailing timesteps)."),
                io.Combo.Input("method", options=list(INVERSION_METHODS), default="exact",
                               tooltip="exact: edit-friendly inversion, no weights. "
                                       "encoder: needs a TurboEdit encoder."),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Seed of the noised states the exact inversion passes through."),
                io.Latent.Input("latent", optional=True, tooltip="The image's latent (or give image + vae)."),
                io.Image.Input("image", optional=True, tooltip="The image to edit (encoded with vae)."),
                io.Vae.Input("vae", optional=True, tooltip="VAE for image."),
                Encoder.Input("encoder", optional=True, tooltip="From TurboEdit Encoder Loader (method encoder)."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="Own schedule instead of steps (e.g. FewStep Schedule)."),
            ],
            outputs=[
                Inversion.Output(display_name="inversion", tooltip="For TurboEdit Edit Sampler."),
                io.Latent.Output(display_name="reconstruction", tooltip="The image re-generated from the inversion."),
                io.Sigmas.Output(display_name="sigmas", tooltip="The schedule to give SamplerCustomAdvanced."),
                io.Latent.Output(display_name="latent",
                                 tooltip="The source latent (give it to SamplerCustomAdvanced)."),
            ],
        )

    @classmethod
    def execute(cls, model, conditioning, steps: int, method: str, seed: int, latent=None, image=None, vae=None,
                encoder=None, sigmas=None) -> io.NodeOutput:
        from .comfy_turboedit import run_inversion
        from .schedule import discrete_sigma_table, flow_schedule, is_flow, schedule_timesteps

        flow = is_flow(model.get_model_object("model_sampling"))
        if flow and method == "encoder":
            raise ValueError("method: the TurboEdit encoder is a UNet (ε/v models); on a flow model (Flux, "
                             "Qwen-Image, Lumina2) use method exact")
        if latent is not None:
            samples = latent["samples"]
        elif image is not None and vae is not None:
            samples = vae.encode(image[..., :3])
        else:
            raise ValueError("Iterative Inverter: connect latent, or image and vae")
        if sigmas is None and flow:
            sigmas = flow_schedule(model, steps, "trailing", "")
        elif sigmas is None:
            from ..core.schedules import fewstep_sigmas

            table = discrete_sigma_table(model)
            sigmas = fewstep_sigmas(schedule_timesteps(steps, "trailing", "", table.shape[0]), table)
        inversion, recon = run_inversion(model, samples, conditioning, sigmas, method, seed, encoder)
        return io.NodeOutput(inversion, {"samples": recon}, sigmas, {"samples": samples})


class TurboEditSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepTurboEditSampler",
            display_name="TurboEdit Edit Sampler",
            category=CATEGORY_EDIT,
            description=(
                "SAMPLER that replays an inversion with the guider's conditioning (the target caption). Outside the "
                "local mask the result stays equal to the source. Use with SamplerCustomAdvanced, the inverter's "
                "sigmas and latent; its NOISE input is not used."
            ),
            inputs=[
                Inversion.Input("inversion", tooltip="From Iterative Inverter."),
                io.Mask.Input("mask", optional=True, tooltip="Local edit region (1 = may change)."),
                EditTokens.Input("tokens", optional=True,
                                 tooltip="Changed tokens (Caption Editor): without a mask, their cross-attention "
                                         "gives the local mask."),
                io.Combo.Input("local_mask", options=list(LOCAL_MASKS), default="auto",
                               tooltip="auto: mask input, else the LATENT's noise_mask, else attention to the changed "
                                       "tokens. off: edit the whole image."),
                io.Float.Input("threshold", default=0.4, min=0.0, max=1.0, step=0.05,
                               tooltip="Attention mask: fraction of the peak attention that counts as edited."),
                io.Int.Input("blur", default=-1, min=-1, max=64,
                             tooltip="Gaussian blur radius of the local mask in latent pixels, applied to every local "
                                     "mask (MASK, noise mask or attention) as TurboEdit does: -1 = 1/16 of the short "
                                     "side, 0 = none (a sharp mask)."),
            ],
            outputs=[io.Sampler.Output(tooltip="SAMPLER for SamplerCustomAdvanced.")],
        )

    @classmethod
    @finite_floats
    def execute(cls, inversion, mask=None, tokens=None, local_mask: str = "auto", threshold: float = 0.4,
                blur: int = -1) -> io.NodeOutput:
        from .comfy_turboedit import EditSampler

        if mask is not None:
            from ..core.masks import check_finite

            check_finite(mask, "mask")
        return io.NodeOutput(EditSampler(inversion, mask, tokens, local_mask, threshold, blur))



