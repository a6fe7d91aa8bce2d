"""Example workflows: valid against ComfyUI's node definitions, twins agree, templates discoverable."""
import json

import pytest

from .support.example_graphs import REPO, TEMPLATE_DIR, UI_DIR, rendered_files
from .support.node_schemas import load_snapshot
from .support.workflow_check import load_object_info, ui_to_api, validate_api, validate_ui

TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")  # ComfyUI 0.3.64


@pytest.fixture(scope="module")
def object_info():
    return load_object_info(load_snapshot())


def ui_files():
    return sorted(p for p in UI_DIR.glob("*.json") if not p.name.endswith(".api.json"))


def api_files():
    return sorted(UI_DIR.glob("*.api.json"))


def test_there_is_an_inpaint_example_and_its_twin():
    names = {p.stem for p in ui_files()}
    assert {"fewstep_inpaint_no_extra_weights", "inverfill_inpaint", "instant_edit_exact", "instant_edit_encoder",
            "region_aware_inpaint"} <= names
    assert {p.name[: -len(".api.json")] for p in api_files()} == names


@pytest.mark.parametrize("path", ui_files(), ids=lambda p: p.name)
def test_ui_workflow_is_valid(path, object_info):
    workflow = json.loads(path.read_text())
    assert validate_ui(workflow, object_info) == []
    used = {n["type"] for n in workflow["nodes"]}
    assert any(t.startswith("FewStep") for t in used)
    assert all(t.startswith("FewStep") or t in load_object_info() or t == "MarkdownNote" for t in used), \
        "examples use only core nodes and ours"


@pytest.mark.parametrize("path", api_files(), ids=lambda p: p.name)
def test_api_twin_is_valid_and_matches_the_ui_workflow(path, object_info):
    api = json.loads(path.read_text())
    assert validate_api(api, object_info) == []
    ui = json.loads(path.with_name(path.name.replace(".api.json", ".json")).read_text())
    assert ui_to_api(ui, object_info) == api


def test_committed_examples_match_their_generator():
    """Regenerate with `python -m tests.support.example_graphs --write`."""
    for path, text in rendered_files().items():
        assert path.exists(), f"{path.relative_to(REPO)} is missing"
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(REPO)} is stale"


def test_template_browser_folder_holds_every_ui_workflow_and_nothing_else():
    """ComfyUI lists <pack>/example_workflows/*.json; examples_workflows/ is not discovered."""
    assert TEMPLATE_DIR.name in TEMPLATE_FOLDERS and UI_DIR.name not in TEMPLATE_FOLDERS
    templates = sorted(p.name for p in TEMPLATE_DIR.glob("*.json"))
    assert templates == [p.name for p in ui_files()]
    for path in ui_files():
        assert (TEMPLATE_DIR / path.name).read_bytes() == path.read_bytes()
    assert not list(TEMPLATE_DIR.glob("*.api.json")), "API twins would show up as broken templates"


BROKEN = {
    "unknown node": lambda w: w["2"].update(class_type="NoSuchNode"),
    "wrong link type": lambda w: w["11"]["inputs"].update(sigmas=["9", 0]),
    "missing output": lambda w: w["12"]["inputs"].update(samples=["11", 5]),
    "out of range": lambda w: w["10"]["inputs"].update(steps=0),
    "bad combo": lambda w: w["10"]["inputs"].update(spacing="karras"),
    "missing input": lambda w: w["13"]["inputs"].pop("mask"),
    "unknown input": lambda w: w["13"]["inputs"].update(blur=3),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validator_catches_broken_api_workflows(case, object_info):
    api = json.loads(api_files()[0].read_text())
    BROKEN[case](api)
    assert validate_api(api, object_info), case


def test_validator_catches_broken_ui_workflows(object_info):
    ui = json.loads(ui_files()[0].read_text())
    link = ui["links"][0]
    link[5] = "IMAGE" if link[5] != "IMAGE" else "MASK"
    node = next(n for n in ui["nodes"] if n["type"] == "FewStepSchedule")
    node["widgets_values"][0] = 99
    ui["id"] = "fewstep-inpaint"
    errors = validate_ui(ui, object_info)
    assert any("labelled" in e for e in errors) and any("above max 50" in e for e in errors)
    assert any("is not a UUID" in e for e in errors)
