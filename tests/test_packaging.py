"""Packaging: registry metadata, requirements, entry point, and the CI/README test command."""
import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_COMMAND = "python -m pytest"


def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_required_top_level_entries_exist():
    for name in ("__init__.py", "nodes", "trainers", "weights_manifest.json", "tests", "examples_workflows",
                 "README.md", "core", "pyproject.toml", "requirements.txt", ".ci/run", "LICENSE"):
        assert (REPO / name).exists(), name


def test_registry_metadata():
    data = pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", project["name"]) and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["license"] == {"file": "LICENSE"}
    assert project["urls"]["Repository"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "FewStep Fill & Edit"
    assert comfy["requires-comfyui"].startswith(">=0.3.")


def test_requirements_match_pyproject_and_never_pin_torch():
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == pyproject()["project"]["dependencies"]
    for line in lines:
        assert not re.match(r"(torch|torchvision|torchaudio|numpy)\b", line), f"{line}: ComfyUI provides it"


def test_entry_point_is_v3_only():
    tree = ast.parse((REPO / "__init__.py").read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert "comfy_entrypoint" in names
    assert "NODE_CLASS_MAPPINGS" not in assigned, "V1 mappings would make ComfyUI ignore comfy_entrypoint"


def test_version_is_consistent():
    tree = ast.parse((REPO / "__init__.py").read_text())
    version = next(n.value.value for n in tree.body if isinstance(n, ast.Assign)
                   and any(getattr(t, "id", None) == "__version__" for t in n.targets))
    assert version == pyproject()["project"]["version"]


def test_ci_runs_the_readme_set_up_and_test_commands_with_pinned_torch():
    """.ci/run sets up with README's set-up command (tools/setup.sh, in a fresh venv) and runs README's test command;
    the set-up pins the torch pair and installs the pack's, trainers' and tests' requirements."""
    readme = (REPO / "README.md").read_text()
    assert f"```bash\n{TEST_COMMAND}\n```" in readme and "bash tools/setup.sh" in readme
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci_lines
    assert 'COMFYUI_DIR="$comfyui" bash tools/setup.sh "$work/venv"' in ci_lines
    ci, setup = (REPO / ".ci" / "run").read_text(), (REPO / "tools" / "setup.sh").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in setup and "python3 -m venv" in setup
    assert "-r requirements.txt -r tests/requirements.txt" in setup and "sam2==1.1.0" in setup
    assert 'export COMFYUI_DIR="$comfyui"' in ci and "shared/comfyui/ComfyUI-0.3.64" in ci, "CI runs the real host"


def torch_load_calls(tree: ast.AST):
    """``torch.load(...)`` calls in a module, with whether they pass ``weights_only=True``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            yield node.lineno, safe


def test_no_pickle_loading_anywhere():
    """Only tensors-only ``torch.load(weights_only=True)`` (Meta's SAM2 .pt files); never pickle of objects."""
    shipped = [REPO / "__init__.py", *(p for d in ("core", "nodes", "trainers", "benchmarks", "tools")
                                         for p in (REPO / d).rglob("*.py"))]
    for path in shipped:
        text = path.read_text()
        assert "pickle.load" not in text, path
        tree = ast.parse(text)
        calls = list(torch_load_calls(tree))
        references = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "load"
                      and isinstance(n.value, ast.Name) and n.value.id == "torch"]
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "torch"
                   and any(a.name == "load" for a in n.names)]
        assert len(references) == len(calls) and not imports, f"{path}: torch.load used other than by a call"
        assert all(safe for _, safe in calls), f"{path}:{[line for line, safe in calls if not safe]}: weights_only=True"


def test_torch_load_check_catches_unsafe_calls():
    found = list(torch_load_calls(ast.parse("torch.load(p)\ntorch.load(p, weights_only=True)\n")))
    assert found == [(1, False), (2, True)]


def headings_of(path: Path) -> set[str]:
    return {line.lstrip("#").strip().lower() for line in path.read_text().splitlines() if line.startswith("#")}


def test_every_section_a_message_points_to_exists():
    """Errors, skip reasons and docstrings say "(README, 'Install into ComfyUI')" or "(docs/trainers.md, 'Trainers')":
    that page must exist and have that heading (one pointed to a missing one)."""
    cited = set()
    for folder in ("core", "nodes", "trainers", "tests", "benchmarks", "tools"):
        for path in (REPO / folder).rglob("*.py"):
            cited |= set(re.findall(r"(README|docs/[a-z-]+\.md), '?([A-Z][^')\"]+?)'?\)", path.read_text()))
    assert {page for page, _ in cited} >= {"docs/development.md", "docs/trainers.md"}, "the pattern finds them"
    missing = set()
    for page, name in cited:
        path = REPO / ("README.md" if page == "README" else page)
        if not path.is_file() or not any(h.startswith(name.lower()) for h in headings_of(path)):
            missing.add((page, name))
    assert not missing, missing


def test_readme_reads_in_two_minutes_and_every_page_it_moved_is_linked():
    """README ≤ 12 KB (issue 18); the reference pages it links exist, and what moved there is still there."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    pages = ("nodes", "trainers", "weights", "benchmarks", "development", "methods")
    for page in pages:
        assert f"](docs/{page}.md)" in readme and (REPO / "docs" / f"{page}.md").is_file(), page
    moved = {"nodes": ["bad input", "which base models work", "big photos: crop & stitch"],
             "trainers": ["trainers"], "weights": ["model folders and weights"], "development": ["device figures"],
             "benchmarks": ["what holds at this scale, in plain words"]}
    for page, names in moved.items():
        assert all(any(h.startswith(n) for h in headings_of(REPO / "docs" / f"{page}.md")) for n in names), page
    assert (REPO / "docs" / "demo_contact_sheet.png").is_file() and "docs/demo_contact_sheet.png" in readme


def test_child_processes_get_pinned_thread_pools(tmp_path, monkeypatch):
    """On a shared 2-core machine a child sizing its pools from the core count oversubscribes them (a trainer went
    from 0.6 to 7–10 s/step under a parallel job): trainer runs and the ComfyUI server get explicit counts."""
    import subprocess
    import sys

    from .support import comfy_server
    from .support.processes import CHILD_THREADS, THREAD_VARIABLES, pinned_env

    env = pinned_env(1, base={"PATH": "/usr/bin"})
    assert all(env[name] == "1" for name in THREAD_VARIABLES) and env["PATH"] == "/usr/bin"
    code = "import torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=pinned_env(1), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"

    started = {}

    class Stop(Exception):
        pass

    def popen(cmd, **kwargs):
        started.update(kwargs)
        raise Stop

    monkeypatch.setattr(comfy_server.subprocess, "Popen", popen)
    monkeypatch.setattr(comfy_server, "comfyui_dir", lambda: tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    server = comfy_server.ComfyServer(tmp_path / "base", tmp_path / "model.safetensors")
    try:
        server.__enter__()
    except Stop:
        pass
    finally:
        if getattr(server, "log", None):
            server.log.close()
    assert all(started["env"][name] == str(CHILD_THREADS) for name in THREAD_VARIABLES)
