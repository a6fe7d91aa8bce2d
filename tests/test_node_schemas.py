"""Node schemas, rendered by ComfyUI's real V3 API: ids, categories, tooltips, card names, and the snapshot
CI validates workflows with (a change detector; the live server is compared with it in test_real_host)."""
import asyncio

import pytest

from .conftest import load_pack, requires_comfyui
from .support.node_schemas import load_snapshot, render, render_all

pytestmark = requires_comfyui
CARD_NAMES = {"FewStepReBlend": "Re-Blend", "FewStepInverseNoiseInit": "Inverse Noise Init"}


@pytest.fixture(scope="module")
def nodes(pack_nodes):
    return pack_nodes.NODES


@pytest.fixture(scope="module")
def infos(nodes):
    return render_all(nodes)


def test_the_entry_point_lists_every_node_once(pack, nodes):
    """What ComfyUI's loader does: await comfy_entrypoint(), then get_node_list()."""
    extension = asyncio.run(pack.comfy_entrypoint())
    listed = asyncio.run(extension.get_node_list())
    assert listed == list(nodes)
    ids = [n.GET_SCHEMA().node_id for n in listed]
    assert len(ids) == len(set(ids)) and set(ids) == set(load_snapshot())


def test_ids_and_categories_are_prefixed(infos, nodes):
    assert len(infos) == len(nodes)
    for node_id, info in infos.items():
        assert node_id.startswith("FewStep"), node_id
        assert info["category"].startswith("FewStep/"), node_id
        assert info["display_name"] and info["description"], node_id


def test_every_input_and_output_has_a_tooltip(infos):
    for node_id, info in infos.items():
        for group in ("required", "optional"):
            for name, (_, options) in info["input"].get(group, {}).items():
                assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert all(info["output_tooltips"]), f"{node_id} has an output without tooltip"


def test_card_names(infos):
    for node_id, name in CARD_NAMES.items():
        assert infos[node_id]["display_name"] == name


def test_widget_defaults_lie_within_bounds(infos):
    for node_id, info in infos.items():
        for group in ("required", "optional"):
            for name, (kind, opt) in info["input"].get(group, {}).items():
                if kind in ("INT", "FLOAT"):
                    assert opt["min"] <= opt["default"] <= opt["max"], f"{node_id}.{name}"
                if kind == "COMBO" and "default" in opt:
                    assert opt["default"] in opt["options"], f"{node_id}.{name}"


def test_snapshot_matches_the_node_code(infos):
    """Regenerate with `python -m tests.support.node_schemas --write` after a schema change."""
    assert infos == load_snapshot()


def test_node_ids_are_never_removed():
    """Workflows reference node ids: a released id must stay (deprecate instead)."""
    released = {"FewStepSchedule", "FewStepReBlend", "FewStepBlendedSampler", "FewStepExactComposite",
                "FewStepInverFillLoader", "FewStepInverseNoiseInit"}
    assert released <= set(load_snapshot())


def _bad_node(case: str):
    """A node class with one mistake the real API refuses (the old stand-in accepted each of them)."""
    load_pack()
    from comfy_api.latest import io

    def schema(inputs, outputs=()):
        return io.Schema(node_id=f"FewStepBad_{case}", category="FewStep/test", inputs=list(inputs),
                         outputs=list(outputs))

    definitions = {
        "same_id_in_and_out": lambda: schema([io.Image.Input("image")], [io.Image.Output("image")]),
        "image_default": lambda: schema([io.Image.Input("image", default=None)]),
        "combo_force_input": lambda: schema([io.Combo.Input("mode", options=["a"], force_input=True)]),
        "string_display_mode": lambda: schema([io.Int.Input("steps", default=4, display_mode="slider")]),
        "no_execute": lambda: schema([io.Int.Input("steps", default=4)]),
    }
    members = {"define_schema": classmethod(lambda cls: definitions[case]())}
    if case != "no_execute":
        members["execute"] = classmethod(lambda cls, **kw: io.NodeOutput())
    return type(f"Bad_{case}", (io.ComfyNode,), members)


@pytest.mark.parametrize("case, message", [
    ("same_id_in_and_out", "Ids must be unique between inputs and outputs"),
    ("image_default", "unexpected keyword argument 'default'"),
    ("combo_force_input", "unexpected keyword argument 'force_input'"),
    ("string_display_mode", "'str' object has no attribute 'value'"),
    ("no_execute", "No execute function was defined"),
])
def test_rendering_refuses_what_comfyui_refuses(case, message):
    with pytest.raises(Exception, match=message):
        render(_bad_node(case))


def float_inputs(nodes):
    from comfy_api.latest import io

    return [(node, spec) for node in nodes for spec in node.define_schema().inputs if isinstance(spec, io.Float.Input)]


def test_the_pack_has_float_inputs_to_check(nodes):
    names = {(n.define_schema().node_id, s.id) for n, s in float_inputs(nodes)}
    assert {("FewStepRegionAwareSampler", "cfg"), ("FewStepTurboFillAdapterApply", "strength"),
            ("FewStepCaptionEditor", "strength")} <= names, names


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_every_float_input_refuses_a_non_finite_value_naming_it(nodes, bad):
    """ComfyUI's min/max checks let NaN through (NaN < min is False); a NaN cfg gave a black image. The check runs
    before anything else, so the other inputs can be left out."""
    for node, spec in float_inputs(nodes):
        with pytest.raises(ValueError, match=rf"^{spec.id}: got {bad}; give a finite number"):
            node.execute(**{spec.id: bad})


def test_the_manifest_node_of_each_kind_is_the_node_that_lists_its_files(nodes, tmp_path, monkeypatch):
    """weights_manifest.json's ``node`` (core.manifest.LOADER_NODES, what trainers write) must be the node whose
    file list shows a file put into that kind's folder."""
    import copy
    import importlib

    import folder_paths

    from .conftest import PACK_NAME

    manifest = importlib.import_module(f"{PACK_NAME}.core.manifest")
    paths = importlib.import_module(f"{PACK_NAME}.nodes.paths")
    paths.register_model_folders()
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})  # the probe files stay out of later tests
    by_id = {n.define_schema().node_id: n for n in nodes}
    for kind, node_id in manifest.LOADER_NODES.items():
        key = paths.SAM2_FOLDERS[0] if kind == "sam2" else paths.folder_key(kind)
        folder = tmp_path / kind
        folder.mkdir()
        (folder / f"probe_{kind}.safetensors").write_bytes(b"")
        folder_paths.add_model_folder_path(key, str(folder))
        options = [o for spec in by_id[node_id].define_schema().inputs for o in (getattr(spec, "options", None) or [])]
        assert f"probe_{kind}.safetensors" in options, (kind, node_id)
