"""Tiny random flow-matching DiTs of ComfyUI's own families, built in-process from ComfyUI's classes (no download):
FLUX.1-schnell (``comfy.supported_models.FluxSchnell``), Qwen-Image (``QwenImage``) and Lumina2 (``Lumina2``).

Each is the family's model config with its architecture shrunk (one or two blocks, 64-wide), wrapped by
``model_base`` exactly as a loaded checkpoint is, in a ModelPatcher on the CPU; weights random but finite. Random
weights test wiring, schedules and exactness, not image quality.
"""
from __future__ import annotations

import torch

FLOW_FAMILIES = ("flux_schnell", "qwen_image", "lumina2")
CONTEXT_DIM = 32  # text features of the tiny models (T5 / Qwen2.5-VL / Gemma widths shrunk)
POOLED_DIM = 32  # Flux's pooled CLIP vector

UNET_CONFIGS = {
    "flux_schnell": ("FluxSchnell", {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": POOLED_DIM,
        "context_in_dim": CONTEXT_DIM, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1,
        "depth_single_blocks": 1, "axes_dim": [4, 14, 14], "theta": 10000, "patch_size": 2, "qkv_bias": True,
        "guidance_embed": False}),
    "qwen_image": ("QwenImage", {
        "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 1,
        "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": CONTEXT_DIM,
        "axes_dims_rope": (8, 12, 12)}),
    "lumina2": ("Lumina2", {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "n_layers": 1,
        "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "multiple_of": 16, "ffn_dim_multiplier": None,
        "norm_eps": 1e-5, "qk_norm": True, "cap_feat_dim": CONTEXT_DIM, "axes_dims": [8, 12, 12],
        "axes_lens": [300, 64, 64]}),
}


def tiny_flow_model(family: str, seed: int = 0, **sizes):
    """A ComfyUI MODEL (ModelPatcher) of ``family`` (one of ``FLOW_FAMILIES``), random finite weights, float32;
    ``sizes`` override the architecture (e.g. ``hidden_size``, ``depth`` for a benchmark's larger FLUX)."""
    import comfy.model_patcher
    import comfy.supported_models

    config_name, unet_config = UNET_CONFIGS[family]
    config = getattr(comfy.supported_models, config_name)({**unet_config, **sizes})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device=torch.device("cpu"))
    _initialise(model.diffusion_model, seed)
    model.diffusion_model.float()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def tiny_flow_vae():
    """A random TAESD-layout VAE with 16 latent channels (TAEF1's shape), through ComfyUI's VAE class."""
    import comfy.sd
    import comfy.taesd.taesd

    from .build_tiny_checkpoint import init_uninitialised

    taesd = comfy.taesd.taesd.TAESD(latent_channels=16)
    init_uninitialised(taesd, torch.Generator().manual_seed(3))
    return comfy.sd.VAE(sd=taesd.state_dict())


