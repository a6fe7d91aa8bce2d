"""Example workflows: valid against ComfyUI's node definitions, twins agree, templates discoverable."""
import json

import pytest

from tools.example_graphs import API_DIR, REPO, TEMPLATE_DIR, rendered_files
from tools.workflow_check import load_object_info, load_pack_schemas, ui_to_api, validate_api, validate_ui

TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")  # ComfyUI 0.3.64


@pytest.fixture(scope="module")
def object_info():
    return load_object_info(load_pack_schemas())


def ui_files():
    return sorted(TEMPLATE_DIR.glob("*.json"))


def api_files():
    return sorted(API_DIR.glob("*.api.json"))


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
    ui = json.loads((TEMPLATE_DIR / path.name.replace(".api.json", ".json")).read_text())
    assert ui_to_api(ui, object_info) == api


def test_committed_examples_match_their_generator():
    """Regenerate with `python -m tools.example_graphs --write`."""
    for path, text in rendered_files().items():
        assert path.exists(), f"{path.relative_to(REPO)} is missing"
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(REPO)} is stale"


def test_each_workflow_folder_has_one_role_and_no_file_is_in_both():
    """ComfyUI lists <pack>/example_workflows/*.json as templates (UI format); examples_workflows/ (not discovered)
    holds the API-format graphs to script and share."""
    assert TEMPLATE_DIR.name in TEMPLATE_FOLDERS and API_DIR.name not in TEMPLATE_FOLDERS
    assert not list(TEMPLATE_DIR.glob("*.api.json")), "API twins would show up as broken templates"
    assert all(p.name.endswith(".api.json") for p in API_DIR.iterdir()), "examples_workflows/ holds API graphs only"
    for path in ui_files():
        assert "nodes" in json.loads(path.read_text()), f"{path.name}: a template is a UI-format workflow"
    for path in api_files():
        assert all("class_type" in n for n in json.loads(path.read_text()).values()), f"{path.name}: API format"
    assert not {p.name for p in TEMPLATE_DIR.iterdir()} & {p.name for p in API_DIR.iterdir()}


WHOLE_IMAGE = "fewstep_inpaint_no_extra_weights"  # the broken cases name its node ids
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
    api = json.loads((API_DIR / f"{WHOLE_IMAGE}.api.json").read_text())
    BROKEN[case](api)
    assert validate_api(api, object_info), case


def test_validator_catches_broken_ui_workflows(object_info):
    ui = json.loads((TEMPLATE_DIR / f"{WHOLE_IMAGE}.json").read_text())
    link = ui["links"][0]
    link[5] = "IMAGE" if link[5] != "IMAGE" else "MASK"
    node = next(n for n in ui["nodes"] if n["type"] == "FewStepSchedule")
    node["widgets_values"][0] = 99
    ui["id"] = "fewstep-inpaint"
    errors = validate_ui(ui, object_info)
    assert any("labelled" in e for e in errors) and any("above max 50" in e for e in errors)
    assert any("is not a UUID" in e for e in errors)
