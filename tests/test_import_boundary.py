"""Layering: core/ is pure torch; only nodes/_api.py imports comfy_api; the pack imports relatively."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server",
                "execution", "latent_preview", "node_helpers", "comfy_config"}
PACK_TOP = {"core", "nodes", "trainers"}


def imports(path: Path):
    """(top-level module name, relative level, line) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], 0, node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "").split(".")[0], node.level, node.lineno


def py_files(folder: str):
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", py_files("core"), ids=lambda p: p.name)
def test_core_imports_nothing_from_the_host_nodes_or_trainers(path):
    depth = len(path.relative_to(REPO / "core").parts)  # core/x.py: 1; core/segment/x.py: 2
    for name, level, line in imports(path):
        where = f"{path.relative_to(REPO)}:{line}"
        assert level <= depth, f"{where}: relative import leaves core/"
        if level == 0:
            assert name not in HOST_MODULES | PACK_TOP, f"{where}: core/ imports {name}"


def test_only_api_module_imports_comfy_api():
    offenders = [
        f"{p.relative_to(REPO)}:{line}"
        for folder in ("nodes", "core", "trainers")
        for p in py_files(folder)
        for name, level, line in imports(p)
        if level == 0 and name == "comfy_api" and p != REPO / "nodes" / "_api.py"
    ]
    assert offenders == []
    assert ("comfy_api", 0) in {(n, lvl) for n, lvl, _ in imports(REPO / "nodes" / "_api.py")}


@pytest.mark.parametrize("path", [REPO / "__init__.py", *py_files("nodes"), *py_files("core")],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_pack_code_imports_its_own_modules_relatively(path):
    """ComfyUI imports the pack under a mangled name: absolute 'import core/nodes' would break."""
    for name, level, line in imports(path):
        assert not (level == 0 and name in PACK_TOP), f"{path.relative_to(REPO)}:{line}: absolute import of {name}"


def test_trainers_do_not_import_nodes_or_the_host():
    for path in py_files("trainers"):
        for name, level, line in imports(path):
            assert not (level == 0 and name in HOST_MODULES), f"{path.relative_to(REPO)}:{line}: imports {name}"


def test_boundary_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import comfy.samplers\nfrom folder_paths import x\nfrom ..nodes import y\n")
    found = list(imports(bad))
    assert ("comfy", 0, 1) in found and ("folder_paths", 0, 2) in found and ("nodes", 2, 3) in found
