"""SAM2: config detection, offline build, strict .safetensors / Meta .pt loading, prompts, nodes (real host)."""
from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
import warnings

import pytest
import torch

from core import segment as seg

from .conftest import REPO, pack_module, requires_comfyui
from .support.node_schemas import render
from .support.processes import SAFETY_TIMEOUT_S, pinned_env
from .support.tiny_sam2 import CONFIG, IMAGE_SIZE, OVERRIDES, requires_sam2, sample_image

pytestmark = requires_sam2

H, W = 150, 203


@pytest.fixture(scope="module")
def images():
    return sample_image(H, W, batch=2)


def trunk_keys(blocks: int) -> dict:
    return {f"image_encoder.trunk.blocks.{i}.mlp.layers.0.weight": torch.zeros(1) for i in range(blocks)}


# ---------------------------------------------------------------- config detection and build


def prompts_from_json(positive, negative, boxes, batch):
    """SAM2 Mask's JSON widgets → prompts (nodes/sam2_prompts.py, imported as ComfyUI imports the pack)."""
    return pack_module("nodes.sam2_prompts").prompts_from_json(positive, negative, boxes, batch)


def test_block_counts_match_the_installed_package_configs():
    """12 / 16 / 24 / 48 Hiera blocks = t / s / b+ / l, read from the YAMLs (b+ uses Hiera's default stages)."""
    hiera = seg.import_sam2("modeling.backbones.hieradet", "Hiera")
    default_stages = inspect.signature(hiera.__init__).parameters["stages"].default
    for blocks, size in seg.SIZE_BY_BLOCKS.items():
        for version in ("sam2", "sam2.1"):
            name = f"configs/{version}/{version}_hiera_{size}.yaml"
            trunk = seg.model_config(name).model.image_encoder.trunk
            assert sum(trunk.get("stages", default_stages)) == blocks, name


