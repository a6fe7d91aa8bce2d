"""SAM2 (Ravi et al., 2024) masks from clicks and boxes, by role: ``build`` (config detection, offline build,
Hydra left as found), ``checkpoint`` (reading and strict loading), ``prompts`` (clicks, boxes, checks, the
batch rule) and ``predict`` (masks and automatic regions). The names below are the public surface.

Install the optional package: ``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``.
"""
from .build import (SAM2_INSTALL, SIZE_BY_BLOCKS, SAM2CheckpointError, SAM2NotInstalled, build_model, detect_config,
                    hydra_left_as_found, import_sam2, model_config, sam2_root, trunk_block_count)
from .checkpoint import checkpoint_overrides, load_sam2, load_state_dict_strictly, read_checkpoint
from .predict import (MULTIMASK, Region, as_rgb_array, automatic_regions, check_multimask, feature_sizes,
                      fit_predictor, image_predictor, predict_mask, segment, segment_regions, select_mask, top_regions)
from .prompts import Prompt, as_point, check_prompt, per_image, prompt_from_dict

__all__ = ["SAM2_INSTALL", "SIZE_BY_BLOCKS", "SAM2CheckpointError", "SAM2NotInstalled", "build_model",
           "detect_config", "hydra_left_as_found", "import_sam2", "model_config", "sam2_root", "trunk_block_count",
           "checkpoint_overrides", "load_sam2", "load_state_dict_strictly", "read_checkpoint", "MULTIMASK", "Region",
           "as_rgb_array", "automatic_regions", "check_multimask", "feature_sizes", "fit_predictor",
           "image_predictor", "predict_mask", "segment", "segment_regions", "select_mask", "top_regions", "Prompt",
           "as_point", "check_prompt", "per_image", "prompt_from_dict"]
