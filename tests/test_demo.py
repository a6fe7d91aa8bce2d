"""README's second command, ``python -m tools.demo``: the committed world inpainted and edited through core/, no
download and no ComfyUI; the PNGs it promises, exact outside the hole; bad options named."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tools import demo


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_demo_inpaints_two_held_out_images_with_every_method_and_makes_an_edit(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--count", "2"]) == 0
    printed = capsys.readouterr().out
    methods = ["fewstep", "inverfill", "turbofill", "rad"]  # the committed trained weights are all present
    cases = sorted({p.name.rsplit("_", 1)[0] for p in tmp_path.glob("*_input.png")})
    assert len(cases) == 2
    for case in cases:
        before = pixels(tmp_path / f"{case}_input.png")
        keep = np.asarray(Image.open(tmp_path / f"{case}_mask.png")) == 0
        assert keep.any() and not keep.all()
        for method in methods:
            after = pixels(tmp_path / f"{case}_{method}.png")
            assert np.array_equal(after[keep], before[keep]), f"{case} {method}: Exact Composite keeps the outside"
            assert not np.array_equal(after[~keep], before[~keep]), f"{case} {method}: the hole is regenerated"
    sheet = Image.open(tmp_path / "contact_sheet.png")
    assert sheet.size == (66 * (2 + len(methods)), 66 * 2), "input | mask | every method, a row per image"
    assert pixels(tmp_path / "edit_before.png").shape == pixels(tmp_path / "edit_after.png").shape == (64, 64, 3)
    assert not np.array_equal(pixels(tmp_path / "edit_before.png"), pixels(tmp_path / "edit_after.png"))
    assert str(tmp_path / "contact_sheet.png") in printed and "TurboEdit edit" in printed and " s" in printed


def test_demo_runs_on_your_own_image_mask_and_prompt(tmp_path):
    from skimage import data

    image, mask = tmp_path / "mine.png", tmp_path / "hole.png"
    Image.fromarray(data.astronaut()).resize((96, 96)).save(image)
    hole = np.zeros((96, 96), np.uint8)
    hole[30:60, 40:80] = 255
    Image.fromarray(hole).save(mask)
    out = tmp_path / "out"
    prompt = "a large red circle in the centre, on a blue background"
    assert demo.main(["--out", str(out), "--image", str(image), "--mask", str(mask), "--prompt", prompt,
                      "--edit", "red → green"]) == 0
    before, after = pixels(out / "yours_input.png"), pixels(out / "yours_fewstep.png")
    keep = np.asarray(Image.open(out / "yours_mask.png")) == 0
    assert before.shape == (64, 64, 3) and np.array_equal(after[keep], before[keep])
    assert (out / "edit_after.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--image", "x.png"], "--image, --mask and --prompt go together"),
    (["--image", "absent.png", "--mask", "absent.png", "--prompt", "a cat"], "--image: absent.png does not exist"),
    (["--count", "0"], "--count: 0 is not in 1..48"),
    (["--edit", "red → blue"], "--edit goes with --image"),
])
def test_bad_options_are_named(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--out", str(tmp_path), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_edit_the_caption_does_not_contain_is_named(tmp_path, capsys):
    image = tmp_path / "mine.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
    Image.new("L", (64, 64), 255).save(tmp_path / "hole.png")
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path / "o"), "--image", str(image), "--mask", str(tmp_path / "hole.png"),
                   "--prompt", "a red square", "--edit", "blue → green"])
    assert "--edit: edit: 'blue' does not occur in the caption" in capsys.readouterr().err