def test_config_is_detected_from_the_keys():
    assert seg.detect_config({**trunk_keys(12), "no_obj_embed_spatial": torch.zeros(1)}) == CONFIG
    assert seg.detect_config(trunk_keys(48)) == "configs/sam2/sam2_hiera_l.yaml"
    assert seg.detect_config({**trunk_keys(24), "no_obj_embed_spatial": torch.zeros(1)}) == \
        "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert seg.detect_config(trunk_keys(16)) == "configs/sam2/sam2_hiera_s.yaml"
    with pytest.raises(ValueError, match="x.pt: unknown SAM2 size .13 Hiera blocks"):
        seg.detect_config(trunk_keys(13), "x.pt")
    with pytest.raises(ValueError, match="sam_vit_h.pth: not a SAM2 checkpoint"):
        seg.detect_config({"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(1)}, "sam_vit_h.pth")


def test_tiny_model_is_detected_and_built_at_the_override_size(tiny_sam2, sam2_model):
    assert seg.detect_config(tiny_sam2.state_dict) == CONFIG
    assert sam2_model.sam2_config == CONFIG and sam2_model.image_size == IMAGE_SIZE and not sam2_model.training
    assert all(p.dtype == torch.float32 for p in sam2_model.parameters())


def test_building_leaves_hydra_uninitialised_in_a_fresh_process():
    """``import sam2`` initialises Hydra globally; the build must undo it (a host using Hydra would clash)."""
    code = ("import torch; torch.set_num_threads(1)\n"
            "from hydra.core.global_hydra import GlobalHydra\n"
            "from core.segment import build_model, image_predictor\n"
            f"m = build_model({CONFIG!r}, {list(OVERRIDES)!r}); image_predictor(m)\n"
            "import sam2\n"
            "print(GlobalHydra.instance().is_initialized())\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=SAFETY_TIMEOUT_S, env=pinned_env(1))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_host_hydra_initialisation_is_kept():
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    assert not GlobalHydra.instance().is_initialized()
    initialize_config_module("sam2", version_base="1.2")  # stands for a host's own Hydra set-up
    try:
        seg.build_model(CONFIG, OVERRIDES)
        assert GlobalHydra.instance().is_initialized()
    finally:
        GlobalHydra.instance().clear()
    with seg.hydra_left_as_found():
        initialize_config_module("sam2", version_base="1.2")  # what `import sam2` does on first import
    assert not GlobalHydra.instance().is_initialized()


def test_missing_sam2_names_the_install_command(monkeypatch, tiny_sam2):
    monkeypatch.setitem(sys.modules, "sam2", None)
    with pytest.raises(ImportError, match="SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"):
        seg.load_sam2(tiny_sam2.safetensors)


@requires_comfyui
def test_pack_modules_import_without_sam2_hydra_or_omegaconf():
    code = ("import sys; sys.modules.update(sam2=None, hydra=None, omegaconf=None)\n"
            "import core.segment, trainers.region_dataset\n"
            "from tests.conftest import load_pack; load_pack()\n"
            "import fewstep_pack.nodes.extension as ext\n"
            "assert 'FewStepSAM2Mask' in {n.GET_SCHEMA().node_id for n in ext.NODES}\n"
            "try:\n    core.segment.build_model('configs/sam2.1/sam2.1_hiera_t.yaml')\n"
            "except ImportError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=SAFETY_TIMEOUT_S, env=pinned_env(1))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pip install --no-build-isolation sam2==1.1.0" in out.stdout


# ---------------------------------------------------------------- checkpoints


def test_safetensors_and_meta_pt_give_identical_masks(tiny_sam2, sam2_model, images):
    from_pt = seg.load_sam2(tiny_sam2.pt, overrides=OVERRIDES)
    for name, tensor in from_pt.state_dict().items():
        assert torch.equal(tensor, tiny_sam2.state_dict[name]), name
    prompt = seg.Prompt(positive_points=((100.0, 70.0),), negative_points=((10.0, 140.0),),
                        boxes=((30.0, 20.0, 180.0, 130.0),))
    a, b = seg.segment(sam2_model, images, prompt), seg.segment(from_pt, images, prompt)
    assert torch.equal(a, b)


def test_unexpected_and_missing_keys_fail_naming_the_file(tiny_sam2, tmp_path):
    state = dict(tiny_sam2.state_dict)
    state["extra_head.weight"] = torch.zeros(3)
    del state["no_obj_ptr"]
    path = tmp_path / "broken.pt"
    torch.save({"model": state}, path)
    with pytest.raises(seg.SAM2CheckpointError) as err:
        seg.load_sam2(path, overrides=OVERRIDES)
    message = str(err.value)
    assert "broken.pt" in message and "1 unexpected key(s): extra_head.weight" in message
    assert "1 missing key(s): no_obj_ptr" in message


def test_pt_with_python_objects_is_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": {"a": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(seg.SAM2CheckpointError, match="objects.pt: holds Python objects besides tensors, which are "
                                                     "never unpickled"):
        seg.read_checkpoint(path)
    with pytest.raises(seg.SAM2CheckpointError, match=r"model.bin: expected one of"):
        seg.read_checkpoint(tmp_path / "model.bin")


def test_empty_and_truncated_pt_files_say_download_again(tmp_path):
    empty = tmp_path / "sam2.1_hiera_tiny.pt"
    empty.write_bytes(b"")
    with pytest.raises(seg.SAM2CheckpointError, match=r"sam2.1_hiera_tiny.pt: the file is empty \(0 bytes\), an "
                                                     "unfinished download or copy; download it again"):
        seg.read_checkpoint(empty)
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"a": torch.zeros(1000)}}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:500])
    with pytest.raises(seg.SAM2CheckpointError, match=r"cut.pt: damaged or not a PyTorch checkpoint \(.+\); "
                                                     "download it again"):
        seg.read_checkpoint(cut)


# ---------------------------------------------------------------- prompts and masks


def test_point_and_box_prompts_give_binary_masks_at_the_image_size(sam2_model, images):
    for prompts in ([seg.Prompt(((100.0, 70.0), (120.0, 90.0)), ((5.0, 5.0),))] * 2,
                    [seg.Prompt(boxes=((30.0, 20.0, 180.0, 130.0), (0.0, 0.0, 60.0, 50.0)))] * 2):
        masks = seg.segment(sam2_model, images, prompts)
        assert masks.shape == (2, H, W) and masks.dtype == torch.float32
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
    single = seg.segment(sam2_model, images[0], prompts[0])
    assert single.shape == (H, W) and torch.equal(single, masks[0])


def test_uint8_images_give_the_same_masks(sam2_model, images):
    prompt = seg.Prompt(positive_points=((100.0, 70.0),))
    as_uint8 = (images[0] * 255).round().to(torch.uint8)
    assert torch.equal(seg.segment(sam2_model, as_uint8, prompt),
                       seg.segment(sam2_model, as_uint8.float() / 255, prompt))