def tiny_flow_conditioning(family: str, batch: int = 1, tokens: int = 6, seed: int = 1) -> list:
    """CONDITIONING for the tiny model of ``family``: random text features, Flux's pooled vector, Lumina2's mask."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(batch, tokens, CONTEXT_DIM, generator=generator)
    extra = {}
    if family == "flux_schnell":
        extra["pooled_output"] = torch.randn(batch, POOLED_DIM, generator=generator)
    if family == "lumina2":
        extra["attention_mask"] = torch.ones(batch, tokens, dtype=torch.long)
    return [[context, extra]]


def _initialise(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI's ops leave weights as torch.empty: fan-in scaled normal weights, zero biases, unit norms."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim <= 1:
                p.fill_(1.0)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
        for buffer in module.buffers():
            if not torch.isfinite(buffer).all():
                buffer.zero_()


# Tiny text encoders of each family, from ComfyUI's own classes with shrunk configs and the family's real tokenizer
# (T5's and Qwen2.5's ship with ComfyUI; Gemma's SentencePiece model comes inside a checkpoint, so a small one is
# trained here on the captions it will read). Widths match CONTEXT_DIM / POOLED_DIM of the tiny DiTs above.
TINY_T5 = {"d_ff": 64, "d_kv": 16, "d_model": CONTEXT_DIM, "num_heads": 2, "num_layers": 0, "vocab_size": 32128,
           "dense_act_fn": "gelu_pytorch_tanh", "is_gated_act": True, "model_type": "t5", "layer_norm_epsilon": 1e-6}
TINY_CLIP_L = {"hidden_size": POOLED_DIM, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1,
               "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
               "projection_dim": POOLED_DIM, "bos_token_id": 0, "eos_token_id": 2}
TINY_LLM = {"hidden_size": CONTEXT_DIM, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "num_key_value_heads": 1}
LUMINA2_SYSTEM_PROMPT = ("You are an assistant designed to generate superior images with the superior degree of "
                         "image-text alignment based on textual prompts or user prompts. <Prompt Start>")
GEMMA_CORPUS = [LUMINA2_SYSTEM_PROMPT] + [
    f"a {size} {colour} {shape} at the {where} on a {bg} background"
    for size in ("large", "small") for colour in ("red", "green", "blue", "yellow")
    for shape in ("circle", "square", "triangle") for where in ("top left", "centre") for bg in ("white", "striped")]


def tiny_flow_clip(family: str, seed: int = 0):
    """A ComfyUI CLIP of ``family``'s text encoder: Flux's CLIP-L + T5 (position-wise: no T5 layers), Qwen-Image's
    Qwen2.5 (template cut as ComfyUI cuts it) and Lumina2's Gemma 2, tiny and random, with the real tokenizers."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.text_encoders.flux
    import comfy.text_encoders.llama
    import comfy.text_encoders.lumina2
    import comfy.text_encoders.qwen_image
    import comfy.text_encoders.t5

    sd1_clip = comfy.sd1_clip

    class TinyFluxClip(comfy.text_encoders.flux.FluxClipModel):
        def __init__(self, device="cpu", dtype=None, model_options=None):
            torch.nn.Module.__init__(self)
            self.clip_l = sd1_clip.SDClipModel(device=device, dtype=dtype, textmodel_json_config=dict(TINY_CLIP_L),
                                               return_projected_pooled=False, model_options=model_options or {})
            self.t5xxl = sd1_clip.SDClipModel(device=device, dtype=dtype, textmodel_json_config=dict(TINY_T5),
                                              special_tokens={"end": 1, "pad": 0},
                                              model_class=comfy.text_encoders.t5.T5, model_options=model_options or {})
            self.dtypes = {dtype}

    def language_model(model_class, vocab_size: int, special_tokens: dict, layer: str, layer_idx):
        class TinyLM(sd1_clip.SDClipModel):
            def __init__(self, device="cpu", dtype=None, model_options=None, **kwargs):
                super().__init__(device=device, layer=layer, layer_idx=layer_idx, dtype=dtype,
                                 textmodel_json_config={**TINY_LLM, "vocab_size": vocab_size},
                                 special_tokens=special_tokens, layer_norm_hidden_state=False, model_class=model_class,
                                 enable_attention_masks=True, return_attention_masks=True,
                                 model_options=model_options or {})
        return TinyLM

    class TinyQwenImageTE(comfy.text_encoders.qwen_image.QwenImageTEModel):
        def __init__(self, device="cpu", dtype=None, model_options=None):
            clip_model = language_model(comfy.text_encoders.llama.Qwen25_3B, 152064, {"pad": 151643}, "last", None)
            sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, name="qwen25_7b", clip_model=clip_model,
                                           model_options=model_options or {})

    gemma = gemma_tokenizer_model()

    class TinyLuminaTE(comfy.text_encoders.lumina2.LuminaModel):
        def __init__(self, device="cpu", dtype=None, model_options=None):
            clip_model = language_model(comfy.text_encoders.llama.Gemma2_2B, gemma["vocab_size"],
                                        {"start": 2, "pad": 0}, "hidden", -2)
            super().__init__(device=device, dtype=dtype, model_options=model_options or {}, clip_model=clip_model)

    clip, tokenizer, data = {
        "flux_schnell": (TinyFluxClip, comfy.text_encoders.flux.FluxTokenizer, {}),
        "qwen_image": (TinyQwenImageTE, comfy.text_encoders.qwen_image.QwenImageTokenizer, {}),
        "lumina2": (TinyLuminaTE, comfy.text_encoders.lumina2.LuminaTokenizer, {"spiece_model": gemma["model"]}),
    }[family]
    target = type("Target", (), {"clip": clip, "tokenizer": tokenizer, "params": {}})
    out = comfy.sd.CLIP(target=target, tokenizer_data=data, model_options={"dtype": torch.float32})
    _initialise(out.cond_stage_model, seed)
    return out


def gemma_tokenizer_model() -> dict:
    """A small SentencePiece model with Gemma's special ids (pad 0, eos 1, bos 2, unk 3), trained in memory."""
    import io

    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(GEMMA_CORPUS), model_writer=buffer, vocab_size=160, pad_id=0, eos_id=1, bos_id=2,
        unk_id=3, hard_vocab_limit=False, minloglevel=2)
    model = buffer.getvalue()
    return {"model": model, "vocab_size": sentencepiece.SentencePieceProcessor(model_proto=model).get_piece_size()}


def decode_tokens(clip, family: str, ids: list[int]) -> str:
    """``ids`` of the conditioning's token stream as text, with the family's own tokenizer."""
    if family == "flux_schnell":
        return clip.tokenizer.t5xxl.tokenizer.decode(ids)
    if family == "qwen_image":
        return clip.tokenizer.qwen25_7b.tokenizer.decode(ids)
    return clip.tokenizer.gemma2_2b.tokenizer.tokenizer.decode(ids)
