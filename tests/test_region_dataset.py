"""Region-caption data builder: SAM2 masks from prompts / automatic, captions, the TurboFill layout, resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import segment as seg
from trainers import region_dataset as rd
from trainers.common.config import ConfigError, build_config
from trainers.common.data import DataError

from .support.tiny_sam2 import requires_sam2

pytestmark = requires_sam2

PROMPTS = {
    "astronaut.png": [{"positive_points": [[250, 120]], "negative_points": [[20, 500]]},
                      {"boxes": [[140, 250, 400, 500]]}],
    "chelsea": {"positive_points": [{"x": 200, "y": 150}]},
    "coffee.png": [{"boxes": [[100, 50, 500, 350]]}, {"positive_points": [[9999, 5]]}],
}
CAPTIONS = {"astronaut.png": ["an astronaut's helmet", "a white space suit"], "coffee-r0": "a cup of coffee"}
CAPTIONER = '''
CALLS = []


def describe(image, mask):
    return f"region of a {image.size[0]}x{image.size[1]} photo"


def interrupt_third(image, mask):
    CALLS.append(image.size)
    if len(CALLS) == 3:
        raise KeyboardInterrupt  # stands for a kill in the middle of a run
    return describe(image, mask)


def broken(image, mask):
    raise RuntimeError("captioning service down")
'''


@pytest.fixture
def photos(tmp_path):
    """astronaut (512²), chelsea (300×451), coffee (400×600) and one broken file."""
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    (tmp_path / "captions.json").write_text(json.dumps(CAPTIONS))
    (tmp_path / "captioners_for_test.py").write_text(CAPTIONER)
    return tmp_path


def config(root: Path, checkpoint: Path, **kw) -> rd.RegionDatasetConfig:
    args = dict(images_dir=str(root / "photos"), output_dir=str(root / "out"), sam2_checkpoint=str(checkpoint),
                prompts=str(root / "prompts.json"), captions=str(root / "captions.json"))
    return build_config(rd.RegionDatasetConfig, None, {**args, **kw})


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def reasons(summary: dict) -> dict:
    return {(s["image"], s["region"]): s["reason"] for s in summary["skipped"]}


def test_prompts_mode_writes_the_turbofill_layout(photos, tiny_sam2, sam2_model, capsys):
    out = photos / "out"
    assert rd.main(["--images_dir", str(photos / "photos"), "--output_dir", str(out),
                    "--sam2_checkpoint", str(tiny_sam2.safetensors), "--prompts", str(photos / "prompts.json"),
                    "--captions", str(photos / "captions.json")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = {"astronaut-r0", "astronaut-r1", "coffee-r0"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [rd.PROGRESS] + [f"{n}{suffix}" for n in names for suffix in (".png", "_mask.png", ".txt")])
    assert summary["samples_written"] == 3 and summary["finished"] == 2 and summary["images"] == 4

    why = reasons(summary)
    assert why[("chelsea.png", 0)] == "no caption"
    assert why[("coffee.png", 1)].startswith("positive_points: point 0 (9999, 5) lies outside the 600×400 image")
    assert why[("broken.jpg", None)].startswith("unreadable image")
    progress = json.loads((out / rd.PROGRESS).read_text())
    assert progress["finished"] == ["astronaut.png", "coffee.png"] and progress["skipped"] == summary["skipped"]

    assert (out / "astronaut-r1.txt").read_text(encoding="utf-8") == "a white space suit"
    from trainers.common.fill_data import scan_fill_dataset  # what the TurboFill trainer reads

    items, unusable = scan_fill_dataset(out)
    assert {(i.image.stem, i.mask.name) for i in items} == {(n, f"{n}_mask.png") for n in names} and not unusable
    assert (out / "coffee-r0.txt").read_text(encoding="utf-8") == "a cup of coffee"
    for stem, prompts in (("astronaut", PROMPTS["astronaut.png"]), ("coffee", PROMPTS["coffee.png"][:1])):
        source = rgb(photos / "photos" / f"{stem}.png")
        expected = seg.segment_regions(sam2_model, source, [seg.prompt_from_dict(p) for p in prompts])
        for k, mask in enumerate(expected):
            with Image.open(out / f"{stem}-r{k}.png") as img:
                assert img.mode == "RGB" and np.array_equal(np.asarray(img), source)
            with Image.open(out / f"{stem}-r{k}_mask.png") as img:
                assert img.mode == "L"
                written = np.asarray(img)
            assert set(np.unique(written)) <= {0, 255} and 0 < mask.mean() < 1
            assert np.array_equal(written == 255, mask.numpy() == 1), f"{stem}-r{k}: white = SAM2's region"


def test_rerun_skips_finished_images_and_retries_skipped_ones(photos, tiny_sam2, sam2_model, monkeypatch):
    cfg = config(photos, tiny_sam2.safetensors)
    first = rd.build(cfg, model=sam2_model)
    out = photos / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != rd.PROGRESS}
    (photos / "captions.json").write_text(json.dumps({**CAPTIONS, "chelsea.png": "a tabby cat"}))
    written = []
    monkeypatch.setattr(rd, "atomic_write", lambda path, data, write=rd.atomic_write: (written.append(path.name),
                                                                                       write(path, data)))
    second = rd.build(cfg, model=sam2_model)
    assert written and all(name.startswith("chelsea-") for name in written), written  # recorded, not timestamps
    assert first["samples_written"] == 3 and first["already_finished"] == 0
    assert second["already_finished"] == 2 and second["samples_written"] == 1 and second["samples_total"] == 4
    assert (out / "chelsea-r0.txt").read_text(encoding="utf-8") == "a tabby cat"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before
    assert ("chelsea.png", 0) not in reasons(second) and ("coffee.png", 1) in reasons(second)
    third = rd.build(cfg, model=None)  # nothing left: the checkpoint is not even loaded
    assert third["samples_written"] == 0 and third["already_finished"] == 3


def test_a_killed_run_resumes_where_it_stopped(photos, tiny_sam2, sam2_model, monkeypatch):
    monkeypatch.syspath_prepend(str(photos))
    cfg = config(photos, tiny_sam2.safetensors, captions="", captioner="captioners_for_test:interrupt_third")
    with pytest.raises(KeyboardInterrupt):
        rd.build(cfg, model=sam2_model)  # astronaut (2 regions) done, killed while captioning chelsea
    progress = json.loads((photos / "out" / rd.PROGRESS).read_text())
    assert progress["finished"] == ["astronaut.png"]
    resumed = rd.build(config(photos, tiny_sam2.safetensors, captions="", captioner="captioners_for_test:describe"),
                       model=sam2_model)
    assert resumed["already_finished"] == 1 and resumed["samples_written"] == 2  # chelsea-r0, coffee-r0
    assert (photos / "out" / "chelsea-r0.txt").read_text(encoding="utf-8") == "region of a 451x300 photo"


def test_a_failing_captioner_skips_regions_and_reports_them(photos, tiny_sam2, sam2_model, monkeypatch):
    monkeypatch.syspath_prepend(str(photos))
    for name in ("chelsea.png", "coffee.png"):
        (photos / "photos" / name).unlink()
    summary = rd.build(config(photos, tiny_sam2.safetensors, captions="", captioner="captioners_for_test:broken"),
                       model=sam2_model)
    assert summary["samples_written"] == 0 and summary["finished"] == 0
    assert reasons(summary)[("astronaut.png", 0)] == "captioner failed (RuntimeError: captioning service down)"


def test_automatic_mode_writes_the_generators_regions(photos, tiny_sam2, sam2_model, monkeypatch):
    monkeypatch.syspath_prepend(str(photos))
    for name in ("astronaut.png", "coffee.png", "broken.jpg"):
        (photos / "photos" / name).unlink()
    options = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, max_regions=2,
                   min_area=0.0, max_area=1.0)  # random weights: accept whatever the generator finds
    summary = rd.build(config(photos, tiny_sam2.safetensors, prompts="automatic", captions="",
                              captioner="captioners_for_test:describe", **options), model=sam2_model)
    expected = seg.automatic_regions(sam2_model, rgb(photos / "photos" / "chelsea.png"), **options)
    assert 1 <= summary["samples_written"] == len(expected) <= 2
    for k, region in enumerate(expected):
        written = np.asarray(Image.open(photos / "out" / f"chelsea-r{k}_mask.png")) == 255
        assert np.array_equal(written, region.mask.numpy() == 1)


def test_top_regions_filters_by_area_and_ranks():
    def record(area: int, iou: float) -> dict:
        mask = np.zeros(100, bool)
        mask[:area] = True
        return {"segmentation": mask.reshape(10, 10), "area": area, "predicted_iou": iou}

    records = [record(1, 0.99), record(30, 0.7), record(50, 0.9), record(70, 0.8), record(99, 0.95)]
    by_score = seg.top_regions(records, 100, max_regions=2, min_area=0.05, max_area=0.9)
    assert [(r.area, r.score) for r in by_score] == [(0.5, 0.9), (0.7, 0.8)]
    by_area = seg.top_regions(records, 100, max_regions=5, min_area=0.05, max_area=0.9, rank_by="area")
    assert [r.area for r in by_area] == [0.7, 0.5, 0.3] and by_area[0].mask.sum() == 70


def test_options_are_checked_before_any_work(photos, tiny_sam2):
    with pytest.raises(ConfigError, match="exactly one of --captions"):
        rd.check_config(config(photos, tiny_sam2.safetensors, captions=""))
    with pytest.raises(DataError, match="prompts: .*nope.json does not exist"):
        rd.check_config(config(photos, tiny_sam2.safetensors, prompts=str(photos / "nope.json")))
    with pytest.raises(ConfigError, match="multimask: 'first'"):
        rd.check_config(config(photos, tiny_sam2.safetensors, multimask="first"))
    with pytest.raises(ConfigError, match="captioner: cannot import nowhere:fn"):
        rd.import_captioner("nowhere:fn")
    with pytest.raises(ConfigError, match="--sam2_checkpoint is required .automatic"):
        rd.check_config(config(photos, Path(""), sam2_checkpoint="", prompts="automatic"))
    with pytest.raises(ConfigError, match="--sam2_checkpoint is required: the prompts file has clicks or boxes"):
        rd.build(config(photos, Path(""), sam2_checkpoint=""))
    blocker = photos / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="output_dir: .*a_file/out cannot be created: "
                                         ".*a_file is a file, not a folder"):
        rd.check_config(config(photos, tiny_sam2.safetensors, output_dir=str(blocker / "out")))


def test_captions_lookup():
    image = Path("x/cat.png")
    table = {"cat.png": ["first", "second"], "cat-r1": "override", "dog": {"0": "a dog"}}
    assert [rd.caption_from_table(table, image, k) for k in range(3)] == ["first", "override", ""]
    assert rd.caption_from_table(table, Path("dog.jpg"), 0) == "a dog"
    assert rd.mask_to_l(torch.tensor([[0.0, 1.0]])).tolist() == [[0, 255]]


def test_regions_given_as_mask_files_need_no_sam2(photos):
    """{"mask": file} regions are written as given (white = region), without a SAM2 checkpoint; a mask of another
    size, a missing file or an empty mask is skipped with its reason."""
    source = rgb(photos / "photos" / "astronaut.png")
    masks = photos / "masks"
    masks.mkdir()
    region = np.zeros(source.shape[:2], np.uint8)
    region[100:300, 200:350] = 255
    Image.fromarray(region).save(masks / "a0.png")
    Image.fromarray(np.zeros(source.shape[:2], np.uint8)).save(masks / "empty.png")
    Image.fromarray(region[:50]).save(masks / "small.png")
    prompts = {"astronaut.png": [{"mask": "masks/a0.png"}, {"mask": "masks/small.png"}, {"mask": "masks/none.png"},
                                 {"mask": "masks/empty.png"}, {"mask": "masks/a0.png", "boxes": [[0, 0, 9, 9]]}]}
    (photos / "mask_prompts.json").write_text(json.dumps(prompts))
    (photos / "mask_captions.json").write_text(json.dumps({"astronaut.png": "a region"}))
    summary = rd.build(config(photos, Path(""), sam2_checkpoint="", prompts=str(photos / "mask_prompts.json"),
                              captions=str(photos / "mask_captions.json")))
    out = photos / "out"
    assert summary["samples_written"] == 1 and (out / "astronaut-r0.txt").read_text() == "a region"
    with Image.open(out / "astronaut-r0_mask.png") as img:
        assert np.array_equal(np.asarray(img), region)
    with Image.open(out / "astronaut-r0.png") as img:
        assert np.array_equal(np.asarray(img), source)
    why = reasons(summary)
    assert why[("astronaut.png", 1)].endswith("is 512×50 but the image is 512×512")
    assert "cannot read mask" in why[("astronaut.png", 2)]
    assert why[("astronaut.png", 3)] == "no mask (an empty region)"
    assert why[("astronaut.png", 4)].endswith("a mask region takes only 'mask', not ['boxes']")