def test_multimask_choices(sam2_model, images):
    predictor = seg.image_predictor(sam2_model)
    predictor.set_image(images[0].numpy())
    prompt = seg.Prompt(positive_points=((100.0, 70.0),))
    masks = {c: seg.predict_mask(predictor, prompt, c) for c in seg.MULTIMASK}
    candidates = torch.stack([masks["0"], masks["1"], masks["2"]])
    assert torch.equal(masks["union"], candidates.amax(0))
    assert masks["largest"].sum() == candidates.sum((1, 2)).max()
    assert any(torch.equal(masks["best"], c) for c in candidates)
    assert masks["single"].shape == (H, W)
    assert torch.equal(seg.segment(sam2_model, images[0], prompt, "union"), masks["union"])
    with pytest.raises(ValueError, match="multimask: 'first'"):
        seg.segment(sam2_model, images[0], prompt, "first")


def test_eager_transforms_equal_sam2s_scripted_ones(sam2_model, images):
    predictor_cls = seg.import_sam2("sam2_image_predictor", "SAM2ImagePredictor")
    array = images[0].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script, which fit_predictor replaces
        scripted = predictor_cls(sam2_model)._transforms(array)
    assert torch.equal(scripted, seg.image_predictor(sam2_model)._transforms(array))


@pytest.mark.parametrize("positive, negative, boxes, batch, match", [
    ('[{"x": 250, "y": 10}]', "", "", 2, r"positive_points: point 0 \(250, 10\) lies outside the 203×150 image"),
    ('[{"x": 20, "y": 10}]', '[[20, -1]]', "", 2, r"negative_points: point 0 \(20, -1\) lies outside"),
    ("[]", '[[20, 10]]', "", 2, r"no prompt.*positive point or a box"),
    ("", "", "", 1, r"no prompt"),
    ("", "", "[[50, 50, 50, 80]]", 2, r"boxes: box 0 \(50, 50, 50, 80\) has zero area"),
    ("", "", "[[50, 90, 60, 80]]", 2, r"boxes: box 0 .* has zero area"),
    ("", "", "[[0, 0, 300, 80]]", 2, r"boxes: box 0 .* reaches outside the 203×150 image"),
    ('[[[1, 1]], [[2, 2]], [[3, 3]]]', "", "", 2, r"positive_points: 3 prompt sets for a batch of 2 images"),
    ('[{"x": 1, "y": 1}]', "", "[[[0, 0, 9, 9]], [[0, 0, 9, 9]], [[0, 0, 9, 9]]]", 2, r"boxes: 3 prompt sets"),
    ("[{x: 1}]", "", "", 2, r"positive_points: not valid JSON"),
    ('[{"x": 1}]', "", "", 2, r"positive_points: point 0: a point needs 'x' and 'y'"),
    ("", "", "[[1, 2, 3]]", 2, r"boxes: box 0: expected 4 numbers"),
])
@requires_comfyui
def test_bad_prompts_raise_value_errors_naming_the_input(sam2_model, images, positive, negative, boxes, batch, match):
    with pytest.raises(ValueError, match=match):
        seg.segment(sam2_model, images[:batch], prompts_from_json(positive, negative, boxes, batch))


def test_prompt_list_must_match_the_batch(sam2_model, images):
    prompt = seg.Prompt(positive_points=((1.0, 1.0),))
    with pytest.raises(ValueError, match="prompts: 3 prompt sets for a batch of 2 images"):
        seg.segment(sam2_model, images, [prompt] * 3)
    with pytest.raises(ValueError, match=r"image: expected \(H,W,3\) or \(B,H,W,3\)"):
        seg.segment(sam2_model, images[..., :2], prompt)
    with pytest.raises(ValueError, match=r"image: float values must lie in \[0, 1\]"):
        seg.segment(sam2_model, images * 255, prompt)


@requires_comfyui
def test_json_prompt_formats_and_the_batch_rule():
    prompt = pack_module("core.segment").Prompt  # the class the node module sees (the pack imported as ComfyUI does)
    one = prompts_from_json('[{"x": 1, "y": 2}, [3, 4]]', "[]", "[0, 0, 5, 6]", 3)
    assert one == [prompt(((1.0, 2.0), (3.0, 4.0)), (), ((0.0, 0.0, 5.0, 6.0),))] * 3
    per_image = prompts_from_json('[[{"x": 1, "y": 2}], []]', '[[7, 8]]', "", 2)
    assert [p.positive_points for p in per_image] == [((1.0, 2.0),), ()]
    assert [p.negative_points for p in per_image] == [((7.0, 8.0),)] * 2


