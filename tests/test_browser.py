"""Every template in ComfyUI's own web front end (headless Chromium): what a user sees when they open one.

Serves the pack from a real ComfyUI (COMFYUI_DIR), opens the app in headless Chromium through Selenium and loads
each template with the app's own ``loadGraphData``. Asserts: no alert, toast or dialog about the workflow, no
missing node type, every widget value kept as the template has it, and ``graphToPrompt()`` equal to the
template's API twin (seeds aside). A screenshot of each template goes to ``FEWSTEP_ARTIFACTS`` (default
``<pytest tmp>/browser``). Skips, saying why, without ComfyUI, Selenium, Chromium or chromedriver
(how to run it: docs/development.md, 'Development').
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import REAL_COMFYUI, REPO
from .support.comfy_server import ComfyServer, tiny_checkpoint

TEMPLATE_DIR = REPO / "example_workflows"  # UI format, what the template browser opens
API_DIR = REPO / "examples_workflows"  # their API twins
TEMPLATES = sorted(p.stem for p in TEMPLATE_DIR.glob("*.json"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
SEED_INPUTS = {"seed", "noise_seed"}


def _skip_reason() -> str | None:
    if not REAL_COMFYUI:
        return ("needs COMFYUI_DIR: a ComfyUI checkout importable in this interpreter "
                "(docs/development.md, 'Development')")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs Selenium (pip install selenium; docs/development.md, 'Development')"
    if not CHROMIUM or not CHROMEDRIVER:
        return ("needs Chromium and chromedriver on PATH (apt-get install chromium chromium-driver; "
                "docs/development.md, 'Development')")
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

LOAD_AND_READ = """
const [workflow, done] = arguments;
(async () => {
  const seen = {alerts: window.__fewstepAlerts || [], error: null};
  try {
    await window.app.loadGraphData(workflow);
  } catch (e) {
    seen.error = String(e && e.stack || e);
  }
  await new Promise(r => setTimeout(r, 1000));  // toasts and dialogs open asynchronously
  const registered = window.LiteGraph ? window.LiteGraph.registered_node_types : {};
  const nodes = window.app.graph._nodes || window.app.graph.nodes || [];
  seen.missing = nodes.filter(n => !(n.type in registered)).map(n => n.type);
  seen.widgets = Object.fromEntries(nodes.map(n => [String(n.id), (n.widgets || []).map(w => w.value)]));
  // as drawn: the title bar sits above pos; sizes are what the front end computed for the node's contents
  const title = window.LiteGraph ? window.LiteGraph.NODE_TITLE_HEIGHT : 30;
  seen.boxes = Object.fromEntries(nodes.map(n => [String(n.id),
      {type: n.type, box: [n.pos[0], n.pos[1] - title, n.size[0], n.size[1] + title]}]));
  seen.groups = (window.app.graph._groups || window.app.graph.groups || []).map(g => ({title: g.title,
      box: [...(g._bounding || g.bounding)]}));
  seen.toasts = [...document.querySelectorAll('.p-toast-message')].map(e => e.innerText);
  seen.dialogs = [...document.querySelectorAll('.p-dialog')].map(e => e.innerText);
  seen.prompt = (await window.app.graphToPrompt()).output;
  done(seen);
})();
"""


def place_files_the_templates_name(server: ComfyServer) -> None:
    """The checkpoint, image and weights each template names exist (listed by name; never run here), so a combo's
    value is one the server offers, as on a user's machine with the files in place."""
    folders = {"CheckpointLoaderSimple": ("ckpt_name", "models/checkpoints"),
               "FewStepInverFillLoader": ("network_name", "models/extra_inverfill"),
               "FewStepTurboFillLoader": ("adapter_name", "models/extra_turbofill"),
               "FewStepTurboEditLoader": ("encoder_name", "models/extra_turboedit"),
               "FewStepSAM2Loader": ("sam2_name", "models/extra_sam2")}
    for name in TEMPLATES:
        for node in json.loads((API_DIR / f"{name}.api.json").read_text()).values():
            kind = node["class_type"]
            if kind == "LoadImage":
                from PIL import Image

                Image.new("RGB", (64, 64), (90, 120, 150)).save(server.input_dir / node["inputs"]["image"])
            elif kind in folders:
                field, folder = folders[kind]
                target = server.base / folder / node["inputs"][field]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FEWSTEP_ARTIFACTS") or tmp_path_factory.mktemp("artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    checkpoint = tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")
    with ComfyServer(tmp_path_factory.mktemp("browser_comfy"), checkpoint) as server:
        place_files_the_templates_name(server)
        # a returning user: no first-run template gallery over the canvas
        server.post_json("/settings/Comfy.TutorialCompleted", True)
        server.post_json("/settings/Comfy.Workflow.Persist", False)  # each page starts empty, not with the last graph
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1600,1000", "--renderer-process-limit=1"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_script_timeout(300)
        try:
            yield server, driver
        finally:
            driver.quit()


