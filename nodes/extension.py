"""The pack's ComfyExtension: registers model folders and lists the nodes."""
from __future__ import annotations

from ._api import ComfyExtension
from .composite import ExactComposite
from .crop_stitch import FewStepCrop, FewStepStitch
from .inverfill import InverFillLoader, InverseNoiseInit
from .noise import ReBlend
from .rad import RegionAwareSampler
from .paths import register_model_folders
from .sam2 import SAM2Loader, SAM2Mask
from .sampler import FewStepBlendedSampler
from .schedule import FewStepSchedule
from .turboedit import CaptionEditor, IterativeInverter, TurboEditEncoderLoader, TurboEditSampler
from .turbofill import TurboFillAdapterApply, TurboFillLoader

NODES = [FewStepSchedule, ReBlend, FewStepBlendedSampler, ExactComposite, FewStepCrop, FewStepStitch,
         InverFillLoader, InverseNoiseInit, CaptionEditor, IterativeInverter, TurboEditEncoderLoader, TurboEditSampler,
         RegionAwareSampler, TurboFillLoader, TurboFillAdapterApply, SAM2Loader, SAM2Mask]


class FewStepExtension(ComfyExtension):
    async def get_node_list(self):
        register_model_folders()
        return list(NODES)
