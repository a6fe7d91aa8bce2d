"""Node schemas: ids, categories, tooltips, card names, and the snapshot CI validates workflows with."""
import pytest

from .support.node_schemas import load_snapshot, render_all

CARD_NAMES = {"FewStepReBlend": "Re-Blend", "FewStepInverseNoiseInit": "Inverse Noise Init"}


@pytest.fixture(scope="module")
def nodes(pack_nodes):
    return pack_nodes.NODES


@pytest.fixture(scope="module")
def infos(nodes):
    return render_all(nodes)


def test_ids_and_categories_are_prefixed(infos):
    assert len(infos) >= 4
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
