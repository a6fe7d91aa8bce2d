"""core.crop_stitch and core.prefill: crop around the mask, stitch back exactly, pre-fill the hole (pure torch)."""
import pytest
import torch

from core.crop_stitch import connected_regions, crop_images, plan_crops, stitch
from core.prefill import PREFILLS, prefill

H, W = 667, 1001  # odd sides, neither a multiple of 8


def photo(batch=1, h=H, w=W, seed=0):
    return torch.rand(batch, h, w, 3, generator=torch.Generator().manual_seed(seed))


def mask_of(kind: str, h=H, w=W) -> torch.Tensor:
    """A hole of ``kind`` in an h×w MASK, placed by fractions of the sides (so it fits small images too)."""
    m = torch.zeros(1, h, w)
    if kind == "pixel":
        m[0, h // 2, w // 2] = 1
    elif kind == "border":
        m[0, h * 3 // 10: h * 4 // 10, : max(1, w // 30)] = 1  # touches the left side
    elif kind == "corner":
        m[0, h - h // 16:, w - w // 20:] = 1  # the bottom-right corner
    elif kind == "regions":
        m[0, 50:90, 60:120] = 1
        m[0, 500:560, 800:900] = 0.6  # soft
        m[0, 300, 500] = 1
    elif kind == "full":
        m[:] = 1
    return m


def round_trip(image, mask, **options):
    plan = plan_crops(image, mask, **options)
    crops, crop_masks = crop_images(plan)
    out, used = stitch(plan, crops)
    return plan, crops, crop_masks, out, used


@pytest.mark.parametrize("kind", ["pixel", "border", "corner", "regions", "full"])
@pytest.mark.parametrize("regions", ["one", "separate"])
def test_round_trip_without_sampling_is_exact_at_native_scale(kind, regions):
    """Crop → Stitch with the crops themselves as the "generated" image returns the original bit for bit."""
    image = photo()
    plan, crops, _, out, _ = round_trip(image, mask_of(kind), target_size="keep", regions=regions)
    assert torch.equal(out, image)
    assert crops.shape[1] % 8 == 0 and crops.shape[2] % 8 == 0


@pytest.mark.parametrize("kind", ["pixel", "border", "corner", "regions"])
@pytest.mark.parametrize("target", ["512", "1024", "custom"])
def test_round_trip_with_resampling_is_exact_outside_the_mask(kind, target):
    """Resampled crops: every pixel outside the mask is the original's; inside, the down/up resampling's error."""
    image = photo()
    mask = mask_of(kind)
    plan, crops, crop_masks, out, used = round_trip(image, mask, target_size=target, custom_hw=(384, 640),
                                                    regions="separate")
    outside = mask == 0
    assert torch.equal(out[outside], image[outside])
    assert torch.equal(used > 0, mask > 0)
    if target == "custom":
        assert tuple(crops.shape[1:3]) == (384, 640)
    else:
        side = int(target)
        assert abs(crops.shape[1] * crops.shape[2] / side**2 - 1) < 0.1
    assert crop_masks.shape == crops.shape[:3] and float(crop_masks.max()) > 0


def test_batches_of_images_and_a_batch_of_masks_against_one_image():
    images = photo(batch=2)
    masks = torch.cat([mask_of("pixel"), mask_of("corner")])
    plan, crops, _, out, _ = round_trip(images, masks, target_size="keep")
    assert crops.shape[0] == 2 and torch.equal(out, images)
    # one image, three masks: three results, each the image with its own hole
    masks = torch.cat([mask_of("pixel"), mask_of("border"), torch.zeros(1, H, W)])
    plan = plan_crops(images[:1], masks, target_size="512")
    crops, _ = crop_images(plan)
    out, used = stitch(plan, torch.zeros_like(crops))
    assert out.shape == (3, H, W, 3) and [c.empty for c in plan.crops] == [False, False, True]
    for b in range(3):
        keep = masks[b] == 0
        assert torch.equal(out[b][keep], images[0][keep])
        assert bool((out[b][~keep] == 0).all())
    assert torch.equal(out[2], images[0])


def test_crops_of_one_batch_share_one_size_and_lie_inside_the_image():
    images = photo(batch=3)
    masks = torch.cat([mask_of("pixel"), mask_of("border"), mask_of("corner")])
    plan = plan_crops(images, masks, target_size="512", multiple=64)
    crops, _ = crop_images(plan)
    assert crops.shape[1] % 64 == 0 and crops.shape[2] % 64 == 0
    for crop in plan.crops:
        assert crop.box.top >= 0 and crop.box.left >= 0 and crop.box.bottom <= H and crop.box.right <= W
        assert abs(crop.box.width / crop.box.height - crops.shape[2] / crops.shape[1]) < 0.05


def test_the_context_grows_the_crop_and_the_context_mask_is_shown_not_regenerated():
    image = photo()
    mask = mask_of("pixel")
    small = plan_crops(image, mask, context_px=10, target_size="keep").crops[0].box
    assert small.height >= 21 and small.height < 40
    factor = plan_crops(image, mask, context_px=10, context_factor=2.0, target_size="keep").crops[0].box
    assert factor.height >= 2 * 21 - 1
    context = torch.zeros(1, H, W)
    context[0, 100:120, 100:120] = 1
    plan = plan_crops(image, mask, context, context_px=0, target_size="keep")
    box = plan.crops[0].box
    assert box.top <= 100 and box.left <= 100 and box.bottom > H // 2 and box.right > W // 2
    _, crop_masks = crop_images(plan)
    assert float(crop_masks.sum()) == 1.0, "only the mask's pixel is to be regenerated"


def test_image_smaller_than_the_crop_is_padded_and_the_padding_is_known():
    image = photo(h=40, w=30)
    mask = torch.zeros(1, 40, 30)
    mask[0, 10:20, 10:20] = 1
    for padding in ("edge", "reflect"):
        plan = plan_crops(image, mask, target_size="keep", multiple=64, context_px=100, padding=padding)
        crops, crop_masks = crop_images(plan)
        box = plan.crops[0].box
        assert (box.height, box.width) == (64, 64) and box.top < 0 and box.left < 0
        top, left = -box.top, -box.left
        assert torch.equal(crops[0, top: top + 40, left: left + 30], image[0])
        assert float(crop_masks[0, :top].abs().sum()) == 0 and float(crop_masks[0, :, :left].abs().sum()) == 0
        edge = image[0, 0, 0] if padding == "edge" else image[0, 1, 1]
        assert torch.equal(crops[0, top - 1, left - 1], edge)
        out, _ = stitch(plan, crops)
        assert torch.equal(out, image)
    square = plan_crops(image, mask, target_size="custom", custom_hw=(64, 64), context_px=100).crops[0].box
    assert (square.top, square.left, square.height, square.width) == (0, -5, 40, 40), "the aspect, padded"
    upscaled = plan_crops(image, mask, target_size="512")
    assert upscaled.size_hw[0] * upscaled.size_hw[1] > 40 * 30


def test_regions_far_apart_get_their_own_crops_and_close_ones_are_merged():
    image = photo()
    mask = torch.zeros(1, H, W)
    mask[0, 50:70, 50:70] = 1
    mask[0, 600:620, 900:920] = 1
    mask[0, 56:60, 100:104] = 1  # 30 px from the first: their crops overlap
    plan = plan_crops(image, mask, context_px=32, target_size="keep", regions="separate")
    assert len(plan.crops) == 2
    boxes = [c.box for c in plan.crops]
    assert not boxes[0].overlaps(boxes[1])
    assert sum(int(c.region.sum()) for c in plan.crops) == int((mask > 0).sum())
    assert len(plan_crops(image, mask, target_size="keep", regions="one").crops) == 1


def test_connected_regions_are_eight_connected_and_largest_first():
    m = torch.zeros(40, 40)
    m[2:5, 2:5] = 1
    m[5, 5] = 1  # touches the first by a corner
    m[20:30, 20:30] = 1
    regions = connected_regions(m)
    assert [int(r.sum()) for r in regions] == [100, 10]


def test_empty_mask_gives_back_the_original_and_nothing_to_sample():
    image = photo()
    plan = plan_crops(image, torch.zeros(1, H, W), target_size="512")
    assert plan.empty
    crops, crop_masks = crop_images(plan)
    assert float(crop_masks.abs().sum()) == 0
    out, used = stitch(plan, None)
    assert torch.equal(out, image) and float(used.sum()) == 0


def test_full_mask_regenerates_every_pixel():
    image = photo(h=120, w=90)
    plan = plan_crops(image, torch.ones(1, 120, 90), target_size="512")
    box = plan.crops[0].box
    assert box.top <= 0 and box.left <= 0 and box.bottom >= 120 and box.right >= 90
    crops, _ = crop_images(plan)
    out, used = stitch(plan, torch.zeros_like(crops), color_match=0.0, feather_px=0)
    assert bool((used == 1).all()) and bool((out == 0).all())


def test_mask_of_another_size_is_resized_and_of_another_aspect_refused():
    image = photo(h=200, w=300)
    small = torch.zeros(1, 100, 150)
    small[0, 40:60, 60:90] = 1
    plan = plan_crops(image, small, target_size="keep")
    assert plan.mask.shape == (1, 1, 200, 300)
    with pytest.raises(ValueError, match=r"^mask: 150×150 px"):
        plan_crops(image, torch.ones(1, 150, 150) * 0.5 + torch.eye(150)[None] * 0.5)


@pytest.mark.parametrize("options, message", [
    ({"context_factor": 0.5}, "context_factor"), ({"context_px": -1}, "context_px"),
    ({"target_size": "huge"}, "target_size"), ({"padding": "wrap"}, "padding"), ({"regions": "all"}, "regions"),
    ({"target_size": "custom", "custom_hw": (4, 512)}, "width/height"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        plan_crops(photo(h=64, w=64), mask_of("pixel", 64, 64), **options)


def test_bad_generated_and_original_are_named():
    image = photo(h=64, w=64)
    plan = plan_crops(image, mask_of("border", 64, 64), target_size="keep")
    crops, _ = crop_images(plan)
    with pytest.raises(ValueError, match="^generated: expected a batch of 1 crops"):
        stitch(plan, torch.cat([crops, crops]))
    with pytest.raises(ValueError, match="^generated: contains"):
        stitch(plan, torch.full_like(crops, float("nan")))
    with pytest.raises(ValueError, match="^original: expected an IMAGE of 64×64 px"):
        stitch(plan, crops, photo(h=32, w=64))
    other = torch.zeros(1, 64, 64, 3)
    out, used = stitch(plan, crops, other)
    assert torch.equal(out[used == 0], other[used == 0])


@pytest.mark.parametrize("mode", PREFILLS)
def test_prefill_keeps_known_pixels_and_fills_the_hole(mode):
    image = torch.zeros(1, 64, 64, 3)
    image[:, :, :32] = torch.tensor([1.0, 0.0, 0.0])  # red left half, black right half
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    out = prefill(image, mask, mode)
    keep = mask == 0
    assert torch.equal(out[keep], image[keep])
    if mode == "none":
        assert torch.equal(out, image)
        return
    hole = out[0, 16:48, 16:48]
    if mode == "neutral":
        assert torch.allclose(hole, torch.tensor([0.5, 0.0, 0.0]).expand_as(hole), atol=1e-6)
    else:  # the border's colours carried in: reddish on the left of the hole, dark on the right
        assert float(hole[:, 0, 0].mean()) > 0.7 and float(hole[:, -1, 0].mean()) < 0.3


def test_prefill_with_nothing_known_is_grey_and_bad_mode_is_named():
    image = torch.rand(1, 16, 16, 3)
    for mode in ("neutral", "blur"):
        assert torch.allclose(prefill(image, torch.ones(1, 16, 16), mode), torch.full_like(image, 0.5))
    with pytest.raises(ValueError, match="^prefill: 'magic'"):
        prefill(image, torch.ones(1, 16, 16), "magic")