def open_app(driver, url: str) -> None:
    """A fresh page with the app ready; window.alert / confirm are recorded instead of blocking."""
    import time

    driver.get(url)
    deadline = time.time() + 300
    while time.time() < deadline:
        if driver.execute_script("return !!(window.app && window.app.graph && window.app.canvas)"):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("ComfyUI's front end did not start within 300 s")
    driver.execute_script("""
        window.__fewstepAlerts = [];
        window.alert = m => window.__fewstepAlerts.push(String(m));
        window.confirm = m => { window.__fewstepAlerts.push(String(m)); return true; };
    """)


def without_seeds(prompt: dict) -> dict:
    return {nid: {"class_type": node["class_type"],
                  "inputs": {k: v for k, v in node["inputs"].items() if k not in SEED_INPUTS}}
            for nid, node in prompt.items()}


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_opens_cleanly_in_the_front_end(browser, artifacts, template):
    server, driver = browser
    workflow = json.loads((TEMPLATE_DIR / f"{template}.json").read_text())
    twin = json.loads((API_DIR / f"{template}.api.json").read_text())
    open_app(driver, server.url)
    seen = driver.execute_async_script(LOAD_AND_READ, workflow)
    driver.save_screenshot(str(artifacts / f"{template}.png"))
    assert seen["error"] is None, seen["error"]
    assert seen["alerts"] == [], seen["alerts"]
    assert seen["toasts"] == [], seen["toasts"]
    assert seen["dialogs"] == [], seen["dialogs"]
    assert seen["missing"] == [], seen["missing"]
    for node in workflow["nodes"]:
        if node.get("widgets_values") is not None and node["type"] != "Note":
            kept = seen["widgets"][str(node["id"])]
            assert kept[: len(node["widgets_values"])] == node["widgets_values"], (node["type"], kept)
    assert without_seeds(seen["prompt"]) == without_seeds(twin)
    assert_readable_layout(seen["boxes"], seen["groups"])


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def inside(inner: list[float], outer: list[float]) -> bool:
    return (outer[0] <= inner[0] and inner[0] + inner[2] <= outer[0] + outer[2]
            and outer[1] <= inner[1] and inner[1] + inner[3] <= outer[1] + outer[3])


def assert_readable_layout(boxes: dict, groups: list[dict]) -> None:
    """Measured in the live app: no node on another, every node but the note in one titled group, groups left
    to right in the order load → prompt & mask → sample → composite & save."""
    items = list(boxes.items())
    for i, (a, na) in enumerate(items):
        for b, nb in items[i + 1:]:
            assert not overlap(na["box"], nb["box"]), f"{na['type']} ({a}) overlaps {nb['type']} ({b})"
    assert [g["title"][0] for g in groups] == sorted(g["title"][0] for g in groups) and len(groups) >= 3
    assert all(groups[i]["box"][0] + groups[i]["box"][2] < groups[i + 1]["box"][0] for i in range(len(groups) - 1))
    for nid, node in boxes.items():
        holders = [g["title"] for g in groups if inside(node["box"], g["box"])]
        if node["type"] == "MarkdownNote":
            assert holders == [], "the note sits beside the groups"
        else:
            assert len(holders) == 1, f"{node['type']} ({nid}) is in {holders}"