def test_prompts_file_entries():
    prompt = seg.prompt_from_dict({"positive_points": [{"x": 1, "y": 2}], "boxes": [[0, 0, 4, 4]]})
    assert prompt == seg.Prompt(((1.0, 2.0),), (), ((0.0, 0.0, 4.0, 4.0),))
    with pytest.raises(ValueError, match=r"r0: unknown key\(s\) \['points'\]"):
        seg.prompt_from_dict({"points": [[1, 2]]}, "r0")


# ---------------------------------------------------------------- nodes (real host)



def test_node_schemas(pack_nodes):
    nodes = {n.GET_SCHEMA().node_id: n for n in pack_nodes.NODES}
    loader, mask = render(nodes["FewStepSAM2Loader"]), render(nodes["FewStepSAM2Mask"])
    assert loader["display_name"] == "SAM2 Loader" and loader["output"] == ["FEWSTEP_SAM2"]
    assert loader["input"]["required"]["sam2_name"][0] == "COMBO"
    assert mask["display_name"] == "SAM2 Mask" and mask["output"] == ["MASK"]
    kinds = {name: spec[0] for group in mask["input"].values() for name, spec in group.items()}
    assert kinds == {"sam2": "FEWSTEP_SAM2", "image": "IMAGE", "positive_points": "STRING", "multimask": "COMBO",
                     "negative_points": "STRING", "boxes": "STRING"}
    assert set(mask["input"]["optional"]) == {"negative_points", "boxes"}
    assert mask["input"]["required"]["multimask"][1]["options"] == list(seg.MULTIMASK)


def test_mask_node_applies_the_batch_rule(pack_nodes, sam2_model, images, monkeypatch):
    """Node glue with ComfyUI's device hooks replaced by the CPU."""
    sam2_nodes = pack_module("nodes.sam2")
    monkeypatch.setattr(sam2_nodes, "device_model", lambda handle: handle)
    monkeypatch.setattr(sam2_nodes, "output_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(sam2_nodes, "progress", lambda total: None)
    positive = '[[{"x": 100, "y": 70}], [{"x": 20, "y": 30}]]'
    out = sam2_nodes.SAM2Mask.execute(sam2=sam2_model, image=images, positive_points=positive, multimask="best",
                                      boxes="[[10, 10, 190, 140]]")
    expected = seg.segment(sam2_model, images, prompts_from_json(positive, "", "[[10, 10, 190, 140]]", 2))
    assert torch.equal(out.result[0], expected) and expected.shape == (2, H, W)


@requires_comfyui
def test_loader_and_mask_nodes_in_comfyui(pack_nodes, tiny_sam2, images, tmp_path, monkeypatch):
    import folder_paths
    from comfy.model_patcher import ModelPatcher

    sam2_nodes, paths = pack_module("nodes.sam2"), pack_module("nodes.paths")
    paths.register_sam2_folders()
    (tmp_path / "sam2").mkdir()
    (tmp_path / "sam2" / "tiny.safetensors").symlink_to(tiny_sam2.safetensors)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "sam2", ([str(tmp_path / "sam2")], {".safetensors"}))
    assert "tiny.safetensors" in paths.sam2_files()
    assert sam2_nodes.SAM2Loader.validate_inputs(sam2_name="tiny.safetensors") is True
    missing = sam2_nodes.SAM2Loader.validate_inputs(sam2_name="nothing.pt")
    assert "'nothing.pt' was not found" in missing and "sam2.1_hiera_tiny.pt" in missing and str(tmp_path) in missing
    with pytest.raises(FileNotFoundError, match="facebookresearch/sam2"):
        sam2_nodes.SAM2Loader.execute(sam2_name="nothing.pt")

    handle = sam2_nodes.SAM2Loader.execute(sam2_name="tiny.safetensors").result[0]
    assert isinstance(handle.patcher, ModelPatcher) and handle.config == CONFIG
    positive = '[{"x": 100, "y": 70}]'
    masks = sam2_nodes.SAM2Mask.execute(sam2=handle, image=images, positive_points=positive, multimask="best",
                                        negative_points='[{"x": 5, "y": 5}]').result[0]
    expected = seg.segment(seg.load_sam2(tiny_sam2.safetensors), images,
                           prompts_from_json(positive, '[{"x": 5, "y": 5}]', "", 2))
    assert masks.shape == (2, H, W) and torch.equal(masks.cpu(), expected)
    with pytest.raises(ValueError, match="boxes: box 0 .* has zero area"):
        sam2_nodes.SAM2Mask.execute(sam2=handle, image=images, positive_points=positive, boxes="[[5, 5, 5, 9]]")
