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
