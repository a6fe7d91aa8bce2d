"""FewStep Crop → sample → FewStep Stitch through the nodes, in-process with ComfyUI's real classes (COMFYUI_DIR)."""
from __future__ import annotations

import pytest
import torch

from .conftest import pack_module, requires_comfyui
from .test_comfy_inprocess import run_node, sample_custom

pytestmark = requires_comfyui


def big_photo(h=667, w=1001):
    """scikit-image's astronaut stretched to an odd-sized ``w``×``h`` IMAGE."""
    from skimage import data
    from skimage.transform import resize

    return torch.from_numpy(resize(data.astronaut(), (h, w), anti_aliasing=True).astype("float32"))[None]


def two_holes(h=667, w=1001):
    mask = torch.zeros(1, h, w)
    mask[0, 100:150, 120:200] = 1
    mask[0, h - 60:, w - 90:] = 1  # the bottom-right corner
    return mask


def crop_sample_stitch(sd15, conds, image, mask, **crop_options):
    """The big-photo template's path: Crop → VAE Encode → noise mask → Blended Sampler (4 steps) → Decode → Stitch."""
    import nodes as comfy_nodes

    model, _, vae = sd15
    crop_node = pack_module("nodes.crop_stitch")
    crops, crop_masks, plan = run_node(crop_node.FewStepCrop, image=image, mask=mask, **crop_options)
    (latent,) = comfy_nodes.VAEEncode().encode(vae, crops)
    (latent,) = comfy_nodes.SetLatentNoiseMask().set_mask(latent, crop_masks)
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=4, spacing="trailing")
    (sampler,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="source")
    samples, _ = sample_custom(model, conds, sampler, sigmas, latent)
    (decoded,) = comfy_nodes.VAEDecode().decode(vae, {"samples": samples})
    out, used = run_node(crop_node.FewStepStitch, stitch=plan, generated=decoded, grow=2, feather=4, color_match=1.0)
    return crops, plan, out, used


@pytest.mark.parametrize("regions", ["one", "separate"])
def test_crop_sample_stitch_is_exact_outside_the_mask_after_real_sampling(sd15, conds, regions):
    image, mask = big_photo(), two_holes()
    crops, plan, out, used = crop_sample_stitch(sd15, conds, image, mask, target_size="512", context_px=24,
                                                regions=regions, prefill="blur")
    assert crops.shape[0] == (2 if regions == "separate" else 1) and crops.shape[1] * crops.shape[2] <= 600 * 600
    assert out.shape == image.shape and used.shape == mask.shape
    outside = used == 0
    assert torch.equal(out[outside], image[outside]), "every pixel outside the used mask is the original's"
    assert bool((used[mask > 0] > 0).all()), "the used mask covers the hole"
    assert not torch.equal(out[mask > 0], image[mask > 0]), "the holes are regenerated"


def test_stitch_asks_for_the_generated_crops_only_when_there_is_a_hole(sd15):
    crop_node = pack_module("nodes.crop_stitch")
    image = big_photo(120, 90)
    _, _, empty_plan = run_node(crop_node.FewStepCrop, image=image, mask=torch.zeros(1, 120, 90))
    assert crop_node.FewStepStitch.check_lazy_status(stitch=empty_plan, generated=None) == []
    out, used = run_node(crop_node.FewStepStitch, stitch=empty_plan)
    assert torch.equal(out, image) and float(used.sum()) == 0
    hole = torch.zeros(1, 120, 90)
    hole[0, 40:60, 30:50] = 1
    _, _, plan = run_node(crop_node.FewStepCrop, image=image, mask=hole)
    assert crop_node.FewStepStitch.check_lazy_status(stitch=plan, generated=None) == ["generated"]
    with pytest.raises(ValueError, match="^generated: connect the decoded crops"):
        run_node(crop_node.FewStepStitch, stitch=plan)


def test_crop_node_names_bad_inputs(sd15):
    crop_node = pack_module("nodes.crop_stitch")
    image = big_photo(120, 90)
    with pytest.raises(ValueError, match="^mask: 90×90 px"):
        run_node(crop_node.FewStepCrop, image=image, mask=torch.rand(1, 90, 90))
    with pytest.raises(ValueError, match="^context_factor: got nan"):
        run_node(crop_node.FewStepCrop, image=image, mask=torch.ones(1, 120, 90), context_factor=float("nan"))
    with pytest.raises(ValueError, match="^multiple: '7'"):
        run_node(crop_node.FewStepCrop, image=image, mask=torch.ones(1, 120, 90), multiple="7")
    with pytest.raises(ValueError, match="^stitch: expected FewStep Crop's stitch output"):
        run_node(crop_node.FewStepStitch, stitch="nope", generated=image)
